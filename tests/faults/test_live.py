"""Fault suite, live runs (issue 28): replay and diff of a run another process is still writing.

Before: ``replay_run`` read the run's committed steps once, replayed them, then compared against the original as it
was by then; the steps the live run committed in between showed up as rows "only in a", a false first divergence
at the step being written (and the original's changed sha256 was reported as a bug in visplay). ``diff`` of a live
run against a finished one likewise reported the steps not yet written. Now both read the log as one snapshot and,
when a live process holds ``run.lock``, compare its committed prefix and say so, naming the process.

The writer is a real second process (tests/support/faults.py) that pauses after its first commit; the test lets it
commit two more steps while the replay runs, and holds it again before the comparison.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.engine import standin_plugins
from support.faults import stand_in_run

import visplay.loop.engine as engine
from visplay.log.diff import diff_runs, format_diff
from visplay.log.runlog import TABLES, RunLog
from visplay.loop.replay import ReplayUsageError, format_report, replay_run

# the writer registers its pausing plugin, so ``plugins`` differs from the in-process run's
COMPUTED = tuple(t for t in TABLES if t not in ("plugins", "events"))
SCRIPT = Path(__file__).resolve().parent.parent / "support" / "faults.py"


@pytest.fixture(autouse=True)
def _no_entry_points(no_autoload):
    yield


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), proc.communicate()[1]


@pytest.fixture
def writer(tmp_path):
    """A stand-in run in another process, paused after its 1st commit (and, once let go, after its 3rd)."""
    pause, run_dir = tmp_path / "pause", tmp_path / "live"
    pause.mkdir()
    env = {**os.environ, "VISPLAY_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1",
           "VISPLAY_TEST_PAUSE": str(pause), "VISPLAY_TEST_PAUSE_AT": "1,3",
           "PYTHONPATH": os.pathsep.join(p for p in (str(SCRIPT.parent.parent), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "run", str(run_dir)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(pause / "paused-1", proc)
        yield proc, run_dir, pause
    finally:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:  # to the end, however many pauses are left
            (pause / "go").write_text("")
            time.sleep(0.1)
        proc.communicate(timeout=120)


def _commits_during(monkeypatch, proc, pause):
    """While the replay's engine runs, the writer commits two more steps, then pauses again (still live)."""
    real = engine.run_recipe

    def run_recipe(*args, **kwargs):
        (pause / "go").write_text("")
        _wait_for(pause / "paused-3", proc)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "run_recipe", run_recipe)


def test_replay_of_a_live_run_replays_its_committed_prefix_and_names_the_writer(writer, tmp_path, monkeypatch):
    proc, run_dir, pause = writer
    _commits_during(monkeypatch, proc, pause)
    report = replay_run(run_dir / "run.db", out=tmp_path / "r" / "run.db", extra_plugins=standin_plugins())
    text = format_report(report)
    assert report.ok, text
    assert report.live == str(proc.pid)
    assert report.live_prefix == ((0, "cold_start", 0), 1)
    assert f"live run: process {proc.pid} holds {run_dir / 'run.lock'}" in text
    assert "replayed its committed prefix (1 steps, up to (0, 'cold_start', 0))" in text
    with RunLog(run_dir / "run.db", readonly=True) as log:
        assert log.count("steps") == 3  # the writer did commit during the replay: not compared, not a divergence
    with RunLog(tmp_path / "r" / "run.db", readonly=True) as new:
        assert new.count("steps") == 1


def test_diff_of_a_live_run_compares_its_committed_prefix(writer, tmp_path):
    proc, run_dir, pause = writer
    finished = stand_in_run(tmp_path / "finished")  # the same recipe and seed, uninterrupted
    result = diff_runs(run_dir / "run.db", finished, tables=COMPUTED)
    text = format_diff(result)
    assert result.equal, text
    assert f"a ({run_dir / 'run.db'}) is being written by process {proc.pid}" in text
    assert "compared up to its last committed step (0, 'cold_start', 0) (1 steps)" in text
    assert result.tables["steps"].rows_a == result.tables["steps"].rows_b == 1
    (pause / "go").write_text("")
    _wait_for(pause / "paused-3", proc)
    result = diff_runs(finished, run_dir / "run.db", tables=COMPUTED)  # the live side may be either
    assert result.equal and result.tables["steps"].rows_a == 3, format_diff(result)
    assert result.notes[0].startswith("b (")


def test_a_slice_the_live_run_has_not_committed_is_refused_naming_the_writer(writer, tmp_path):
    proc, run_dir, _ = writer
    with pytest.raises(ReplayUsageError, match=rf"no committed step matches --iteration 1 .*process {proc.pid} "
                                               rf"is still writing the run"):
        replay_run(run_dir / "run.db", iteration=1, out=tmp_path / "r" / "run.db", extra_plugins=standin_plugins())


def test_a_run_with_no_committed_step_is_refused(tmp_path):
    db = tmp_path / "run" / "run.db"
    with RunLog(db, create=True) as log:
        log.set_run(run_id="x", name="x", status="running", recipe_yaml="name: x\n")
    with pytest.raises(ReplayUsageError, match=r"no step of this run is committed yet"):
        replay_run(db, out=tmp_path / "r" / "run.db", extra_plugins=standin_plugins())
