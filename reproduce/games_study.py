"""The games study (issues 6 and 15): does self-play improve the tiny reasoner, measured against gold?

    python reproduce/games_study.py --seeds 0 1 2 --out runs/games_study [--jobs 2] [--docs docs/games.md]
        [--arms paper,released,gold,frozen] [key=value ...]
    python reproduce/games_study.py --out runs/games_study --table-only --docs docs/games.md   # runs so far
    python reproduce/games_study.py --out reproduce/games_study --table-only   # docs/games.md's table, from JSON

Arms, each one run of the default tiny recipe per seed, all scored on the same held-out set:
- ``floor``: the cold-start model only (reasoner_v0 of the ``paper`` run; every arm of a seed starts from it);
- ``paper`` / ``released``: self-play with ``variant=paper`` / ``variant=released``;
- ``gold``: the reasoner trained on game-engine answers (``plugins.games.gold_reward=true``): the ceiling;
- ``frozen``: self-play with the questioner frozen at its cold start (its updates are skipped), to see whether
  the questioner's training is worth it;
- ``wellformed``, ``wellformed_q``, ``margin``, ``kindcap``: self-play with one collapse guard on (docs/collapse.md;
  run by reproduce/collapse_study.py over ten seeds);
- ``grpo``, ``dr_grpo``, ``gspo``, ``dapo``: self-play with one optimizer of the grpo plugin's menu (run by
  reproduce/optimizer_study.py; ``grpo`` is ``paper`` under its optimizer's name).

Each run writes ``<out>/<arm>-s<seed>/result.json`` (eval metrics per iteration, CPU seconds, peak RSS); the
whole study writes ``<out>/study.json`` (every value) and prints the findings table made from it; ``--docs``
rewrites the table between the markers in docs/games.md from that JSON, so the page never holds a number the
JSON does not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from visplay.hookspecs import hookimpl
from visplay.types import UpdateResult

ARMS: dict[str, list[str]] = {
    "paper": ["variant=paper"],
    "released": ["variant=released"],
    "gold": ["variant=paper", "plugins.games.gold_reward=true"],
    "frozen": ["variant=paper"],
    # the collapse guards (issue 26, docs/collapse.md): gold-free filters of the reasoner's set, each its own plugin
    "wellformed": ["variant=paper", "plugins.question_guard.min_words=4"],
    "wellformed_q": ["variant=paper", "plugins.question_guard.min_words=4", "plugins.question_guard.at_parse=true"],
    "margin": ["variant=paper", "plugins.margin_guard.min_votes=3"],
    "kindcap": ["variant=paper", "plugins.kind_cap.max_share=0.1"],
    # the optimizer menu (issue 24, reproduce/optimizer_study.py): each arm the paper's self-play with one optimizer
    "grpo": ["variant=paper"],
    "dr_grpo": ["variant=paper", "plugins.grpo.norm_adv_by_std=false", "plugins.grpo.loss_agg=seq_mean_token_sum_norm"],
    "gspo": ["variant=paper", "plugins.grpo.policy_loss=gspo", "plugins.grpo.clip_low=3e-4",
             "plugins.grpo.clip_high=4e-4"],
    "dapo": ["variant=paper", "plugins.grpo.drop_zero_variance=true", "plugins.grpo.clip_high=0.28"],
}
ALL_ARMS = ("floor", *ARMS)
GAMES_ARMS = ("floor", "paper", "released", "gold", "frozen")  # the games study's arms (docs/games.md, "Findings")
COLLAPSE_ARMS = ("floor", "paper", "wellformed", "wellformed_q", "margin", "kindcap")  # the collapse study's (docs/games.md)
# (metric, column title) of the findings table; pass@1 = mean accuracy of the sampled answers, maj@m = their
# majority's accuracy, greedy = one temperature-0 answer, silver = the iteration's checkable silver labels
COLUMNS = (("gold/sample_accuracy", "pass@1"), ("gold/accuracy", "maj@m"), ("gold/greedy_accuracy", "greedy"),
           ("gold/silver_accuracy", "silver-label acc."), ("silver/kept_fraction", "kept"))
BEGIN, END = "<!-- games-study:begin -->", "<!-- games-study:end -->"


# --- one run ------------------------------------------------------------------------------------------------------


class FrozenQuestioner:
    """A plugin that gives the questioner an optimizer that never moves it (the ``frozen`` arm): advantages are
    reported as 0 and no weight changes, so questioner_v{i} = questioner_v0 while everything else runs as usual."""

    plugin_name = "games_study_frozen_questioner"

    class NoUpdate:
        def update(self, rollouts):
            return UpdateResult(advantages={r.key: 0.0 for r in rollouts}, metrics={"frozen": 1.0})

        def save(self, directory):
            return {}

        def load(self, directory):
            return None

    @hookimpl(tryfirst=True)  # ahead of the GRPO plugin (a firstresult hook), for the questioner only
    def visplay_make_optimizer(self, ctx, role, policy):
        return self.NoUpdate() if role == "questioner" else None


def run_one(arm: str, seed: int, out: Path, extra: list[str]) -> dict[str, Any]:
    """Run (or resume) one arm for one seed in this process; return its result (also written as JSON)."""
    import torch

    from visplay.config import load_recipe
    from visplay.loop.engine import run_recipe

    torch.set_num_threads(1)
    started, cpu0 = time.time(), time.process_time()
    cfg = load_recipe("tiny", [*ARMS[arm], f"seed={seed}", f"name=study-{arm}-s{seed}", *extra])
    run_dir = out / f"{arm}-s{seed}"
    plugins = [FrozenQuestioner()] if arm == "frozen" else []
    db = run_recipe(cfg, run_dir=run_dir, resume=(run_dir / "run.db").exists(), quiet=True, extra_plugins=plugins)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {"arm": arm, "seed": seed, "overrides": [*ARMS[arm], *extra], "eval": iteration_metrics(db),
              "wall_s": time.time() - started, "cpu_s": time.process_time() - cpu0,
              "peak_rss_mb": usage.ru_maxrss / 1024}
    (run_dir / "result.json").write_text(json.dumps(result, indent=1, sort_keys=True))
    return result


def iteration_metrics(db: Path) -> dict[str, dict[str, float]]:
    """Eval-phase metrics per iteration (0 = the cold-start models), as stored in the run log."""
    from visplay.log.runlog import RunLog

    with RunLog(db, readonly=True) as log:
        rows = log.rows_matching("metrics", phase="eval")
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        out.setdefault(str(r["iteration"]), {})[r["name"]] = r["value"]
    return out


def run_all(arms: list[str], seeds: list[int], out: Path, extra: list[str], jobs: int) -> list[dict[str, Any]]:
    """Every (arm, seed) in a child process of this script, ``jobs`` at a time; returns their results."""
    todo = [(arm, seed) for arm in arms if arm != "floor" for seed in seeds]
    if "floor" in arms and "paper" not in arms:
        todo += [("paper", seed) for seed in seeds]  # the floor is the paper runs' reasoner_v0
    running: list[tuple[subprocess.Popen, str, int]] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    while todo or running:
        while todo and len(running) < jobs:
            arm, seed = todo.pop(0)
            cmd = [sys.executable, __file__, "--run-one", arm, str(seed), "--out", str(out), *extra]
            running.append((subprocess.Popen(cmd, env=env), arm, seed))
        time.sleep(1)
        for proc, arm, seed in list(running):
            if proc.poll() is not None:
                running.remove((proc, arm, seed))
                if proc.returncode:
                    raise SystemExit(f"games_study: {arm} seed {seed} failed (exit {proc.returncode})")
                print(f"done: {arm} seed {seed}", file=sys.stderr)
    return load_results(out)


def load_results(out: Path) -> list[dict[str, Any]]:
    """Finished runs from their result.json; a run still going (or stopped) from its run log, marked unfinished,
    so a table can be made while the study runs (its iterations so far count; it gets no gain)."""
    results = []
    for run_dir in sorted(p for p in out.glob("*-s*") if p.is_dir()):
        if (run_dir / "result.json").is_file():
            results.append({"finished": True, **json.loads((run_dir / "result.json").read_text())})
        elif (run_dir / "run.db").is_file():
            arm, seed = run_dir.name.rsplit("-s", 1)
            results.append({"arm": arm, "seed": int(seed), "finished": False,
                            "eval": iteration_metrics(run_dir / "run.db")})
    return results


# --- the findings table ---------------------------------------------------------------------------------------------


def per_arm(results: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, dict[str, float]]]]:
    """arm -> seed -> iteration -> metrics; ``floor`` is each seed's cold-start model (the paper run's iteration 0)."""
    arms: dict[str, dict[int, dict[str, dict[str, float]]]] = {}
    for r in results:
        if r["eval"].get("0"):
            arms.setdefault(r["arm"], {})[r["seed"]] = r["eval"]
    if "paper" in arms:
        arms["floor"] = {s: {it: ev["0"] for it in ev} for s, ev in arms["paper"].items()}
    return arms


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.fmean(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def summarise(results: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The markdown findings table and its data: mean [min, max] over seeds per arm and iteration, plus each
    arm's gain in pass@1 from the cold start (iteration 0) to its last iteration."""
    arms = per_arm(results)
    unfinished = {(r["arm"], r["seed"]) for r in results if not r.get("finished", True)}
    head = "| arm | iteration | seeds | " + " | ".join(title for _, title in COLUMNS) + " |"
    lines = [head, "|---|---|---|" + "---|" * len(COLUMNS)]
    summary: dict[str, Any] = {}
    for arm in [a for a in ALL_ARMS if a in arms]:
        seeds = arms[arm]
        iterations = sorted({int(i) for ev in seeds.values() for i in ev})
        if arm == "floor":  # the cold-start model: the same at every iteration, so one row (and no gain)
            iterations = [0]
        for i in iterations:
            cells = []
            for name, _ in COLUMNS:
                values = [ev[str(i)][name] for ev in seeds.values() if name in ev.get(str(i), {})]
                summary.setdefault(arm, {}).setdefault(str(i), {})[name] = values
                cells.append(cell(values))
            n = sum(1 for ev in seeds.values() if str(i) in ev)
            lines.append(f"| {arm} | {'cold start' if i == 0 else i} | {n} | " + " | ".join(cells) + " |")
        if arm == "floor":
            continue
        last = str(iterations[-1])  # runs that have not finished get no gain
        summary[arm]["gain"] = [ev[last]["gold/sample_accuracy"] - ev["0"]["gold/sample_accuracy"]
                                for seed, ev in seeds.items() if last in ev and (arm, seed) not in unfinished]
    lines += ["", "| arm | pass@1 gain, cold start -> last iteration | seeds with a gain |", "|---|---|---|"]
    for arm in [a for a in ALL_ARMS if "gain" in summary.get(a, {})]:
        gains = summary[arm]["gain"]
        lines.append(f"| {arm} | {cell(gains)} | {sum(g > 0 for g in gains)}/{len(gains)} |")
    if unfinished:
        names = ", ".join(f"{arm} seed {seed}" for arm, seed in sorted(unfinished))
        lines += ["", f"Unfinished runs (their iterations so far are in the table, no gain): {names}."]
    return "\n".join(lines), summary


