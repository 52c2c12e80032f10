"""The run log's schema: the core tables' columns, what SQLite's types cannot say about them, the browsing layer
(foreign keys, indexes, views) and the numbered migrations that build and upgrade it (``PRAGMA user_version``).

visplay.log.runlog applies them (``RunLog._migrate``) and re-exports every name here; docs/runlog.md documents the
tables, visplay/log/schema_docs.py their columns.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlite_utils

from visplay.log import arrays

SCHEMA_VERSION = 6

# Columns of the core tables, in order. ``pk`` is the primary key; tables without one are append-only.
# Keys are deterministic strings (see docs/runlog.md), so two runs of the same recipe can be compared row by row.
TABLES: dict[str, dict[str, Any]] = {
    "runs": {
        "columns": {
            "run_id": str, "name": str, "status": str, "created_at": float, "finished_at": float,
            "seed": int, "variant": str, "recipe_yaml": str, "recipe_sha256": str, "visplay_version": str,
            "git_commit": str, "python": str, "platform": str, "torch": str, "transformers": str,
            "vllm": str, "device": str,
        },
        "pk": "run_id",
    },
    "plugins": {
        "columns": {"position": int, "name": str, "distribution": str, "version": str, "hooks": str},
        "pk": "position",
    },
    "images": {
        "columns": {"image_id": str, "source": str, "width": int, "height": int, "png": bytes, "meta": str},
        "pk": "image_id",
    },
    "generations": {
        "columns": {
            "key": str, "iteration": int, "phase": str, "step": int, "role": str, "kind": str, "image_id": str,
            "parent_key": str, "sample_index": int, "seed": int, "prompt": str, "text": str,
            "token_ids": bytes, "logprobs": bytes, "finish_reason": str, "digest": str,
        },
        "pk": "key",
    },
    "prompts": {
        "columns": {"prompt": str, "system": str, "user": str},
        "pk": "prompt",
    },
    "questions": {
        "columns": {
            "key": str, "iteration": int, "phase": str, "step": int, "image_id": str, "grp": str, "valid": int,
            "qtype": str, "question": str, "stated_answer": str, "parse_reason": str,
        },
        "pk": "key",
    },
    "labels": {
        "columns": {
            "question_key": str, "iteration": int, "phase": str, "m": int, "answers": str, "answer_keys": str,
            "silver_label": str, "silver_key": str, "confidence": float,
        },
        "pk": "question_key",
    },
    "filters": {
        "columns": {"question_key": str, "iteration": int, "keep": int, "reason": str, "producer": str},
        "pk": "question_key",
    },
    "answers": {
        "columns": {
            "key": str, "question_key": str, "iteration": int, "phase": str, "step": int, "grp": str,
            "extracted": str, "answer_key": str, "silver_key": str,
        },
        "pk": "key",
    },
    "rewards": {
        "columns": {"key": str, "component": str, "iteration": int, "role": str, "step": int, "value": float,
                    "producer": str},
        "pk": ("key", "component"),
    },
    "advantages": {
        "columns": {"key": str, "iteration": int, "role": str, "step": int, "grp": str, "reward": float,
                    "advantage": float},
        "pk": "key",
    },
    "dropped_groups": {  # added by _migrate_6
        "columns": {"grp": str, "iteration": int, "role": str, "step": int, "rollouts": int, "reward": float,
                    "producer": str},
        "pk": "grp",
    },
    "metrics": {
        "columns": {"iteration": int, "phase": str, "step": int, "name": str, "value": float},
        "pk": ("iteration", "phase", "step", "name"),
    },
    "checkpoints": {
        "columns": {"name": str, "iteration": int, "role": str, "step": int, "path": str, "files": str},
        "pk": "name",
    },
    "steps": {
        "columns": {"iteration": int, "phase": str, "step": int, "committed_at": float},
        "pk": ("iteration", "phase", "step"),
    },
    "events": {
        "columns": {"id": int, "iteration": int, "phase": str, "step": int, "level": str, "kind": str,
                    "source": str, "message": str, "payload": str},
        "pk": "id",
    },
}

# Columns added by a later migration than the first (so _migrate_1 keeps creating the schema of version 1); they
# are NULL in rows written before, and comparisons skip them where one side has no value.
ADDED_LATER = {("rewards", "producer"), ("filters", "producer"), ("generations", "digest")}

# What a ``generations`` row looks like to writers and readers: prompts as text, arrays as lists. On disk the
# prompt is a reference into ``prompts`` and the arrays are BLOBs (visplay.log.arrays); RunLog converts both ways,
# and reads run logs of schema 1 (prompt text and JSON arrays in the row) the same way.
GENERATION_COLUMNS = ("key", "iteration", "phase", "step", "role", "kind", "image_id", "parent_key", "sample_index",
                      "seed", "prompt_system", "prompt_user", "text", "token_ids", "logprobs", "finish_reason",
                      "digest")
# Schema 1's ``generations`` columns (what _migrate_1 creates; _migrate_3 converts them).
_V1_GENERATIONS = {c: int if c in ("iteration", "step", "sample_index", "seed") else str for c in GENERATION_COLUMNS
                   if ("generations", c) not in ADDED_LATER}

# Columns that differ between otherwise identical runs (wall-clock times); comparisons skip them.
VOLATILE_COLUMNS = {"created_at", "finished_at", "committed_at"}

# What SQLite's column types cannot say, by (table or view, column): INTEGER columns that hold booleans (0/1), REAL
# columns that hold unix times, TEXT columns that hold JSON, and the types of view columns computed by an expression
# (SQLite declares none). Exporters declare their files' schema from these (visplay.log.export), so two runs'
# files have the same types whatever their rows hold. Kinds: integer, real, text, blob, bool, time, json, and the
# decoded arrays of ``generations``: ids (int32 values), floats (log-probs).
COLUMN_KINDS: dict[tuple[str, str], str] = {
    ("questions", "valid"): "bool", ("filters", "keep"): "bool",
    ("runs", "created_at"): "time", ("runs", "finished_at"): "time", ("steps", "committed_at"): "time",
    ("plugins", "hooks"): "json", ("images", "meta"): "json", ("labels", "answers"): "json",
    ("labels", "answer_keys"): "json", ("checkpoints", "files"): "json", ("events", "payload"): "json",
    ("generations", "token_ids"): "ids", ("generations", "logprobs"): "floats",
    ("generations_json", "token_ids"): "json", ("generations_json", "logprobs"): "json",
    ("generations_json", "tokens"): "integer",
    ("question_outcomes", "valid"): "bool", ("question_outcomes", "keep"): "bool",
    ("question_outcomes", "votes"): "json", ("question_votes", "agrees"): "bool",
}


def _affinity_kind(declared: str) -> str:
    """The kind of a column from its declared SQLite type, by SQLite's own affinity rules (sqlite.org/datatype3:
    INT -> integer; CHAR, CLOB, TEXT -> text; BLOB or none -> blob; REAL, FLOA, DOUB -> real; else numeric)."""
    declared = declared.upper()
    if "INT" in declared:
        return "integer"
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if "BLOB" in declared or not declared:
        return "blob"
    return "real"


def _migrate_1(db: sqlite_utils.Database) -> None:
    for name, spec in TABLES.items():
        if name in ("prompts", "dropped_groups"):  # added by _migrate_3, _migrate_6
            continue
        columns = _V1_GENERATIONS if name == "generations" else {c: t for c, t in spec["columns"].items()
                                                                  if (name, c) not in ADDED_LATER}
        db[name].create(columns, pk=spec["pk"], not_null=None)
    db["generations"].create_index(["iteration", "phase", "step"])
    db["questions"].create_index(["iteration", "phase"])
    db["answers"].create_index(["question_key"])
    db["events"].create_index(["kind"])


def _migrate_2(db: sqlite_utils.Database) -> None:
    """The plugin that produced each reward component and filter decision (NULL in logs written before)."""
    for table in ("rewards", "filters"):
        if "producer" not in db[table].columns_dict:
            db[table].add_column("producer", str)


def prompt_ref(system: str | None, user: str | None) -> str:
    """The ``prompts`` key of a (system, user) prompt: 128 bits of sha256 over both texts, as hex."""
    return hashlib.sha256(json.dumps([system, user]).encode()).hexdigest()[:32]


def _encode_generation(row: dict[str, Any], prompts: dict[str, tuple[str | None, str | None]]) -> dict[str, Any]:
    """A writer's generation row (prompt text, lists) -> the stored row (prompt reference, BLOBs)."""
    unknown = set(row) - set(GENERATION_COLUMNS)
    if unknown:
        raise KeyError(f"table 'generations' has no column(s) {sorted(unknown)}")
    stored = {c: row.get(c) for c in GENERATION_COLUMNS if c not in ("prompt_system", "prompt_user")}
    system, user = row.get("prompt_system"), row.get("prompt_user")
    stored["prompt"] = None if system is None and user is None else prompt_ref(system, user)
    if stored["prompt"] is not None:
        prompts[stored["prompt"]] = (system, user)
    for column, encode in (("token_ids", arrays.encode_ids), ("logprobs", arrays.encode_floats)):
        value = stored[column]
        if isinstance(value, str):  # JSON text, as schema-1 rows and old callers hold it
            value = json.loads(value)
        if not isinstance(value, (bytes, type(None))):
            try:
                value = encode(value)
            except ValueError as exc:
                raise ValueError(f"generations[{row.get('key')}].{column}: {exc}") from exc
        stored[column] = value
    return stored


