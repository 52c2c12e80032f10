"""visplay.log.diff on hand-built run logs: equality, first divergence in pipeline order, tolerance, bad inputs."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys

import pytest
from support.replay import build_log, question_key, sha256_file, tamper

from visplay.log.diff import diff_runs, row_position, values_equal
from visplay.log.runlog import SCHEMA_VERSION, RunLog, RunLogError


@pytest.fixture()
def pair(tmp_path):
    return build_log(tmp_path / "a.db"), build_log(tmp_path / "b.db", run_dir="elsewhere", host="host-b")


def test_identical_runs_on_different_machines_are_equal(pair):
    a, b = pair
    result = diff_runs(a, b)
    assert result.equal, result.divergences
    assert result.first is None
    # 2 steps x 4 questions: generations = 4 questions + 12 votes per step
    assert result.tables["generations"].equal == 32
    assert result.tables["rewards"].equal == 16
    assert result.tables["labels"].equal == 8
    assert result.tables["checkpoints"].equal == 2
    assert result.tables["runs"].equal == 1  # run_id, platform, times and run_dir are machine facts
    assert "events" not in result.tables


def test_one_changed_reward_is_named_exactly(tmp_path):
    a = build_log(tmp_path / "a.db")
    b = build_log(tmp_path / "b.db", reward_shift=2.0 ** -40)  # a change far below any printed precision
    result = diff_runs(a, b)
    assert not result.equal
    first = result.first
    assert (first.table, first.key, first.column) == ("rewards", (question_key(1, 1, 1), "total"), "value")
    assert first.b - first.a == pytest.approx(2.0 ** -40, rel=1e-3)
    # the same total feeds the advantage row's reward column, one table later in pipeline order
    assert [d.table for d in result.divergences] == ["rewards", "advantages"]
    assert result.tables["rewards"].differing == 1 and result.tables["rewards"].equal == 15


def test_tolerance_accepts_small_float_differences(tmp_path):
    a = build_log(tmp_path / "a.db")
    b = build_log(tmp_path / "b.db", reward_shift=1e-9)
    assert not diff_runs(a, b).equal
    assert diff_runs(a, b, tolerance=1e-6).equal
    assert not diff_runs(a, b, tolerance=1e-12).equal
    with pytest.raises(ValueError, match="tolerance"):
        diff_runs(a, b, tolerance=-1.0)


def test_first_divergence_is_earliest_in_the_run(tmp_path):
    a = build_log(tmp_path / "a.db", steps=3)
    # change a step-2 reward and a step-0 confidence: step 0 comes first although "labels" < "rewards"
    b = tamper(a, tmp_path / "b.db", "update rewards set value = value + 1 where key = ? and component = 'total'",
               (question_key(2, 0, 0),))
    c = tamper(b, tmp_path / "c.db", "update labels set confidence = 0.5 where question_key = ?",
               (question_key(0, 1, 0),))
    result = diff_runs(a, c, limit=10)
    assert (result.first.table, result.first.key, result.first.column) == ("labels", (question_key(0, 1, 0),),
                                                                            "confidence")
    assert (result.first.a, result.first.b) == (2 / 3, 0.5)
    assert [d.table for d in result.divergences] == ["labels", "rewards"]


def test_rows_missing_on_one_side_are_reported(tmp_path):
    a = build_log(tmp_path / "a.db")
    b = build_log(tmp_path / "b.db", extra_generation=True)
    result = diff_runs(a, b, limit=5)
    assert result.tables["generations"].only_b == 2
    assert result.first.table == "generations" and result.first.column is None
    assert result.first.key == (question_key(0, 9, 0),)
    assert (result.first.a, result.first.b) == ("absent", "present")
    c = build_log(tmp_path / "c.db", steps=1)
    short = diff_runs(a, c)
    assert short.tables["generations"].only_a == 16 and short.tables["steps"].only_a == 1


def test_scope_restricts_the_comparison(tmp_path):
    a = build_log(tmp_path / "a.db")
    b = build_log(tmp_path / "b.db", reward_shift=1.0)
    step0 = diff_runs(a, b, scope=lambda row: row_position(row)[2:] == (0,))
    assert step0.equal and step0.tables["rewards"].equal == 8


def test_values_equal_is_bit_exact_by_default():
    assert values_equal(0.1 + 0.2, 0.1 + 0.2)
    assert not values_equal(0.1 + 0.2, 0.3)
    assert values_equal(0.1 + 0.2, 0.3, tolerance=1e-12)
    assert values_equal(math.nan, math.nan)
    assert not values_equal(math.inf, 1e308, tolerance=1.0)
    assert not values_equal(1.0, "1.0")
    assert values_equal("[-0.5, 1.0]", "[-0.5000001, 1.0]", tolerance=1e-6)
    assert not values_equal("[-0.5, 1.0]", "[-0.5000001, 1.0]")
    assert not values_equal("[1, 2]", "[1, 2, 3]", tolerance=1.0)


def test_row_position_reads_keys_and_columns():
    assert row_position({"key": "i2/reasoner/s5/p1/g0"}) == (2, 3, 5)
    assert row_position({"question_key": "i1/reasoner_set/s0/p3/g0/v2"}) == (1, 2, 0)
    assert row_position({"iteration": 1, "role": "questioner", "step": 4, "name": "loss"}) == (1, 1, 4)
    assert row_position({"image_id": "x"}) == ()


def test_cli_diff_exit_codes(tmp_path, pair):
    a, b = pair
    same = subprocess.run([sys.executable, "-m", "visplay.cli", "diff", str(a), str(b)], capture_output=True,
                          text=True)
    assert same.returncode == 0, same.stderr
    assert "equal" in same.stdout
    c = build_log(tmp_path / "c.db", reward_shift=0.5)
    differ = subprocess.run([sys.executable, "-m", "visplay.cli", "diff", str(a), str(c)], capture_output=True,
                            text=True)
    assert differ.returncode == 1
    assert f"rewards[{question_key(1, 1, 1)}/total].value" in differ.stdout


@pytest.mark.parametrize("kind", ["text", "truncated", "newer"])
def test_bad_inputs_are_refused_and_untouched(tmp_path, pair, kind):
    a, _ = pair
    bad = tmp_path / f"{kind}.db"
    if kind == "text":
        bad.write_text("name: not a database\n")
    elif kind == "truncated":
        bad.write_bytes(a.read_bytes()[:3000])
    else:
        bad.write_bytes(a.read_bytes())
        conn = sqlite3.connect(bad)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
    before = sha256_file(bad)
    with pytest.raises(RunLogError, match=str(bad.name)):
        diff_runs(a, bad)
    out = subprocess.run([sys.executable, "-m", "visplay.cli", "diff", str(a), str(bad)], capture_output=True,
                         text=True)
    assert out.returncode == 1 and bad.name in out.stderr
    assert sha256_file(bad) == before
    wal = tmp_path / f"{kind}.db-wal"  # SQLite may leave an empty WAL beside a read-only WAL-mode file
    assert not wal.exists() or wal.stat().st_size == 0


def test_diff_never_writes(tmp_path, pair):
    a, b = pair
    before = sha256_file(a), sha256_file(b)
    diff_runs(a, b)
    assert (sha256_file(a), sha256_file(b)) == before
    with RunLog(a, readonly=True) as log:
        assert log.integrity_ok()


def test_tolerance_applies_to_decoded_arrays():
    """Log-probs come back from the binary run log as lists: a tolerance compares them element by element."""
    from visplay.log.diff import values_equal

    assert values_equal([-0.003727038623765111, -1.5], [-0.0037268009036779404, -1.5], 1e-3)
    assert not values_equal([-0.003727038623765111, -1.5], [-0.0037268009036779404, -1.5], 0.0)
    assert not values_equal([0.1, 0.2], [0.1, 0.3], 1e-3) and not values_equal([0.1], [0.1, 0.2], 1e-3)
    assert not values_equal("[900,901]", "[900,902]", 1e-2)  # token ids (ints) never within a tolerance
