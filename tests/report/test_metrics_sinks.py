"""The metrics plugin: a finished run's TensorBoard event files hold exactly the run log's metrics (read back with
tensorboard's own EventAccumulator), at the step's global step and wall time; W&B and MLflow when installed."""

from __future__ import annotations

import pytest
import visplay_metrics.plugin as metrics_plugin
from support.metrics import accumulator, assert_tensorboard_equals_run_log
from visplay_metrics.options import MetricsOptions, MetricsOptionsError, parse_options

from visplay.hookspecs import hookimpl
from visplay.log.runlog import RunLog

engine_fixtures = pytest.importorskip("support.engine")
engine = pytest.importorskip("visplay.loop.engine")


def _run(run_dir, extra=(), plugins=()):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
        return engine.run_recipe(engine_fixtures.standin_recipe(run_dir, list(extra)), quiet=True,
                                 extra_plugins=(*engine_fixtures.standin_plugins(), metrics_plugin, *plugins))


class NestedGold:
    """Evaluation metrics named as the games plugin names them: a name that is also another's prefix."""

    plugin_name = "nested_gold"
    METRICS = {"gold/accuracy": 0.5, "gold/accuracy/2048": 0.25, "gold/accuracy/kind/2048/move": 0.125,
               "gold/pass@1": 0.75}

    @hookimpl
    def visplay_iteration_end(self, ctx, iteration, questioner, reasoner):
        return dict(self.METRICS)


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


def test_tensorboard_shows_the_recipe_as_text(finished_run):
    acc = accumulator(finished_run.parent / "tensorboard")
    assert "recipe/text_summary" in acc.Tags()["tensors"]
    text = acc.Tensors("recipe/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "    seed: 0\n" in text and "    name: tiny\n" in text


def test_tensorboard_holds_the_recipe_as_hparams(finished_run):
    """The HPARAMS tab: the session-start record of TensorBoard's hparams plugin in the run's own event file, one
    hparam per recipe key (parsed by the plugin's own metadata reader)."""
    from omegaconf import OmegaConf
    from tensorboard.plugins.hparams import metadata

    acc = accumulator(finished_run.parent / "tensorboard")
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    assert set(content) == {metadata.SESSION_START_INFO_TAG}  # no experiment record: every scalar is a metric
    hparams = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG]).hparams
    with RunLog(finished_run, readonly=True) as log:
        recipe = OmegaConf.create(log.run()["recipe_yaml"])
    assert hparams["questioner.steps"].number_value == recipe.questioner.steps
    assert hparams["name"].string_value == recipe.name
    assert hparams["plugins.metrics.sinks"].string_value == '["tensorboard"]'
    flat = metrics_plugin._flatten(OmegaConf.to_container(recipe, resolve=True))
    assert set(hparams) == {k for k, v in flat.items() if v is not None}


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
        assert n == sum(len(g["token_ids"])
                        for g in log.rows("generations", "iteration = 1 and phase = 'reasoner' and step = 0"))
    first = next(e for e in tokens if e.step == clock["global_step"])
    assert first.value == pytest.approx(n / clock["seconds"], rel=1e-4)


def test_tokens_total_is_the_running_sum_of_every_steps_sampled_tokens(finished_run):
    acc = accumulator(finished_run.parent / "tensorboard")
    with RunLog(finished_run, readonly=True) as log:
        steps = sorted(log.rows("steps"), key=lambda r: log.step_clock(r["iteration"], r["phase"],
                                                                          r["step"])["global_step"])  # commit order
        per_step = [log.step_tokens(r["iteration"], r["phase"], r["step"]) for r in steps]
        expected = {g: float(sum(per_step[:g + 1])) for g in range(len(steps))}
        last = steps[-1]
        assert log.tokens_through(last["iteration"], last["phase"], last["step"]) == sum(per_step)
    sent = {e.step: e.value for phase in ("cold_start", "questioner", "reasoner_set", "reasoner", "eval")
            for e in acc.Scalars(f"{phase}/system/tokens_total")}
    assert sent == expected and max(sent.values()) > 0


