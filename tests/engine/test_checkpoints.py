"""Checkpoints every N steps (issue 14): a run killed between snapshots resumes from the newest one, recomputes the
logged steps after it from the run log, and ends with the very run log of an uninterrupted run.

Same harness as tests/test_engine_resume.py: the stand-in engine in a real subprocess that SIGKILLs itself at a
named step (``sample``: mid-step, before its transaction; ``commit``: right after the step committed).
With ``checkpoint.every=3``, 7 questioner steps snapshot after steps 2 and 5 (step 6 is ``questioner_v1``) and 5
reasoner steps after step 2 (step 4 is ``reasoner_v1``).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from support.engine import comparable_rows, kill_and_resume
from support.engine import drive as _drive
from support.replay import tamper

from visplay.log.runlog import RunLog

pytestmark = pytest.mark.slow  # several kill/resume sequences of real subprocesses

EVERY_3 = ["checkpoint.every=3", "checkpoint.keep=1", "iterations=1", "questioner.steps=7", "reasoner.steps=5"]


def _rows(db: Path) -> dict:
    rows = comparable_rows(db)
    rows["events"] = [r for r in rows["events"] if ("kind", "steps_recomputed") not in r]
    return rows


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict, Path]:
    cwd = tmp_path_factory.mktemp("whole")
    done = _drive(cwd, "run", "runs/x", *EVERY_3)
    assert done.returncode == 0, done.stderr
    return _rows(cwd / "runs/x/run.db"), cwd / "runs/x"


def test_snapshots_every_three_steps_and_the_final_versions(uninterrupted):
    _, run_dir = uninterrupted
    with RunLog(run_dir / "run.db", readonly=True) as log:
        names = [r["name"] for r in log.rows("checkpoints", "iteration = 1", order_by="role, step")]
    assert names == ["state/questioner-i1-s2", "state/questioner-i1-s5", "questioner_v1", "state/reasoner-i1-s2",
                     "reasoner_v1"]
    # checkpoint.keep=1, and each phase's end removes its step states: only the versions stay on disk
    assert not list((run_dir / "checkpoints" / "state").glob("*"))
    assert (run_dir / "checkpoints" / "questioner_v1").is_dir() and (run_dir / "checkpoints" / "reasoner_v1").is_dir()


@pytest.mark.parametrize("kills, recomputed", [
    (["1:questioner:1:sample"], 1),                          # before any snapshot: step 0 from questioner_v0
    (["1:questioner:4:sample"], 1),                          # snapshot s2 on disk, s3 logged only
    (["1:questioner:3:commit", "1:reasoner:4:sample"], 2),   # right after a non-snapshot commit, then mid-phase
])
def test_killed_between_snapshots_resumes_to_the_uninterrupted_log(tmp_path, uninterrupted, kills, recomputed):
    whole, _ = uninterrupted
    db = kill_and_resume(tmp_path, kills, *EVERY_3)
    with RunLog(db, readonly=True) as log:
        assert log.integrity_ok() and log.run()["status"] == "finished"
        events = log.rows("events", "kind = 'steps_recomputed'")
    assert len(events) == recomputed
    resumed = _rows(db)
    for table in whole:
        assert resumed[table] == whole[table], f"table {table} differs after resume"


@pytest.mark.parametrize("shift", [1.0, 1e-9])
def test_a_log_that_no_longer_matches_stops_the_resume_beyond_float_noise(tmp_path, shift):
    first = _drive(tmp_path, "run", "runs/x", *EVERY_3, kill="1:questioner:4:sample")
    assert first.returncode == -signal.SIGKILL
    db = tmp_path / "runs/x/run.db"
    tampered = tamper(db, tmp_path / "t.db", f"update advantages set advantage = advantage + {shift} where key = "
                      "(select key from advantages where role = 'questioner' and step = 3 limit 1)")
    tampered.replace(db)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    again = _drive(tmp_path, "resume", "runs/x")
    message = "recomputing questioner step 3 of iteration 1 from the run log gave different advantages"
    if shift == 1.0:  # a changed plugin or log: refused
        assert again.returncode != 0 and message in again.stderr
        return
    assert again.returncode == 0, again.stderr  # what a GPU's reduction order does: noted, and the run goes on
    with RunLog(db, readonly=True) as log:
        [event] = log.rows("events", "kind = 'recomputed_step_differs'")
    assert message in event["message"] and event["level"] == "warning"


@pytest.mark.parametrize("override, key", [("checkpoint.every=0", "checkpoint.every"),
                                           ("checkpoint.keep=0", "checkpoint.keep"),
                                           ("plugins.images.image_cache=0", "plugins.images.image_cache")])
def test_recipe_refuses_non_positive_cadence_and_cache(override, key):
    from visplay.config import RecipeError, load_recipe

    with pytest.raises(RecipeError, match=key.replace(".", r"\.") + ".*must be >= 1, got 0"):
        load_recipe("tiny", [override])
    cfg = load_recipe("tiny", ["checkpoint.every=4"])
    assert (cfg.checkpoint.every, cfg.checkpoint.keep, cfg.log.vote_logprobs) == (4, 1, False)


def test_a_run_logged_before_the_health_metrics_resumes_between_snapshots(tmp_path):
    """Issue 27 added metrics; a run started before them (its steps lack those rows) still resumes by recomputing
    its logged steps: a metric the log lacks is not a disagreement. A logged metric the recompute lacks still is."""
    first = _drive(tmp_path, "run", "runs/x", *EVERY_3, kill="1:questioner:4:sample")
    assert first.returncode == -signal.SIGKILL
    db = tmp_path / "runs/x/run.db"
    tampered = tamper(db, tmp_path / "t.db", "delete from metrics where name in ('frac_reward_zero_std', "
                      "'advantage/min', 'advantage/max', 'response_length/clip_ratio', 'response_length/min', "
                      "'prompt_length/mean', 'prompt_length/max', 'prompt_length/min')", rows=None)
    tampered.replace(db)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    again = _drive(tmp_path, "resume", "runs/x")
    assert again.returncode == 0, again.stderr
    with RunLog(db, readonly=True) as log:
        assert log.run()["status"] == "finished" and log.count("events", "kind = 'steps_recomputed'") == 1