def _migrate_3(db: sqlite_utils.Database) -> None:
    """Schema 2 -> 3: prompts stored once in ``prompts``; token ids and log-probs as BLOBs (visplay.log.arrays).

    The rows are converted in place, in batches; the values do not change (log-probs that are not float32 values
    are kept as float64), so a converted log replays and diffs exactly as before.
    """
    db["prompts"].create(TABLES["prompts"]["columns"], pk="prompt", not_null=None)
    db.execute("ALTER TABLE generations RENAME TO generations_v1")
    # the schema-3 shape: columns added by later migrations (ADDED_LATER) come with those
    columns = [c for c in TABLES["generations"]["columns"] if ("generations", c) not in ADDED_LATER]
    db["generations"].create({c: TABLES["generations"]["columns"][c] for c in columns}, pk="key", not_null=None)
    insert = f"INSERT INTO generations ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    cursor = db.execute("SELECT * FROM generations_v1 ORDER BY key")
    names = [d[0] for d in cursor.description]
    while batch := cursor.fetchmany(2000):
        prompts: dict[str, tuple[str | None, str | None]] = {}
        rows = [_encode_generation(dict(zip(names, values)), prompts) for values in batch]
        db.conn.executemany("INSERT OR IGNORE INTO prompts (prompt, system, user) VALUES (?, ?, ?)",
                            [(k, *v) for k, v in prompts.items()])
        db.conn.executemany(insert, [[row[c] for c in columns] for row in rows])
    db.execute("DROP TABLE generations_v1")
    db["generations"].create_index(["iteration", "phase", "step"])


