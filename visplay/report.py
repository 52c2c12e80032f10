"""``visplay report runs/<name>``: one self-contained HTML file (plots inlined as base64 PNG, also written beside it)
and a compact text summary on stdout.

Everything is read from the run log, read-only. Metrics are read generically from the ``metrics`` table and
plotted per phase, whatever names the engine and plugins chose; dedicated figures come from the core tables
(confidence from ``labels``, kept fraction from ``filters``, rewards from ``rewards`` component ``total``), gold vs
silver from top-level ``gold``/``silver`` accuracy metrics (the games plugin), evaluation from ``eval_scores``,
and the paper comparison from reproduce/paper_table1.json.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visplay import report_plots as plots
from visplay.runlog import RunLog, RunLogError

SAMPLE_LIMIT = 8  # sample questions shown with their images


@dataclass
class ReportData:
    """What the report shows, read from one run log."""

    db_path: Path
    run: dict[str, Any]
    recipe: Any
    metrics: list[dict]
    labels: list[dict]
    filters: list[dict]
    reward_totals: list[dict]
    questions: list[dict]
    checkpoints: list[dict]
    eval_scores: list[dict]
    samples: list[dict]
    events: dict[str, int] = field(default_factory=dict)


def _recipe(run: dict) -> Any:
    from omegaconf import OmegaConf

    text = run.get("recipe_yaml")
    return OmegaConf.create(text) if text else OmegaConf.create({})


def _samples(runlog: RunLog) -> list[dict]:
    """Up to SAMPLE_LIMIT questions of the last iteration, one per image, voted ones first (then valid, then the
    rest), each with its image, raw generation, silver label, votes and filter decision where they exist."""
    questions = runlog.rows("questions", order_by="iteration desc, key")
    if not questions:
        return []
    last = questions[0]["iteration"]
    labels = {r["question_key"]: r for r in runlog.rows("labels", "iteration = ?", [last])}
    candidates = sorted((q for q in questions if q["iteration"] == last),
                        key=lambda q: (q["key"] not in labels, not q["valid"], q["phase"] != "reasoner_set", q["key"]))
    chosen, seen = [], set()
    for q in candidates:
        if q["image_id"] in seen:
            continue
        seen.add(q["image_id"])
        img = runlog.rows("images", "image_id = ?", [q["image_id"]])
        filt = runlog.rows("filters", "question_key = ?", [q["key"]])
        gen = runlog.rows("generations", "key = ?", [q["key"]])
        chosen.append({"question": q, "label": labels.get(q["key"]), "image": img[0] if img else None,
                       "filter": filt[0] if filt else None, "generation": gen[0]["text"] if gen else None})
        if len(chosen) >= SAMPLE_LIMIT:
            break
    return chosen


def collect(db_path: str | Path) -> ReportData:
    """Read everything the report needs (the database is opened read-only)."""
    with RunLog(db_path, readonly=True) as runlog:
        run = runlog.run() or {}
        events: dict[str, int] = defaultdict(int)
        for e in runlog.rows("events"):
            events[e["kind"]] += 1
        return ReportData(
            db_path=Path(db_path), run=run, recipe=_recipe(run), metrics=runlog.rows("metrics"),
            labels=runlog.rows("labels"), filters=runlog.rows("filters"),
            reward_totals=runlog.rows("rewards", "component = ?", ["total"]),
            questions=runlog.rows("questions"), checkpoints=runlog.rows("checkpoints", order_by="iteration, name"),
            eval_scores=runlog.rows("eval_scores") if "eval_scores" in runlog.tables() else [],
            samples=_samples(runlog), events=dict(events),
        )


# --- numbers -------------------------------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def iteration_summary(data: ReportData) -> list[dict[str, Any]]:
    """Per iteration: valid-question share, mean confidence, kept fraction, mean questioner/reasoner reward."""
    its = sorted({r["iteration"] for r in data.questions + data.labels + data.filters + data.reward_totals})
    out = []
    for it in its:
        qs = [q for q in data.questions if q["iteration"] == it]
        rewards = defaultdict(list)
        for r in data.reward_totals:
            if r["iteration"] == it:
                rewards[r["role"]].append(r["value"])
        kept = [f["keep"] for f in data.filters if f["iteration"] == it]
        out.append({
            "iteration": it, "questions": len(qs),
            "valid": _mean([float(q["valid"]) for q in qs]),
            "confidence": _mean([r["confidence"] for r in data.labels if r["iteration"] == it]),
            "kept": _mean([float(k) for k in kept]), "kept_n": f"{sum(kept)}/{len(kept)}" if kept else "-",
            "questioner_reward": _mean(rewards["questioner"]), "reasoner_reward": _mean(rewards["reasoner"]),
        })
    return out


def is_gold_silver(name: str) -> bool:
    """Top-level accuracy metrics of gold evaluation (the games plugin: ``gold/accuracy``,
    ``gold/silver_accuracy``...); per-game breakdowns (more slashes) stay in the per-phase grids."""
    return (("gold" in name or "silver" in name) and name.count("/") == 1 and "accuracy" in name
            and not name.endswith("_se"))


def standard_errors(series: dict[str, list[tuple[int, int, float]]]) -> dict[str, dict[int, float]]:
    """{metric: {iteration: standard error}} from the ``<metric>_se`` series a plugin logs beside a metric."""
    return {n[:-3]: {p[0]: p[2] for p in points} for n, points in series.items() if n.endswith("_se")}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def paper_comparison(data: ReportData) -> tuple[Any, str, list, list[str]] | None:
    """(table, paper model, comparison rows, notes) when the run has eval scores with iterations, else None."""
    from visplay.paper import (
        PaperDataError,
        check_printed_averages,
        compare,
        load_table1,
        paper_model_for,
        scores_by_iteration,
    )

    ours = scores_by_iteration(data.eval_scores)
    if not ours:
        return None
    try:
        table = load_table1()
        model = paper_model_for(data.recipe) if "model" in data.recipe else "qwen2.5-vl-3b"
        return table, model, compare(table, model, ours), check_printed_averages(table)
    except PaperDataError as exc:  # a missing/broken table must not cost the rest of the report
        print(f"visplay report: paper comparison skipped: {exc}", file=sys.stderr)
        return None


# --- text ----------------------------------------------------------------------------------------------------


def text_summary(data: ReportData) -> str:
    """The compact terminal version of the report."""
    run = data.run
    lines = [f"run {run.get('name', '?')} [{run.get('status', '?')}] variant={run.get('variant', '?')} "
             f"seed={run.get('seed', '?')}  ({data.db_path})"]
    lines.append(f"{'iter':<5}{'questions':>10}{'valid':>7}{'conf':>7}{'kept':>9}{'q_reward':>10}{'r_reward':>10}")
    for s in iteration_summary(data):
        lines.append(f"{s['iteration']:<5}{s['questions']:>10}{_fmt(s['valid'], 2):>7}{_fmt(s['confidence'], 2):>7}"
                     f"{s['kept_n']:>9}{_fmt(s['questioner_reward']):>10}{_fmt(s['reasoner_reward']):>10}")
    flat = {n: v for series in plots.metric_series(data.metrics).values() for n, v in series.items()}
    errors = standard_errors(flat)
    for name, points in ((n, v) for n, v in flat.items() if is_gold_silver(n)):
        se = errors.get(name, {})
        lines.append(f"{name}: " + ", ".join(f"i{p[0]}={p[2]:.3f}" + (f"\u00b1{se[p[0]]:.3f}" if p[0] in se else "")
                                             for p in points))
    if data.eval_scores:
        lines.append("evaluation (accuracy %):")
        for s in data.eval_scores:
            lines.append(f"  {s['eval_id']:<20} {s['title'] or s['benchmark']:<15} {s['correct']:>4}/{s['n']:<4} "
                         f"{s['accuracy']:6.2f}")
    comparison = paper_comparison(data)
    if comparison:
        from visplay.paper import format_comparison

        table, model, rows, _notes = comparison
        lines.append(format_comparison(table, model, rows))
    if data.events:
        lines.append("events: " + ", ".join(f"{k}={v}" for k, v in sorted(data.events.items())))
    return "\n".join(lines)


# --- HTML ----------------------------------------------------------------------------------------------------

CSS = """body{font-family:sans-serif;margin:24px;max-width:1300px;color:#222}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td.l,th.l{text-align:left}figure{margin:12px 0}figcaption{font-size:12px;color:#555}
.sample{display:flex;gap:14px;border:1px solid #ddd;padding:8px;margin:8px 0}.sample img{width:160px;
image-rendering:pixelated;border:1px solid #999}.sample pre{white-space:pre-wrap;font-size:12px;margin:2px 0}
.note{color:#8a4b00;font-size:13px}.empty{color:#777;font-style:italic}"""


def _e(value: Any) -> str:
    return html.escape(str(value) if value is not None else "-")


def _table(headers: list[str], rows: list[list[Any]], left: int = 1) -> str:
    head = "".join(f"<th class='l'>{_e(h)}</th>" if i < left else f"<th>{_e(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td class='l'>{_e(c)}</td>" if i < left else f"<td>{_e(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(name: str, png: bytes | None, caption: str, figures: dict[str, bytes]) -> str:
    if png is None:
        return f"<p class='empty' id='fig-{name}-missing'>{_e(caption)}: nothing logged.</p>"
    figures[f"{name}.png"] = png
    data = base64.b64encode(png).decode()
    return (f"<figure id='fig-{name}'><img alt='{_e(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_e(caption)} ({name}.png)</figcaption></figure>")


def _sample_html(sample: dict) -> str:
    q, label, image, filt = sample["question"], sample["label"], sample["image"], sample["filter"]
    if image and image.get("png"):
        img = f"<img alt='image {_e(q['image_id'][:12])}' src='data:image/png;base64," \
              f"{base64.b64encode(image['png']).decode()}'>"
    else:
        img = f"<pre>{_e(image['source'] if image else (q['image_id'] or '')[:16])}</pre>"
    text = _e(q["question"]) if q["valid"] else f"(invalid: {_e(q['parse_reason'])})"
    lines = [f"<b>question</b> ({_e(q['qtype'])}): {text}"]
    if not q["valid"] and sample.get("generation") is not None:
        lines.append(f"<b>generation</b>: {_e(sample['generation'][:300])}")
    if label:
        answers = json.loads(label["answers"]) if label.get("answers") else []
        kept = f"{'kept' if filt['keep'] else 'dropped'} ({filt['reason']})" if filt else "-"
        lines.append(f"<b>silver label</b>: {_e(label['silver_label'])}   <b>confidence</b>: "
                     f"{_fmt(label['confidence'], 2)}   <b>filter</b>: {_e(kept)}")
        lines.append(f"<b>answers</b>: {_e(', '.join(str(a) for a in answers))}")
    lines.append(f"<b>key</b>: {_e(q['key'])}")
    return f"<div class='sample'>{img}<div>" + "".join(f"<pre>{line}</pre>" for line in lines) + "</div></div>"


def _metrics_section(data: ReportData, figures: dict[str, bytes]) -> str:
    parts = []
    band = None
    if "reasoner" in data.recipe:
        band = list(data.recipe.reasoner.filter.band or []) or None
    summary = iteration_summary(data)
    parts.append("<section id='summary'><h2>Per iteration</h2>" + _table(
        ["iteration", "questions", "valid share", "mean confidence", "kept", "questioner reward", "reasoner reward"],
        [[s["iteration"], s["questions"], _fmt(s["valid"], 2), _fmt(s["confidence"], 2), s["kept_n"],
          _fmt(s["questioner_reward"]), _fmt(s["reasoner_reward"])] for s in summary]) + "</section>")
    parts.append("<section id='training'><h2>Rewards, confidence, filter</h2>"
                 + _figure("rewards", plots.plot_rewards(data.reward_totals), "mean total reward per step", figures)
                 + _figure("confidence", plots.plot_confidence_hist(data.labels, band),
                           "confidence histogram per iteration", figures)
                 + _figure("kept_fraction", plots.plot_kept_fraction(data.filters), "kept fraction", figures)
                 + "</section>")
    series = plots.metric_series(data.metrics)
    gold = {n: v for phase in series.values() for n, v in phase.items() if is_gold_silver(n)}
    parts.append("<section id='gold'><h2>Gold vs silver</h2>"
                 + _figure("gold_silver", plots.plot_named(gold, "gold vs silver accuracy", standard_errors(
                     {n: v for phase in series.values() for n, v in phase.items()})),
                           "gold/silver metrics (games plugin)", figures) + "</section>")
    grids = "".join(_figure(f"metrics_{phase}", plots.plot_metric_grid(phase, s), f"metrics of phase {phase}",
                            figures) for phase, s in series.items())
    parts.append("<section id='metrics'><h2>All metrics by phase</h2>"
                 + (grids or "<p class='empty'>no metrics logged</p>") + "</section>")
    return "".join(parts)


def _eval_section(data: ReportData, figures: dict[str, bytes]) -> str:
    rows = [[s["eval_id"], s["title"] or s["benchmark"], s["iteration"], s["judge"], s["n"], s["correct"],
             f"{s['accuracy']:.2f}", s["no_answer"]] for s in data.eval_scores]
    parts = ["<section id='eval'><h2>Evaluation</h2>" + (_table(
        ["eval", "benchmark", "iteration", "judge", "n", "correct", "accuracy %", "no answer"], rows, left=2)
        if rows else "<p class='empty'>no evaluation in this run log (run `visplay eval runs/&lt;name&gt; "
                     "--benchmarks ... --data DIR`)</p>") + "</section>"]
    comparison = paper_comparison(data)
    body = "<p class='empty'>no evaluation scores with iterations to compare</p>"
    if comparison:
        table, model, crows, notes = comparison
        heads = ["iteration", "source"] + [table.titles[b] for b in table.benchmarks] + ["Avg (printed)",
                                                                                        "Avg (our mean)"]
        lines = []
        for r in crows:
            lines.append([r.iteration, "paper"] + [_fmt(r.paper.get(b), 2) for b in table.benchmarks]
                         + [_fmt(r.paper_avg_printed, 2), _fmt(r.paper_avg_mean, 2)])
            if r.ours:
                lines.append([r.iteration, f"ours ({r.ours_count} of {len(table.benchmarks)})"]
                             + [_fmt(r.ours.get(b), 2) for b in table.benchmarks] + ["", _fmt(r.ours_avg, 2)])
        body = (f"<p>paper model: <b>{_e(model)}</b> ({_e(table.source)})</p>" + _table(heads, lines, left=2)
                + "".join(f"<p class='note'>note: {_e(n)}</p>" for n in notes)
                + _figure("paper_comparison", plots.plot_paper_comparison(table.benchmarks, table.titles, crows),
                          "paper vs ours per benchmark", figures))
    parts.append(f"<section id='paper'><h2>Paper comparison (Table 1)</h2>{body}</section>")
    return "".join(parts)


def build_html(data: ReportData) -> tuple[str, dict[str, bytes]]:
    """The HTML page and the PNG figures it embeds ({file name: bytes})."""
    figures: dict[str, bytes] = {}
    run = data.run
    head = (f"<h1>visplay report: {_e(run.get('name', data.db_path))}</h1><section id='run'>" + _table(
        ["field", "value"], [[k, run.get(k)] for k in ("run_id", "status", "variant", "seed", "visplay_version",
                                                       "torch", "transformers", "device", "git_commit")]
        + [["checkpoints", ", ".join(c["name"] for c in data.checkpoints
                                     if not str(c["name"]).startswith("state/")) or "-"],
           ["events", ", ".join(f"{k}={v}" for k, v in sorted(data.events.items())) or "-"]]) + "</section>")
    samples = "".join(_sample_html(s) for s in data.samples) or "<p class='empty'>no questions logged</p>"
    body = (head + _metrics_section(data, figures)
            + f"<section id='samples'><h2>Sample images and questions</h2>{samples}</section>"
            + _eval_section(data, figures))
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>visplay report "
            f"{_e(run.get('name', ''))}</title><style>{CSS}</style></head><body>{body}</body></html>")
    return page, figures


def write_report(run: str | Path, out: str | Path | None = None) -> Path:
    """Write ``index.html`` and the PNG figures into ``out`` (default ``<run dir>/report``); returns the HTML path."""
    path = Path(run)
    db_path = path / "run.db" if path.is_dir() else path
    if not db_path.is_file():
        raise RunLogError(f"{run}: no run.db here (pass a run directory or its run.db)")
    data = collect(db_path)
    page, figures = build_html(data)
    out_dir = Path(out) if out else db_path.parent / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, png in figures.items():
        (out_dir / name).write_bytes(png)
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def cli_report(args: argparse.Namespace) -> int:
    """``visplay report <run-dir-or-db> [--out DIR]``: write the HTML report and print the text summary."""
    path = Path(args.run)
    db_path = path / "run.db" if path.is_dir() else path
    index = write_report(path, args.out)
    print(text_summary(collect(db_path)))
    print(f"report: {index}", file=sys.stdout)
    return 0
