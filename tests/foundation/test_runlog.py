"""The run log: schema by migrations, a round trip of every table, WAL, atomic steps, refusing bad files."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from visplay.log.runlog import SCHEMA_VERSION, TABLES, RunLog, RunLogError

SAMPLE = {str: "x", int: 3, float: 0.5, bytes: b"\x89PNG"}


def sample_row(table: str, i: int = 0) -> dict:
    if table == "generations":  # written and read as GENERATION_COLUMNS (prompt text, arrays as lists)
        return {"key": f"k{i}", "iteration": 1, "phase": "questioner", "step": i, "role": "questioner",
                "kind": "question", "image_id": "x", "parent_key": None, "sample_index": i, "seed": 3,
                "prompt_system": "s", "prompt_user": f"u{i % 2}", "text": "t", "token_ids": [i, 2, 3],
                "logprobs": [-0.5, -1.0 / 3, -0.25], "finish_reason": "stop"}
    row = {}
    for col, typ in TABLES[table]["columns"].items():
        value = SAMPLE[typ]
        row[col] = f"{value}{i}" if typ is str else value + i if typ in (int, float) else value
    if table == "events":
        row.pop("id")
    return row


def test_schema_created_by_migrations(tmp_path):
    with RunLog(tmp_path / "run.db", create=True) as log:
        assert log.schema_version == SCHEMA_VERSION
        assert set(TABLES) <= set(log.tables())
        assert log.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("table", sorted(TABLES))
def test_round_trip_every_table(tmp_path, table):
    path = tmp_path / "run.db"
    with RunLog(path, create=True) as log:
        rows = [sample_row(table, i) for i in range(3)]
        if table in ("runs", "plugins"):
            rows = rows[:1]
        log.insert(table, rows)
    with RunLog(path, readonly=True) as log:
        back = log.rows(table)
    assert len(back) == len(rows)
    for want, got in zip(rows, back):
        for col, value in want.items():
            assert got[col] == value, (table, col)


def test_json_columns_and_unknown_columns(tmp_path):
    with RunLog(tmp_path / "run.db", create=True) as log:
        log.insert("generations", [{"key": "g", "token_ids": [1, 2, 3], "logprobs": [-0.5, -1.0, -2.0]}])
        assert log.rows("generations")[0]["token_ids"] == [1, 2, 3]
        log.insert("events", [{"kind": "k", "payload": [1, 2]}])
        assert log.rows("events")[0]["payload"] == "[1,2]"
        with pytest.raises(KeyError, match="no column"):
            log.insert("generations", [{"key": "h", "tokens": [1]}])
        with pytest.raises(KeyError, match="unknown run-log table"):
            log.insert("nope", [{"a": 1}])


def test_step_commits_rows_with_its_marker_or_nothing(tmp_path):
    with RunLog(tmp_path / "run.db", create=True) as log:
        with log.step(1, "questioner", 0):
            log.insert("metrics", [{"iteration": 1, "phase": "questioner", "step": 0, "name": "a", "value": 1.0}])
        with pytest.raises(RuntimeError):
            with log.step(1, "questioner", 1):
                log.insert("metrics", [{"iteration": 1, "phase": "questioner", "step": 1, "name": "a",
                                        "value": 2.0}])
                raise RuntimeError("crash inside a step")
        assert log.done_steps() == {(1, "questioner", 0)}
        assert [r["step"] for r in log.rows("metrics")] == [0]


def test_plugin_tables(tmp_path):
    with RunLog(tmp_path / "run.db", create=True) as log:
        log.declare_table("gold_truth", {"image_id": str, "answer": str}, pk="image_id")
        log.insert("gold_truth", [{"image_id": "a", "answer": "4"}])
        assert log.rows("gold_truth") == [{"image_id": "a", "answer": "4"}]
        with pytest.raises(ValueError):
            log.declare_table("runs", {"x": int})


def test_killed_mid_transaction_leaves_a_consistent_database(tmp_path):
    path = tmp_path / "run.db"
    RunLog(path, create=True).close()
    script = textwrap.dedent(f"""
        import sys, time
        from visplay.log.runlog import RunLog
        log = RunLog({str(path)!r})
        with log.step(1, "questioner", 0):
            log.insert("metrics", [dict(iteration=1, phase="questioner", step=0, name="done", value=1.0)])
        with log.step(1, "questioner", 1):
            log.insert("metrics", [dict(iteration=1, phase="questioner", step=1, name=f"m{{i}}", value=float(i))
                                   for i in range(1000)])
            print("inside", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "inside"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with RunLog(path) as log:
        assert log.integrity_ok()
        assert log.done_steps() == {(1, "questioner", 0)}
        assert log.count("metrics") == 1


def test_refuses_non_sqlite_truncated_and_newer_schema(tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("hello, not a database")
    with pytest.raises(RunLogError, match="not an SQLite database"):
        RunLog(text)
    assert text.read_text() == "hello, not a database"

    good = tmp_path / "good.db"
    with RunLog(good, create=True) as log:
        log.insert("metrics", [sample_row("metrics", i) for i in range(200)])
    truncated = tmp_path / "truncated.db"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    before = truncated.read_bytes()
    with pytest.raises(RunLogError):
        log = RunLog(truncated)
        log.rows("metrics")
    assert truncated.read_bytes() == before

    newer = tmp_path / "newer.db"
    RunLog(newer, create=True).close()
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    stamp = newer.stat().st_mtime_ns
    time.sleep(0.01)
    with pytest.raises(RunLogError, match="newer"):
        RunLog(newer)
    assert newer.stat().st_mtime_ns == stamp

    with pytest.raises(RunLogError, match="no such run log"):
        RunLog(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_events_and_run_row(tmp_path):
    with RunLog(tmp_path / "run.db", create=True) as log:
        log.set_run(run_id="r1", name="tiny", status="running", seed=0)
        log.set_run(status="finished")
        assert log.run()["status"] == "finished" and log.run()["name"] == "tiny"
        log.event("image_skipped", "bad.png: truncated", payload={"path": "bad.png"})
        [event] = log.rows("events")
        assert event["kind"] == "image_skipped" and '"path":"bad.png"' in event["payload"]
