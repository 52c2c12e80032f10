"""The ``visplay`` command line. Each subcommand's --help explains it; the work is done by the module it names."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
visplay: VisPlay (arXiv 2511.15661) self-play RL for vision-language models, reproducible from a SQLite log.

  visplay run tiny                       the whole loop on CPU in minutes, nothing downloaded
  visplay run recipes/my.yaml key=value  run any recipe (a name or a YAML path), with key=value overrides
  visplay reproduce tiny                 the same command as `run` (an alias kept for the paper recipes)
  visplay resume runs/<name>             continue an interrupted run; nothing lost or repeated
  visplay replay runs/<name>/run.db      re-execute a run from its log and report the first divergence
  visplay diff a.db b.db                 first divergence between two runs
  visplay report runs/<name>             HTML report with plots, and a text summary
  visplay eval <model-or-run> ...        benchmarks from local files, reproducible judging
  visplay plugins                        which plugins fill which hooks, with versions
  visplay recipe tiny --explain          a resolved recipe, with every key documented
  visplay export runs/<name> --format parquet   the run log's tables (and views) as parquet or CSV files
  (plugins add commands of their own, e.g. the algorithm plugin's `visplay prompts import-released DIR`)

Options may stand anywhere after the command, among the key=value overrides; -v/-q before or after it.
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
                   help="recipe overrides as dotted keys, e.g. questioner.steps=2 seed=1 plugins.grpo.lr=1e-5")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an existing run directory of the same name first (otherwise refuse and say how to "
                        "resume it); only a visplay run's folder holding nothing else is deleted")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars; summary lines and warnings still print")
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


VERBOSE_HELP = ("more on stderr: -v, a line per engine phase and committed step (report and export: per part); "
                "-vv, debug logging with one line per hook call (VISPLAY_TRACE_HOOKS=1 shows those alone)")


def _common(p: argparse.ArgumentParser) -> None:
    # -v anywhere: counted on the subcommand too and added to the top level's count in parse_args
    p.add_argument("--verbose", "-v", action="count", default=0, dest="sub_verbose",
                   help=VERBOSE_HELP)
    if "--quiet" not in p._option_string_actions:  # accepted everywhere, so a habit never errors
        p.add_argument("--quiet", "-q", action="store_true", help="no progress bars (warnings still print)")


def build_parser(session: Any = None, *, with_plugin_commands: bool = True) -> argparse.ArgumentParser:
    """The ``visplay`` parser. Plugin commands come from ``session``'s plugins (built here only when asked); a
    plugin that fails to load never breaks the parser: ``--help`` names it and lists the core's commands."""
    parser = argparse.ArgumentParser(prog="visplay", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", "-v", action="count", default=0, help=VERBOSE_HELP)
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars (warnings still print)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", aliases=["reproduce"], help="run a recipe (by name or YAML path) end to end; "
                                                          "alias: reproduce",
                       description="Run a recipe with optional key=value overrides. RECIPE is a recipe name "
                                   "(looked up in ./recipes, then among the recipes shipped with visplay: tiny, "
                                   "qwen-vl-3b, qwen-vl-7b, mimo-vl-7b, qwen3-vl-4b, qwen3-vl-8b) or a path to a YAML file. `visplay run tiny` "
                                   "runs the whole VisPlay loop on CPU with the embedded tiny model and procedural "
                                   "images; the paper recipes need model.path and data.images pointing at local "
                                   "files. The run goes to the recipe's run_dir (default runs/<name>): run.db, "
                                   "checkpoints/, tensorboard/, report/. `reproduce` is the same command.")
    _add_recipe_args(p, recipe_help="a recipe name (tiny, qwen-vl-3b, ...) or a YAML path; a folder is never "
                                    "taken for a recipe")

    p = sub.add_parser("resume", help="continue an interrupted run from its last completed step",
                       description="Continue a run that stopped (crash, kill, Ctrl-C) from the last step committed "
                                   "to its run log. Nothing is lost or repeated; on CPU the finished database equals "
                                   "an uninterrupted run's.")
    p.add_argument("run_dir", help="the run directory, e.g. runs/tiny")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--accept-changed-images", action="store_true",
                   help="continue although the image pool differs from the one the run uses (the change is logged "
                        "as an image_pool_changed event naming every image; a replay then covers the steps after "
                        "it); by default resume refuses, naming the images")

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
                       description="Write runs/<name>/report/index.html (self-contained, with SVG plots beside it) "
                                   "and print a compact summary. A progress bar on stderr counts the report's parts "
                                   "(reading the run log, samples, the plugins' numbers, plots, files); -q: none.")
    p.add_argument("run", help="a run directory or its run.db")
    p.add_argument("--out", help="output folder (default: <run>/report)")

    p = sub.add_parser("eval", help="evaluate a model on local benchmark files",
                       description="Evaluate a model folder or a run's final reasoner on benchmarks stored as "
                                   "local parquet/JSON files, with rule-based scoring by default.")
    p.add_argument("model", help="a model folder, or a run directory (its latest reasoner checkpoint)")
    p.add_argument("--benchmarks", default="", help="comma-separated benchmark names")
    p.add_argument("--data", help="folder with benchmark files")
    p.add_argument("--judge", default=None, help="rule (default), local or endpoint")
    p.add_argument("--protocol", default=None,
                   help="evaluation protocol: visplay (default), released or lmms-eval (eval.protocol)")
    p.add_argument("--samples-out", default=None, metavar="FILE",
                   help="also write per-item records in lmms-eval's --log_samples shape (+ FILE.results.json)")
    p.add_argument("--rescore", action="store_true",
                   help="MODEL is a samples file: score its responses under --protocol without generating")
    p.add_argument("--compare-protocols", default=None, metavar="P1,P2,...",
                   help="also score the same responses under each of these protocols (e.g. released,lmms-eval,"
                        "visplay) and print per benchmark their scores and the items they disagree on, with the stage "
                        "that differs (extraction, normalisation, judge)")
    p.add_argument("--recipe", default=None, help="recipe for model/sampler settings (default: the run's, or tiny)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. eval.limit=50")
    p.add_argument("--db", help="eval database (default: the run's run.db, or ./eval.db)")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bar (one counts each benchmark's items on stderr: a plain line per tenth when "
                        "stderr is not a terminal)")
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

    p = sub.add_parser("export", help="the run log's tables and views as parquet or CSV files",
                       description="Write each table (and view) of a run log as <table>.parquet or <table>.csv "
                                   "into --out (default <run>/export). JSON columns stay JSON text; image PNGs are "
                                   "bytes in parquet and base64 in CSV. A progress bar on stderr counts the tables "
                                   "written; -q: none.")
    p.add_argument("run", help="a run directory or its run.db")
    p.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    p.add_argument("--tables", default="", help="comma-separated tables/views (default: all)")
    p.add_argument("--out", help="output folder (default: <run>/export)")
    plugin_commands: dict[str, Callable[[argparse.Namespace], int]] = {}
    if with_plugin_commands and session is not None:
        from visplay.plugins import PluginError

        try:
            plugin_commands = _plugin_commands(sub, session.pm)
        except PluginError as exc:  # --help and the core's commands still work; the message names the plugin
            parser.epilog = f"note: plugin commands are missing because {exc}"
    for p in {id(p): p for p in sub.choices.values()}.values():  # an alias shares its command's parser
        _common(p)
    parser.set_defaults(_commands=sub.choices, plugin_commands=plugin_commands)
    return parser


