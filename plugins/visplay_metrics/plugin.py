"""The metrics plugin: fills ``visplay_log_metrics`` with the sinks chosen in ``plugins.metrics.sinks``.

Each committed step's metrics are sent as ``<phase>/<name>`` scalars at the step's global step and wall time (both
read back from the run log, so a resumed run continues its curves). With ``plugins.metrics.system`` (default on)
every step also sends ``<phase>/system/step_seconds``, ``<phase>/system/tokens_per_s`` (tokens the step sampled,
over the time since the previous step committed), ``<phase>/system/tokens_total`` (tokens sampled so far) and ``<phase>/system/peak_memory_mb`` (CUDA peak allocation on a
GPU, else the process's peak resident memory). With ``plugins.metrics.timing`` (default on) it also sends the step's
wall-clock parts as ``<phase>/timing_s/*`` (EasyR1's names; measured by the engine, never in the run log). Only rank
0 of a multi-process run writes.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import resource
import sys
from pathlib import Path
from typing import Any

from visplay.api import hookimpl, plugin_section
from visplay_metrics.options import MetricsOptions
from visplay_metrics.sinks import MlflowSink, Sink, TensorBoardSink, WandbSink

log = logging.getLogger("visplay.metrics")

_OPEN: dict[str, list[Sink]] = {}  # run directory -> its open sinks (one process may run several runs: tests)
_TOKENS: dict[str, int] = {}  # run directory -> tokens sampled through the last step sent (system/tokens_total)


def options(ctx: Any) -> MetricsOptions:
    """The recipe's ``plugins.metrics`` section (declared below, checked by the recipe loader)."""
    return plugin_section(ctx.recipe, "metrics")


@hookimpl
def visplay_recipe_sections() -> dict[str, type]:
    return {"metrics": MetricsOptions}


def open_sinks(ctx: Any, opts: MetricsOptions) -> list[Sink]:
    """The recipe's sinks; one that cannot open (a missing library, an unwritable folder) is a warning."""
    sinks: list[Sink] = []
    for name in opts.sinks:
        try:
            sinks.append(_open_sink(ctx, opts, name))
        except Exception as exc:  # noqa: BLE001  (a sink is a copy of the run log: never worth the run)
            sink_failed(ctx, name, "could not open", exc)
    return sinks


def _open_sink(ctx: Any, opts: MetricsOptions, name: str) -> Sink:
    from omegaconf import OmegaConf

    run_dir = Path(ctx.run_dir)
    config = OmegaConf.to_container(ctx.recipe, resolve=True)
    if name == "tensorboard":  # the recipe as text (TEXT tab) and as hparams (HPARAMS tab)
        return TensorBoardSink(Path(opts.tensorboard_dir) if opts.tensorboard_dir else run_dir / "tensorboard",
                               OmegaConf.to_yaml(ctx.recipe, resolve=True), _flatten(config))
    if name == "wandb":
        return WandbSink(project=opts.wandb_project, name=str(ctx.recipe.name), mode=opts.wandb_mode,
                         directory=Path(opts.wandb_dir) if opts.wandb_dir else run_dir, config=config)
    uri = opts.mlflow_tracking_uri or (run_dir / "mlruns").resolve().as_uri()
    return MlflowSink(tracking_uri=uri, experiment=opts.mlflow_experiment, name=str(ctx.recipe.name),
                      params=_flatten(config))


def sink_failed(ctx: Any, name: str, what: str, exc: BaseException) -> None:
    """A sink that fails is dropped for the rest of the run with a ``metrics_sink_failed`` warning event (printed on
    the terminal); the run goes on, and its run log still holds every metric."""
    message = (f"metrics sink {name} {what} ({type(exc).__name__}: {exc}); it is off for the rest of the run, "
               f"the run log has every metric")
    if ctx.log is not None:
        ctx.log.event("metrics_sink_failed", message, source="visplay_metrics", payload={"sink": name})
    else:
        log.warning(message)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, sub in value.items():
        out.update(_flatten(sub, f"{prefix}{key}." if isinstance(sub, dict) else f"{prefix}{key}"))
    return out


