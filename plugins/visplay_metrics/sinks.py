"""The sinks: one small class per tool, each taking scalars tagged ``<phase>/<metric name>`` at a global step.

The global step is the step's position in the run (its row number in ``steps``: 0 for the cold start, counting
every committed step of every phase in order), so curves of all phases share one x axis and a resumed run goes
on where it stopped; the wall time is the step's ``committed_at`` from the run log.

Each sink stores a tag under the name that sink accepts (:meth:`Sink.key`; docs/metrics.md has the table):
TensorBoard and W&B take the tag as it is; MLflow gets :func:`mlflow_key`.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("visplay.metrics")

# MLflow's limits (mlflow/utils/validation.py): names of [/\w.\- :] (no colon on Windows), keys <= 250 characters,
# param values <= 6000, at most 100 params and 1000 metrics per log_batch call
MLFLOW_KEY_LENGTH, MLFLOW_PARAM_LENGTH, MLFLOW_PARAMS_PER_BATCH, MLFLOW_METRICS_PER_BATCH = 250, 6000, 100, 1000
_MLFLOW_REFUSED = re.compile(r"[^\w.\- /]")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def mlflow_key(tag: str) -> str:
    """The MLflow name of ``<phase>/<name>``: the phase keeps its slash (MLflow's UI groups by it), the name's own
    slashes become dots, characters MLflow refuses become ``_``, and a key over 250 characters is cut and ends with
    a hash of the tag.

    The file store keeps each metric as the file ``metrics/<key>``, so ``gold/accuracy`` (a file) and
    ``gold/accuracy/2048`` (a folder) cannot both exist; with one slash per key no key is another's folder.
    ``eval/gold/accuracy/2048`` -> ``eval/gold.accuracy.2048``; ``eval/gold/pass@1`` -> ``eval/gold.pass_1``.
    """
    phase, _, name = tag.partition("/")
    key = _MLFLOW_REFUSED.sub("_", f"{phase}/{name.replace('/', '.')}" if name else phase)
    if posixpath.normpath(key) != key:  # e.g. "eval/.." would resolve to another name: MLflow refuses those
        key = f"{_MLFLOW_REFUSED.sub('_', phase) or 'metric'}/m_{_short_hash(tag)}"
    if len(key) > MLFLOW_KEY_LENGTH:
        key = f"{key[:MLFLOW_KEY_LENGTH - 9]}_{_short_hash(tag)}"
    return key


def tensorboard_hparam(value: Any) -> int | float | str | bool:
    """A recipe value as TensorBoard's hparams plugin holds it: numbers, strings and booleans as they are, anything
    else as JSON text."""
    import json

    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


class Sink:
    name = "sink"

    def key(self, tag: str) -> str:
        """The name this sink stores ``tag`` under."""
        return tag

    def log(self, scalars: dict[str, float], global_step: int, wall_time: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release files; the sink is not used afterwards."""


class TensorBoardSink(Sink):
    """Event files written by torch's SummaryWriter (read back with tensorboard's EventAccumulator)."""

    name = "tensorboard"

    def __init__(self, log_dir: Path, recipe_yaml: str | None = None, hparams: dict[str, Any] | None = None):
        from torch.utils.tensorboard import SummaryWriter

        log_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(log_dir))
        if recipe_yaml:  # the TEXT tab shows what ran (markdown: indented lines are a code block)
            self.writer.add_text("recipe", "".join(f"    {line}\n" for line in recipe_yaml.splitlines()),
                                 global_step=0)
        if hparams:
            self.add_hparams(hparams)

    def add_hparams(self, hparams: dict[str, Any]) -> None:
        """The recipe's keys in the HPARAMS tab, as the session-start record of this run's own event file (not
        ``SummaryWriter.add_hparams``, which opens a second run folder). No experiment record is written, so
        TensorBoard's hparams plugin offers every scalar of the run as a metric column; lists and mappings are
        JSON text, None values are left out (the plugin has no null)."""
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        _, start, _ = hparams_summaries({k: tensorboard_hparam(v) for k, v in hparams.items() if v is not None}, {})
        self.writer.file_writer.add_summary(start)

    def log(self, scalars: dict[str, float], global_step: int, wall_time: float) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, global_step=global_step, walltime=wall_time)
        self.writer.flush()  # a step is minutes on a real run: people watch the curves live

    def close(self) -> None:
        self.writer.close()


