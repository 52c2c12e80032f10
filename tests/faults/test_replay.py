"""Fault suite, replay (issue 17, item 5): a generation's text edited in the log is named by a plain replay.

Before: the replay served the edited text back, recomputed everything from it and reported every value identical
(only --resample noticed). Each generation row now carries a digest of its text and token ids; the replay checks it
before serving the row.
"""

from __future__ import annotations

import re

import pytest
from support.engine import standin_plugins
from support.faults import copy_db, sql, stand_in_run

from visplay.log.runlog import RunLog
from visplay.loop.replay import format_report, replay_run


@pytest.fixture(autouse=True)
def _no_entry_points(no_autoload):
    yield


@pytest.fixture(scope="module")
def run_db(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
        # votes' log-probs logged too: the stand-in's replay serves them back (main's default leaves them out)
        return stand_in_run(tmp_path_factory.mktemp("replay") / "run", "log.vote_logprobs=true")



def test_clean_replay_still_agrees(run_db, tmp_path):
    report = replay_run(copy_db(run_db, tmp_path), extra_plugins=standin_plugins())
    assert report.ok, format_report(report)


@pytest.mark.parametrize("kind,edit", [
    ("question", "update generations set text = text || ' what' where key = ?"),
    ("vote", "update generations set text = replace(text, ' ', '  ') where key = ?"),
    ("question", "update generations set token_ids = '[0]' where key = ?"),
])
def test_edited_generation_is_named_without_resample(run_db, tmp_path, kind, edit):
    db = copy_db(run_db, tmp_path)
    with RunLog(db, readonly=True) as log:
        key = next(r["key"] for r in log.rows("generations") if r["kind"] == kind and r["iteration"] == 1)
    sql(db, edit.replace("?", f"'{key}'"))
    # token ids replaced by a shorter list also leave more log-probs than ids: the damaged-array check (issue 28)
    # names the row first
    named = rf"generations row '{re.escape(key)}'.*no longer matches the digest|generations\[{re.escape(key)}\]\.logprobs: "
    with pytest.raises(Exception, match=named):
        replay_run(db, extra_plugins=standin_plugins())


def test_a_cleared_digest_is_named_not_served_unchecked(run_db, tmp_path):
    """Issue 28: a schema-5 row whose digest was set to NULL (to hide an edit) was served unchecked."""
    db = copy_db(run_db, tmp_path)
    with RunLog(db, readonly=True) as log:
        key = next(r["key"] for r in log.rows("generations") if r["kind"] == "question" and r["iteration"] == 2)
    sql(db, f"update generations set digest = NULL, text = text || ' edited' where key = '{key}'")
    with pytest.raises(Exception, match=rf"generations row '{re.escape(key)}': its digest is NULL, but every "
                                        rf"generation from step \(1, 'questioner', 0\) on was logged with one"):
        replay_run(db, extra_plugins=standin_plugins())


def test_a_log_from_before_digests_replays_and_says_what_went_unchecked(run_db, tmp_path):
    db = copy_db(run_db, tmp_path)
    sql(db, "update generations set digest = NULL")  # as a log written before schema 5 and migrated reads
    with RunLog(db, readonly=True) as log:
        assert log.first_digested_step() is None
        total = log.count("generations", "phase in ('questioner', 'reasoner_set', 'reasoner')")
    report = replay_run(db, extra_plugins=standin_plugins())
    text = format_report(report)
    assert report.ok, text
    assert sum(report.unchecked.values()) == sum(report.served.values()) == total
    assert "served without a digest check (logged before generations carried digests): " in text
