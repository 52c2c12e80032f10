"""SIGKILL a run at different points, resume it: the final database equals the uninterrupted run's.

Each run is a real subprocess (tests/support/engine.py as a script) that kills itself with SIGKILL at a named
step, either mid-step (inside a sampling hook, before the step's transaction) or right after a commit (before the
old step state is pruned). No cleanup code runs on SIGKILL, so this is the crash the run log must survive.
"""

from __future__ import annotations

import pytest
from support.engine import comparable_rows, drive, kill_and_resume

from visplay.log.runlog import RunLog

pytestmark = pytest.mark.slow  # three kill/resume sequences of real subprocesses: about a minute together



_drive = drive


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    cwd = tmp_path_factory.mktemp("whole")
    done = _drive(cwd, "run", "runs/x")
    assert done.returncode == 0, done.stderr
    return comparable_rows(cwd / "runs/x/run.db")


@pytest.mark.parametrize("kills", [
    ["1:questioner:1:sample"],                          # mid-step, after a step state was saved
    ["0:cold_start:0:commit", "1:reasoner_set:1:sample"],  # two crashes in one run
    ["1:reasoner:0:commit", "2:questioner:0:sample"],      # after a commit (before pruning), then mid-step
])
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path, uninterrupted, kills):
    db = kill_and_resume(tmp_path, kills)
    with RunLog(db, readonly=True) as log:
        assert log.integrity_ok()
        assert log.count("events", "kind = 'run_resumed'") == len(kills)
        assert log.run()["status"] == "finished"
    resumed = comparable_rows(db)
    for table in uninterrupted:
        assert resumed[table] == uninterrupted[table], f"table {table} differs after resume"
