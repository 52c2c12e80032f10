"""The games study (issue 6): how gold accuracy moves from the cold-start model through self-play iterations,
over several seeds, next to a gold-reward run (the reasoner trained on game-engine answers instead of silver labels).

    python reproduce/games_study.py --seeds 0 1 2 --iterations 3 --out runs/games_study [key=value ...]

Each (mode, seed) is one run of the tiny recipe with ``data.source=games`` and the games cold start; ``gold``
mode adds ``plugins.games.gold_reward=true``. The cold-start model (reasoner_v0) is scored here on the same
held-out set the engine scores reasoner_v{i} on after every iteration. Prints a markdown table (mean and spread
across seeds per iteration) and writes ``<out>/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

# Settings the study uses on top of tiny.yaml (measured: ~150 SFT steps at lr 2e-3 make the tiny questioner
# write valid templated questions and the reasoner box an answer every time).
STUDY_OVERRIDES = [
    "data.source=games", "plugins.games.cold_start_steps=150", "plugins.games.cold_start_lr=0.002",
    "plugins.games.held_out=24", "plugins.games.held_out_questions=2", "plugins.games.eval_votes=3",
]
REPORTED = ("gold/accuracy", "gold/sample_accuracy", "gold/silver_accuracy", "gold/silver_checked_fraction",
            "silver/confidence_mean", "silver/kept_fraction", "gold/accuracy/category/perception",
            "gold/accuracy/category/reasoning")


def run_one(mode: str, seed: int, iterations: int, out: Path, extra: list[str]) -> Path:
    from visplay.config import load_recipe
    from visplay.loop.engine import run_recipe

    overrides = [*STUDY_OVERRIDES, f"seed={seed}", f"iterations={iterations}", f"name=games-{mode}-s{seed}",
                 *(["plugins.games.gold_reward=true"] if mode == "gold" else []), *extra]
    cfg = load_recipe("tiny", overrides)
    run_dir = out / f"{mode}-s{seed}"
    db = run_dir / "run.db"
    if db.exists():
        return run_recipe(cfg, run_dir=run_dir, resume=True, quiet=True)
    return run_recipe(cfg, run_dir=run_dir, quiet=True)


def cold_start_metrics(db: Path) -> dict[str, float]:
    """Gold metrics of reasoner_v0 (the cold-start model), scored as the engine scores later iterations."""
    from omegaconf import OmegaConf
    from visplay_games.plugin import gold_eval, options

    from visplay.context import RunContext
    from visplay.log.runlog import RunLog
    from visplay.plugins import get_plugin_manager

    with RunLog(db, readonly=True) as log:
        recipe = OmegaConf.create(log.run()["recipe_yaml"])
        path = log.rows_matching("checkpoints", name="reasoner_v0")[0]["path"]
    ctx = RunContext(recipe=recipe, pm=get_plugin_manager(), run_dir=db.parent)
    checkpoint = Path(path) if Path(path).is_absolute() else db.parent / path
    reasoner = ctx.call("visplay_load_policy", role="reasoner", init_from=str(checkpoint))
    return gold_eval(ctx, 0, reasoner.sampler(), options(ctx))


def iteration_metrics(db: Path) -> dict[int, dict[str, float]]:
    from visplay.log.runlog import RunLog

    with RunLog(db, readonly=True) as log:
        rows = log.rows_matching("metrics", phase="eval")
    out: dict[int, dict[str, float]] = {}
    for r in rows:
        out.setdefault(r["iteration"], {})[r["name"]] = r["value"]
    return out


def summarise(results: dict[str, dict[int, dict[int, dict[str, float]]]]) -> tuple[str, dict[str, Any]]:
    """Markdown table and JSON of mean / min / max across seeds per (mode, iteration, metric)."""
    lines = ["| mode | iteration | " + " | ".join(REPORTED) + " |", "|---|---|" + "---|" * len(REPORTED)]
    data: dict[str, Any] = {}
    for mode, per_seed in results.items():
        iterations = sorted({i for metrics in per_seed.values() for i in metrics})
        for i in iterations:
            cells = []
            for name in REPORTED:
                values = [per_seed[s][i][name] for s in per_seed if name in per_seed[s].get(i, {})]
                if not values:
                    cells.append("n/a")
                    continue
                mean = statistics.fmean(values)
                data.setdefault(mode, {}).setdefault(str(i), {})[name] = {
                    "mean": mean, "min": min(values), "max": max(values),
                    "std": statistics.pstdev(values), "values": values}
                cells.append(f"{mean:.3f} [{min(values):.3f}, {max(values):.3f}]")
            label = "cold start (v0)" if i == 0 else str(i)
            lines.append(f"| {mode} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines), data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--modes", default="selfplay,gold", help="comma-separated: selfplay, gold")
    parser.add_argument("--out", default="runs/games_study")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="extra recipe overrides")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    out = Path(args.out)
    results: dict[str, dict[int, dict[int, dict[str, float]]]] = {}
    for mode in args.modes.split(","):
        if mode not in ("selfplay", "gold"):
            parser.error(f"--modes: unknown mode {mode!r}")
        for seed in args.seeds:
            db = run_one(mode, seed, args.iterations, out, list(args.overrides))
            metrics = iteration_metrics(db)
            if 0 not in metrics:  # engines that do not evaluate iteration 0 themselves
                metrics[0] = cold_start_metrics(db)
            results.setdefault(mode, {})[seed] = metrics
            print(f"done: {mode} seed {seed}: gold/accuracy by iteration "
                  f"{[round(metrics[i].get('gold/accuracy', float('nan')), 3) for i in sorted(metrics)]}",
                  file=sys.stderr)
    table, data = summarise(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({"seeds": args.seeds, "iterations": args.iterations,
                                                  "overrides": [*STUDY_OVERRIDES, *args.overrides],
                                                  "results": data}, indent=2, sort_keys=True))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