def _plugin_commands(sub: argparse._SubParsersAction, pm: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Subcommands the plugins add through ``visplay_add_commands``; a name the core uses is refused."""
    from visplay.hooks import call_each
    from visplay.plugins import PluginError

    commands: dict[str, Callable[[argparse.Namespace], int]] = {}
    for plugin, added in call_each(pm, "visplay_add_commands", {"subparsers": sub}):
        for name, handler in dict(added).items():
            if name in COMMANDS or name in commands or not callable(handler):
                raise PluginError(f"plugin {plugin!r}: command {name!r} is taken or its handler is not callable")
            commands[name] = handler
    return commands


def parse_args(argv: Sequence[str] | None = None, session: Any = None) -> argparse.Namespace:
    """Options anywhere: top-level options before the command, the command's options intermixed with its
    positionals and key=value overrides (``visplay run tiny -q name=x``), -v/-q on either side.

    The plugins are loaded to find their commands only when the command line names no core command (a core
    command never waits for plugin imports to parse, and a broken plugin cannot break it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    core = any(a in COMMANDS for a in argv)
    parser = build_parser(session, with_plugin_commands=not core)
    commands = parser.get_default("_commands")
    at = next((i for i, a in enumerate(argv) if a in commands), None)
    if at is None:
        args = parser.parse_args(argv)  # help, errors, or no command at all
        args.sub_verbose = 0
    else:
        args = parser.parse_args(argv[:at])
        top_quiet, top_verbose = args.quiet, args.verbose
        command = commands[argv[at]]
        try:
            args = command.parse_intermixed_args(argv[at + 1:])
        except TypeError:  # a command with subcommands of its own (a plugin's) cannot intermix
            args = command.parse_args(argv[at + 1:])
        args.command = argv[at]
        args.plugin_commands = parser.get_default("plugin_commands")
        args.verbose = top_verbose
        args.quiet = top_quiet or getattr(args, "quiet", False)
    args.verbose += args.sub_verbose
    return args


# Commands that load models (torch is not in visplay's base requirements: pyproject.toml, README "Install").
TORCH_COMMANDS = {"run", "reproduce", "resume", "replay", "eval"}
NO_TORCH = ("visplay: this command needs PyTorch, which is not installed (visplay's base install leaves it out so "
            "that pip never pulls CUDA torch onto a CPU machine). Install it for your machine: CPU: pip install "
            "'visplay[cpu]' --extra-index-url https://download.pytorch.org/whl/cpu ; GPU: pip install 'visplay[gpu]' "
            "(README).")


def _torch_installed() -> bool:
    import importlib.util

    if "torch" in sys.modules:  # None there means "import refused"
        return sys.modules["torch"] is not None
    return importlib.util.find_spec("torch") is not None


def main(argv: Sequence[str] | None = None) -> int:
    _setup_environment()
    from visplay.config import RecipeError
    from visplay.log.errors import RunLogError
    from visplay.plugins import PluginError
    from visplay.session import PluginSession

    session = PluginSession()  # the command's one plugin session: its manager is built on first use
    args = parse_args(argv, session)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.command:
        build_parser(session).print_help()
        return EXIT_USAGE
    args.session = session
    if args.command in TORCH_COMMANDS and not getattr(args, "dry_run", False) and not _torch_installed():
        print(NO_TORCH, file=sys.stderr)
        return EXIT_USAGE
    try:
        handler = COMMANDS.get(args.command) or args.plugin_commands[args.command]
        return int(handler(args) or 0)
    except RecipeError as exc:
        print(f"visplay: recipe error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (PluginError, RunLogError) as exc:
        print(f"visplay: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", ()):  # e.g. that the run is marked failed, and how to resume it
            print(note, file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt as exc:  # a run raises lifecycle.RunStopped (SIGINT or SIGTERM) naming its folder
        message = exc.message() if hasattr(exc, "message") else "interrupted"
        print(f"visplay: {message}", file=sys.stderr)
        return int(getattr(exc, "exit_status", 130))


# --- subcommands: each parses nothing, calls one library function and prints its result ----------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """``visplay run`` / ``visplay reproduce``: load and validate the recipe, then plan it or run it."""
    session = args.session
    if args.dry_run:  # plans without weights, for a box of --gpus GPUs (visplay/scale/plan.py)
        from visplay.scale import plan

        print(plan.plan_for_box(session, args.recipe, list(args.overrides or []), args.gpus, args.gpu_memory,
                                args.nproc))
        return EXIT_OK
    cfg = session.load_recipe(args.recipe, list(args.overrides or []))
    from visplay.loop.engine import start_run

    return start_run(cfg, session=session, nproc=args.nproc, overwrite=args.overwrite, quiet=args.quiet,
                     argv=sys.argv[1:])


def cmd_resume(args: argparse.Namespace) -> int:
    from pathlib import Path

    from visplay.loop.engine import resume_run_dir

    return resume_run_dir(Path(args.run_dir), quiet=args.quiet, accept_changed_images=args.accept_changed_images,
                          session=args.session)


def cmd_replay(args: argparse.Namespace) -> int:
    """Exit 0 when the replay agrees with the log (or for a what-if report), else 1."""
    from visplay.loop.replay import format_report, replay_run

    report = replay_run(args.db, overrides=args.overrides or (), iteration=args.iteration, role=args.role,
                        step=args.step, resample=args.resample, out=args.out, quiet=args.quiet,
                        tolerance=args.tolerance)
    print(format_report(report))
    return EXIT_OK if report.ok or report.mode == "what-if" else EXIT_FAIL


def cmd_diff(args: argparse.Namespace) -> int:
    """Print the agreement table and the first divergence(s); exit 0 if equal, else 1."""
    from visplay.log.diff import diff_runs, format_diff

    result = diff_runs(args.a, args.b, tolerance=args.tolerance, limit=max(args.limit, 1))
    print(format_diff(result, tolerance=args.tolerance, limit=max(args.limit, 1)))
    return EXIT_OK if result.equal else EXIT_FAIL


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from visplay.log.runlog import RunLogError
    from visplay.loop.progress import Parts
    from visplay.report.build import REPORT_PARTS, collect, text_summary, write_report

    path = Path(args.run)
    db_path = path / "run.db" if path.is_dir() else path
    if not db_path.is_file():
        raise RunLogError(f"{args.run}: no run.db here (pass a run directory or its run.db)")
    parts = Parts("report", len(REPORT_PARTS), quiet=args.quiet)
    try:  # one read: the HTML and the summary show the same moment of a live run
        data = collect(db_path, args.session, parts)
        index = write_report(path, args.out, session=args.session, parts=parts, data=data)
    finally:
        parts.close()
    print(text_summary(data))
    print(f"report: {index}")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from visplay.eval.benchmarks import BenchmarkError
    from visplay.eval.run import EvalError, format_scores, run_eval

    if args.rescore:
        return _cmd_rescore(args)
    compare = _protocol_list(args.compare_protocols)
    comparisons: list = []
    try:
        target, judge, scores = run_eval(args.model, benchmarks=args.benchmarks, data=args.data, judge=args.judge,
                                         recipe=args.recipe, overrides=args.overrides or (),
                                         iteration=args.iteration, db=args.db, quiet=args.quiet,
                                         session=args.session, protocol=args.protocol,
                                         samples_out=args.samples_out, compare=compare, comparisons=comparisons)
    except (BenchmarkError, EvalError) as exc:
        print(f"visplay eval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    protocol = args.protocol or target.recipe.eval.protocol
    shown = "" if protocol == "visplay" else f" under protocol {protocol}"
    print(f"{target.label} judged by {judge}{shown} -> {target.db_path} (tables eval_scores, eval_items)")
    print(format_scores(scores))
    _print_comparisons(comparisons, f"responses generated under protocol {protocol}")
    return EXIT_OK


def _protocol_list(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _print_comparisons(comparisons: list, source: str) -> None:
    from visplay.eval.compare import format_comparison

    if comparisons:
        print(f"\nprotocols compared on the same {source}:")
    for comparison in comparisons:
        print(format_comparison(comparison))


def _cmd_rescore(args: argparse.Namespace) -> int:
    from visplay.eval.benchmarks import BenchmarkError
    from visplay.eval.compare import compare_samples
    from visplay.eval.run import EvalError, format_scores, rescore
    from visplay.eval.samples import SamplesError

    compare = _protocol_list(args.compare_protocols)
    if not args.protocol and not compare:
        print("visplay eval --rescore: name the protocol to score under (--protocol, or --compare-protocols)",
              file=sys.stderr)
        return EXIT_USAGE
    judge = args.judge or "rule"
    try:
        if args.protocol:
            eval_id, scores = rescore(args.model, protocol=args.protocol, judge=judge,
                                      benchmark=args.benchmarks or None, recipe=args.recipe,
                                      overrides=args.overrides or (), db=args.db, samples_out=args.samples_out,
                                      session=args.session)
            print(f"{args.model} re-scored as {eval_id} -> {args.db or 'eval.db'} (tables eval_scores, eval_items)")
            print(format_scores(scores))
        comparisons = compare_samples(args.model, compare, judge=judge, benchmark=args.benchmarks or None,
                                      recipe=args.recipe, overrides=args.overrides or (), db=args.db,
                                      session=args.session) if compare else []
    except (BenchmarkError, EvalError, SamplesError) as exc:
        print(f"visplay eval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _print_comparisons(comparisons, f"responses of {args.model}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from visplay.log.export import ExportError, export_run
    from visplay.loop.progress import Parts

    tables = [t.strip() for t in (args.tables or "").split(",") if t.strip()] or None
    bars: list[Parts] = []

    def progress(total: int) -> Parts:  # the export knows its parts once it has read the table list
        bars.append(Parts("export", total, quiet=args.quiet))
        return bars[-1]

    try:
        written = export_run(args.run, args.out, args.format, tables, progress=progress)
    except ExportError as exc:
        print(f"visplay export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        for bar in bars:
            bar.close()
    for name, path in written.items():
        print(f"{name:<20} {path}")
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    from visplay.plugins import hook_table, plugin_infos

    pm = args.session.pm
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
    from omegaconf import OmegaConf

    from visplay.config import recipe_yaml
    from visplay.loader import explain_docs

    cfg = args.session.load_recipe(args.recipe, args.overrides)
    if not args.explain:
        print(recipe_yaml(cfg), end="")
        return EXIT_OK
    for key, doc in explain_docs(args.session.declared.sections).items():
        value = OmegaConf.select(cfg, key)
        if OmegaConf.is_dict(value) and _has_sections(key, cfg):
            print(f"{key}:  # {doc}")
        else:  # lists and mappings print their values too, not just their key
            shown = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
            print(f"{key} = {shown!r}\n    {doc}")
    return EXIT_OK


def _has_sections(key: str, cfg: Any) -> bool:
    """Whether ``key`` is a section of the schema (its keys are printed one by one), not a mapping value."""
    from omegaconf import OmegaConf

    node = OmegaConf.select(cfg, key)
    return OmegaConf.get_type(node) is not dict


COMMANDS = {
    "reproduce": cmd_run,
    "run": cmd_run,
    "resume": cmd_resume,
    "replay": cmd_replay,
    "diff": cmd_diff,
    "export": cmd_export,
    "report": cmd_report,
    "eval": cmd_eval,
    "plugins": cmd_plugins,
    "recipe": cmd_recipe,
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
