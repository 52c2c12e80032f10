"""A run that ends early says so: SIGTERM/SIGINT mark it ``stopped``, a plugin crash ``failed``, each with an event,
and the resume that follows gives the uninterrupted run's rows (issue 27)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from support.engine import comparable_rows, drive

from visplay.log.runlog import RunLog
from visplay.loop.lifecycle import RunStopped, resume_command, stop_on_signals


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    cwd = tmp_path_factory.mktemp("whole")
    done = drive(cwd, "run", "runs/x")
    assert done.returncode == 0, done.stderr
    return comparable_rows(cwd / "runs/x/run.db")


def test_sigterm_becomes_run_stopped_with_the_resume_command_and_exit_143(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunStopped) as caught, stop_on_signals(tmp_path / "my run"):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    stopped = caught.value
    assert isinstance(stopped, KeyboardInterrupt)  # code that handles Ctrl-C handles SIGTERM alike
    assert stopped.exit_status == 143 and stopped.signal_name == "SIGTERM"
    assert stopped.resume == f"visplay resume '{tmp_path}/my run'"
    assert f"continue with `visplay resume '{tmp_path}/my run'`" in stopped.message()
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is gone after the block


def test_plain_keyboard_interrupt_becomes_run_stopped_sigint(tmp_path):
    with pytest.raises(RunStopped) as caught, stop_on_signals(tmp_path):
        raise KeyboardInterrupt
    assert caught.value.exit_status == 130 and caught.value.resume == resume_command(tmp_path)


@pytest.mark.parametrize(("how", "status", "kind", "exit_status"), [
    ("TERM", "stopped", "run_stopped", 143),
    ("INT", "stopped", "run_stopped", 130),
    ("crash", "failed", "run_failed", 1),
])
def test_stopped_or_failed_run_is_marked_and_resumes_to_the_uninterrupted_rows(tmp_path, uninterrupted, how,
                                                                                status, kind, exit_status):
    first = drive(tmp_path, "run", "runs/x", kill=f"1:questioner:1:sample:{how}")
    assert first.returncode == exit_status, first.stderr
    db = tmp_path / "runs/x/run.db"
    with RunLog(db, readonly=True) as log:
        assert log.integrity_ok()
        assert log.run()["status"] == status and log.run()["finished_at"] is not None
        (event,) = log.rows("events", "kind = ?", [kind])
        assert (event["iteration"], event["phase"], event["step"]) == (1, "questioner", 1)
        payload = json.loads(event["payload"])
        assert payload["step_committed"] is False and payload["resume"] == "visplay resume runs/x"
        assert (1, "questioner", 0) in log.done_steps() and (1, "questioner", 1) not in log.done_steps()
    if how == "crash":
        assert event["level"] == "error" and "RuntimeError: standin plugin crashed at 1:questioner:1" in event["message"]
        assert "Traceback" in payload["traceback"] and "standin plugin crashed" in payload["traceback"]
        assert "RuntimeError: standin plugin crashed" in first.stderr
        assert "marked failed" in first.stderr and "`visplay resume runs/x`" in first.stderr
    else:
        assert payload["signal"] == f"SIG{how}"
        assert event["message"] == (f"stopped by SIG{how} during iteration 1 train questioner step 1 "
                                    f"(not committed)")
        assert "continue with `visplay resume runs/x`" in first.stderr
        assert not (tmp_path / "runs/x/checkpoints/questioner_v1").exists()
    final = drive(tmp_path, "resume", "runs/x")
    assert final.returncode == 0, final.stderr
    with RunLog(db, readonly=True) as log:
        assert log.run()["status"] == "finished" and log.count("events", "kind = 'run_resumed'") == 1
    resumed = comparable_rows(db)
    for table in uninterrupted:
        assert resumed[table] == uninterrupted[table], f"table {table} differs after the {how} and resume"


def test_signal_right_after_a_commit_says_the_step_was_committed(tmp_path):
    first = drive(tmp_path, "run", "runs/x", kill="1:reasoner_set:0:commit:TERM")
    assert first.returncode == 143, first.stderr
    with RunLog(tmp_path / "runs/x/run.db", readonly=True) as log:
        (event,) = log.rows("events", "kind = 'run_stopped'")
        assert "(after its commit)" in event["message"] and json.loads(event["payload"])["step_committed"] is True
        assert (1, "reasoner_set", 0) in log.done_steps()


def test_a_running_status_with_no_live_holder_is_shown_as_killed(tmp_path):
    from visplay.loop.lifecycle import shown_status
    from visplay.loop.runsetup import run_lock

    assert shown_status("running", tmp_path) == "running"  # no run.lock: nothing to tell
    with run_lock(tmp_path):
        assert shown_status("running", tmp_path) == "running"  # a live process holds it
    assert shown_status("running", tmp_path) == ("running, but no process holds it (killed?): "
                                                 f"`visplay resume {tmp_path}` continues it")
    assert shown_status("stopped", tmp_path) == "stopped"


def test_report_of_a_sigkilled_run_says_no_process_holds_it(tmp_path):
    from visplay.report.build import collect, text_summary

    assert drive(tmp_path, "run", "runs/x", kill="1:questioner:0:sample").returncode == -signal.SIGKILL
    summary = text_summary(collect(tmp_path / "runs/x/run.db"))
    assert summary.startswith("run tiny [running, but no process holds it (killed?): `visplay resume ")
