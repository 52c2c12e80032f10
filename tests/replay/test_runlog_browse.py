"""A log people can browse: foreign keys, indexes and views on a finished run, datasette reading a view, export
round trips, and docs/runlog.md agreeing with the schema."""

from __future__ import annotations

import asyncio
import csv
import json
import re
import sqlite3
from pathlib import Path

import pytest

from visplay.cli import main
from visplay.log.export import ExportError, export_run
from visplay.log.runlog import RunLog
from visplay.log.schema_docs import TABLE_DOCS, VIEW_DOCS, datasette_metadata, markdown_tables

engine_fixtures = pytest.importorskip("support.engine")
engine = pytest.importorskip("visplay.loop.engine")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("browse") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
        return engine.run_recipe(engine_fixtures.standin_recipe(run_dir), quiet=True,
                                 extra_plugins=engine_fixtures.standin_plugins())


def test_foreign_keys_hold_on_a_finished_run(finished_run):
    conn = sqlite3.connect(finished_run)
    fks = {(t, r[3], r[2], r[4]) for t in ("generations", "questions", "labels", "filters", "answers")
           for r in conn.execute(f"pragma foreign_key_list({t})")}
    assert ("labels", "question_key", "questions", "key") in fks
    assert ("generations", "image_id", "images", "image_id") in fks
    assert conn.execute("pragma foreign_key_check").fetchall() == []  # every declared link resolves
    indexes = {r[1] for r in conn.execute("select * from sqlite_master where type = 'index'")}
    assert {"idx_filters_iteration_keep", "idx_rewards_iteration_role_step", "idx_generations_parent_key"} <= indexes


def test_views_join_questions_with_their_outcomes(finished_run):
    with RunLog(finished_run, readonly=True) as log:
        outcomes = {r["key"]: r for r in log.view_rows("question_outcomes")}
        labels = {r["question_key"]: r for r in log.rows("labels")}
        filters = {r["question_key"]: r for r in log.rows("filters")}
        totals = {r["key"]: r["value"] for r in log.rows("rewards", "component = 'total' and role = 'questioner'")}
        assert len(outcomes) == log.count("questions")
        votes = log.view_rows("question_votes")
        rollouts = log.view_rows("reasoner_rollouts")
        assert len(votes) == log.count("generations", "kind = 'vote'")
        assert len(rollouts) == log.count("generations", "kind = 'rollout'") > 0
    for key, label in labels.items():
        assert outcomes[key]["silver_label"] == label["silver_label"]
        assert outcomes[key]["confidence"] == label["confidence"]
    for key, f in filters.items():
        assert (outcomes[key]["keep"], outcomes[key]["filter_reason"]) == (f["keep"], f["reason"])
    for key, total in totals.items():
        assert outcomes[key]["reward"] == total
    for v in votes:
        assert v["agrees"] == int(v["answer_key"] is not None and v["answer_key"] == v["silver_key"])


def test_datasette_serves_a_view(finished_run):
    datasette_app = pytest.importorskip("datasette.app")
    metadata = json.loads((finished_run.parent / "datasette.json").read_text())
    assert metadata == datasette_metadata("run")

    async def fetch():
        ds = datasette_app.Datasette([str(finished_run)], metadata=metadata)
        view = await ds.client.get("/run/question_outcomes.json?_shape=objects&_size=max")
        table = await ds.client.get("/run/labels.json?_shape=objects&_size=max")
        return view.json(), table.json()

    view, table = asyncio.run(fetch())
    with RunLog(finished_run, readonly=True) as log:
        expected = log.view_rows("question_outcomes")
    assert len(view["rows"]) == len(expected) > 0
    assert {r["key"]: r["silver_label"] for r in view["rows"]} == {r["key"]: r["silver_label"] for r in expected}
    assert len(table["rows"]) > 0


def test_export_round_trips(finished_run, tmp_path):
    import pyarrow.parquet as pq

    written = export_run(finished_run, tmp_path / "pq", "parquet")
    with RunLog(finished_run, readonly=True) as log:
        assert set(written) == set(log.tables()) | set(log.views())
        for table in ("questions", "labels", "metrics", "images"):
            assert pq.read_table(written[table]).to_pylist() == log.rows(table), table
        assert pq.read_table(written["question_outcomes"]).to_pylist() == log.view_rows("question_outcomes")
        metrics = log.rows("metrics")
    assert main(["export", str(finished_run.parent), "--format", "csv", "--tables", "metrics",
                 "--out", str(tmp_path / "csv")]) == 0
    with (tmp_path / "csv" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["iteration"]), r["phase"], int(r["step"]), r["name"], float(r["value"])) for r in rows] == \
        [(m["iteration"], m["phase"], m["step"], m["name"], m["value"]) for m in metrics]
    with pytest.raises(ExportError, match="no table or view named 'metric'.*did you mean 'metrics'"):
        export_run(finished_run, tmp_path / "x", "csv", ["metric"])


def test_runlog_doc_matches_the_schema(finished_run):
    page = (ROOT / "docs" / "runlog.md").read_text()
    block = re.search(r"<!-- tables:start -->\n(.*?)<!-- tables:end -->", page, re.S).group(1)
    assert block.strip() == markdown_tables().strip()  # regenerate: python -m visplay.log.schema_docs
    with RunLog(finished_run, readonly=True) as log:
        core = [t for t in log.tables() if t in TABLE_DOCS]
        assert set(TABLE_DOCS) == set(core)
        for table, (_, columns) in TABLE_DOCS.items():
            assert list(columns) == log.columns(table), table
        assert set(VIEW_DOCS) == set(log.views())
        for view, (_, columns) in VIEW_DOCS.items():
            assert list(columns) == log.columns(view), view


def test_an_old_log_gains_keys_and_views(tmp_path):
    from visplay.log import schema as runlog_module  # the migrations live there (runlog applies them)

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    runlog_module._migrate_1(db)
    db["questions"].insert({"key": "i1/reasoner_set/s0/p0/g0", "iteration": 1, "valid": 1, "question": "q?"})
    db["labels"].insert({"question_key": "i1/reasoner_set/s0/p0/g0", "iteration": 1, "silver_label": "2",
                         "confidence": 0.6})
    db.execute("pragma user_version = 1")
    conn.close()
    with RunLog(path) as log:
        assert log.schema_version == runlog_module.SCHEMA_VERSION
        rows = log.view_rows("question_outcomes")
    assert [(r["key"], r["silver_label"], r["confidence"]) for r in rows] == [("i1/reasoner_set/s0/p0/g0", "2", 0.6)]
