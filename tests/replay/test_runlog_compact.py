"""The compact run log (issue 14): binary arrays, prompts stored once, optional vote log-probs, SQL functions, and
schema-1 (JSON) logs that still open, migrate, diff and replay."""

from __future__ import annotations

import json
import math
import sqlite3
import struct

import pytest
import sqlite_utils
from support.replay import EveryTextIsAQuestion, make_run

from visplay.log import arrays
from visplay.log.diff import diff_runs
from visplay.log.runlog import _V1_GENERATIONS, MIGRATIONS, SCHEMA_VERSION, RunLog, prompt_ref
from visplay.loop.replay import format_report, replay_run

# --- the array format ----------------------------------------------------------------------------------------


def test_ids_are_int32_little_endian_with_a_type_byte():
    blob = arrays.encode_ids([1, 151935, -2])
    assert blob == b"i" + struct.pack("<3i", 1, 151935, -2)
    assert arrays.decode(blob) == [1, 151935, -2]
    with pytest.raises(ValueError, match="token id 2147483648 does not fit int32"):
        arrays.encode_ids([5, 2**31])


def test_float32_logprobs_take_four_bytes_and_come_back_bit_for_bit():
    values = [struct.unpack("<f", struct.pack("<f", x))[0] for x in (-0.1, -12.5, -1e-7)] + [-0.0, 0.0]
    blob = arrays.encode_floats(values)
    assert blob[:1] == b"f" and len(blob) == 1 + 4 * len(values)
    back = arrays.decode(blob)
    assert [struct.pack("<d", x) for x in back] == [struct.pack("<d", x) for x in values]  # -0.0 stays -0.0


def test_floats_that_are_not_float32_fall_back_to_float64():
    values = [-1.0 / 3, -0.5]
    blob = arrays.encode_floats(values)
    assert blob[:1] == b"d" and arrays.decode(blob) == values
    nan = arrays.decode(arrays.encode_floats([float("nan")]))
    assert math.isnan(nan[0])


def test_decode_accepts_legacy_json_and_rejects_unknown_codes():
    assert arrays.decode("[1,2,3]") == [1, 2, 3]
    assert arrays.decode(None) is None
    with pytest.raises(ValueError, match="unknown array type code 'x'"):
        arrays.decode(b"x\x00\x00\x00\x00")


# --- the generations table -------------------------------------------------------------------------------------


def _gen(k: int, *, prompt: int = 0, kind: str = "vote", logprobs: list | None = None) -> dict:
    ids = list(range(k, k + 300))
    return {"key": f"i1/questioner/s0/p0/g0/v{k}", "iteration": 1, "phase": "questioner", "step": 0,
            "role": "reasoner", "kind": kind, "image_id": "img", "parent_key": "i1/questioner/s0/p0/g0",
            "sample_index": k, "seed": 11, "prompt_system": "system text " * 20, "prompt_user": f"question {prompt}",
            "text": f"answer {k}", "token_ids": ids,
            "logprobs": logprobs if logprobs is not None else [-(t % 7) / 8 for t in ids], "finish_reason": "stop"}


def test_generations_store_prompts_once_and_arrays_at_8_bytes_per_token(tmp_path):
    with RunLog(tmp_path / "run.db", create=True) as log:
        rows = [_gen(k, prompt=k % 2) for k in range(10)]
        log.insert("generations", rows)
        assert log.count("prompts") == 2  # ten rows, two distinct prompts
        stored = log.db.execute("select prompt, length(token_ids), length(logprobs) from generations").fetchall()
        assert {s[0] for s in stored} == {prompt_ref(rows[0]["prompt_system"], f"question {p}") for p in (0, 1)}
        assert all(ids == 1 + 4 * 300 and lps == 1 + 4 * 300 for _, ids, lps in stored)  # 8 bytes/token + 2
        back = log.rows("generations")
    assert [{k: v for k, v in r.items() if k != "digest"} for r in back] == sorted(rows, key=lambda r: r["key"])
    assert {r["digest"] for r in back} == {None}  # written by hand without one (the engine's rows carry it)


def test_sql_functions_and_the_decoded_view(tmp_path):
    path = tmp_path / "run.db"
    with RunLog(path, create=True) as log:
        log.insert("generations", [_gen(3)])
        row = log.db.execute("select vp_json(token_ids), vp_len(logprobs), vp_at(token_ids, -1), vp_sum(logprobs), "
                             "prompt_user from generations_json").fetchone()
    want = _gen(3)
    assert json.loads(row[0]) == want["token_ids"]
    assert row[1] == 300 and row[2] == want["token_ids"][-1]
    assert row[3] == float(sum(want["logprobs"]))
    assert row[4] == "question 0"
    conn = sqlite3.connect(path)  # a plain connection (the sqlite3 shell) sees BLOBs, not the functions
    try:
        blob = conn.execute("select token_ids from generations").fetchone()[0]
        assert blob[:1] == b"i" and struct.unpack_from("<i", blob, 1)[0] == want["token_ids"][0]
        with pytest.raises(sqlite3.OperationalError, match="vp_json"):
            conn.execute("select * from generations_json").fetchall()
    finally:
        conn.close()


