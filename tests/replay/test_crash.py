"""Crash safety: SIGKILL at seeded random points (mid-transaction, mid-checkpoint), resume, compare, replay."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import time
from pathlib import Path

import pytest
from support.replay import EveryTextIsAQuestion, crash_command, make_run

from visplay.log.diff import diff_runs
from visplay.log.runlog import RunLog
from visplay.loop import checkpoints
from visplay.loop.replay import format_report, replay_run

SEED = 20261121


def _record_calls(monkeypatch, owner, name, calls, done_steps):
    """Record, for every call of owner.name in the reference run, how many steps were committed at that time."""
    original = getattr(owner, name)

    def wrapper(self, *args, **kwargs):
        calls.setdefault(name, []).append(done_steps(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


def _done(db: Path) -> int:
    if not db.is_file():
        return 0
    with RunLog(db, readonly=True) as log:
        return len(log.done_steps())


def assert_committed_checkpoints_intact(db: Path) -> int:
    """Every checkpoint the log says exists is on disk with the logged hashes (the newest per role; older step
    states are pruned by design). Returns the number of committed steps."""
    with RunLog(db, readonly=True) as log:
        assert log.integrity_ok()
        rows = log.rows("checkpoints")
        done = len(log.done_steps())
    newest: dict[str, dict] = {}
    for row in rows:
        if row["role"] not in newest or (row["iteration"], row["step"]) >= (newest[row["role"]]["iteration"],
                                                                             newest[row["role"]]["step"]):
            newest[row["role"]] = row
    must_exist = [r for r in rows if "/" not in r["name"]] + [r for r in newest.values() if "/" in r["name"]]
    for row in must_exist:
        folder = db.parent / row["path"]
        for name, digest in json.loads(row["files"]).items():
            if name == "weights_sha256":
                continue
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, (row["name"], name)
    return done


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_equals_uninterrupted(tmp_path, monkeypatch):
    calls: dict[str, list[int]] = {}
    with monkeypatch.context() as mp:
        _record_calls(mp, RunLog, "insert", calls, lambda log: len(log.done_steps()))
        _record_calls(mp, checkpoints.Roles, "commit", calls, lambda roles: len(roles.ctx.log.done_steps()))
        _record_calls(mp, checkpoints.Roles, "save", calls, lambda roles: len(roles.ctx.log.done_steps()))
        started = time.perf_counter()
        reference = make_run(tmp_path / "reference")
        seconds = time.perf_counter() - started
    steps = _done(reference)
    rng = random.Random(SEED)
    order = ["insert", "commit", "save"]
    rng.shuffle(order)
    # the wall-clock kill goes last: if it comes after the run has finished (a fast machine), it must not rob the
    # call-counted kills, which always land, of a run to kill
    order.append("time")
    run_dir = tmp_path / "killed"
    specs, kills, progress = [], [], []
    for kind in [*order, "none"]:
        done = _done(run_dir / "run.db")
        if kind == "none":
            spec = "none"
        elif kind == "time":  # somewhere in what is left, after the ~4 s a process takes to start
            spec = f"time:{4.0 + rng.uniform(0.0, seconds * (1 - done / steps)):.2f}"
        else:  # the N-th of the calls still to come, as the uninterrupted run made them
            left = sum(1 for d in calls[kind] if d >= done)
            spec = f"{kind}:{rng.randint(1, max(left, 1))}"
        specs.append(spec)
        proc = subprocess.run(crash_command(run_dir, spec), capture_output=True, text=True, timeout=300)
        if proc.returncode == -9:
            kills.append(spec)
            if (run_dir / "run.db").is_file():
                progress.append(assert_committed_checkpoints_intact(run_dir / "run.db"))
        else:
            assert proc.returncode == 0, f"{spec}: {proc.stderr[-3000:]}"
    print(f"kill points {specs}: killed at {kills}, committed steps after each kill {progress}")
    assert len(kills) >= 3, f"only {kills} of {specs} killed the run"
    with RunLog(run_dir / "run.db", readonly=True) as log:
        assert log.run()["status"] == "finished"
        resumes = log.count("events", "kind = 'run_resumed'")
    assert resumes >= 1
    result = diff_runs(reference, run_dir / "run.db")
    assert result.equal, [d.describe() for d in result.divergences]
    report = replay_run(run_dir / "run.db", extra_plugins=(EveryTextIsAQuestion(),))
    assert report.ok, format_report(report)


def test_replay_accepts_an_interrupted_run(tmp_path):
    run_dir = tmp_path / "cut"
    proc = subprocess.run(crash_command(run_dir, "commit:3"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    done = assert_committed_checkpoints_intact(run_dir / "run.db")
    assert done == 2  # cold start and the first questioner step; the third commit's step never committed
    report = replay_run(run_dir / "run.db", extra_plugins=(EveryTextIsAQuestion(),))
    assert report.ok, format_report(report)
    assert report.diff.tables["steps"].equal == done
