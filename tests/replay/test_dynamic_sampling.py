"""A tiny run with DAPO's dynamic sampling on (``plugins.grpo.drop_zero_variance``) replays bit for bit, and the
drops are in its run log: one ``dropped_groups`` row per group left out (which groups, per step), their advantages
logged 0, their count per step in the metrics; a replay recomputes the rows and compares them."""

from __future__ import annotations

import sqlite3
from collections import defaultdict

import pytest
from support.replay import EveryTextIsAQuestion, make_run

from visplay.log.runlog import RunLog
from visplay.loop.replay import format_report, replay_run


def _all_equal_groups(log: RunLog) -> dict[tuple, set[str]]:
    """{(iteration, role, step): groups whose logged rewards are all equal}, from the advantages rows."""
    rewards: dict[tuple, dict[str, set[float]]] = defaultdict(lambda: defaultdict(set))
    for row in log.rows("advantages"):
        rewards[row["iteration"], row["role"], row["step"]][row["grp"]].add(row["reward"])
    return {at: {g for g, values in groups.items() if len(values) == 1} for at, groups in rewards.items()}


@pytest.mark.slow
def test_a_run_with_dynamic_sampling_replays_identically(tmp_path):
    run_db = make_run(tmp_path / "tiny", "plugins.grpo.drop_zero_variance=true")
    report = replay_run(run_db, extra_plugins=(EveryTextIsAQuestion(),))
    assert report.ok, format_report(report)
    with RunLog(run_db, readonly=True) as log:
        dropped = log.rows_matching("metrics", name="dynamic_sampling/dropped_groups")
        assert dropped and report.diff.tables["metrics"].equal == log.count("metrics")
        assert sum(row["value"] for row in dropped) > 0, dropped  # the tiny run has all-equal groups to drop
        rows = log.rows("dropped_groups")
        by_step: dict[tuple, set[str]] = defaultdict(set)
        for row in rows:
            by_step[row["iteration"], row["role"], row["step"]].add(row["grp"])
            assert row["producer"] == "grpo" and row["rollouts"] > 0
        expected = {at: groups for at, groups in _all_equal_groups(log).items() if groups}
        assert dict(by_step) == expected
        counts = {(m["iteration"], m["phase"], m["step"]): m["value"] for m in dropped}
        assert {at: float(len(g)) for at, g in by_step.items()} == {at: v for at, v in counts.items() if v}
        advantages = {(r["iteration"], r["role"], r["step"], r["grp"]): r["advantage"] for r in log.rows("advantages")}
        assert all(advantages[(*at, g)] == 0.0 for at, groups in by_step.items() for g in groups)
    assert report.diff.tables["dropped_groups"].equal == len(rows) > 0

    # the replay compares those rows: one dropped group removed from the original log is a divergence there
    conn = sqlite3.connect(run_db)
    with conn:
        conn.execute("delete from dropped_groups where grp = ?", (rows[0]["grp"],))
    conn.close()
    edited = replay_run(run_db, extra_plugins=(EveryTextIsAQuestion(),), out=tmp_path / "again" / "run.db")
    assert not edited.ok
    first = edited.diff.divergences[0]
    assert (first.table, first.key, first.a, first.b) == ("dropped_groups", (rows[0]["grp"],), "absent", "present")
