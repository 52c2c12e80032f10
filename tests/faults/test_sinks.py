"""Fault suite, sinks and side outputs (issue 28): checked before the first step, refused naming the key.

Before: a file where the TensorBoard folder goes, a sink whose package is not installed, or W&B online without a
key were found at the first step, after the run folder, its run log and the cold start existed (the sink was then
dropped with a warning, or the run died); `visplay export --out` at a file or under one gave a traceback. Now the
metrics plugin checks its sinks in ``visplay_check_inputs`` (called by ``run_recipe`` before it creates or resumes
anything) and export checks its folder before writing; a sink that fails *mid-run* is still only dropped.
"""

from __future__ import annotations

import os
import sys

import pytest
import visplay_metrics.plugin as metrics_plugin
from support.engine import standin_plugins, standin_recipe

from visplay.config import RecipeError
from visplay.log.export import ExportError, export_run
from visplay.log.runlog import RunLog
from visplay.loop.engine import run_recipe


@pytest.fixture(autouse=True)
def _no_entry_points(no_autoload):
    yield


def _run(run_dir, *extra, **kw):
    return run_recipe(standin_recipe(run_dir, ["iterations=1", *extra]), quiet=True,
                      extra_plugins=(*standin_plugins(), metrics_plugin), **kw)


def _file(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a folder\n")
    return path


def test_a_file_at_tensorboard_dir_is_refused_before_the_run_exists(tmp_path):
    blocker = _file(tmp_path / "tb")
    with pytest.raises(RecipeError, match=rf"key 'plugins.metrics.tensorboard_dir': {blocker} exists and is not a "
                                          rf"folder"):
        _run(tmp_path / "run", f"plugins.metrics.tensorboard_dir={blocker}")
    assert not (tmp_path / "run").exists()  # no run folder, no run log, no step


def test_a_tensorboard_dir_under_a_file_is_refused(tmp_path):
    blocker = _file(tmp_path / "tb")
    with pytest.raises(RecipeError, match=rf"plugins.metrics.tensorboard_dir': {blocker}/sub/dir cannot be created: "
                                          rf"{blocker} is a file"):
        _run(tmp_path / "run", f"plugins.metrics.tensorboard_dir={blocker}/sub/dir")
    assert not (tmp_path / "run").exists()


def test_a_resume_with_a_file_shadowing_the_tensorboard_folder_is_refused_untouched(tmp_path):
    run_dir = tmp_path / "run"
    db = _run(run_dir, stop=(1, "questioner", 0))
    with RunLog(db, readonly=True) as log:
        before = (log.run()["status"], log.count("steps"), log.count("events"))
    import shutil

    shutil.rmtree(run_dir / "tensorboard")
    _file(run_dir / "tensorboard")
    plugins = (*standin_plugins(), metrics_plugin)
    from visplay.config import load_recipe

    cfg = load_recipe(str(run_dir / "recipe.yaml"), plugins=plugins)
    with pytest.raises(RecipeError, match=r"key 'plugins.metrics.tensorboard_dir': .*run/tensorboard exists and is "
                                          r"not a folder \(the default; set plugins.metrics.tensorboard_dir\)"):
        run_recipe(cfg, run_dir=run_dir, resume=True, extra_plugins=plugins, quiet=True)
    with RunLog(db, readonly=True) as log:  # not marked resumed, failed or running again: not touched at all
        assert (log.run()["status"], log.count("steps"), log.count("events")) == before
        assert log.integrity_ok()
    (run_dir / "tensorboard").unlink()
    run_recipe(cfg, run_dir=run_dir, resume=True, extra_plugins=plugins, quiet=True)
    with RunLog(db, readonly=True) as log:
        assert log.run()["status"] == "finished"


@pytest.mark.parametrize("sink,package,extra", [("wandb", "wandb", "visplay[wandb]"),
                                                ("mlflow", "mlflow", "visplay[mlflow]")])
def test_a_sink_whose_package_is_not_installed_is_refused_naming_the_key(tmp_path, monkeypatch, sink, package,
                                                                         extra):
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed: importing it fails
    with pytest.raises(RecipeError, match=rf"key 'plugins.metrics.sinks': has '{sink}' but the {package} package is "
                                          rf"not installed \(pip install '{re_escape(extra)}'\)"):
        _run(tmp_path / "run", f"plugins.metrics.sinks=[tensorboard,{sink}]")
    assert not (tmp_path / "run").exists()


def re_escape(text):
    import re

    return re.escape(text)


def test_wandb_online_without_a_key_is_refused_naming_wandb_mode(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("NETRC", raising=False)
    with pytest.raises(RecipeError, match=r"key 'plugins.metrics.wandb_mode': wandb_mode=online but no W&B API key"):
        _run(tmp_path / "run", "plugins.metrics.sinks=[wandb]", "plugins.metrics.wandb_mode=online")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission bits")
def test_an_unwritable_tensorboard_dir_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(RecipeError, match=rf"plugins.metrics.tensorboard_dir': {locked}/tb cannot be created: "
                                              rf"{locked} is not writable"):
            _run(tmp_path / "run", f"plugins.metrics.tensorboard_dir={locked}/tb")
    finally:
        locked.chmod(0o700)


def test_the_cli_refuses_a_shadowed_tensorboard_folder_with_exit_2_before_anything_exists(tmp_path, monkeypatch,
                                                                                         capsys):
    from visplay.cli import main

    monkeypatch.delenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD")  # the installed plugins, the metrics one among them
    blocker = _file(tmp_path / "tb")
    code = main(["run", "tiny", f"run_dir={tmp_path / 'run'}", f"plugins.metrics.tensorboard_dir={blocker}", "-q"])
    assert code == 2
    assert f"key 'plugins.metrics.tensorboard_dir': {blocker} exists and is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
        return run_recipe(standin_recipe(tmp_path_factory.mktemp("export") / "run", ["iterations=1"]), quiet=True,
                          extra_plugins=standin_plugins())


@pytest.mark.parametrize("where,message", [("file", "exists and is not a folder"),
                                           ("under", "cannot create the folder")])
def test_export_to_a_file_or_under_one_is_refused_naming_out(small_run, tmp_path, capsys, where, message):
    from visplay.cli import main

    blocker = _file(tmp_path / "taken")
    out = blocker if where == "file" else blocker / "export"
    with pytest.raises(ExportError, match=rf"--out {out}:? {message}"):
        export_run(small_run, out=out, fmt="csv", tables=["steps"])
    assert main(["export", str(small_run), "--out", str(out), "--format", "csv"]) == 2
    assert f"--out {out}" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder\n"



def test_a_replay_is_not_refused_for_its_own_sinks(tmp_path, monkeypatch):
    # the replay's sinks are a side output of the comparison: a sink that cannot open there stays a warning
    from visplay.loop.replay import format_report, replay_run

    pytest.importorskip("mlflow")
    db = _run(tmp_path / "run", "plugins.metrics.sinks=[tensorboard,mlflow]", stop=(0, "eval", 0))
    monkeypatch.setitem(sys.modules, "mlflow", None)  # uninstalled since the run
    report = replay_run(db, out=tmp_path / "r" / "run.db", extra_plugins=(*standin_plugins(), metrics_plugin))
    assert report.ok, format_report(report)
    with RunLog(tmp_path / "r" / "run.db", readonly=True) as log:
        (event,) = log.rows("events", "kind = 'metrics_sink_failed'")
    assert "metrics sink mlflow could not open" in event["message"]
