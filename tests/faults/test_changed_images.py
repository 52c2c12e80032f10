"""Fault suite, changed inputs on resume: images (issue 28).

A stand-in run on a folder of images is SIGKILLed after a committed step (a real process, tests/support/faults.py)
or stopped after one; then an image is modified and another removed. The resume is refused naming both, with the
log untouched and sound; ``--accept-changed-images`` is the way on, logged as an ``image_pool_changed`` event that
names the images and the acceptance, after which resumes compare with the new pool; and a replay of such a run says
that its early steps ran on images that are gone instead of reporting a divergence, and replays the slice after.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from support.engine import comparable_rows, standin_plugins
from support.faults import resume_in_process, stand_in_run

from visplay.log.runlog import RunLog, RunLogError
from visplay.loop.replay import ReplayUsageError, format_report, replay_run

SCRIPT = Path(__file__).resolve().parent.parent / "support" / "faults.py"
STOP = (1, "questioner", 0)


@pytest.fixture(autouse=True)
def _no_entry_points(no_autoload):
    yield


def _images(folder: Path, n: int = 6) -> Path:
    folder.mkdir(exist_ok=True)
    for k in range(n):
        Image.new("RGB", (32, 32), (40 * k, 255 - 40 * k, 100)).save(folder / f"img_{k}.png")
    return folder


def _change(images: Path) -> None:
    Image.new("RGB", (32, 32), (1, 2, 3)).save(images / "img_3.png")  # modified
    (images / "img_5.png").unlink()  # removed


def _integrity(db: Path) -> str:
    with RunLog(db, readonly=True) as log:
        return log.db.execute("pragma integrity_check").fetchone()[0]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "VISPLAY_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1", **extra,
            "PYTHONPATH": os.pathsep.join(p for p in (str(SCRIPT.parent.parent), os.environ.get("PYTHONPATH")) if p)}


def _killed_after_first_step(tmp_path: Path, images: Path) -> Path:
    """A real run on ``images``, SIGKILLed while it waits after its first committed step."""
    run_dir, pause = tmp_path / "run", tmp_path / "pause"
    pause.mkdir()
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "run", str(run_dir), "data.source=folder",
                             f"data.images={images}"], cwd=tmp_path, env=_env(VISPLAY_TEST_PAUSE=str(pause)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (pause / "paused").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (pause / "paused").exists(), proc.communicate()[1]
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return run_dir


def test_a_killed_run_whose_images_changed_is_refused_naming_each_changed_image(tmp_path):
    images = _images(tmp_path / "images")
    run_dir = _killed_after_first_step(tmp_path, images)
    _change(images)
    db = run_dir / "run.db"
    before = comparable_rows(db)
    done = subprocess.run([sys.executable, str(SCRIPT), "resume", str(run_dir)], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    message = done.stderr
    assert "image pool" in message and str(images) in message
    # both images are named (the modified one is new to the log and its old content is gone; the removed one too)
    assert "img_3.png" in message and "img_5.png" in message and "--accept-changed-images" in message
    assert "1 image(s) not in the run log" in message and "2 image(s) logged but no longer in the pool" in message
    assert comparable_rows(db) == before
    assert _integrity(db) == "ok"
    with RunLog(db, readonly=True) as log:
        assert log.run()["status"] == "running"  # (killed) and resumable: nothing was written
    resume_in_process(run_dir, accept_changed_images=True)
    assert _integrity(db) == "ok"


def test_accepting_a_changed_pool_is_logged_and_later_resumes_compare_with_the_new_pool(tmp_path):
    images = _images(tmp_path / "images")
    run_dir = tmp_path / "run"
    db = stand_in_run(run_dir, "data.source=folder", f"data.images={images}", stop=STOP)
    with RunLog(db, readonly=True) as log:
        old = {r["source"]: r["image_id"] for r in log.rows("images")}
    _change(images)
    resume_in_process(run_dir, accept_changed_images=True, stop=(1, "reasoner", 0))
    with RunLog(db, readonly=True) as log:
        (event,) = log.rows("events", "kind = 'image_pool_changed'")
        pool = {r["image_id"]: r["source"] for r in log.rows("images")}
    payload = json.loads(event["payload"])
    assert payload["accepted"] == "--accept-changed-images"
    assert payload["after"] == list(STOP)
    assert [(i["source"], i["image_id"]) for i in payload["removed"]] == [
        (str(images / "img_3.png"), old[str(images / "img_3.png")]),
        (str(images / "img_5.png"), old[str(images / "img_5.png")])]
    assert [i["source"] for i in payload["added"]] == [str(images / "img_3.png")]
    assert payload["added"][0]["image_id"] not in old.values()
    assert len(payload["pool"]) == 5 and str(images / "img_5.png") not in [pool[i] for i in payload["pool"]]
    assert "accepted" in event["message"] and "img_3.png" in event["message"] and "img_5.png" in event["message"]
    # stopped again, then resumed without the flag: the pool is the one the run went on with, so it continues
    resume_in_process(run_dir)
    with RunLog(db, readonly=True) as log:
        assert log.run()["status"] == "finished"
        assert log.count("events", "kind = 'image_pool_changed'") == 1
        used = {r["image_id"] for r in log.rows("generations") if r["image_id"]}
        # no step after the change used a removed image
        late = {r["image_id"] for r in log.rows("generations", "iteration > 1") if r["image_id"]}
    assert late <= set(payload["pool"]) and used <= set(pool)
    assert _integrity(db) == "ok"


def test_a_replay_of_a_run_resumed_on_changed_images_says_so_and_replays_the_slice_after(tmp_path):
    images = _images(tmp_path / "images")
    run_dir = tmp_path / "run"
    db = stand_in_run(run_dir, "data.source=folder", f"data.images={images}", stop=STOP)
    _change(images)
    resume_in_process(run_dir, accept_changed_images=True)
    for kw in ({}, {"resample": True}, {"iteration": 1}):
        with pytest.raises(ReplayUsageError, match=r"image pool changed after step \(1, 'questioner', 0\).*"
                                                   r"--accept-changed-images.*img_3\.png.*not of a plugin.*"
                                                   r"--iteration 2"):
            replay_run(db, extra_plugins=standin_plugins(), **kw)
    assert not (run_dir / "replay").exists()  # refused before the replay's folder was made
    report = replay_run(db, iteration=2, extra_plugins=standin_plugins())
    assert report.ok, format_report(report)
    assert sum(report.diff.tables[t].equal for t in ("generations", "rewards", "advantages")) > 0


def test_a_change_accepted_before_any_step_leaves_a_log_that_replays_whole(tmp_path):
    images = _images(tmp_path / "images")
    run_dir = tmp_path / "run"
    stand_in_run(run_dir, "data.source=folder", f"data.images={images}", stop=STOP)
    db = run_dir / "run.db"
    with RunLog(db) as log:  # as a kill before the first commit leaves it: the run row and pool, no step
        for table in ("steps", "generations", "questions", "labels", "filters", "answers", "rewards",
                      "advantages", "metrics", "checkpoints"):
            log.db.execute(f"delete from {table}")
    for folder in (run_dir / "checkpoints").iterdir():
        import shutil

        shutil.rmtree(folder)
    _change(images)
    with pytest.raises(RunLogError, match="img_5.png"):
        resume_in_process(run_dir)
    resume_in_process(run_dir, accept_changed_images=True)
    with RunLog(db, readonly=True) as log:
        assert str(images / "img_5.png") not in {r["source"] for r in log.rows("images")}
    report = replay_run(db, extra_plugins=standin_plugins())
    assert report.ok, format_report(report)
