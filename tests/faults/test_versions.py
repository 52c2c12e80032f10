"""Fault suite, resume across versions (issue 28).

A run log written by a newer visplay (``PRAGMA user_version`` above this version's, and a recipe.yaml holding a key
this version does not know, as a newer version would write) is refused by every command with the version message,
exit 1, the file byte-identical and nothing created. An older log (the schema-1 fixture of tests/replay) opened by
two processes at once is migrated once: the second finds it migrated instead of failing on
``table "prompts" already exists``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.faults import sql, stand_in_run

from visplay.log import runlog as runlog_module
from visplay.log.runlog import SCHEMA_VERSION, RunLog, RunLogError

V1 = Path(__file__).resolve().parent.parent / "replay" / "data" / "runlog_v1"
NEWER = "newer than this visplay understands"


@pytest.fixture(autouse=True)
def _no_entry_points(no_autoload):
    yield


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def newer_run(tmp_path_factory) -> Path:
    """A stopped stand-in run, then marked as written by the next schema version (a rollback-journal file, as a
    copy or a `vacuum` leaves it), its recipe.yaml with a key only that version knows."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
        run_dir = tmp_path_factory.mktemp("newer") / "run"
        db = stand_in_run(run_dir, stop=(1, "questioner", 0))
    sql(db, "pragma wal_checkpoint(truncate)", "pragma journal_mode=delete",
        "create table future_things (id integer primary key)", f"pragma user_version = {SCHEMA_VERSION + 1}")
    recipe = run_dir / "recipe.yaml"
    recipe.write_text(recipe.read_text() + "future_setting: 1\n")
    return run_dir


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VISPLAY_CACHE": str(cwd / "cache")}
    env.pop("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", None)  # the command line as a user has it: every plugin installed
    return subprocess.run([sys.executable, "-m", "visplay.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


@pytest.mark.parametrize("command", ["resume", "replay", "export", "report", "diff", "run --overwrite"])
def test_a_log_from_a_newer_schema_is_refused_by_every_command_with_the_version_message(tmp_path, newer_run,
                                                                                       command):
    run_dir = tmp_path / "run"
    shutil.copytree(newer_run, run_dir)
    db = run_dir / "run.db"
    digest, listing = _sha(db), sorted(p.name for p in run_dir.iterdir())
    args = {"resume": ["resume", str(run_dir)], "replay": ["replay", str(db)], "export": ["export", str(run_dir)],
            "report": ["report", str(run_dir)], "diff": ["diff", str(db), str(db)],
            "run --overwrite": ["run", "tiny", f"run_dir={run_dir}", "--overwrite"]}[command]
    done = _cli(tmp_path, *args)
    assert done.returncode in (1, 2), done.stderr
    assert NEWER in done.stderr and str(db) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "OperationalError" not in done.stderr
    assert _sha(db) == digest and sorted(p.name for p in run_dir.iterdir()) == listing  # nothing created


def test_opening_a_newer_log_for_writing_leaves_it_byte_identical(tmp_path, newer_run):
    db = tmp_path / "run.db"
    shutil.copy(newer_run / "run.db", db)
    digest = _sha(db)
    with pytest.raises(RunLogError) as refused:
        RunLog(db, create=True)  # what `visplay run` / `resume` / a replay's output open
    assert _sha(db) == digest  # not even switched to WAL
    assert NEWER in str(refused.value)  # the same message as every other command gives
    with sqlite3.connect(db) as conn:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"


def test_two_processes_opening_one_older_log_migrate_it_once(tmp_path, monkeypatch):
    """The second opener reads the old version while the first is migrating; it must wait for the write lock and
    find the log migrated (before: it ran the same migration and died on sqlite3.OperationalError)."""
    db = tmp_path / "run.db"
    shutil.copy(V1 / "run.db", db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("pragma user_version").fetchone()[0] == 1
        generations = conn.execute("select count(*) from generations").fetchone()[0]
    inside, go = threading.Event(), threading.Event()
    prompts_migration = runlog_module.MIGRATIONS[2]  # schema 2 -> 3: creates `prompts`, rebuilds generations

    def held(database):
        prompts_migration(database)
        if threading.current_thread().name == "first":
            inside.set()  # the first opener holds its transaction open here, uncommitted
            go.wait(30)

    monkeypatch.setattr(runlog_module, "MIGRATIONS", [*runlog_module.MIGRATIONS[:2], held,
                                                      *runlog_module.MIGRATIONS[3:]])
    errors: list[BaseException] = []

    def open_log() -> None:
        try:
            RunLog(db, create=True).close()
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)

    first = threading.Thread(target=open_log, name="first")
    first.start()
    assert inside.wait(60)
    second = threading.Thread(target=open_log, name="second")
    second.start()
    second.join(0.5)  # it is waiting for the first one's write lock (or has already failed)
    go.set()
    first.join(60)
    second.join(60)
    assert not errors, errors
    with RunLog(db, readonly=True) as log:
        assert log.schema_version == SCHEMA_VERSION and log.integrity_ok()
        assert log.count("generations") == generations
