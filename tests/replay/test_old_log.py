"""A run log written before the run-log schema gained its ``producer`` columns (schema version 1, made by the code
of commit 051e6bd with the tiny recipe: 1 iteration, a 40-step cold start, 8 game images) still opens, reports,
upgrades and replays bit for bit with today's code and plugins.

The fixture (tests/replay/data/runlog_v1/) holds run.db and recipe.yaml only: a full replay needs no checkpoint
files, it rebuilds everything from the logged recipe and generations.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from visplay.keys import phase_rank
from visplay.log.runlog import SCHEMA_VERSION, RunLog
from visplay.loop.replay import format_report, replay_run
from visplay.report.build import collect, text_summary

FIXTURE = Path(__file__).parent / "data" / "runlog_v1"
HEALTH_METRICS = {"response_length/clip_ratio", "response_length/min", "frac_reward_zero_std", "advantage/min",
                  "advantage/max", "prompt_length/mean", "prompt_length/max", "prompt_length/min"}


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    run = tmp_path / "oldlog"
    shutil.copytree(FIXTURE, run)
    return run


def _user_version(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def test_the_fixture_is_a_version_1_log_with_votes(old_run):
    db = old_run / "run.db"
    assert _user_version(db) == 1
    with RunLog(db, readonly=True) as log:
        assert "producer" not in log.db["rewards"].columns_dict
        assert log.run()["status"] == "finished"
        assert len(log.labels_of(1)) > 0 and len(log.rows("generations")) > 0


def test_it_opens_and_reports_read_only(old_run, tmp_path):
    db = old_run / "run.db"
    summary = text_summary(collect(db))
    assert "run oldlog [finished]" in summary
    assert _user_version(db) == 1  # reading never upgrades


def test_opening_for_writing_upgrades_it_in_place(old_run):
    db = old_run / "run.db"
    with RunLog(db) as log:
        assert log.schema_version == SCHEMA_VERSION == 6
        assert "producer" in log.db["rewards"].columns_dict and "producer" in log.db["filters"].columns_dict
        assert "digest" in log.db["generations"].columns_dict
        assert log.db["dropped_groups"].exists() and log.rows("dropped_groups") == []
        assert {r["producer"] for r in log.rows("rewards")} == {None}
        assert log.integrity_ok()


@pytest.mark.slow
def test_it_replays_bit_for_bit(old_run, tmp_path):
    """Everything the loop computes replays bit for bit. The games plugin's own evaluation (its gold_* tables and
    the eval-phase metrics) changed since the log was written (issue 15: greedy pass@1, maj@m, rotated held-out
    questions), so those rows may differ, and only those."""
    report = replay_run(old_run / "run.db", out=tmp_path / "replay" / "run.db", limit=500)
    text = format_report(report)
    core = ("images", "generations", "questions", "labels", "filters", "answers", "rewards", "advantages",
            "checkpoints", "steps")
    for table in core:
        stats = report.diff.tables[table]
        assert stats.rows_a > 0 or table in ("labels",), (table, text)
        assert stats.differing == stats.only_a == stats.only_b == 0, (table, text)
    eval_rank = phase_rank("eval")
    for div in report.diff.divergences:
        added = div.table == "metrics" and div.a == "absent" and (  # issue 27's health metrics: new rows only
            div.key[3] in HEALTH_METRICS or div.key[3].startswith("reward/") and div.key[3].endswith("/std"))
        assert added or div.table.startswith("gold_") or (div.table == "metrics" and div.position[1] == eval_rank), \
            div.describe()
    with RunLog(tmp_path / "replay" / "run.db", readonly=True) as new:  # the replay records producers
        assert {r["producer"] for r in new.rows_matching("rewards", component="uncertainty")} == {"algorithm"}