# the parts the engine times in each phase (docs/metrics.md); save_checkpoint only at a snapshot step
TIMED_PARTS = {"questioner": {"gen", "vote", "reward", "update", "step"},
               "reasoner_set": {"gen", "vote", "filter", "step"},
               "reasoner": {"gen", "reward", "update", "step"}, "cold_start": {"step"}, "eval": {"step"}}


def test_timing_scalars_are_sent_per_step_but_never_logged(finished_run):
    acc = accumulator(finished_run.parent / "tensorboard")
    tags = set(acc.Tags()["scalars"])
    with RunLog(finished_run, readonly=True) as log:
        assert not [r for r in log.rows("metrics") if r["name"].startswith("timing_s/")]
        steps = {phase: {log.step_clock(r["iteration"], phase, r["step"])["global_step"]
                         for r in log.rows("steps", "phase = ?", [phase])} for phase in TIMED_PARTS}
        empty = {log.step_clock(r["iteration"], r["phase"], r["step"])["global_step"]  # nothing kept: no rollouts
                 for r in log.rows("metrics", "name = 'set/empty'")}
    for phase, parts in TIMED_PARTS.items():
        for part in parts:
            events = acc.Scalars(f"{phase}/timing_s/{part}")
            expected = steps[phase] if part == "step" else steps[phase] - empty
            assert expected and {e.step for e in events} == expected, (phase, part)  # one per step that has it
            assert all(0 < e.value < 600 for e in events), (phase, part)
    saves = acc.Scalars("reasoner/timing_s/save_checkpoint")  # the phase's last step is always a snapshot
    assert saves and {e.step for e in saves} <= steps["reasoner"]
    for phase in ("questioner", "reasoner"):  # the parts happen inside the step: together they take less time
        total = {e.step: e.value for e in acc.Scalars(f"{phase}/timing_s/step")}
        for step, value in total.items():
            if step in empty:
                continue
            inner = sum(e.value for p in TIMED_PARTS[phase] - {"step"} | {"save_checkpoint"}
                        if f"{phase}/timing_s/{p}" in tags for e in acc.Scalars(f"{phase}/timing_s/{p}")
                        if e.step == step)
            assert 0 < inner <= value * 1.001 + 1e-4, (phase, step)


def test_timing_off_sends_none(tmp_path):
    db = _run(tmp_path / "run", ["iterations=1", "plugins.metrics.timing=false"])
    tags = set(accumulator(db.parent / "tensorboard").Tags()["scalars"])
    assert "questioner/system/step_seconds" in tags and not [t for t in tags if "/timing_s/" in t]


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
    history = client.get_metric_history(run.info.run_id, "questioner/reward.mean")  # docs/metrics.md: the names
    assert [h.value for h in sorted(history, key=lambda h: h.step)] == pytest.approx([r["value"] for r in rows])


def test_a_bad_section_fails_before_the_cold_start(tmp_path):
    from visplay.config import RecipeError

    with pytest.raises(RecipeError, match=r"unknown key 'plugins.metrics.sink'; did you mean 'plugins.metrics.sinks'"):
        _run(tmp_path / "run", ["iterations=1", "plugins.metrics.sink=[wandb]"])
    assert not (tmp_path / "run" / "run.db").exists()  # refused with the recipe, before anything was created


def test_mlflow_key_keeps_the_phase_slash_and_never_makes_a_key_another_keys_folder():
    from visplay_metrics.sinks import mlflow_key

    assert mlflow_key("eval/gold/accuracy") == "eval/gold.accuracy"
    assert mlflow_key("eval/gold/accuracy/2048") == "eval/gold.accuracy.2048"
    assert mlflow_key("eval/gold/pass@1") == "eval/gold.pass_1"
    assert mlflow_key("questioner/reward/mean") == "questioner/reward.mean"
    long = mlflow_key("eval/" + "x" * 400)
    assert len(long) == 250 and long != mlflow_key("eval/" + "x" * 401)
    assert mlflow_key("eval/..") != "eval/.."  # a name that would resolve to another path