def rewrite_docs(path: Path, table: str) -> None:
    """Replace the text between the study markers of ``path`` with ``table``."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} markers to put the table between")
    head, rest = text.split(BEGIN, 1)
    path.write_text(f"{head}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", default=",".join(GAMES_ARMS),
                        help=f"comma-separated, of {', '.join(ALL_ARMS)} (default: {', '.join(GAMES_ARMS)}; the guard "
                             "arms are reproduce/collapse_study.py's)")
    parser.add_argument("--out", default="runs/games_study")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each uses one torch thread)")
    parser.add_argument("--docs", help="rewrite the findings table in this markdown file (docs/games.md)")
    parser.add_argument("--table-only", action="store_true",
                        help="no runs: the table from the runs already in --out (finished or not)")
    parser.add_argument("--run-one", nargs=2, metavar=("ARM", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="extra recipe overrides (all arms)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.run_one:
        run_one(args.run_one[0], int(args.run_one[1]), out, list(args.overrides))
        return 0
    if args.table_only:  # the run folders in --out, else the runs recorded in its study.json
        results = load_results(out) or json.loads((out / "study.json").read_text())["runs"]
    else:
        arms = args.arms.split(",")
        unknown = [a for a in arms if a not in ALL_ARMS]
        if unknown:
            parser.error(f"--arms: unknown arm(s) {unknown}; known: {', '.join(ALL_ARMS)}")
        results = [r for r in run_all(arms, args.seeds, out, list(args.overrides), args.jobs)
                   if r["seed"] in args.seeds]
    table, summary = summarise(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps({"runs": results, "summary": summary}, indent=1, sort_keys=True))
    if args.docs:
        rewrite_docs(Path(args.docs), table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