def _is_rank0() -> bool:
    from visplay.api import distributed

    return distributed.is_rank0()


def peak_memory_mb() -> float:
    """CUDA's peak allocation when torch has used a GPU in this process, else the peak resident set size."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def system_scalars(runlog: Any, iteration: int, phase: str, step: int, clock: dict[str, Any],
                   key: str) -> dict[str, float]:
    tokens = runlog.step_tokens(iteration, phase, step)
    # the run's running total: read from the log once per process (a resumed run continues it), then added up
    _TOKENS[key] = _TOKENS[key] + tokens if key in _TOKENS else runlog.tokens_through(iteration, phase, step)
    out = {"system/peak_memory_mb": peak_memory_mb(), "system/tokens_total": float(_TOKENS[key])}
    seconds = clock["seconds"]
    if seconds is not None and seconds > 0:
        out["system/step_seconds"] = seconds
        out["system/tokens_per_s"] = tokens / seconds
    return out


# --- checked before the run: each chosen sink can open ----------------------------------------------------------

# The package each sink imports, and the extra that installs it.
SINK_PACKAGES = {"tensorboard": ("tensorboard", "visplay"), "wandb": ("wandb", "visplay[wandb]"),
                 "mlflow": ("mlflow", "visplay[mlflow]")}


def _installed(module: str) -> bool:
    import importlib.util

    if module in sys.modules:  # None there means "import refused" (how a test hides an installed package)
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def folder_problem(path: Path) -> str | None:
    """Why a sink could not write its files under ``path`` (a file in the way, no write permission); None: it can
    (the folder exists and is writable, or its nearest existing ancestor is a writable folder)."""
    if path.exists():
        if not path.is_dir():
            return f"{path} exists and is not a folder"
        return None if os.access(path, os.W_OK | os.X_OK) else f"{path} is not writable"
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{path} cannot be created: {ancestor} is a file, not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{path} cannot be created: {ancestor} is not writable"
    return None


def _wandb_key_problem(opts: MetricsOptions) -> str | None:
    """W&B online needs an API key (WANDB_API_KEY or a ``wandb login`` entry in ~/.netrc); offline needs none."""
    if opts.wandb_mode != "online" or os.environ.get("WANDB_API_KEY"):
        return None
    import netrc
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        if netrc.netrc().authenticators(host):
            return None
    except (OSError, netrc.NetrcParseError):
        pass
    return (f"wandb_mode=online but no W&B API key is set (WANDB_API_KEY, or `wandb login` for {host}); set one, "
            f"or use plugins.metrics.wandb_mode=offline (then `wandb sync`)")


def sink_problems(ctx: Any, opts: MetricsOptions) -> dict[str, str]:
    """{key under ``plugins.metrics``: why the sink it configures cannot open}, for the chosen sinks."""
    run_dir = Path(ctx.run_dir)
    problems: dict[str, str] = {}
    for name in opts.sinks:
        module, extra = SINK_PACKAGES[name]
        if not _installed(module):
            problems.setdefault("sinks", f"has {name!r} but the {module} package is not installed "
                                         f"(pip install '{extra}'), or remove {name!r} from the list")
    folders = {"tensorboard": ("tensorboard_dir", opts.tensorboard_dir, run_dir / "tensorboard"),
               "wandb": ("wandb_dir", opts.wandb_dir, run_dir)}
    uri = opts.mlflow_tracking_uri
    if uri is None or uri.startswith("file:"):  # a local file store; a server's URI is the server's business
        from urllib.parse import unquote, urlparse

        folders["mlflow"] = ("mlflow_tracking_uri", unquote(urlparse(uri).path) if uri else None, run_dir / "mlruns")
    for name, (key, given, default) in folders.items():
        if name in opts.sinks:
            why = folder_problem(Path(given).expanduser() if given else default)
            if why:
                problems.setdefault(key, why + ("" if given else f" (the default; set plugins.metrics.{key})"))
    if "wandb" in opts.sinks and (why := _wandb_key_problem(opts)):
        problems.setdefault("wandb_mode", why)
    return problems


@hookimpl
def visplay_check_inputs(ctx: Any, skip: frozenset[str]) -> list[str] | None:
    """Each sink of ``plugins.metrics.sinks`` can open (its package installed, its folder writable, W&B online has a
    key), so a sink never fails a run that has already started: refused naming the key, before anything exists."""
    from visplay.api import RecipeError

    opts = options(ctx)
    if not opts.sinks or not _is_rank0() or "plugins.metrics" in skip:  # skipped by a replay
        return None
    problems = sink_problems(ctx, opts)
    if problems:
        raise RecipeError("; ".join(f"key 'plugins.metrics.{key}': {why}" for key, why in problems.items()))
    return [f"plugins.metrics.sinks {', '.join(opts.sinks)} (installed, folders writable)"]


@hookimpl(tryfirst=True)
def visplay_run_start(ctx: Any, questioner: Any, reasoner: Any) -> None:
    """Check ``plugins.metrics`` before the cold start, so a typo costs seconds, not a cold start."""
    options(ctx)


@hookimpl
def visplay_log_metrics(ctx: Any, iteration: int, phase: str, step: int, metrics: dict[str, float],
                        timing: dict[str, float]) -> None:
    if ctx.log is None or not _is_rank0():
        return
    opts = options(ctx)
    if not opts.sinks:
        return
    key = f"{Path(ctx.run_dir).resolve()}#{id(ctx.log)}"  # a new RunLog: a new (or resumed, overwritten) run
    if key not in _OPEN:
        for stale in [k for k in _OPEN if k.split("#")[0] == key.split("#")[0]]:
            close(stale)  # the same folder's earlier run stopped early (``stop``) or was overwritten
        _OPEN[key] = open_sinks(ctx, opts)
    clock = ctx.log.step_clock(iteration, phase, step)
    if clock is None:  # not committed (cannot happen from the engine): nothing to place on the axis
        return
    scalars = {f"{phase}/{name}": float(value) for name, value in sorted(metrics.items())
               if math.isfinite(float(value))}  # NaN/inf are reported on the terminal, not plotted
    if opts.system:
        system = system_scalars(ctx.log, iteration, phase, step, clock, key)
        scalars.update({f"{phase}/{k}": v for k, v in system.items()})
    if opts.timing:
        scalars.update({f"{phase}/{k}": float(v) for k, v in sorted(timing.items())})
    for sink in list(_OPEN[key]):
        try:
            sink.log(scalars, clock["global_step"], clock["committed_at"])
        except Exception as exc:  # noqa: BLE001  (see sink_failed)
            _OPEN[key].remove(sink)
            sink_failed(ctx, sink.name, f"failed at {phase} step {step} of iteration {iteration}", exc)
            _close_quietly(sink)
    if phase == "eval" and iteration == int(ctx.recipe.iterations):
        close(key)  # the run's last step


def close(key: str | None = None) -> None:
    """Close the sinks of one run directory (all when None)."""
    for k in [key] if key is not None else list(_OPEN):
        _TOKENS.pop(k, None)
        for sink in _OPEN.pop(k, []):
            _close_quietly(sink)


def _close_quietly(sink: Sink) -> None:
    """Close a sink; a failure to close (a broken or already dead sink, at exit) is only logged."""
    try:
        sink.close()
    except Exception as exc:  # noqa: BLE001  (closing runs at exit too: a traceback there helps no one)
        log.warning("metrics sink %s did not close cleanly: %s: %s", sink.name, type(exc).__name__, exc)


atexit.register(close)

__all__ = ["MetricsOptions", "close", "options", "visplay_log_metrics"]
