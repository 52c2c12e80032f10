"""Bad run logs given to replay, resume and report: a clear error naming the file, and the file untouched."""

from __future__ import annotations

import importlib.util
import sqlite3
import subprocess
import sys

import pytest
from support.replay import build_log, sha256_file, tiny_recipe

from visplay.config import recipe_yaml
from visplay.log.runlog import SCHEMA_VERSION, RunLogError
from visplay.loop.replay import ReplayUsageError, replay_run


def _bad_db(tmp_path, kind):
    folder = tmp_path / kind
    folder.mkdir()
    bad = folder / "run.db"
    if kind == "text":
        bad.write_text("this is not a database\n" * 50)
    elif kind == "truncated":
        good = build_log(tmp_path / "good.db")
        bad.write_bytes(good.read_bytes()[:3000])
    else:
        good = build_log(tmp_path / "good.db")
        bad.write_bytes(good.read_bytes())
        conn = sqlite3.connect(bad)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
    (folder / "recipe.yaml").write_text(recipe_yaml(tiny_recipe(folder)))
    return bad


MESSAGES = {"text": "not an SQLite database", "truncated": "unreadable SQLite database", "newer": "newer than"}


@pytest.mark.parametrize("kind", ["text", "truncated", "newer"])
def test_replay_refuses_bad_logs(tmp_path, kind):
    bad = _bad_db(tmp_path, kind)
    before = sha256_file(bad)
    with pytest.raises(RunLogError, match=MESSAGES[kind]):
        replay_run(bad)
    assert sha256_file(bad) == before
    assert not (bad.parent / "replay").exists()


@pytest.mark.parametrize("kind", ["text", "truncated", "newer"])
@pytest.mark.parametrize("command", ["replay", "resume", "report"])
def test_cli_refuses_bad_logs(tmp_path, kind, command):
    if command == "report" and importlib.util.find_spec("visplay.report.build") is None:
        pytest.skip("visplay.report.build is not written yet")
    bad = _bad_db(tmp_path, kind)
    before = sha256_file(bad)
    target = bad if command == "replay" else bad.parent
    out = subprocess.run([sys.executable, "-m", "visplay.cli", command, str(target)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0
    assert MESSAGES[kind] in out.stderr and "run.db" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert sha256_file(bad) == before


def test_replay_usage_errors(tmp_path):
    db = build_log(tmp_path / "run" / "run.db")
    before = sha256_file(db)
    with pytest.raises(ReplayUsageError, match="--step needs --role"):
        replay_run(db, iteration=1, step=0)
    with pytest.raises(ReplayUsageError, match="need --iteration"):
        replay_run(db, role="questioner")
    with pytest.raises(ReplayUsageError, match="no committed step matches --iteration 4"):
        replay_run(db, iteration=4)
    with pytest.raises(ReplayUsageError, match="is the original database"):
        replay_run(db, out=db)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(ReplayUsageError, match="holds files a replay did not write"):
        replay_run(db, out=tmp_path / "mine" / "run.db")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    assert sha256_file(db) == before