def _create_views(db: sqlite_utils.Database) -> None:
    # Needs the vp_* functions (registered by RunLog and by the datasette plugin); see docs/runlog.md.
    db.execute("""
        CREATE VIEW IF NOT EXISTS generations_json AS
        SELECT g.key, g.iteration, g.phase, g.step, g.role, g.kind, g.image_id, g.parent_key, g.sample_index, g.seed,
               p.system AS prompt_system, p.user AS prompt_user, g.text, vp_json(g.token_ids) AS token_ids,
               vp_json(g.logprobs) AS logprobs, vp_len(g.token_ids) AS tokens, g.finish_reason
        FROM generations g LEFT JOIN prompts p ON p.prompt = g.prompt""")


# Declared (not enforced: PRAGMA foreign_keys stays off, so a plugin's row order can never fail a step) links that
# datasette and sqlite-utils follow. rewards/advantages keys point at a question or a rollout, so they have none.
FOREIGN_KEYS = [
    ("generations", "image_id", "images", "image_id"), ("generations", "parent_key", "questions", "key"),
    ("questions", "image_id", "images", "image_id"), ("labels", "question_key", "questions", "key"),
    ("filters", "question_key", "questions", "key"), ("answers", "question_key", "questions", "key"),
]
INDEXES = [
    ("labels", ["iteration"]), ("filters", ["iteration", "keep"]), ("answers", ["iteration", "phase", "step"]),
    ("rewards", ["iteration", "role", "step"]), ("advantages", ["iteration", "role", "step"]),
    ("generations", ["parent_key"]), ("generations", ["image_id"]), ("questions", ["image_id"]),
    ("metrics", ["name"]),
]
# Views join a question with everything decided about it (docs: visplay/log/schema_docs.py VIEW_DOCS).
VIEWS = {
    "question_outcomes": """
        select q.key, q.iteration, q.phase, q.step, q.image_id, q.valid, q.qtype, q.question, q.parse_reason,
               l.m, l.answers as votes, l.silver_label, l.confidence, f.keep, f.reason as filter_reason,
               r.value as reward
        from questions q
        left join labels l on l.question_key = q.key
        left join filters f on f.question_key = q.key
        left join rewards r on r.key = q.key and r.component = 'total' and r.role = 'questioner'""",
    "question_votes": """
        select a.key as vote_key, a.question_key, a.iteration, a.phase, q.question, a.extracted, a.answer_key,
               a.silver_key, a.answer_key is not null and a.answer_key = a.silver_key as agrees, g.text
        from answers a
        join generations g on g.key = a.key and g.kind = 'vote'
        left join questions q on q.key = a.question_key""",
    "reasoner_rollouts": """
        select a.key, a.iteration, a.step, a.question_key, q.question, l.silver_label, a.extracted,
               r.value as reward, v.advantage, g.text
        from answers a
        join generations g on g.key = a.key and g.kind = 'rollout'
        left join questions q on q.key = a.question_key
        left join labels l on l.question_key = a.question_key
        left join rewards r on r.key = a.key and r.component = 'total' and r.role = 'reasoner'
        left join advantages v on v.key = a.key""",
}


