"""The metrics plugin's recipe section (``plugins.metrics``), validated with errors that name the key."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from typing import Any

SINKS = ("tensorboard", "wandb", "mlflow")


@dataclass
class MetricsOptions:
    """Metrics sinks: every committed step's metrics also go to TensorBoard (default), W&B or MLflow."""

    sinks: list[str] = field(default_factory=lambda: ["tensorboard"])
    """Where each committed step's metrics go besides the run log: any of ``tensorboard`` (default; event files
    under ``<run_dir>/tensorboard``), ``wandb`` (offline mode; extra ``visplay[wandb]``) and ``mlflow`` (a local
    file store; extra ``visplay[mlflow]``). An empty list turns the sinks off."""
    tensorboard_dir: str | None = None
    """TensorBoard log folder; None: ``<run_dir>/tensorboard``."""
    wandb_project: str = "visplay"
    """W&B project name (the run is named after the recipe's ``name``)."""
    wandb_mode: str = "offline"
    """W&B mode: ``offline`` (nothing leaves the machine; ``wandb sync`` later) or ``online``."""
    wandb_dir: str | None = None
    """Where W&B writes its files; None: the run directory."""
    mlflow_tracking_uri: str | None = None
    """MLflow tracking URI; None: a file store at ``<run_dir>/mlruns``."""
    mlflow_experiment: str = "visplay"
    """MLflow experiment name."""
    system: bool = True
    """Also send ``system/*`` numbers per step (step seconds, tokens/s, tokens so far, peak memory). They depend on the machine,
    so they go to the sinks only, never to the run log (whose rows must be identical across reruns)."""
    timing: bool = True
    """Also send each step's wall-clock parts as ``<phase>/timing_s/*`` (EasyR1's names: ``step``, ``gen``,
    ``vote``, ``reward``, ``update``, ``filter``, ``save_checkpoint``; docs/metrics.md). Like ``system``, sinks
    only: they differ from run to run, so the run log never holds them."""

    def validate(self) -> dict[str, str]:
        """{key under the section: problem} (the recipe loader's section hook turns each into a RecipeError)."""
        problems = {}
        bad = [s for s in self.sinks if s not in SINKS]
        if bad:
            problems["sinks"] = f"unknown sink(s) {bad}; known: {', '.join(SINKS)}"
        if self.wandb_mode not in ("offline", "online", "disabled"):
            problems["wandb_mode"] = "must be offline, online or disabled"
        return problems


class MetricsOptionsError(ValueError):
    """A bad ``plugins.metrics`` setting; the message names the key."""


def parse_options(raw: dict[str, Any] | None) -> MetricsOptions:
    """``plugins.metrics`` as a plain dict -> MetricsOptions; unknown keys and bad values name the dotted key."""
    raw = dict(raw or {})
    known = [f.name for f in fields(MetricsOptions)]
    for key in raw:
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            raise MetricsOptionsError(f"unknown key 'plugins.metrics.{key}'"
                                      + (f"; did you mean 'plugins.metrics.{hint[0]}'?" if hint else ""))
    sinks = raw.get("sinks", ["tensorboard"])
    opts = MetricsOptions(**{**raw, "sinks": [sinks] if isinstance(sinks, str) else list(sinks)})
    for key, problem in opts.validate().items():
        raise MetricsOptionsError(f"key 'plugins.metrics.{key}': {problem}")
    return opts
