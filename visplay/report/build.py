"""``visplay report runs/<name>``: one self-contained HTML file (Jinja2 templates in templates/, SVG plots inlined and
also written beside it, no script, nothing fetched) and a compact text summary on stdout.

The page opens with the run's story in one screen (facts, warnings, the per-iteration table, the headline curves),
then a sample browser that follows chosen images through the iterations (questions, votes, silver label,
confidence, filter decision, reward components, gold answer where known, the reasoner's rollouts), then the
training figures, per-phase metric panels (collapsed), evaluation and the paper comparison.

Everything is read from the run log, read-only. Metrics are read generically from the ``metrics`` table and
plotted per phase, whatever names the engine and plugins chose; dedicated figures come from the core tables
(confidence from ``labels``, kept fraction from ``filters``, rewards from ``rewards`` component ``total``), the
plugins' own per-iteration numbers through ``visplay_summary_fields`` (the games plugin: gold accuracy), evaluation
from ``eval_scores``,
and the paper comparison from reproduce/paper_table1.json.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visplay.files import check_run_subfolder, write_file
from visplay.log.runlog import RunLog, RunLogError
from visplay.report import plots
from visplay.report.eval_items import PAGE_PREFIX, item_pages, items_link
from visplay.report.samples import collect_samples
from visplay.session import PluginSession
from visplay.types import PartProgress, in_part


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
    losses: dict[str, list[dict]] = field(default_factory=dict)  # loss curves of plugin tables (cold start)
    events: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, tuple[int, str]] = field(default_factory=dict)  # kind -> (count, first message)
    fields: dict[int, dict[str, float | str]] = field(default_factory=dict)  # the plugins' per-iteration numbers
    eval_items: list[dict] = field(default_factory=list)  # every evaluated item (the item pages, eval_items.py)
    judge_verdicts: list[dict] = field(default_factory=list)  # the eval plugin's stored judge calls, if any


def _recipe(run: dict) -> Any:
    from omegaconf import OmegaConf

    text = run.get("recipe_yaml")
    return OmegaConf.create(text) if text else OmegaConf.create({})


# the parts of a report, as its progress bar counts them (visplay.loop.progress.Parts)
COLLECT_PARTS = ("check the run log's arrays", "read the run log", "pick the samples", "the plugins' numbers")
REPORT_PARTS = (*COLLECT_PARTS, "plots and page", "write the files")


def collect(db_path: str | Path, session: PluginSession | None = None, parts: PartProgress | None = None) -> ReportData:
    """Read everything the report needs (the database is opened read-only); ``session``: the plugins that add
    their numbers (default: the installed ones); ``parts``: progress (visplay.loop.progress.Parts) that counts :data:`COLLECT_PARTS`."""
    from visplay.log.status import shown_status

    # one read transaction: a live run commits steps meanwhile, and every number of the report is of one moment
    with RunLog(db_path, readonly=True) as runlog, runlog.snapshot():
        with in_part(parts, COLLECT_PARTS[0]):
            runlog.check_arrays()
        run = runlog.run() or {}
        if run:  # a run killed outright still says "running": say so
            run = {**run, "status": shown_status(run.get("status"), Path(db_path).parent)}
        events: dict[str, int] = defaultdict(int)
        warnings: dict[str, tuple[int, str]] = {}
        with in_part(parts, COLLECT_PARTS[1]):
            for e in runlog.rows("events"):
                events[e["kind"]] += 1
                if e["level"] in ("warning", "error"):
                    count, first = warnings.get(e["kind"], (0, e["message"]))
                    warnings[e["kind"]] = (count + 1, first)
            tables = {"metrics": runlog.rows("metrics"), "labels": runlog.rows("labels"),
                      "filters": runlog.rows("filters"),
                      "reward_totals": runlog.rows_matching("rewards", component="total"),
                      "questions": runlog.rows("questions"), "checkpoints": runlog.checkpoint_rows(),
                      "eval_scores": runlog.rows("eval_scores") if "eval_scores" in runlog.tables() else [],
                      "eval_items": runlog.rows("eval_items") if "eval_items" in runlog.tables() else [],
                      "judge_verdicts": (runlog.rows("judge_verdicts") if "judge_verdicts" in runlog.tables()
                                         else []),
                      "losses": _loss_rows(runlog)}
        with in_part(parts, COLLECT_PARTS[2]):
            samples = collect_samples(runlog)
        with in_part(parts, COLLECT_PARTS[3]):
            fields = _summary_fields(runlog, run, session or PluginSession())
        return ReportData(db_path=Path(db_path), run=run, recipe=_recipe(run), **tables, samples=samples,
                          events=dict(events), warnings=warnings, fields=fields)


def _loss_rows(runlog: RunLog) -> dict[str, list[dict]]:
    """{table: rows} of every plugin table with ``step`` and ``loss`` columns (the games plugin's
    ``cold_start_losses``): loss curves, read by their columns as the sample browser reads gold answers."""
    return {t: runlog.rows(t) for t in runlog.tables() if not t.startswith("sqlite_")
            and {"step", "loss"} <= set(runlog.columns(t)) and runlog.count(t)}


def _summary_fields(runlog: RunLog, run: dict, session: PluginSession) -> dict[int, dict[str, float | str]]:
    """{iteration: the plugins' own numbers} through ``visplay_summary_fields`` (read-only)."""
    from visplay.context import RunContext

    ctx = RunContext(recipe=_recipe(run), pm=session.pm, run_dir=runlog.path.parent, log=runlog, session=session)
    iterations = sorted({s[0] for s in runlog.done_steps()})
    return {i: fields for i in iterations if (fields := ctx.hooks.summary_fields(i))}


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


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def paper_comparison(data: ReportData) -> tuple[Any, str, list, list[str]] | None:
    """(table, paper model, comparison rows, notes) when the run has eval scores with iterations, else None."""
    from visplay.report.paper import (
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
    errors = _gold_errors(data)
    for name, points in _gold_series(data).items():
        lines.append(f"{name}: " + ", ".join(f"i{p[0]}=" + _with_error(p[2], errors.get(name, {}).get(p[0]))
                                             for p in points))
    if data.eval_scores:
        lines.append("evaluation (accuracy %):")
        for s in data.eval_scores:
            lines.append(f"  {s['eval_id']:<20} {s['title'] or s['benchmark']:<15} {s['correct']:>4}/{s['n']:<4} "
                         f"{s['accuracy']:6.2f}")
    comparison = paper_comparison(data)
    if comparison:
        from visplay.report.paper import format_comparison

        table, model, rows, _notes = comparison
        lines.append(format_comparison(table, model, rows))
    if data.events:
        lines.append("events: " + ", ".join(f"{k}={v}" for k, v in sorted(data.events.items())))
    return "\n".join(lines)


# --- HTML ----------------------------------------------------------------------------------------------------

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _fig(name: str, svg: str | None, caption: str, figures: dict[str, str]) -> dict[str, Any]:
    if svg is not None:
        figures[f"{name}.svg"] = svg
    return {"name": name, "svg": svg, "caption": caption}


def _gold_series(data: ReportData) -> dict[str, list[tuple[int, int, float]]]:
    """The plugins' numeric per-iteration fields (``visplay_summary_fields``; the games plugin: gold accuracy)
    as (iteration, 0, value) series per label."""
    series: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for iteration, fields in sorted(data.fields.items()):
        for label, value in fields.items():
            if isinstance(value, tuple):  # (value, standard error): the value here, the error in _gold_errors
                value = value[0]
            if isinstance(value, float):
                series[label].append((iteration, 0, value))
    return dict(series)


def _gold_errors(data: ReportData) -> dict[str, dict[int, float]]:
    """{label: {iteration: standard error}} of the fields a plugin gave as (value, standard error) pairs."""
    errors: dict[str, dict[int, float]] = defaultdict(dict)
    for iteration, fields in data.fields.items():
        for label, value in fields.items():
            if isinstance(value, tuple):
                errors[label][iteration] = value[1]
    return dict(errors)


def _with_error(value: float | None, error: float | None) -> str:
    return _fmt(value) + (f"\u00b1{error:.3f}" if value is not None and error is not None else "")


def _story(data: ReportData, figures: dict[str, str]) -> dict[str, Any]:
    """The top of the page: facts, warnings, the per-iteration table and the headline curves."""
    run, summary, gold = data.run, iteration_summary(data), _gold_series(data)
    seconds = (run["finished_at"] - run["created_at"]) if run.get("finished_at") and run.get("created_at") else None
    facts = [str(run.get("status", "?")), f"{len(summary)} iteration(s)", f"variant {run.get('variant', '?')}",
             f"seed {run.get('seed', '?')}", f"device {run.get('device') or '?'}"]
    if seconds is not None:
        facts.append(f"{seconds / 60:.1f} min")
    # at most three gold columns (the shortest names: the headline ones); the figure and panels have the rest
    shown = sorted(gold, key=lambda n: (len(n), n))[:3]
    gold_at = {name: {p[0]: p[2] for p in gold[name]} for name in shown}
    errors = _gold_errors(data)
    headers = ["iteration", "questions", "valid share", "mean confidence", "kept", "questioner reward",
               "reasoner reward", *[n.replace("_", " ") for n in gold_at]]
    rows = [[s["iteration"], s["questions"], _fmt(s["valid"], 2), _fmt(s["confidence"], 2), s["kept_n"],
             _fmt(s["questioner_reward"]), _fmt(s["reasoner_reward"]),
             *[_with_error(gold_at[n].get(s["iteration"]), errors.get(n, {}).get(s["iteration"])) for n in gold_at]]
            for s in summary]
    warnings = [f"{kind} x{count}: {message}" for kind, (count, message) in sorted(data.warnings.items())]
    return {"facts": " · ".join(facts), "headers": headers, "rows": rows, "warnings": warnings,
            "figure": _fig("story", plots.plot_story(data.reward_totals, summary, gold),
                           "reward per training step, each role on its own step axis (dashed: next iteration), "
                           "questions per iteration, gold-checked accuracy", figures)}


def _metric_panels(data: ReportData, figures: dict[str, str]) -> list[dict[str, Any]]:
    """One collapsed panel per phase; per-game/per-kind breakdowns (names with 2+ slashes at eval) apart."""
    panels = []
    for phase, series in plots.metric_series(data.metrics).items():
        main = {n: v for n, v in series.items() if not (phase == "eval" and n.count("/") >= 2)}
        breakdown = {n: v for n, v in series.items() if n not in main}
        if main:
            panels.append({"title": f"phase {phase}: {len(main)} metrics",
                           "fig": _fig(f"metrics_{phase}", plots.plot_metric_grid(phase, main),
                                       f"metrics of phase {phase}", figures)})
        if breakdown:
            panels.append({"title": f"phase {phase}: {len(breakdown)} per-game and per-kind breakdowns",
                           "fig": _fig(f"metrics_{phase}_breakdown", plots.plot_metric_grid(phase, breakdown),
                                       f"breakdowns of phase {phase}", figures)})
    return panels


def _listed(data: ReportData) -> set[tuple[str, str]]:
    """The (eval id, benchmark) pairs whose items the run log has."""
    return {(r["eval_id"], r["benchmark"]) for r in data.eval_items}


def _score_cell(listed: set, text: str, eval_id: str | None, benchmark: str) -> str | dict[str, str]:
    """A score, as a link to its items' section when the run log has them (eval_items.py)."""
    if eval_id is None or (eval_id, benchmark) not in listed:
        return text
    return {"text": text, "href": items_link(eval_id, benchmark), "title": f"items of {eval_id}, {benchmark}"}


def _paper(data: ReportData, figures: dict[str, str]) -> dict[str, Any] | None:
    from visplay.report.paper import score_sources

    comparison = paper_comparison(data)
    if not comparison:
        return None
    table, model, crows, notes = comparison
    sources, listed = score_sources(data.eval_scores), _listed(data)
    headers = ["iteration", "source"] + [table.titles[b] for b in table.benchmarks] + ["Avg (printed)",
                                                                                      "Avg (our mean)"]
    rows = []
    for r in crows:
        rows.append([r.iteration, "paper"] + [_fmt(r.paper.get(b), 2) for b in table.benchmarks]
                    + [_fmt(r.paper_avg_printed, 2), _fmt(r.paper_avg_mean, 2)])
        if r.ours:
            rows.append([r.iteration, f"ours ({r.ours_count} of {len(table.benchmarks)})"]
                        + [_score_cell(listed, _fmt(r.ours.get(b), 2), sources.get(r.iteration, {}).get(b), b)
                           for b in table.benchmarks] + ["", _fmt(r.ours_avg, 2)])
    return {"model": model, "source": table.source, "headers": headers, "rows": rows, "notes": notes,
            "fig": _fig("paper_comparison", plots.plot_paper_comparison(table.benchmarks, table.titles, crows),
                        "paper vs ours per benchmark", figures)}


def build_html(data: ReportData) -> tuple[str, dict[str, str]]:
    """The HTML page (templates/report.html.j2) and the SVG figures it inlines ({file name: SVG text})."""
    figures: dict[str, str] = {}
    run = data.run
    kept = plots.kept_range(data.labels, data.filters)
    training = [_fig("rewards", plots.plot_rewards(data.reward_totals), "mean total reward per step", figures),
                _fig("confidence", plots.plot_confidence_hist(data.labels, kept),
                     "confidence histogram per iteration", figures),
                _fig("kept_fraction", plots.plot_kept_fraction(data.filters), "kept fraction", figures),
                _fig("kind_shares", plots.plot_kind_shares(data.metrics),
                     "kinds of question in the reasoner's set per iteration, and their shift from iteration 1",
                     figures)]
    training += [_fig(f"loss_{table}", plots.plot_losses(rows, f"{table.replace('_', ' ')}: loss per step"),
                      f"{table}: loss per step, per role", figures) for table, rows in sorted(data.losses.items())]
    gold = _fig("gold_silver", plots.plot_named(_gold_series(data), "the plugins' numbers per iteration",
                                                 _gold_errors(data)),
                "numbers the plugins report for each iteration, e.g. gold vs silver accuracy", figures)
    run_fields = [(k, run.get(k)) for k in ("run_id", "status", "variant", "seed", "visplay_version", "torch",
                                            "transformers", "device", "git_commit")]
    run_fields += [("checkpoints", ", ".join(c["name"] for c in data.checkpoints
                                             if not str(c["name"]).startswith("state/")) or "-"),
                   ("events", ", ".join(f"{k}={v}" for k, v in sorted(data.events.items())) or "-")]
    listed = _listed(data)
    eval_rows = [[s["eval_id"], s["title"] or s["benchmark"], s["iteration"], s["judge"], s["n"], s["correct"],
                  _score_cell(listed, f"{s['accuracy']:.2f}", s["eval_id"], s["benchmark"]), s["no_answer"]]
                 for s in data.eval_scores]
    page = _environment().get_template("report.html.j2").render(
        run=run, db_path=str(data.db_path), css=(TEMPLATES / "report.css").read_text(),
        story=_story(data, figures), samples=data.samples, training=training, gold=gold,
        metric_panels=_metric_panels(data, figures), eval_rows=eval_rows, paper=_paper(data, figures),
        run_fields=run_fields)
    return page, figures


def build_item_pages(data: ReportData) -> dict[str, str]:
    """{file name: HTML}: the item pages the scores link to (visplay/report/eval_items.py)."""
    env, css = _environment(), (TEMPLATES / "report.css").read_text()
    return item_pages(data.eval_items, data.eval_scores, data.judge_verdicts,
                      lambda name, **context: env.get_template(name).render(css=css, **context))


def write_report(run: str | Path, out: str | Path | None = None, *, session: PluginSession | None = None,
                 parts: PartProgress | None = None, data: ReportData | None = None) -> Path:
    """Write ``index.html`` and the SVG figures into ``out`` (default ``<run dir>/report``); returns the HTML path.
    ``session``: the command's plugin session (a finished run's report reuses the run's); ``parts``: a progress
    bar counting :data:`REPORT_PARTS` (the first four only when ``data``, already collected, is given)."""
    path = Path(run)
    db_path = path / "run.db" if path.is_dir() else path
    if not db_path.is_file():
        raise RunLogError(f"{run}: no run.db here (pass a run directory or its run.db)")
    out_dir = Path(out) if out else check_run_subfolder(db_path.parent / "report")  # before the slow part
    data = data if data is not None else collect(db_path, session, parts)
    with in_part(parts, REPORT_PARTS[4]):
        page, figures = build_html(data)
        pages = build_item_pages(data)
    with in_part(parts, REPORT_PARTS[5]):
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob("*.png"):  # figures of an older report version
            stale.unlink()
        for stale in out_dir.glob(f"{PAGE_PREFIX}*.html"):  # item pages of evaluations since replaced
            if stale.name not in pages:
                stale.unlink()
        for name, html in pages.items():
            write_file(out_dir / name, html)
        for name, svg in figures.items():
            write_file(out_dir / name, svg)
        index = out_dir / "index.html"
        write_file(index, page)
    return index
