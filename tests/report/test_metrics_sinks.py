"""The metrics plugin: a finished run's TensorBoard event files hold exactly the run log's metrics (read back with
tensorboard's own EventAccumulator), at the step's global step and wall time; W&B and MLflow when installed."""

from __future__ import annotations

import json

import pytest
import visplay_metrics.plugin as metrics_plugin
from support.metrics import accumulator, assert_tensorboard_equals_run_log
from visplay_metrics.options import MetricsOptions, MetricsOptionsError, parse_options

from visplay.log.runlog import RunLog

engine_fixtures = pytest.importorskip("support.engine")
engine = pytest.importorskip("visplay.loop.engine")


def _run(run_dir, extra=()):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
        return engine.run_recipe(engine_fixtures.standin_recipe(run_dir, list(extra)), quiet=True,
                                 extra_plugins=(*engine_fixtures.standin_plugins(), metrics_plugin))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("metrics") / "run")


def test_tensorboard_scalars_equal_the_run_log(finished_run):
    folder = finished_run.parent / "tensorboard"
    assert any(p.name.startswith("events.out.tfevents") for p in folder.iterdir())
    assert assert_tensorboard_equals_run_log(finished_run) > 20
    with RunLog(finished_run, readonly=True) as log:
        clocks = [log.step_clock(r["iteration"], r["phase"], r["step"]) for r in log.rows("steps")]
        first = log.step_clock(0, "cold_start", 0)
    # global steps: one per committed step, in commit order (cold start first)
    assert sorted(c["global_step"] for c in clocks) == list(range(len(clocks)))
    assert first["global_step"] == 0 and first["seconds"] is None


def test_system_scalars_are_sent_but_never_logged(finished_run):
    acc = accumulator(finished_run.parent / "tensorboard")
    tags = set(acc.Tags()["scalars"])
    tokens = acc.Scalars("reasoner/system/tokens_per_s")
    assert tokens and all(e.value >= 0 for e in tokens) and max(e.value for e in tokens) > 0
    memory = acc.Scalars("questioner/system/peak_memory_mb")
    assert memory and all(10 < e.value < 1e6 for e in memory)
    assert "questioner/system/step_seconds" in tags
    with RunLog(finished_run, readonly=True) as log:
        assert not [r for r in log.rows("metrics") if r["name"].startswith("system/")]
        # tokens/s is the step's sampled tokens over its seconds
        clock = log.step_clock(1, "reasoner", 0)
        n = log.step_tokens(1, "reasoner", 0)
        assert n == sum(len(json.loads(g["token_ids"]))
                        for g in log.rows("generations", "iteration = 1 and phase = 'reasoner' and step = 0"))
    first = next(e for e in tokens if e.step == clock["global_step"])
    assert first.value == pytest.approx(n / clock["seconds"], rel=1e-4)


def test_sinks_off_writes_no_event_files(tmp_path):
    db = _run(tmp_path / "run", ["iterations=1", "plugins.metrics.sinks=[]"])
    assert not (db.parent / "tensorboard").exists()


def test_bad_options_name_the_key():
    with pytest.raises(MetricsOptionsError, match="plugins.metrics.sinks.*unknown sink.*tensorbord"):
        parse_options({"sinks": ["tensorbord"]})
    with pytest.raises(MetricsOptionsError, match=r"'plugins.metrics.tensorbord_dir'.*did you mean "
                                                  r"'plugins.metrics.tensorboard_dir'"):
        parse_options({"tensorbord_dir": "x"})
    assert parse_options({"sinks": "wandb"}) == MetricsOptions(sinks=["wandb"])


def test_wandb_offline_run(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    db = _run(tmp_path / "run", ["iterations=1", "plugins.metrics.sinks=[wandb]"])
    offline = sorted((db.parent / "wandb").glob("offline-run-*"))
    assert offline and list(offline[0].glob("*.wandb"))
    assert wandb.run is None  # finished at the run's last step


def test_mlflow_local_store(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    db = _run(tmp_path / "run", ["iterations=1", "plugins.metrics.sinks=[mlflow]"])
    client = MlflowClient(tracking_uri=(db.parent / "mlruns").resolve().as_uri())
    run = client.search_runs([client.get_experiment_by_name("visplay").experiment_id])[0]
    with RunLog(db, readonly=True) as log:
        rows = log.rows("metrics", "phase = 'questioner' and name = 'reward/mean'")
    history = client.get_metric_history(run.info.run_id, "questioner/reward/mean")
    assert [h.value for h in sorted(history, key=lambda h: h.step)] == pytest.approx([r["value"] for r in rows])


def test_a_bad_section_fails_before_the_cold_start(tmp_path):
    from visplay.plugins import PluginError

    with pytest.raises(PluginError, match=r"unknown key 'plugins.metrics.sink'; did you mean 'plugins.metrics.sinks'"):
        _run(tmp_path / "run", ["iterations=1", "plugins.metrics.sink=[wandb]"])
    with RunLog(tmp_path / "run" / "run.db", readonly=True) as log:
        assert not log.rows("steps")  # nothing committed: not even the cold start
