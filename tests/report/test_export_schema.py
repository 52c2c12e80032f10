"""``visplay export --format parquet`` declares each file's schema from the run log's column types: a run whose
columns are all NULL exports the same Parquet schema as one where they are filled, booleans are bool, times are
timestamps, token ids and log-probs are lists; rows stream in batches; CSV keeps its cells."""

from __future__ import annotations

import csv
import datetime
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from visplay.log import export as export_module
from visplay.log.export import ExportError, export_run
from visplay.log.runlog import RunLog

KEY = "i1/questioner/s0/p0/g0"


def _generation(n: int, filled: bool) -> dict:
    return {"key": f"{KEY}/v{n}", "iteration": 1, "phase": "questioner", "step": 0, "role": "reasoner",
            "kind": "vote", "image_id": "img" if filled else None, "parent_key": KEY if filled else None,
            "sample_index": n, "seed": 7 + n, "prompt_system": "sys" if filled else None,
            "prompt_user": f"user {n % 2}" if filled else None, "text": f"answer {n}",
            "token_ids": [n, 2**31 - 1, 5][: 1 + n % 3], "logprobs": [-0.5, -0.1, 0.1][: 1 + n % 3] if filled else None,
            "finish_reason": "stop" if filled else None, "digest": None}


def _log(path, filled: bool) -> None:
    """A run log written through RunLog: every core table, a plugin table; ``filled=False`` leaves every optional
    column NULL (what a run that never reached them logs)."""
    with RunLog(path, create=True) as log:
        log.set_run(run_id="r", name="tiny", status="finished" if filled else "running", created_at=1.5e9,
                    finished_at=1.5e9 + 61.25 if filled else None, seed=0)
        log.declare_table("gold_truth", {"question_key": str, "gold": str, "correct": int, "score": float},
                          pk="question_key")
        with log.step(1, "questioner", 0):
            log.insert("generations", [_generation(n, filled) for n in range(5)])
            log.insert("questions", [{"key": KEY, "iteration": 1, "phase": "questioner", "step": 0,
                                      "image_id": "img", "grp": "g", "valid": 1 if filled else None,
                                      "qtype": "count" if filled else None, "question": "how many?"}])
            log.insert("labels", [{"question_key": KEY, "iteration": 1, "phase": "questioner", "m": 2,
                                   "answers": ["2", "3"] if filled else None, "confidence": 0.5 if filled else None}])
            log.insert("filters", [{"question_key": KEY, "iteration": 1, "keep": 0 if filled else None,
                                    "reason": "too_easy"}])
            log.insert("gold_truth", [{"question_key": KEY, "gold": "2" if filled else None,
                                       "correct": 1 if filled else None, "score": 0.5 if filled else None}])
            log.event("note", "x", payload={"a": 1} if filled else None)


@pytest.fixture
def two_runs(tmp_path):
    runs = {}
    for name, filled in (("filled", True), ("empty", False)):
        _log(tmp_path / name / "run.db", filled)
        runs[name] = export_run(tmp_path / name, tmp_path / f"{name}_pq", "parquet")
    return runs


def test_all_null_columns_export_the_schema_of_filled_ones(two_runs):
    filled, empty = two_runs["filled"], two_runs["empty"]
    assert set(filled) == set(empty)
    for name in filled:
        a, b = pq.read_schema(filled[name]), pq.read_schema(empty[name])
        assert a.equals(b, check_metadata=True), (name, a, b)
        assert not any(pa.types.is_null(f.type) for f in a), name
    gen = pq.read_schema(filled["generations"])
    assert gen.field("token_ids").type == pa.list_(pa.int32())
    assert gen.field("logprobs").type == pa.list_(pa.float64())
    assert gen.field("finish_reason").type == pa.string()
    assert pq.read_schema(filled["questions"]).field("valid").type == pa.bool_()
    assert pq.read_schema(filled["runs"]).field("finished_at").type == pa.timestamp("us", tz="UTC")
    assert pq.read_schema(filled["question_votes"]).field("agrees").type == pa.bool_()
    gold = pq.read_schema(filled["gold_truth"])
    assert [gold.field(c).type for c in ("gold", "correct", "score")] == [pa.string(), pa.int64(), pa.float64()]
    assert pq.read_schema(filled["labels"]).field("answers").metadata == {b"visplay.json": b"true"}


