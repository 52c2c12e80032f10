"""The sinks: one small class per tool, each taking scalars tagged ``<phase>/<metric name>`` at a global step.

The global step is the step's position in the run (its row number in ``steps``: 0 for the cold start, counting
every committed step of every phase in order), so curves of all phases share one x axis and a resumed run goes
on where it stopped; the wall time is the step's ``committed_at`` from the run log.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("visplay.metrics")


class Sink:
    name = "sink"

    def log(self, scalars: dict[str, float], global_step: int, wall_time: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release files; the sink is not used afterwards."""


class TensorBoardSink(Sink):
    """Event files written by torch's SummaryWriter (read back with tensorboard's EventAccumulator)."""

    name = "tensorboard"

    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        log_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(log_dir))

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
        for key, value in list(params.items())[:100]:
            self.client.log_param(self.run_id, key, str(value)[:500])

    def log(self, scalars: dict[str, float], global_step: int, wall_time: float) -> None:
        from mlflow.entities import Metric

        # MLflow keys allow slashes; its timestamps are integer milliseconds
        metrics = [Metric(key=tag, value=value, timestamp=int(wall_time * 1000), step=global_step)
                   for tag, value in scalars.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