def test_every_sink_at_once_with_nested_names_finishes_and_mlflow_holds_every_metric(tmp_path, monkeypatch):
    """Issue 27: `gold/accuracy` and `gold/accuracy/2048` killed the run in MLflow's file store; params stopped
    at 100."""
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    from mlflow import MlflowClient
    from omegaconf import OmegaConf
    from visplay_metrics.sinks import mlflow_key

    monkeypatch.setenv("WANDB_SILENT", "true")
    db = _run(tmp_path / "run", ["iterations=1", "plugins.metrics.sinks=[tensorboard,wandb,mlflow]"], [NestedGold()])
    client = MlflowClient(tracking_uri=(db.parent / "mlruns").resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("visplay").experiment_id])
    with RunLog(db, readonly=True) as log:
        assert log.run()["status"] == "finished" and not log.rows("events", "kind = 'metrics_sink_failed'")
        rows = log.rows("metrics")
        recipe = OmegaConf.to_container(OmegaConf.create(log.run()["recipe_yaml"]), resolve=True)
    assert {"gold/accuracy", "gold/accuracy/2048", "gold/pass@1"} <= {r["name"] for r in rows if r["phase"] == "eval"}
    expected: dict[str, list[float]] = {}
    for r in rows:
        expected.setdefault(mlflow_key(f"{r['phase']}/{r['name']}"), []).append(r["value"])
    logged = {k for k in run.data.metrics if "/system." not in k and "/timing_s." not in k}
    assert logged == set(expected)  # every metric, each under its own key
    for key, values in expected.items():
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(h.value for h in history) == pytest.approx(sorted(values)), key
    assert len(run.data.params) == len(metrics_plugin._flatten(recipe))  # every recipe key
    assert assert_tensorboard_equals_run_log(db) > 20
    assert sorted((db.parent / "wandb").glob("offline-run-*"))


def test_mlflow_params_are_all_logged_not_the_first_100(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient
    from visplay_metrics.sinks import MlflowSink

    uri = (tmp_path / "mlruns").resolve().as_uri()
    params = {f"plugins.section{k % 7}.key_{k}": "v" * (k * 40) for k in range(250)}  # values up to 9,960 chars
    sink = MlflowSink(tracking_uri=uri, experiment="visplay", name="t", params=params)
    sink.close()
    logged = MlflowClient(tracking_uri=uri).get_run(sink.run_id).data.params
    assert set(logged) == set(params)
    assert [len(logged[k]) for k in params] == [min(len(v), 6000) for v in params.values()]


def test_a_sink_that_cannot_open_once_the_run_started_is_a_warning_not_a_dead_run(tmp_path, monkeypatch):
    # a folder the check before the run found writable, gone bad by the first step (a file shadowing it is
    # refused before the run: tests/faults/test_sinks.py)
    from visplay_metrics.sinks import TensorBoardSink

    def refused(self, log_dir, recipe_yaml=None, hparams=None):
        raise PermissionError(f"[Errno 13] Permission denied: '{log_dir}'")

    monkeypatch.setattr(TensorBoardSink, "__init__", refused)
    db = _run(tmp_path / "run", ["iterations=1"])
    with RunLog(db, readonly=True) as log:
        assert log.run()["status"] == "finished"
        (event,) = log.rows("events", "kind = 'metrics_sink_failed'")
    assert event["level"] == "warning" and "metrics sink tensorboard could not open" in event["message"]
    assert str(db.parent / "tensorboard") in event["message"]


def test_a_sink_that_fails_mid_run_is_dropped_with_one_warning(tmp_path, monkeypatch):
    from visplay_metrics.sinks import TensorBoardSink

    calls = []

    def broken(self, scalars, global_step, wall_time):
        calls.append(global_step)
        raise OSError("disk full")

    monkeypatch.setattr(TensorBoardSink, "log", broken)
    db = _run(tmp_path / "run", ["iterations=1"])
    with RunLog(db, readonly=True) as log:
        assert log.run()["status"] == "finished"
        (event,) = log.rows("events", "kind = 'metrics_sink_failed'")
    assert "failed at cold_start step 0 of iteration 0 (OSError: disk full)" in event["message"]
    assert calls == [0]  # dropped after its first failure