def test_values_come_back_with_their_types(two_runs, tmp_path):
    with RunLog(tmp_path / "filled" / "run.db", readonly=True) as log:
        generations = log.rows("generations")
    exported = pq.read_table(two_runs["filled"]["generations"]).to_pylist()
    assert exported == generations  # ids, log-probs (float32 values, exact in float64), prompt texts
    assert exported[1]["token_ids"] == [1, 2**31 - 1]
    empty = pq.read_table(two_runs["empty"]["generations"]).to_pylist()
    assert [r["logprobs"] for r in empty] == [None] * 5 and empty[2]["token_ids"] == [2, 2**31 - 1, 5]
    run = pq.read_table(two_runs["filled"]["runs"]).to_pylist()[0]
    start = datetime.datetime(2017, 7, 14, 2, 40, tzinfo=datetime.timezone.utc)
    assert run["created_at"] == start and run["finished_at"] == start + datetime.timedelta(seconds=61.25)
    assert pq.read_table(two_runs["filled"]["filters"]).column("keep").to_pylist() == [False]
    assert json.loads(pq.read_table(two_runs["filled"]["labels"]).column("answers")[0].as_py()) == ["2", "3"]


def test_float64_log_probs_and_schema_1_json_arrays_export_exactly(tmp_path):
    """A log-prob that is not a float32 value is stored as float64 (visplay.log.arrays) and exported unrounded."""
    path = tmp_path / "run" / "run.db"
    with RunLog(path, create=True) as log, log.step(1, "questioner", 0):
        log.insert("generations", [{**_generation(0, True), "logprobs": [-0.1]}])
    table = pq.read_table(export_run(path, tmp_path / "pq", "parquet", ["generations"])["generations"])
    assert table.column("logprobs").to_pylist() == [[-0.1]]


def test_batches_stream_and_stay_in_key_order(tmp_path, monkeypatch):
    path = tmp_path / "run" / "run.db"
    _log(path, True)
    monkeypatch.setattr(export_module, "BATCH_ROWS", 2)  # 5 generations: three batches, three row groups
    written = export_run(path, tmp_path / "pq", "parquet", ["generations"])["generations"]
    assert pq.ParquetFile(written).metadata.num_row_groups == 3
    with RunLog(path, readonly=True) as log:
        assert pq.read_table(written).to_pylist() == log.rows("generations")


def test_a_value_of_the_wrong_type_is_an_error_naming_the_column(tmp_path):
    path = tmp_path / "run" / "run.db"
    _log(path, True)
    with RunLog(path) as log, log.transaction():
        log.insert("gold_truth", [{"question_key": "other", "correct": "yes"}])  # SQLite keeps text as text
    with pytest.raises(ExportError, match=r"gold_truth\.correct is declared integer but holds 'yes'"):
        export_run(path, tmp_path / "pq", "parquet", ["gold_truth"])


def test_csv_cells_are_unchanged(tmp_path):
    path = tmp_path / "run" / "run.db"
    _log(path, True)
    written = export_run(path, tmp_path / "csv", "csv", ["generations", "filters", "runs"])
    with written["generations"].open() as f:
        rows = list(csv.DictReader(f))
    with RunLog(path, readonly=True) as log:
        logged = log.rows("generations")
    assert [json.loads(r["token_ids"]) for r in rows] == [g["token_ids"] for g in logged]
    assert [json.loads(r["logprobs"]) for r in rows] == [g["logprobs"] for g in logged]
    assert [r["prompt_user"] for r in rows] == [g["prompt_user"] for g in logged]
    with written["filters"].open() as f:
        assert next(csv.DictReader(f))["keep"] == "0"
    with written["runs"].open() as f:
        assert float(next(csv.DictReader(f))["finished_at"]) == 1.5e9 + 61.25
