"""Fault suite, resume (issue 17, items 1-4): nothing on disk is trusted when a run is continued or overwritten.

Small stand-in runs (tests/support/engine.py), stopped after a committed step, then tampered with as a user
could: flipped checkpoint bytes, a second process, a changed image folder, a dropped table, a foreign database,
an unknown file in the run directory. Each case is refused naming what is wrong, and leaves the run log as it was.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from support.engine import comparable_rows
from support.faults import flip_byte, resume_in_process, same_computation, sql, stand_in_run

from visplay.log.runlog import RunLog, RunLogError
from visplay.loop.engine import RunExistsError

SCRIPT = Path(__file__).parent.parent / "support" / "faults.py"
STOP = (1, "questioner", 0)  # a committed training step: both v0 checkpoints and one step state exist


@pytest.fixture(autouse=True)
def _no_entry_points(no_autoload):
    yield


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
        return comparable_rows(stand_in_run(tmp_path_factory.mktemp("whole") / "run"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- 1. checkpoints are verified against the logged sha256 -------------------------------------------------------


@pytest.mark.parametrize("target", ["reasoner_v0/weights.safetensors", "questioner_v0/weights.safetensors",
                                    "state/questioner-i1-s0/weights.safetensors",
                                    "state/questioner-i1-s0/optimizer/state.safetensors"])
def test_corrupted_checkpoint_stops_resume_naming_the_file(tmp_path, target):
    run_dir = tmp_path / "run"
    db = stand_in_run(run_dir, stop=STOP)
    flip_byte(run_dir / "checkpoints" / target)
    steps_before = comparable_rows(db)["steps"]
    with pytest.raises(Exception) as info:
        resume_in_process(run_dir)
    message = str(info.value)
    assert str(run_dir / "checkpoints" / target) in message, message
    assert "sha256" in message and "Restore the file" in message
    assert comparable_rows(db)["steps"] == steps_before  # nothing committed from the bad weights


def test_deleted_checkpoint_file_is_named(tmp_path):
    run_dir = tmp_path / "run"
    stand_in_run(run_dir, stop=STOP)
    (run_dir / "checkpoints/state/questioner-i1-s0/weights.safetensors").unlink()
    with pytest.raises(Exception, match=r"questioner-i1-s0/weights.safetensors is missing"):
        resume_in_process(run_dir)


# --- 2. one writer per run directory -----------------------------------------------------------------------------


def test_lock_refuses_a_second_holder_naming_the_pid(tmp_path):
    from visplay.loop.runsetup import RunLockedError, run_lock

    with run_lock(tmp_path):
        with pytest.raises(RunLockedError, match=f"in use by process {os.getpid()}"):
            with run_lock(tmp_path):
                pass
    with run_lock(tmp_path):  # released with the block (and with the process, being an flock)
        pass


def _drive(cwd: Path, *args: str, pause: Path | None = None) -> subprocess.Popen:
    tests = str(SCRIPT.parent.parent)  # for ``support.engine``
    env = {**os.environ, "VISPLAY_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)}
    env.pop("VISPLAY_TEST_PAUSE", None)
    if pause is not None:
        env["VISPLAY_TEST_PAUSE"] = str(pause)
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_concurrent_resumes_exactly_one_proceeds(tmp_path, uninterrupted):
    """The first resume pauses after its first commit; a second one then starts and must be refused, naming
    the first's pid; the first finishes and its log equals the uninterrupted run's."""
    run_dir = tmp_path / "run"
    stand_in_run(run_dir, stop=STOP)
    pause = tmp_path / "pause"
    pause.mkdir()
    first = _drive(tmp_path, "resume", str(run_dir), pause=pause)
    try:
        deadline = time.monotonic() + 120
        while not (pause / "paused").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (pause / "paused").exists(), first.communicate()[1]
        second = _drive(tmp_path, "resume", str(run_dir))
        _, err = second.communicate(timeout=120)
        assert second.returncode != 0
        assert f"in use by process {first.pid}" in err, err
    finally:
        (pause / "go").write_text("")
        _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert same_computation(comparable_rows(run_dir / "run.db"), uninterrupted)


# --- 3. the image pool must be the logged one --------------------------------------------------------------------


def _images(folder: Path, n: int = 6) -> None:
    folder.mkdir(exist_ok=True)
    for k in range(n):
        Image.new("RGB", (32, 32), (40 * k, 255 - 40 * k, 100)).save(folder / f"img_{k}.png")


def test_changed_image_pool_is_refused_naming_the_image_unless_accepted(tmp_path):
    images, run_dir = tmp_path / "images", tmp_path / "run"
    _images(images)
    db = stand_in_run(run_dir, "data.source=folder", f"data.images={images}", stop=STOP)
    Image.new("RGB", (32, 32), (1, 2, 3)).save(images / "img_3.png")
    before = comparable_rows(db)
    with pytest.raises(RunLogError, match=r"image pool changed.*img_3\.png.*--accept-changed-images"):
        resume_in_process(run_dir)
    assert comparable_rows(db) == before
    resume_in_process(run_dir, accept_changed_images=True)
    with RunLog(db, readonly=True) as log:
        assert log.count("events", "kind = 'image_pool_changed'") == 1
        assert log.run()["status"] == "finished"
        # every generation points at an image the log holds
        assert log.count("generations", "image_id is not null and image_id not in (select image_id from images)") \
            == 0


# --- 4. a damaged or foreign run log is refused untouched --------------------------------------------------------


@pytest.mark.parametrize("damage,named", [
    ("drop table generations", "'generations'"),
    ("drop table checkpoints", "'checkpoints'"),
    ("drop table steps", "'steps'"),
    ("alter table checkpoints drop column files", "files"),  # (a column no view reads: sqlite refuses those)
])
def test_run_log_missing_core_tables_is_refused_untouched(tmp_path, damage, named):
    run_dir = tmp_path / "run"
    db = stand_in_run(run_dir, stop=STOP)
    sql(db, "pragma wal_checkpoint(truncate)", damage)
    sql(db, "pragma wal_checkpoint(truncate)")
    digest = _sha(db)
    with pytest.raises(RunLogError, match=f"lacks.*{named}.*Nothing was modified"):
        resume_in_process(run_dir)
    assert _sha(db) == digest


def test_foreign_sqlite_file_is_refused_untouched(tmp_path):
    run_dir = tmp_path / "run"
    stand_in_run(run_dir, stop=STOP)  # for a real recipe.yaml
    for suffix in ("", "-wal", "-shm"):
        Path(f"{run_dir / 'run.db'}{suffix}").unlink(missing_ok=True)
    sql(run_dir / "run.db", "create table notes (id integer primary key, body text)",
        "insert into notes (body) values ('my data')")
    digest = _sha(run_dir / "run.db")
    with pytest.raises(RunLogError, match="not a visplay run log.*notes"):
        resume_in_process(run_dir)
    with pytest.raises(RunLogError, match="not a visplay run log"):
        RunLog(run_dir / "run.db", readonly=True)
    assert _sha(run_dir / "run.db") == digest


# --- 5. --overwrite removes only what visplay made ---------------------------------------------------------------


def test_overwrite_refuses_a_folder_with_an_empty_run_db(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.db").write_bytes(b"")
    (run_dir / "precious.txt").write_text("keep me")
    with pytest.raises(RunExistsError, match="not a valid visplay run log"):
        stand_in_run(run_dir, overwrite=True)
    assert (run_dir / "precious.txt").read_text() == "keep me"


def test_overwrite_refuses_a_run_folder_holding_an_unknown_file(tmp_path):
    run_dir = tmp_path / "run"
    stand_in_run(run_dir, stop=STOP)
    (run_dir / "precious.txt").write_text("keep me")
    with pytest.raises(RunExistsError, match=r"precious\.txt, which visplay did not write"):
        stand_in_run(run_dir, overwrite=True)
    assert (run_dir / "precious.txt").read_text() == "keep me"


def test_overwrite_replaces_a_run_of_its_own(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    stand_in_run(run_dir, stop=STOP)
    db = stand_in_run(run_dir, overwrite=True)
    assert same_computation(comparable_rows(db), uninterrupted)


def _resume_cli_path(run_dir):
    """`visplay resume` as the CLI runs it (visplay.loop.engine.resume_run_dir), with the stand-in plugins."""
    from support.engine import standin_plugins

    from visplay.loop.engine import resume_run_dir
    from visplay.session import PluginSession

    return resume_run_dir(run_dir, quiet=True, session=PluginSession(extra=standin_plugins()))


def test_an_edited_description_in_recipe_yaml_does_not_block_resume(tmp_path, uninterrupted, capsys):
    """Issue 28: editing recipe.yaml's description blocked resume for good; the run log's recipe is the
    authority and only keys that change the computation matter."""
    run_dir = tmp_path / "run"
    db = stand_in_run(run_dir, stop=STOP)
    recipe = run_dir / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("description:", "description: 'my notes' #", 1)
                      if "description:" in recipe.read_text() else recipe.read_text() + "description: my notes\n")
    assert _resume_cli_path(run_dir) == 0
    assert "description edited since the run started" in capsys.readouterr().err
    with RunLog(db, readonly=True) as log:
        assert log.run()["status"] == "finished"
    assert same_computation(comparable_rows(db), uninterrupted)


def test_a_semantic_edit_of_recipe_yaml_is_refused_naming_the_keys(tmp_path):
    from visplay.config import RecipeError

    run_dir = tmp_path / "run"
    db = stand_in_run(run_dir, stop=STOP)
    recipe = run_dir / "recipe.yaml"
    text = recipe.read_text()
    assert "\nseed: " in text
    recipe.write_text(text.replace("\nseed: ", "\nseed: 9", 1))
    with RunLog(db, readonly=True) as log:
        before = log.count("steps")
    with pytest.raises(RecipeError, match=r"differs from the recipe this run started with .* at seed;"):
        _resume_cli_path(run_dir)
    with RunLog(db, readonly=True) as log:
        assert log.count("steps") == before and log.integrity_ok()


class _Killed(BaseException):
    """Stands in for SIGKILL in the middle of a deletion (nothing after it runs)."""


def test_a_run_killed_while_pruning_snapshots_leaves_whole_snapshots_and_resumes(tmp_path, uninterrupted,
                                                                                monkeypatch):
    """Issue 28: SIGKILL while old step snapshots were pruned left a half-deleted state folder. Pruning now renames
    a snapshot out of state/ before deleting it, and the next process empties the trash."""
    import shutil

    from visplay.loop import checkpoints
    from visplay.loop.checkpoints import TRASH, verify_checkpoint

    real = shutil.rmtree
    calls = []

    def killed_midway(path, *args, **kwargs):
        path = Path(path)
        if "state" in path.parts or TRASH in path.parts:  # a snapshot being pruned
            calls.append(path)
            next(p for p in sorted(path.rglob("*")) if p.is_file()).unlink()  # one file gone, then the kill
            raise _Killed()
        return real(path, *args, **kwargs)

    monkeypatch.setattr(checkpoints.shutil, "rmtree", killed_midway)
    run_dir = tmp_path / "run"
    with pytest.raises(_Killed):
        stand_in_run(run_dir)
    monkeypatch.setattr(checkpoints.shutil, "rmtree", real)
    assert calls, "the stand-in run never pruned a snapshot"
    db = run_dir / "run.db"
    with RunLog(db, readonly=True) as log:  # every snapshot left under state/ is whole
        for row in log.rows("checkpoints", "name like 'state/%'"):
            path = run_dir / "checkpoints" / row["name"]
            if path.exists():
                verify_checkpoint(log, row["name"], path)
    resume_in_process(run_dir)
    assert not (run_dir / "checkpoints" / TRASH).exists()
    assert same_computation(comparable_rows(db), uninterrupted)


def test_a_tampered_advantage_found_while_recomputing_on_resume_is_a_refusal_naming_the_row(tmp_path):
    """Issue 28: a logged advantage edited between a kill and a resume surfaced as a RuntimeError traceback from
    the recompute-on-resume check; it is now a RunLogError (exit 1, no traceback) naming the row and both values,
    worded as the checkpoint check is, and the log stays resumable once the value is restored."""
    from visplay.loop.engine import RecomputedStepMismatch

    every_2 = ("checkpoint.every=2", "questioner.steps=3")  # step 0 of a phase has no snapshot: resume recomputes it
    run_dir = tmp_path / "run"
    db = stand_in_run(run_dir, *every_2, stop=STOP)
    with RunLog(db, readonly=True) as log:
        row = log.rows("advantages", "iteration = 1 and role = 'questioner' and step = 0")[0]
        steps = log.count("steps")
    sql(db, f"update advantages set advantage = advantage + 1.0 where key = '{row['key']}'")
    with pytest.raises(RecomputedStepMismatch) as info:
        resume_in_process(run_dir)
    assert isinstance(info.value, RunLogError) and not isinstance(info.value, RuntimeError)
    message = str(info.value)
    assert message.startswith(f"{db}: recomputing questioner step 0 of iteration 1 from the run log gave different "
                              f"advantages: advantages[{row['key']}].advantage is {row['advantage'] + 1.0!r} in the "
                              f"run log, {row['advantage']!r} recomputed"), message
    assert "Restore the run log from a copy" in message and "--overwrite" in message
    with RunLog(db, readonly=True) as log:
        assert log.integrity_ok() and log.count("steps") == steps
        assert log.run()["status"] == "failed"
    sql(db, f"update advantages set advantage = {row['advantage']!r} where key = '{row['key']}'")
    resume_in_process(run_dir)  # the edit undone: the run goes on
    with RunLog(db, readonly=True) as log:
        assert log.run()["status"] == "finished"
    whole = stand_in_run(tmp_path / "whole", *every_2)
    resumed, expected = comparable_rows(db), comparable_rows(whole)
    for rows in (resumed, expected):  # a resume's own events: the recompute and the failed attempt
        rows["events"] = [r for r in rows["events"] if ("kind", "steps_recomputed") not in r]
    assert same_computation(resumed, expected)


def test_the_cli_reports_a_recompute_mismatch_without_a_traceback(tmp_path):
    run_dir = tmp_path / "run"
    db = stand_in_run(run_dir, "checkpoint.every=2", "questioner.steps=3", stop=STOP)
    sql(db, "update advantages set advantage = advantage + 1.0 where key = (select key from advantages "
            "where iteration = 1 and role = 'questioner' and step = 0 limit 1)")
    again = _drive(tmp_path, "resume", str(run_dir))
    _, err = again.communicate(timeout=120)
    assert again.returncode == 1, err
    assert "visplay: " in err and "gave different advantages: advantages[" in err and "Traceback" not in err, err
