"""Fault suite, SIGKILL at each point of snapshot pruning (issue 28).

Pruning renames an old step snapshot out of ``checkpoints/state/`` into ``checkpoints/.trash/`` and then deletes it
(visplay/loop/checkpoints.py, ``Roles.prune_states``). A real process (tests/support/faults.py) is SIGKILLed at
each point of its first prune: before the rename, after it, halfway through the deletion, after it. Afterwards a
slice replay of the killed run reproduces its steps, and a resume finishes it with a log equal to an uninterrupted
run's, the trash emptied; a slice replay of the finished run reproduces too.

``questioner.steps=3``: at step 1 of iteration 1 the snapshot of step 0 is pruned mid-phase (``checkpoint.keep=1``),
so the resume continues the phase from the newest snapshot.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.engine import comparable_rows, standin_plugins
from support.faults import PRUNE_POINTS, resume_in_process, same_computation, stand_in_run

from visplay.log.runlog import RunLog
from visplay.loop.checkpoints import TRASH, verify_checkpoint
from visplay.loop.replay import format_report, replay_run

SCRIPT = Path(__file__).resolve().parent.parent / "support" / "faults.py"
RECIPE = ("questioner.steps=3",)


@pytest.fixture(autouse=True)
def _no_entry_points(no_autoload):
    yield


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
        return comparable_rows(stand_in_run(tmp_path_factory.mktemp("whole") / "run", *RECIPE))


def _killed_run(tmp_path: Path, point: str) -> Path:
    run_dir = tmp_path / "run"
    env = {**os.environ, "VISPLAY_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1",
           "VISPLAY_TEST_PRUNE_KILL": point,
           "PYTHONPATH": os.pathsep.join(p for p in (str(SCRIPT.parent.parent), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, str(SCRIPT), "run", str(run_dir), *RECIPE], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    return run_dir


@pytest.mark.parametrize("point", PRUNE_POINTS)
def test_sigkill_while_pruning_leaves_a_run_that_replays_and_resumes_to_the_uninterrupted_log(tmp_path, point,
                                                                                             uninterrupted):
    run_dir = _killed_run(tmp_path, point)
    db, checkpoints = run_dir / "run.db", run_dir / "checkpoints"
    with RunLog(db, readonly=True) as log:
        assert (1, "questioner", 1) in log.done_steps()  # the prune follows the step's commit
        assert (1, "questioner", 2) not in log.done_steps()
        for row in log.rows("checkpoints", "name like 'state/%'"):  # what state/ holds is whole
            if (checkpoints / row["name"]).exists():
                verify_checkpoint(log, row["name"], checkpoints / row["name"])
        assert log.integrity_ok()
    assert (checkpoints / "state/questioner-i1-s1").is_dir()  # the newest snapshot, which a resume needs
    trash = sorted(p.name for p in (checkpoints / TRASH).iterdir()) if (checkpoints / TRASH).is_dir() else []
    assert (trash == []) if point in ("before_rename", "deleted") else (len(trash) == 1), trash

    # a slice replay of the killed run: from the step 0 state while it is still under state/, else (renamed into
    # the trash, half or wholly deleted: never read) from the phase's first step
    report = replay_run(db, iteration=1, role="questioner", step=1, out=tmp_path / "r1" / "run.db",
                        extra_plugins=standin_plugins())
    assert report.ok, format_report(report)
    assert report.slice.phase_start == (point != "before_rename")
    assert report.slice.start == ((1, "questioner", 1) if point == "before_rename" else (1, "questioner", 0))

    resume_in_process(run_dir)
    assert not (checkpoints / TRASH).exists()
    assert not (checkpoints / "state").exists() or not any((checkpoints / "state").iterdir())
    assert same_computation(comparable_rows(db), uninterrupted)
    report = replay_run(db, iteration=1, role="questioner", out=tmp_path / "r2" / "run.db",
                        extra_plugins=standin_plugins())
    assert report.ok, format_report(report)
