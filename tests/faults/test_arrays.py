"""Fault suite, damaged arrays (issue 28): token ids and log-probs are data from disk, checked on every read.

Before: a log-prob BLOB cut by one value replayed without a word (exit 0, "reproduces"), a cut that is not a whole
number of values crashed export (`ValueError: bytes length not a multiple of item size`) and an unknown type code
crashed the report with a traceback. Now every command that reads the arrays scans the log first
(`RunLog.check_arrays`: type code, whole values, as many log-probs as token ids) and refuses naming
table, key and column, before it creates anything; a single row read is checked the same way.
"""

from __future__ import annotations

import sqlite3

import pytest
from support.engine import standin_plugins
from support.faults import copy_db, stand_in_run

from visplay.log.errors import RunLogError
from visplay.log.runlog import RunLog


@pytest.fixture(autouse=True)
def _no_entry_points(no_autoload):
    yield


@pytest.fixture(scope="module")
def run_db(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
        return stand_in_run(tmp_path_factory.mktemp("arrays") / "run", "log.vote_logprobs=true")



DAMAGE = {
    "one log-prob cut": ("logprobs", lambda b: b[:-4], r"values for \d+ token ids"),
    "log-probs cut mid-value": ("logprobs", lambda b: b[:-3], "not a multiple of 4"),
    "unknown type code": ("token_ids", lambda b: b"z" + b[1:], "unknown array type code 'z'"),
    "token ids cut mid-value": ("token_ids", lambda b: b[:-1], "not a multiple of 4"),
}


def _damage(db, column, change):
    """Edit one question's array behind visplay's back; returns the row's key."""
    conn = sqlite3.connect(db)
    try:
        key, blob = conn.execute(f"select key, {column} from generations where kind = 'question' and iteration = 1 "
                                 f"and length(logprobs) > 9 order by key limit 1").fetchone()
        conn.execute(f"update generations set {column} = ? where key = ?", [change(bytes(blob)), key])
        conn.commit()
    finally:
        conn.close()
    return key


def test_a_clean_log_has_no_bad_arrays_and_lengths_agree(run_db):
    with RunLog(run_db, readonly=True) as log:
        assert log.bad_arrays() == []
        rows = list(log.rows("generations"))
    assert rows and all(not r["logprobs"] or len(r["logprobs"]) == len(r["token_ids"]) for r in rows)
    assert sum(1 for r in rows if r["logprobs"]) > 0


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damaged_array_is_named_by_every_reader(run_db, tmp_path, name):
    from visplay.log.diff import diff_runs
    from visplay.log.export import export_run
    from visplay.loop.replay import replay_run
    from visplay.report.build import collect

    column, change, what = DAMAGE[name]
    db = copy_db(run_db, tmp_path)
    key = _damage(db, column, change)
    named = rf"generations\[{key}\]\.{column}: .*{what}"
    with RunLog(db, readonly=True) as log:
        assert len(log.bad_arrays()) == 1 and key in log.bad_arrays()[0]
        with pytest.raises(RunLogError, match=named):  # a single row read says the same
            list(log.rows("generations", "key = ?", [key]))
    with pytest.raises(RunLogError, match=named):
        replay_run(db, out=tmp_path / "replayed", extra_plugins=standin_plugins())
    assert not (tmp_path / "replayed").exists()
    with pytest.raises(RunLogError, match=named):
        export_run(db, out=tmp_path / "export")
    assert not (tmp_path / "export").exists()  # refused before anything was created
    with pytest.raises(RunLogError, match=named):
        diff_runs(run_db, db)
    with pytest.raises(RunLogError, match=named):
        collect(db)
    with RunLog(db, readonly=True) as log:
        assert log.integrity_ok()  # nothing was modified


def test_cli_refuses_and_names_the_row(run_db, tmp_path, capsys):
    from visplay.cli import main

    db = copy_db(run_db, tmp_path)
    key = _damage(db, "logprobs", lambda b: b[:-4])
    assert main(["export", str(db), "--out", str(tmp_path / "x")]) == 1  # a run-log error, as a foreign file
    err = capsys.readouterr().err
    assert f"generations[{key}].logprobs" in err and "Traceback" not in err
