"""A tiny run with DAPO's dynamic sampling on (``plugins.grpo.drop_zero_variance``) replays bit for bit, and the
drops are in its run log (the dropped groups' advantages logged 0, their count per step in the metrics)."""

from __future__ import annotations

import pytest
from support.replay import EveryTextIsAQuestion, make_run

from visplay.log.runlog import RunLog
from visplay.loop.replay import format_report, replay_run


@pytest.mark.slow
def test_a_run_with_dynamic_sampling_replays_identically(tmp_path):
    run_db = make_run(tmp_path / "tiny", "plugins.grpo.drop_zero_variance=true")
    report = replay_run(run_db, extra_plugins=(EveryTextIsAQuestion(),))
    assert report.ok, format_report(report)
    with RunLog(run_db, readonly=True) as log:
        dropped = log.rows_matching("metrics", name="dynamic_sampling/dropped_groups")
        assert dropped and report.diff.tables["metrics"].equal == log.count("metrics")
        assert sum(row["value"] for row in dropped) > 0, dropped  # the tiny run has all-equal groups to drop
