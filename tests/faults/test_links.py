"""Fault suite, links and foreign files in a run folder (issue 28): no visplay write follows a symlink.

Before: a symlink planted at ``run.lock`` or ``datasette.json`` made a resume write *through* it (a file outside the run
was overwritten), a folder at ``run.lock`` gave a raw ``IsADirectoryError``, and ``--overwrite`` refused to delete a
run holding visplay's own ``export/``. Now the lock is opened with O_NOFOLLOW after a kind check, and the files a run
writes (recipe.yaml, datasette.json, the report) are written beside their name and renamed over it
(``visplay.files.write_file``): a planted link is replaced, its target untouched.
"""

from __future__ import annotations

import pytest
from support.faults import resume_in_process, stand_in_run

from visplay.files import UnsafeFileError, write_file
from visplay.log.runlog import RunLog
from visplay.loop.runsetup import run_lock


@pytest.fixture(autouse=True)
def _no_entry_points(no_autoload):
    yield


def _outside(tmp_path):
    victim = tmp_path / "outside.txt"
    victim.write_text("precious\n")
    return victim


def test_a_link_at_run_lock_is_refused_and_its_target_untouched(tmp_path):
    victim = _outside(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.lock").symlink_to(victim)
    with pytest.raises(UnsafeFileError, match=r"run\.lock is a symbolic link .*never writes through a link"):
        with run_lock(run_dir):
            pass
    assert victim.read_text() == "precious\n"


def test_a_folder_at_run_lock_is_a_clear_error(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "run.lock").mkdir(parents=True)
    with pytest.raises(UnsafeFileError, match=r"run\.lock is a folder"):
        with run_lock(run_dir):
            pass


def test_write_file_replaces_a_planted_link_and_never_writes_through_it(tmp_path):
    victim = _outside(tmp_path)
    link = tmp_path / "run" / "datasette.json"
    link.parent.mkdir()
    link.symlink_to(victim)
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        write_file(link, "{}")
    assert victim.read_text() == "precious\n" and link.is_symlink()
    plain = write_file(tmp_path / "run" / "recipe.yaml", "a: 1\n")
    assert plain.read_text() == "a: 1\n" and oct(plain.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in plain.parent.iterdir()) == ["datasette.json", "recipe.yaml"]  # no .part left


def test_resume_refuses_a_planted_link_at_datasette_json_and_the_outside_file_is_unchanged(tmp_path):
    victim = _outside(tmp_path)
    run_dir = tmp_path / "run"
    db = stand_in_run(run_dir, stop=(1, "questioner", 0))
    (run_dir / "datasette.json").unlink()
    (run_dir / "datasette.json").symlink_to(victim)
    with RunLog(db, readonly=True) as log:
        before = log.count("steps")
    with pytest.raises(UnsafeFileError, match=r"datasette\.json is a symbolic link"):
        resume_in_process(run_dir)
    assert victim.read_text() == "precious\n"
    with RunLog(db, readonly=True) as log:
        assert log.integrity_ok() and log.count("steps") == before
    (run_dir / "datasette.json").unlink()  # the user removes it, as the message says: the run goes on
    resume_in_process(run_dir)
    with RunLog(db, readonly=True) as log:
        assert log.run()["status"] == "finished"


def test_overwrite_deletes_a_run_holding_its_own_export(tmp_path):
    from visplay.log.export import export_run
    from visplay.loop.runsetup import prepare_run_dir

    run_dir = tmp_path / "run"
    db = stand_in_run(run_dir, stop=(1, "questioner", 0))
    export_run(db, fmt="csv", tables=["steps"])
    assert (run_dir / "export" / "steps.csv").is_file()
    prepare_run_dir(run_dir, db, overwrite=True)
    assert run_dir.is_dir() and not any(run_dir.iterdir())
