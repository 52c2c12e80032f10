"""The collapse study (issue 26): does self-play hold on seeds nobody tuned on, and do the gold-free guards help?

    python reproduce/collapse_study.py --out runs/collapse_study [--seeds 0 1 ... 9] [--jobs 2] [--docs docs/games.md]
        [--arms paper,wellformed,margin,kindcap]
    python reproduce/collapse_study.py --out reproduce/collapse_study --table-only --docs docs/games.md  # from JSON

Each arm is the default tiny recipe (``variant=paper``) with one guard turned on (reproduce/games_study.py's ARMS:
``wellformed`` = plugins.question_guard.min_words=4, ``wellformed_q`` = the same with
plugins.question_guard.at_parse=true (short questions are invalid for the questioner's reward too), ``margin`` = plugins.margin_guard.min_votes=3, ``kindcap`` =
plugins.kind_cap.max_share=0.1; ``paper`` = none), run once per seed by games_study.py's runner (one process and
one torch thread per run; ``--jobs`` at a time: the machine has 2 cores and concurrent runs slow each other).

For every run the study keeps, from its run log: gold pass@1 of the cold-start model (iteration 0) and after each
iteration, the gain of the last iteration over the start with its paired standard error (the same 300 held-out
questions are answered before and after, so the error is that of the per-question differences), the silver-label
accuracy of each iteration and whether it stayed above the starting pass@1 in every iteration, and the collapse
signals. ``<out>/collapse.json`` holds it all; the table printed (and written between the ``collapse-study`` markers
of ``--docs``) is made from that JSON only, so ``--table-only`` on the kept JSON (reproduce/collapse_study/)
regenerates docs/games.md's table without any run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ARMS = ("paper", "wellformed", "wellformed_q", "margin", "kindcap")
BEGIN, END = "<!-- collapse-study:begin -->", "<!-- collapse-study:end -->"
SIGNALS = ("collapse/kind_shift", "collapse/top_kept_share", "collapse/margin_p50", "collapse/unanimous_frac",
           "silver/kept_fraction", "gold/silver_accuracy_kept")


def games_study():
    spec = importlib.util.spec_from_file_location("games_study", HERE / "games_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def paired_gain(db: Path, last: int) -> tuple[float, float, int]:
    """(pass@1 after iteration ``last`` - pass@1 at the start, its paired standard error, questions)."""
    from visplay.log.runlog import RunLog

    with RunLog(db, readonly=True) as log:
        rows = log.rows("gold_eval")
    by_it: dict[int, dict[str, float]] = {}
    for r in rows:
        by_it.setdefault(int(r["iteration"]), {})[r["key"].split("/gold/", 1)[1]] = float(r["sample_accuracy"])
    start, end = by_it.get(0, {}), by_it.get(last, {})
    diffs = [end[k] - start[k] for k in sorted(start) if k in end]
    if len(diffs) < 2:
        return float("nan"), float("nan"), len(diffs)
    return statistics.fmean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs)), len(diffs)


def collect_run(run_dir: Path) -> dict[str, Any] | None:
    """One finished run's numbers (None when it has not finished: no result.json)."""
    result_file = run_dir / "result.json"
    if not result_file.is_file():
        return None
    result = json.loads(result_file.read_text())
    ev = result["eval"]
    last = max(int(i) for i in ev)
    start = ev["0"]["gold/sample_accuracy"]
    gain, se, n = paired_gain(run_dir / "run.db", last) if (run_dir / "run.db").is_file() else (
        ev[str(last)]["gold/sample_accuracy"] - start, float("nan"), 0)
    silver = [ev[str(i)].get("gold/silver_accuracy") for i in range(1, last + 1)]
    return {"arm": result["arm"], "seed": result["seed"], "overrides": result.get("overrides", []),
            "iterations": last, "start_pass1": start,
            "pass1": [ev[str(i)]["gold/sample_accuracy"] for i in range(last + 1)],
            "gain": gain, "gain_se": se, "paired_questions": n, "silver": silver,
            "silver_above_start": all(s is not None and s > start for s in silver),
            "signals": {name: [ev[str(i)].get(name) for i in range(1, last + 1)] for name in SIGNALS},
            "wall_s": result.get("wall_s"), "cpu_s": result.get("cpu_s")}


def collect(out: Path, arms: list[str]) -> list[dict[str, Any]]:
    runs = []
    for arm in arms:
        for run_dir in sorted(out.glob(f"{arm}-s*"), key=lambda p: int(p.name.rsplit("-s", 1)[1])):
            run = collect_run(run_dir)
            if run is not None:
                runs.append(run)
    return runs


def pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def table(runs: list[dict[str, Any]], order: tuple[str, ...] = ARMS) -> str:
    """Per-seed gains (points of gold pass@1, last iteration minus start, with paired standard errors) per arm,
    then per arm: mean [min, max], seeds that gained, seeds whose silver labels beat the start in every iteration.
    Arms in ``order``, any others after it by name."""
    arms = [a for a in order if any(r["arm"] == a for r in runs)] + sorted(
        {r["arm"] for r in runs} - set(order))
    seeds = sorted({r["seed"] for r in runs})
    at = {(r["arm"], r["seed"]): r for r in runs}
    lines = ["| seed | start pass@1 | " + " | ".join(arms) + " |", "|---|---|" + "---|" * len(arms)]
    for s in seeds:
        start = next(r["start_pass1"] for r in runs if r["seed"] == s)
        cells = []
        for a in arms:
            r = at.get((a, s))
            if r is None:
                cells.append("-")
                continue
            se = "" if math.isnan(r["gain_se"]) else f" ± {100 * r['gain_se']:.1f}"
            cells.append(f"{pts(r['gain'])}{se}" + ("" if r["silver_above_start"] else " (s)"))
        lines.append(f"| {s} | {start:.3f} | " + " | ".join(cells) + " |")
    lines += ["", "| arm | seeds | mean gain | [min, max] | seeds with a gain | silver above start in every iteration |",
              "|---|---|---|---|---|---|"]
    for a in arms:
        gains = [r["gain"] for r in runs if r["arm"] == a]
        above = sum(r["silver_above_start"] for r in runs if r["arm"] == a)
        lines.append(f"| {a} | {len(gains)} | {pts(statistics.fmean(gains))} | [{pts(min(gains))}, "
                     f"{pts(max(gains))}] | {sum(g > 0 for g in gains)}/{len(gains)} | {above}/{len(gains)} |")
    return "\n".join(lines)


def rewrite_docs(path: Path, text: str, markers: tuple[str, str] = (BEGIN, END)) -> None:
    begin, end = markers
    doc = path.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{path}: no {begin} ... {end} markers to put the table between")
    head, rest = doc.split(begin, 1)
    path.write_text(f"{head}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}")


def study_main(argv: list[str] | None, *, doc: str, arms: tuple[str, ...], markers: tuple[str, str],
               json_name: str, default_out: str, default_seeds: list[int]) -> int:
    """The command line of a paired-gain study (this one, reproduce/optimizer_study.py): run the arms' seeds through
    games_study's runner, keep every run's numbers in ``<out>/<json_name>``, print the table made from that JSON and
    write it between ``markers`` of ``--docs``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=default_seeds)
    parser.add_argument("--arms", default=",".join(arms), help=f"comma-separated, of {', '.join(arms)}")
    parser.add_argument("--out", default=default_out)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each uses one torch thread)")
    parser.add_argument("--docs", help="rewrite the table between the study's markers of this file")
    parser.add_argument("--table-only", action="store_true", help="no runs: the table from --out's runs or JSON")
    args = parser.parse_args(argv)
    out, chosen = Path(args.out), args.arms.split(",")
    unknown = [a for a in chosen if a not in arms]
    if unknown:
        parser.error(f"--arms: unknown arm(s) {unknown}; known: {', '.join(arms)}")
    if not args.table_only:
        games_study().run_all(chosen, args.seeds, out, [], args.jobs)
    runs = [r for r in collect(out, chosen) if args.table_only or r["seed"] in args.seeds]
    if not runs and (out / json_name).is_file():  # the kept JSON (no run folders)
        runs = [r for r in json.loads((out / json_name).read_text())["runs"] if r["arm"] in chosen]
    if not runs:
        raise SystemExit(f"{out}: no finished runs and no {json_name}")
    text = table(runs, arms)
    out.mkdir(parents=True, exist_ok=True)
    if collect(out, chosen):  # the JSON is rewritten only from run folders, never from itself
        (out / json_name).write_text(json.dumps({"runs": runs}, indent=1, sort_keys=True))
    if args.docs:
        rewrite_docs(Path(args.docs), text, markers)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    return study_main(argv, doc=__doc__, arms=ARMS, markers=(BEGIN, END), json_name="collapse.json",
                      default_out="runs/collapse_study", default_seeds=list(range(10)))


if __name__ == "__main__":
    sys.exit(main())