class WandbSink(Sink):
    """A W&B run in offline mode by default (files under ``wandb_dir``; ``wandb sync`` uploads them later)."""

    name = "wandb"

    def __init__(self, *, project: str, name: str, mode: str, directory: Path, config: dict[str, Any]):
        try:
            import wandb
        except ImportError as exc:
            raise ImportError("plugins.metrics.sinks has 'wandb' but wandb is not installed "
                              "(pip install 'visplay[wandb]')") from exc
        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=project, name=name, mode=mode, dir=str(directory), config=config,
                              reinit="create_new")

    def log(self, scalars: dict[str, float], global_step: int, wall_time: float) -> None:
        self.run.log(dict(scalars), step=global_step)

    def close(self) -> None:
        self.run.finish()


class MlflowSink(Sink):
    """An MLflow run in a local file store (``mlflow ui --backend-store-uri <uri>`` browses it)."""

    name = "mlflow"

    def __init__(self, *, tracking_uri: str, experiment: str, name: str, params: dict[str, Any]):
        import os

        # MLflow 3 keeps the file store in maintenance mode and asks for this opt-in; a file store needs no server,
        # no database driver and nothing but mlflow-skinny, which is what a local record of the run wants
        if tracking_uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            from mlflow import MlflowClient
        except ImportError as exc:
            raise ImportError("plugins.metrics.sinks has 'mlflow' but mlflow is not installed "
                              "(pip install 'visplay[mlflow]')") from exc
        self.client = MlflowClient(tracking_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.run_id = self.client.create_run(experiment_id, run_name=name).info.run_id
        self._tags: dict[str, str] = {}  # MLflow key -> the tag it holds (two tags must never share a key)
        self._keys: dict[str, str] = {}
        self.log_params(params)

    def log_params(self, params: dict[str, Any]) -> None:
        """Every recipe key, in batches of MLflow's 100 (a value is cut at MLflow's 6000 characters)."""
        from mlflow.entities import Param

        items = [Param(_MLFLOW_REFUSED.sub("_", key)[:MLFLOW_KEY_LENGTH], str(value)[:MLFLOW_PARAM_LENGTH])
                 for key, value in params.items()]
        for k in range(0, len(items), MLFLOW_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[k:k + MLFLOW_PARAMS_PER_BATCH])

    def key(self, tag: str) -> str:
        """:func:`mlflow_key`, unless another tag already has that key (``a/b.c`` and ``a/b/c``): then the key ends
        with a hash of the tag."""
        if tag not in self._keys:
            key = mlflow_key(tag)
            if self._tags.get(key, tag) != tag:
                key = f"{key[:MLFLOW_KEY_LENGTH - 9]}_{_short_hash(tag)}"
                log.warning("mlflow: %r and %r map to one key; %r is logged as %r", self._tags[mlflow_key(tag)],
                            tag, tag, key)
            self._keys[tag], self._tags[key] = key, tag
        return self._keys[tag]

    def log(self, scalars: dict[str, float], global_step: int, wall_time: float) -> None:
        from mlflow.entities import Metric

        # its timestamps are integer milliseconds
        metrics = [Metric(key=self.key(tag), value=value, timestamp=int(wall_time * 1000), step=global_step)
                   for tag, value in scalars.items()]
        for k in range(0, len(metrics), MLFLOW_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[k:k + MLFLOW_METRICS_PER_BATCH])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
