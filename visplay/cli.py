"""The ``visplay`` command line. Each subcommand's --help explains it; the work is done by the module it names."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
visplay: VisPlay (arXiv 2511.15661) self-play RL for vision-language models, reproducible from a SQLite log.

  visplay reproduce tiny                 the whole loop on CPU in minutes, nothing downloaded
  visplay run recipes/my.yaml key=value  run any recipe, with key=value overrides
  visplay resume runs/<name>             continue an interrupted run; nothing lost or repeated
  visplay replay runs/<name>/run.db      re-execute a run from its log and report the first divergence
  visplay diff a.db b.db                 first divergence between two runs
  visplay report runs/<name>             HTML report with plots, and a text summary
  visplay eval <model-or-run> ...        benchmarks from local files, reproducible judging
  visplay plugins                        which plugins fill which hooks, with versions
  visplay recipe tiny --explain          a resolved recipe, with every key documented
"""


def _setup_environment() -> None:
    # Offline by default: nothing may reach a hub at run time. A user can still set these to 0 explicitly.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _add_recipe_args(p: argparse.ArgumentParser, *, recipe_help: str) -> None:
    p.add_argument("recipe", help=recipe_help)
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="recipe overrides as dotted keys, e.g. questioner.steps=2 reasoner.filter.band=[0.3,0.8]")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an existing run directory of the same name first (otherwise refuse and say how to "
                        "resume it)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars; summaries only")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the recipe and paths, print the plan (iterations, steps, batch sizes, placement, "
                        "memory estimate) and exit without loading a model")
    p.add_argument("--nproc", type=int, default=None,
                   help="training processes on this machine (relaunches under torchrun); default: the recipe's "
                        "distributed.nproc (0: one per training GPU)")
    p.add_argument("--gpus", type=int, default=None, metavar="N",
                   help="with --dry-run: plan for a box with N GPUs instead of this machine's")
    p.add_argument("--gpu-memory", type=float, default=80.0, metavar="GIB",
                   help="with --dry-run: memory of each GPU in GiB (default 80: H100/A100-80G)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visplay", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", "-v", action="count", default=0, help="more logging on stderr (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("reproduce", help="run a named paper/tiny recipe end to end",
                       description="Run a recipe from recipes/ by name: `visplay reproduce tiny` runs the whole "
                                   "VisPlay loop on CPU with the embedded tiny model and procedural images; the "
                                   "paper recipes (qwen-vl-3b, qwen-vl-7b, mimo-vl-7b) need model.path and "
                                   "data.images pointing at local files.")
    _add_recipe_args(p, recipe_help="recipe name (tiny, qwen-vl-3b, qwen-vl-7b, mimo-vl-7b) or a YAML path")

    p = sub.add_parser("run", help="run any recipe file",
                       description="Run a recipe YAML with optional key=value overrides. The run goes to the "
                                   "recipe's run_dir (default runs/<name>): run.db, checkpoints/, report/.")
    _add_recipe_args(p, recipe_help="path to a recipe YAML (or a recipe name)")

    p = sub.add_parser("resume", help="continue an interrupted run from its last completed step",
                       description="Continue a run that stopped (crash, kill, Ctrl-C) from the last step committed "
                                   "to its run log. Nothing is lost or repeated; on CPU the finished database equals "
                                   "an uninterrupted run's.")
    p.add_argument("run_dir", help="the run directory, e.g. runs/tiny")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    p = sub.add_parser("replay", help="re-execute a run from its log and check every value",
                       description="Feed the logged generations back through the same plugins and recompute "
                                   "parsing, votes, confidences, filters, rewards, advantages, losses and weight "
                                   "hashes; report the first divergence (table, row, column, both values, plugin) "
                                   "and exit 1, or print what was checked and exit 0. The original database is "
                                   "never modified.")
    p.add_argument("db", help="runs/<name>/run.db")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="what-if replay: change recipe keys and report how rewards, filters and advantages change")
    p.add_argument("--iteration", type=int, help="replay only this iteration (from its logged checkpoint)")
    p.add_argument("--role", choices=["questioner", "reasoner"], help="with --iteration: only this role's phase")
    p.add_argument("--step", type=int, help="with --iteration and --role: only this step")
    p.add_argument("--resample", action="store_true",
                   help="re-run sampling too, from the logged seed and recipe (bit-identical on CPU)")
    p.add_argument("--out", help="where to write the replayed database (default: a new file beside the original)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="float tolerance of the comparison (default 0: bit for bit, right on CPU; see docs/replay.md)")

    p = sub.add_parser("diff", help="first divergence between two run logs",
                       description="Compare two run databases table by table (timestamps ignored) and print the "
                                   "first divergence and how far the runs agree.")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="floats agree when |a-b| <= tolerance * max(1, |a|, |b|) (default 0: bit for bit; a GPU "
                        "run needs one, e.g. 1e-5)")
    p.add_argument("--limit", type=int, default=1, help="print this many divergences (earliest first)")

    p = sub.add_parser("report", help="HTML report (plots, samples, paper comparison) and a text summary",
                       description="Write runs/<name>/report/index.html (self-contained, with PNG plots beside it) "
                                   "and print a compact summary.")
    p.add_argument("run", help="a run directory or its run.db")
    p.add_argument("--out", help="output folder (default: <run>/report)")

    p = sub.add_parser("eval", help="evaluate a model on local benchmark files",
                       description="Evaluate a model folder or a run's final reasoner on benchmarks stored as "
                                   "local parquet/JSON files, with rule-based scoring by default.")
    p.add_argument("model", help="a model folder, or a run directory (its latest reasoner checkpoint)")
    p.add_argument("--benchmarks", default="", help="comma-separated benchmark names")
    p.add_argument("--data", help="folder with benchmark files")
    p.add_argument("--judge", default=None, help="rule (default), local or endpoint")
    p.add_argument("--recipe", default=None, help="recipe for model/sampler settings (default: the run's, or tiny)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. eval.limit=50")
    p.add_argument("--db", help="eval database (default: the run's run.db, or ./eval.db)")
    p.add_argument("--iteration", type=int, default=None,
                   help="with a run: evaluate this iteration's reasoner checkpoint (0: the base model); "
                        "default: the latest")

    p = sub.add_parser("plugins", help="which plugins fill which hooks, with versions",
                       description="List every hook point and the plugins that fill it (in call order), then each "
                                   "plugin with its distribution and version. Set VISPLAY_TRACE_HOOKS=1 to trace "
                                   "hook calls, VISPLAY_DISABLE_PLUGIN_AUTOLOAD=1 to load none.")

    p = sub.add_parser("recipe", help="print a resolved recipe (and what each key means)",
                       description="Load a recipe through the schema, overrides and validation, and print the "
                                   "resolved YAML; --explain adds each key's documentation.")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--explain", action="store_true", help="print every key with its documentation")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _setup_environment()
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if os.environ.get("VISPLAY_TRACE_HOOKS"):
        logging.getLogger("visplay.hooks").setLevel(logging.INFO)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    from visplay.config import RecipeError
    from visplay.log.runlog import RunLogError
    from visplay.plugins import PluginError

    try:
        return int(COMMANDS[args.command](args) or 0)
    except RecipeError as exc:
        print(f"visplay: recipe error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (PluginError, RunLogError) as exc:
        print(f"visplay: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("visplay: interrupted; `visplay resume <run_dir>` continues a run from its last committed step",
              file=sys.stderr)
        return 130


# --- subcommands -------------------------------------------------------------------------------------------------


def cmd_plugins(args: argparse.Namespace) -> int:
    from visplay.plugins import get_plugin_manager, hook_table, plugin_infos

    pm = get_plugin_manager()
    print("hook points (plugins in call order):")
    for hook, names in hook_table(pm).items():
        print(f"  {hook:<28} {', '.join(names) if names else '(empty)'}")
    print("\nplugins:")
    infos = plugin_infos(pm)
    width = max((len(i.name) for i in infos), default=0)
    for info in infos:
        note = f"{len(info.hooks)} hooks" if info.hooks else "no hooks until a command registers it"
        print(f"  {info.name:<{width}}  {info.distribution} {info.version}  ({note})")
    return EXIT_OK


def cmd_recipe(args: argparse.Namespace) -> int:
    from visplay.config import field_docs, load_recipe, recipe_yaml

    cfg = load_recipe(args.recipe, args.overrides)
    if not args.explain:
        print(recipe_yaml(cfg), end="")
        return EXIT_OK
    from omegaconf import OmegaConf

    for key, doc in field_docs().items():
        value = OmegaConf.select(cfg, key)
        if OmegaConf.is_config(value):
            print(f"{key}:  # {doc}")
        else:
            print(f"{key} = {value!r}\n    {doc}")
    return EXIT_OK


def _delegate(module: str, function: str):
    def run(args: argparse.Namespace) -> int:
        import importlib

        return importlib.import_module(module).__getattribute__(function)(args)

    return run


COMMANDS = {
    "reproduce": _delegate("visplay.loop.engine", "cli_run"),
    "run": _delegate("visplay.loop.engine", "cli_run"),
    "resume": _delegate("visplay.loop.engine", "cli_resume"),
    "replay": _delegate("visplay.log.replay", "cli_replay"),
    "diff": _delegate("visplay.log.diff", "cli_diff"),
    "report": _delegate("visplay.report.build", "cli_report"),
    "eval": _delegate("visplay.eval.run", "cli_eval"),
    "plugins": cmd_plugins,
    "recipe": cmd_recipe,
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