def _migrate_4(db: sqlite_utils.Database) -> None:
    """Foreign keys (tables rebuilt by sqlite-utils' transform, rows kept), indexes and views for browsing; the
    views come last, once every table has its final shape."""
    by_table: dict[str, list[tuple[str, str, str]]] = {}
    for table, column, other, other_column in FOREIGN_KEYS:
        by_table.setdefault(table, []).append((column, other, other_column))
    for table, fks in by_table.items():
        db[table].transform(add_foreign_keys=fks)
    for table, columns in INDEXES:
        db[table].create_index(columns, if_not_exists=True)
    for name, sql in VIEWS.items():
        db.create_view(name, " ".join(sql.split()), replace=True)
    _create_views(db)


# Tables every schema version since 1 has had; an older log is checked for these before it is migrated.
CORE_TABLES = ("runs", "steps", "checkpoints", "generations", "metrics", "images")


def _run_log_problem(version: int, tables: dict[str, set[str]]) -> str | None:
    """Why a database with this user_version and these {table: columns} is not a usable run log (None: it is)."""
    if version == 0:
        user_tables = [t for t in tables if not t.startswith("sqlite_")]
        return f"not a visplay run log (user_version 0, tables: {', '.join(sorted(user_tables))})" \
            if user_tables else None
    if version > SCHEMA_VERSION:
        return None  # refused with its own message by the schema check
    expected = TABLES if version == SCHEMA_VERSION else {t: {} for t in CORE_TABLES}
    for name, spec in expected.items():
        if name not in tables:
            return f"run log lacks its core table {name!r} (damaged or edited by hand)"
        missing = [c for c in spec.get("columns", {}) if c not in tables[name]]
        if missing:
            return f"run log table {name!r} lacks column(s) {', '.join(missing)} (damaged or edited by hand)"
    return None


def _migrate_5(db: sqlite_utils.Database) -> None:
    """``generations.digest``: sha256 of a generation's text and token ids, so a replay notices an edited text
    (NULL in logs written before; those are served unchecked)."""
    if "digest" not in db["generations"].columns_dict:
        db["generations"].add_column("digest", str)


def _migrate_6(db: sqlite_utils.Database) -> None:
    """``dropped_groups``: the groups an optimizer left out of its update (DAPO's dynamic sampling), one row each;
    empty in logs written before and in runs without it."""
    if not db["dropped_groups"].exists():
        spec = TABLES["dropped_groups"]
        db["dropped_groups"].create(spec["columns"], pk=spec["pk"], not_null=None)
        db["dropped_groups"].create_index(["iteration", "role", "step"])


# MIGRATIONS[i] upgrades user_version i -> i + 1
MIGRATIONS = [_migrate_1, _migrate_2, _migrate_3, _migrate_4, _migrate_5, _migrate_6]
