"""The real command line in a subprocess: `visplay run tiny` with small overrides and the real plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from visplay.log.runlog import RunLog
from visplay.plugins import get_plugin_manager, hook_table

SMALL = ["iterations=2", "questioner.steps=1", "questioner.images_per_step=2", "questioner.group_size=2",
         "questioner.votes=2", "reasoner.steps=1", "reasoner.set_images=2", "reasoner.votes=2",
         "reasoner.group_size=2", "reasoner.questions_per_step=2", "data.num_images=8", "plugins.games.image_size=48",
         # gold questions for the reasoner's set, so the reasoner trains even though an untrained tiny model
         # rarely writes a valid question; no cold start and no held-out evaluation, to stay fast
         "data.source=games", "plugins.games.gold_reward=true", "plugins.games.held_out=0",
         "plugins.games.cold_start_steps=0", "plugins.games.cold_start_reasoner_steps=0"]


def _visplay(cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.run([sys.executable, "-m", "visplay.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _real_plugins_present() -> bool:
    table = hook_table(get_plugin_manager(autoload=True))
    needed = ("visplay_load_policy", "visplay_generate_questions", "visplay_make_optimizer", "visplay_image_source")
    return all(table[h] for h in needed)


def test_malformed_recipe_exits_2_before_creating_anything(tmp_path):
    done = _visplay(tmp_path, "run", "tiny", "questioner.stepz=3")
    assert done.returncode == 2
    assert "questioner.stepz" in done.stderr and "questioner.steps" in done.stderr
    done = _visplay(tmp_path, "run", "tiny", "iterations=0")
    assert done.returncode == 2 and "iterations" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_existing_run_dir_is_refused_with_resume_hint(tmp_path):
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    (tmp_path / "runs" / "tiny" / "run.db").write_bytes(b"")
    done = _visplay(tmp_path, "run", "tiny")
    assert done.returncode == 2
    assert "visplay resume runs/tiny" in done.stderr and "--overwrite" in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not _real_plugins_present(), reason="the models/algorithm/grpo plugins are not installed")
def test_cli_run_logs_every_phase_with_real_plugins(tmp_path):
    done = _visplay(tmp_path, "run", "tiny", *SMALL, "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "run log:     runs/tiny/run.db" in done.stdout and "iteration 2/2:" in done.stdout
    db = tmp_path / "runs" / "tiny" / "run.db"
    with RunLog(db, readonly=True) as log:
        assert log.integrity_ok() and log.run()["status"] == "finished"
        steps = log.done_steps()
        assert {(0, "cold_start", 0), (0, "eval", 0)} <= steps
        for i in (1, 2):
            for phase in ("questioner", "reasoner_set", "reasoner", "eval"):
                assert (i, phase, 0) in steps
            assert log.count("generations", "iteration = ? and kind = 'question'", [i]) == 2 * 2
            assert log.count("generations", "iteration = ? and kind = 'rollout'", [i]) == 2 * 2
            for role in ("questioner", "reasoner"):
                components = {r["component"] for r in log.rows("rewards", "iteration = ? and role = ?", [i, role])}
                assert "total" in components and len(components) >= 2, (role, components)
                assert log.count("advantages", "iteration = ? and role = ?", [i, role]) > 0
        for row in log.rows("checkpoints", "name like '%_v%'"):
            files = json.loads(row["files"])
            assert len(files["weights_sha256"]) == 64
            assert all(len(h) == 64 for h in files.values())
            for name in files:
                if name != "weights_sha256":
                    assert (db.parent / row["path"] / name).is_file()
        assert {r["name"] for r in log.rows("checkpoints")} >= {"questioner_v2", "reasoner_v2"}
    resumed = _visplay(tmp_path, "resume", "runs/tiny")
    assert resumed.returncode == 0 and "already finished" in resumed.stdout


def _steps_committed(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("select count(*) from steps").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError:  # not created yet
        return 0


@pytest.mark.slow
@pytest.mark.skipif(not _real_plugins_present(), reason="the models/algorithm/grpo plugins are not installed")
def test_cli_sigkill_then_resume_with_real_plugins_equals_uninterrupted(tmp_path):
    """The real model and optimizer: kill -9 once some steps are committed, resume, compare every row."""
    import signal
    import time

    from support.engine import comparable_rows

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir()
    killed.mkdir()
    assert _visplay(whole, "run", "tiny", *SMALL, "--quiet").returncode == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", None)
    proc = subprocess.Popen([sys.executable, "-m", "visplay.cli", "run", "tiny", *SMALL, "--quiet"], cwd=killed,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = killed / "runs" / "tiny" / "run.db"
    deadline = time.time() + 300
    while _steps_committed(db) < 4 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = _visplay(killed, "resume", "runs/tiny", "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with RunLog(db, readonly=True) as log:
        assert log.integrity_ok() and log.count("events", "kind = 'run_resumed'") == 1
    expected, actual = comparable_rows(whole / "runs/tiny/run.db"), comparable_rows(db)
    for table in expected:
        assert actual[table] == expected[table], f"table {table} differs after SIGKILL + resume"


@pytest.mark.slow
@pytest.mark.skipif(not _real_plugins_present(), reason="the models/algorithm/grpo plugins are not installed")
def test_cli_sigterm_marks_stopped_prints_the_resume_command_that_resumes_to_the_uninterrupted_rows(tmp_path):
    """`kill -TERM` (SLURM, Kubernetes): exit 143, status stopped with an event, and the printed command, run as
    printed, continues to the rows of a run never stopped (issue 27)."""
    import re
    import shlex
    import signal
    import time

    from support.engine import comparable_rows

    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    whole.mkdir()
    stopped.mkdir()
    assert _visplay(whole, "run", "tiny", *SMALL, "--quiet").returncode == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", None)
    proc = subprocess.Popen([sys.executable, "-m", "visplay.cli", "run", "tiny", *SMALL, "--quiet"], cwd=stopped,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = stopped / "runs" / "tiny" / "run.db"
    deadline = time.time() + 300
    while _steps_committed(db) < 4 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    with RunLog(db, readonly=True) as log:
        assert log.integrity_ok() and log.run()["status"] == "stopped"
        (event,) = log.rows("events", "kind = 'run_stopped'")
        assert event["message"].startswith("stopped by SIGTERM during ")
    printed = re.search(r"continue with `(visplay resume [^`]+)`", stderr)
    assert printed and printed.group(1) == "visplay resume runs/tiny", stderr[-3000:]
    command = shlex.split(printed.group(1))[1:]
    resumed = _visplay(stopped, *command, "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with RunLog(db, readonly=True) as log:
        assert log.run()["status"] == "finished" and log.count("events", "kind = 'run_resumed'") == 1
    expected, actual = comparable_rows(whole / "runs/tiny/run.db"), comparable_rows(db)
    for table in expected:
        assert actual[table] == expected[table], f"table {table} differs after SIGTERM + resume"
