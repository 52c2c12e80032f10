"""The paper's Table 1 as data, and a side-by-side comparison with a run's evaluation scores.

The numbers live in ``reproduce/paper_table1.json`` (transcribed from PAPER.md), beside the scripts that use them,
and ship inside the package as ``visplay/data/paper_table1.json`` (read with importlib.resources, so a wheel install
has them). The printed "Avg"
column is kept as printed; :func:`check_printed_averages` shows that most rows' printed average is not the mean of
their seven scores, so our reports always show both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

TABLE1_PATH = Path(str(resources.files("visplay") / "data" / "paper_table1.json"))
AVG_TOLERANCE = 0.01  # the table prints two decimals


class PaperDataError(Exception):
    """The paper table file is missing or malformed."""


@dataclass(frozen=True)
class PaperRow:
    model: str
    label: str
    iteration: int
    scores: dict[str, float]
    avg_printed: float

    @property
    def avg_mean(self) -> float:
        """Our own mean of the row's scores."""
        return sum(self.scores.values()) / len(self.scores)


@dataclass(frozen=True)
class PaperTable:
    benchmarks: list[str]
    titles: dict[str, str]
    rows: list[PaperRow]
    source: str

    def models(self) -> list[str]:
        return sorted({r.model for r in self.rows})

    def for_model(self, model: str) -> list[PaperRow]:
        rows = [r for r in self.rows if r.model == model]
        if not rows:
            raise PaperDataError(f"no paper rows for model {model!r}; known: {', '.join(self.models())}")
        return rows


def load_table1(path: str | Path | None = None) -> PaperTable:
    """Read Table 1 (default: the copy shipped in the package, visplay/data/paper_table1.json)."""
    path = Path(path) if path else TABLE1_PATH
    try:
        data = json.loads(path.read_text())
        benchmarks = list(data["benchmarks"])
        rows = [PaperRow(r["model"], r["label"], int(r["iteration"]), {b: float(r["scores"][b]) for b in benchmarks},
                         float(r["avg_printed"])) for r in data["rows"]]
        return PaperTable(benchmarks, dict(data["titles"]), rows, str(data.get("source", "")))
    except FileNotFoundError as exc:
        raise PaperDataError(f"{path}: paper table not found (a broken install? it ships as visplay/data/paper_table1.json)") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise PaperDataError(f"{path}: malformed paper table: {type(exc).__name__}: {exc}") from exc


def check_printed_averages(table: PaperTable) -> list[str]:
    """One note per row whose printed Avg differs from the mean of its scores."""
    notes = []
    for r in table.rows:
        if abs(r.avg_mean - r.avg_printed) > AVG_TOLERANCE:
            notes.append(f"{r.label} iteration {r.iteration}: printed Avg {r.avg_printed:.2f}, "
                         f"mean of the {len(r.scores)} scores {r.avg_mean:.2f}")
    return notes


def paper_model_for(recipe: Any) -> str:
    """Which paper row family a run compares with: ``plugins.eval.paper_model``, else guessed from model.path."""
    plugins = recipe.get("plugins") if hasattr(recipe, "get") else None
    chosen = (plugins or {}).get("eval", {}) or {}
    if chosen.get("paper_model"):
        return str(chosen["paper_model"])
    path = str(recipe.model.get("path") or "").lower()
    if "mimo" in path:
        return "mimo-vl-7b-sft"
    if "7b" in path:
        return "qwen2.5-vl-7b"
    return "qwen2.5-vl-3b"


@dataclass
class ComparisonRow:
    """One iteration: the paper's scores and ours per benchmark, with averages."""

    iteration: int
    paper: dict[str, float]
    ours: dict[str, float]
    paper_avg_printed: float | None
    paper_avg_mean: float | None
    ours_avg: float | None
    ours_count: int


def compare(table: PaperTable, model: str, ours: Mapping[int, Mapping[str, float]]) -> list[ComparisonRow]:
    """Rows per iteration (paper's and ours, union). ``ours`` is {iteration: {benchmark: accuracy percent}};
    our average is the mean over the table's benchmarks we have (``ours_count`` says how many)."""
    paper = {r.iteration: r for r in table.for_model(model)}
    out = []
    for it in sorted(set(paper) | set(ours)):
        p = paper.get(it)
        mine = {b: float(v) for b, v in (ours.get(it) or {}).items() if b in table.benchmarks}
        out.append(ComparisonRow(
            iteration=it, paper=dict(p.scores) if p else {}, ours=mine,
            paper_avg_printed=p.avg_printed if p else None, paper_avg_mean=p.avg_mean if p else None,
            ours_avg=sum(mine.values()) / len(mine) if mine else None, ours_count=len(mine),
        ))
    return out


def _cell(value: float | None) -> str:
    return f"{value:6.2f}" if value is not None else "     -"


def format_comparison(table: PaperTable, model: str, rows: Sequence[ComparisonRow]) -> str:
    """A text table: per iteration a 'paper' line and an 'ours' line, averages at the end."""
    heads = [table.titles.get(b, b)[:11] for b in table.benchmarks]
    lines = [f"{'iter':<5}{'':<6}" + "".join(f"{h:>12}" for h in heads) + f"{'Avg(print)':>12}{'Avg(mean)':>11}"]
    for r in rows:
        lines.append(f"{r.iteration:<5}{'paper':<6}" + "".join(f"{_cell(r.paper.get(b)):>12}"
                                                             for b in table.benchmarks)
                     + f"{_cell(r.paper_avg_printed):>12}{_cell(r.paper_avg_mean):>11}")
        if r.ours:
            lines.append(f"{'':<5}{'ours':<6}" + "".join(f"{_cell(r.ours.get(b)):>12}" for b in table.benchmarks)
                         + f"{'':>12}{_cell(r.ours_avg):>11}"
                         + (f"  (mean of {r.ours_count})" if r.ours_count < len(table.benchmarks) else ""))
    return f"paper model: {model}\n" + "\n".join(lines)


def scores_by_iteration(score_rows: Sequence[Mapping[str, Any]], judge: str | None = None) -> dict[int, dict]:
    """{iteration: {benchmark: accuracy}} from ``eval_scores`` rows of one judge (default: ``rule`` if present,
    else the first judge seen). Rows without an iteration (a plain model folder) are left out."""
    return {it: {b: float(r["accuracy"]) for b, r in row.items()} for it, row in _chosen_rows(score_rows, judge).items()}


def score_sources(score_rows: Sequence[Mapping[str, Any]], judge: str | None = None) -> dict[int, dict[str, str]]:
    """{iteration: {benchmark: eval_id}}: which evaluation each score of :func:`scores_by_iteration` comes from
    (the same rows chosen), so a report can link a score to its items."""
    return {it: {b: str(r["eval_id"]) for b, r in row.items()} for it, row in _chosen_rows(score_rows, judge).items()}


def _chosen_rows(score_rows: Sequence[Mapping[str, Any]], judge: str | None) -> dict[int, dict[str, Mapping]]:
    """{iteration: {benchmark: the eval_scores row}} of one judge (a later row of the same cell wins)."""
    judges = [r["judge"] for r in score_rows]
    judge = judge or ("rule" if "rule" in judges else (judges[0] if judges else None))
    out: dict[int, dict[str, Mapping]] = {}
    for r in score_rows:
        if r["judge"] == judge and r.get("iteration") is not None:
            out.setdefault(int(r["iteration"]), {})[r["benchmark"]] = r
    return out
