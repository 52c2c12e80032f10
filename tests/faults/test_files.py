"""Fault suite, files (issue 17, items 9 and 10): an unreadable image is skipped and logged; a full disk is a clear
error naming the path, and the run resumes to the uninterrupted run's log once there is space.

The unreadable file is real: a symlink to /proc/self/mem, whose first page is unmapped, so reading it fails with
EIO like a failing disk. The full disk is a real write failure too: the run's process gets a file-size limit
(RLIMIT_FSIZE), so the first write past it fails with EFBIG, as writes on a full disk fail with ENOSPC.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from support.engine import comparable_rows
from support.faults import padded_plugins, same_computation, stand_in_run

from visplay.log.runlog import RunLog

SCRIPT = Path(__file__).parent.parent / "support" / "faults.py"


@pytest.fixture(autouse=True)
def _no_entry_points(no_autoload):
    yield


def _folder_with_an_unreadable_file(folder: Path) -> Path:
    folder.mkdir()
    for k in range(4):
        Image.new("RGB", (32, 32), (60 * k, 90, 200 - 40 * k)).save(folder / f"img_{k}.png")
    bad = folder / "img_2b.png"
    bad.symlink_to("/proc/self/mem")
    with pytest.raises(OSError):
        bad.read_bytes()
    return bad


def test_unreadable_image_is_skipped_and_named(tmp_path):
    from visplay_images.decode import DecodeLimits
    from visplay_images.sources import open_folder

    bad = _folder_with_an_unreadable_file(tmp_path / "images")
    skipped = []
    pool = open_folder(str(tmp_path / "images"), DecodeLimits(size=32), lambda s, why: skipped.append((s, why)))
    assert len(pool) == 4
    assert skipped == [(str(bad), "cannot read the file (OSError: [Errno 5] Input/output error)")]


def test_unreadable_image_is_logged_as_an_event_and_the_run_goes_on(tmp_path):
    bad = _folder_with_an_unreadable_file(tmp_path / "images")
    db = stand_in_run(tmp_path / "run", "data.source=folder", f"data.images={tmp_path / 'images'}",
                      stop=(0, "cold_start", 0))
    with RunLog(db, readonly=True) as log:
        events = log.rows_matching("events", kind="image_skipped")
        assert len(events) == 1 and str(bad) in events[0]["message"] and "Errno 5" in events[0]["message"]
        assert log.count("images") == 4


def _drive(cwd: Path, *args: str, fsize: int | None = None) -> subprocess.CompletedProcess:
    tests = str(SCRIPT.parent.parent)
    env = {**os.environ, "VISPLAY_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1", "VISPLAY_TEST_PAD": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)}
    env.pop("VISPLAY_TEST_FSIZE", None)
    if fsize is not None:
        env["VISPLAY_TEST_FSIZE"] = str(fsize)
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=180)


def test_disk_full_while_checkpointing_is_a_clear_error_and_the_run_resumes(tmp_path):
    """The padded stand-in's checkpoints (1 MB) outgrow a 512 KB file-size limit before its run log does."""
    whole = comparable_rows(stand_in_run(tmp_path / "whole", plugins=padded_plugins()))
    run_dir = tmp_path / "run"
    full = _drive(tmp_path, "run", str(run_dir), fsize=512 * 1024)
    assert full.returncode == 1, full.stderr
    assert "Traceback" not in full.stderr
    assert f"cannot write checkpoint questioner_v0 under {run_dir}/checkpoints/.tmp/questioner_v0" in full.stderr
    assert "File too large" in full.stderr and f"visplay resume {run_dir}" in full.stderr
    with RunLog(run_dir / "run.db", readonly=True) as log:
        assert log.integrity_ok() and log.done_steps() == set()
    again = _drive(tmp_path, "resume", str(run_dir))
    assert again.returncode == 0, again.stderr
    assert same_computation(comparable_rows(run_dir / "run.db"), whole)