def test_vote_logprobs_follow_the_recipe_switch(tmp_path):
    db_off = make_run(tmp_path / "off")
    with RunLog(db_off, readonly=True) as log:
        votes = log.rows("generations", "kind = 'vote'")
        trained = log.rows("generations", "kind != 'vote'")
    assert votes and all(v["logprobs"] is None and v["token_ids"] for v in votes)
    assert trained and all(len(g["logprobs"]) == len(g["token_ids"]) > 0 for g in trained)
    report = replay_run(db_off, extra_plugins=(EveryTextIsAQuestion(),))
    assert report.ok, format_report(report)  # replay needs no vote log-probs
    db_on = make_run(tmp_path / "on", "log.vote_logprobs=true")
    with RunLog(db_on, readonly=True) as log:
        assert all(len(v["logprobs"]) == len(v["token_ids"]) for v in log.rows("generations", "kind = 'vote'"))
    assert diff_runs(db_off, db_on, tables=("generations", "rewards", "advantages", "checkpoints")).equal


# --- schema-1 (JSON) logs ------------------------------------------------------------------------------------------


def downgrade_to_schema_1(src, dst):
    """Rewrite a run log as schema 1 wrote it: prompts inline and arrays as JSON text (raw SQL, test only)."""
    dst.write_bytes(src.read_bytes())
    with RunLog(src, readonly=True) as log:
        rows = log.rows("generations")
    db = sqlite_utils.Database(sqlite3.connect(dst))
    db.execute("drop view generations_json")
    db["generations"].drop()
    db["prompts"].drop()
    db["generations"].create(_V1_GENERATIONS, pk="key")
    db["generations"].insert_all([{**{k: v for k, v in r.items() if k != "digest"},  # schema 5 (issue 17)
                                   "token_ids": json.dumps(r["token_ids"], separators=(",", ":")),
                                   "logprobs": None if r["logprobs"] is None
                                   else json.dumps(r["logprobs"], separators=(",", ":"))} for r in rows])
    db.execute("PRAGMA user_version = 1")
    db.conn.commit()
    db.close()
    return dst


def test_schema_1_log_opens_migrates_diffs_and_replays(tmp_path):
    db = make_run(tmp_path / "run", "log.vote_logprobs=true")
    (tmp_path / "old").mkdir()
    old = downgrade_to_schema_1(db, tmp_path / "old" / "run.db")
    with RunLog(old, readonly=True) as log:  # read as it is: nothing migrated
        assert log.schema_version == 1
        assert isinstance(log.db.execute("select token_ids from generations").fetchone()[0], str)
        legacy_rows = log.rows("generations")
    with RunLog(db, readonly=True) as log:  # (schema 1 had no generations.digest: compared without it)
        assert legacy_rows == [{**r, "digest": None} for r in log.rows("generations")]
    assert diff_runs(old, db).equal  # decoded values compared, bit for bit
    report = replay_run(old, extra_plugins=(EveryTextIsAQuestion(),))
    assert report.ok, format_report(report)
    migrated = tmp_path / "migrated.db"
    migrated.write_bytes(old.read_bytes())
    with RunLog(migrated) as log:  # a writable open upgrades it
        assert log.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
        assert log.db.execute("select token_ids from generations").fetchone()[0][:1] == b"i"
        assert log.rows("generations") == legacy_rows
        assert log.integrity_ok()
    assert diff_runs(old, migrated).equal


def test_diff_names_the_first_differing_log_prob_of_binary_rows(tmp_path):
    rows = [_gen(k, kind="rollout") for k in range(3)]
    changed = [dict(r) for r in rows]
    changed[1] = {**rows[1], "logprobs": [*rows[1]["logprobs"][:7], -9.0, *rows[1]["logprobs"][8:]]}
    for name, data in (("a.db", rows), ("b.db", changed)):
        with RunLog(tmp_path / name, create=True) as log:
            log.insert("generations", data)
    result = diff_runs(tmp_path / "a.db", tmp_path / "b.db", tables=("generations",))
    assert result.tables["generations"].differing == 1
    assert result.first.describe().startswith(f"generations[{rows[1]['key']}].logprobs[7]: a=")
    assert diff_runs(tmp_path / "a.db", tmp_path / "b.db", tables=("generations",), tolerance=10.0).equal


def test_diff_with_a_tolerance_names_the_element_outside_it(tmp_path):
    """The first element off in its last bit is not the divergence when a tolerance was given: the one beyond it
    is (the 2-rank FSDP test named logprobs[0], 2.4e-7 apart, for a cell that differed elsewhere)."""
    rows = [_gen(k, kind="rollout") for k in range(2)]
    lp = list(rows[1]["logprobs"])
    lp[2] += 1e-9  # within the tolerance
    lp[5] -= 0.5  # outside it
    changed = [rows[0], {**rows[1], "logprobs": lp}]
    for name, data in (("a.db", rows), ("b.db", changed)):
        with RunLog(tmp_path / name, create=True) as log:
            log.insert("generations", data)
    key = rows[1]["key"]
    loose = diff_runs(tmp_path / "a.db", tmp_path / "b.db", tables=("generations",), tolerance=1e-6)
    assert loose.first.describe().startswith(f"generations[{key}].logprobs[5]: a=")
    exact = diff_runs(tmp_path / "a.db", tmp_path / "b.db", tables=("generations",))
    assert exact.first.describe().startswith(f"generations[{key}].logprobs[2]: a=")


def test_datasette_plugin_decodes_the_arrays(tmp_path):
    """Runs where datasette is installed (it is not a dependency): the entry point registers the vp_* functions."""
    pytest.importorskip("datasette")
    import asyncio

    from datasette.app import Datasette

    with RunLog(tmp_path / "run.db", create=True) as log:
        log.insert("generations", [_gen(2)])

    async def query() -> list:
        ds = Datasette([str(tmp_path / "run.db")])
        response = await ds.client.get("/run.json?sql=select+tokens,+token_ids+from+generations_json&_shape=array")
        return response.json()

    [row] = asyncio.run(query())
    assert row["tokens"] == 300 and json.loads(row["token_ids"]) == _gen(2)["token_ids"]
