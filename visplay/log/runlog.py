"""The run log: one SQLite database per run (runs/<name>/run.db). The only module in visplay that writes SQL.

Everything needed to explain and replay a run goes here (docs/runlog.md documents every table). Writes belonging to
one engine step happen inside ``RunLog.step(...)``: they commit together with the row in ``steps`` that marks the
step done, so after a crash a step is either wholly in the log or wholly absent, and resume starts at the first
absent step. The database is opened in WAL mode; the schema is created and upgraded by numbered migrations
(``PRAGMA user_version``), and a database from a newer schema is refused, never modified.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from visplay.log import arrays
from visplay.log.errors import RunLogError

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


@dataclass(frozen=True)
class KeptQuestion:
    """A question of the reasoner's training set, read back from the log (so a resumed run trains on the same
    set). ``gold`` is the answer when a plugin supplied the question with a known answer."""

    key: str
    image_id: str
    question: str
    silver_label: str | None
    silver_key: str | None
    gold: str | None = None
    qtype: str | None = None  # the type the question-parsing hook gave it (the reasoner's prompt may use it)


def _whole(column: str) -> str:
    """SQL: the blob after its type code is a whole number of values (8 bytes for 'd', else 4)."""
    return f"(length({column}) - 1) % (CASE substr({column}, 1, 1) WHEN x'64' THEN 8 ELSE 4 END) = 0"


def generation_digest(text: str, token_ids: Iterable[int]) -> str:
    """sha256 over a generation's text and token ids together (``generations.digest``)."""
    payload = json.dumps([text, [int(t) for t in token_ids]], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def _json(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


def _check_is_sqlite(path: Path) -> None:
    if not path.exists():
        raise RunLogError(f"{path}: no such run log")
    if not path.is_file():
        raise RunLogError(f"{path}: not a file")
    with path.open("rb") as f:
        header = f.read(16)
    if header != b"SQLite format 3\x00":
        raise RunLogError(f"{path}: not an SQLite database (bad header); refusing to touch it")


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


def register_functions(conn: sqlite3.Connection) -> None:
    """The array-decoding SQL functions (vp_json, vp_len, vp_at, vp_sum) on a connection."""
    for name, (nargs, function) in arrays.SQL_FUNCTIONS.items():
        conn.create_function(name, nargs, function, deterministic=True)


class RunLog:
    """Open (creating if asked) a run database. Use as a context manager or call ``close``."""

    def __init__(self, path: str | Path, *, create: bool = False, readonly: bool = False):
        self.path = Path(path)
        if create and readonly:
            raise ValueError("create and readonly exclude each other")
        if not create:
            _check_is_sqlite(self.path)
            self._check_schema_readable()
        elif self.path.exists():
            _check_is_sqlite(self.path)
            self._check_schema_readable()  # a newer log is refused before any pragma or DDL touches it
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._check_is_run_log()
        uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        register_functions(conn)
        self.readonly = readonly
        self.db = sqlite_utils.Database(conn)
        if not readonly:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        self._step: tuple[int, str, int] | None = None
        self.on_event: Any = None  # called with each events row as it is written (the terminal's warnings)

    # --- schema ---------------------------------------------------------------------------------------------

    def _check_schema_readable(self) -> None:
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise RunLogError(f"{self.path}: unreadable SQLite database ({exc}); refusing to touch it") from exc
        if version > SCHEMA_VERSION:
            raise RunLogError(
                f"{self.path}: run log schema version {version} is newer than this visplay understands "
                f"({SCHEMA_VERSION}); upgrade visplay to read it. Nothing was modified."
            )

    def _check_is_run_log(self) -> None:
        """Refuse, untouched, a SQLite file that is not a visplay run log or has lost core tables or columns.

        Without this, writing would silently recreate a dropped table (sqlite-utils creates tables on insert) and a
        foreign database would be adopted and migrated. An empty database (no tables, user_version 0) is one a
        killed ``create`` left behind, and is taken.
        """
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {name: {c[1] for c in conn.execute(f"PRAGMA table_info([{name}])")}
                      for (name,) in conn.execute("select name from sqlite_master where type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise RunLogError(f"{self.path}: unreadable SQLite database ({exc}); refusing to touch it") from exc
        finally:
            conn.close()
        problem = _run_log_problem(version, tables)
        if problem:
            raise RunLogError(f"{self.path}: {problem}; refusing to touch it. Nothing was modified.")

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        """Each migration in its own transaction, which takes the write lock before it looks at the version: a
        second process that opened the same older log meanwhile finds it migrated and skips, instead of creating
        a table that exists (sqlite3.OperationalError)."""
        for number in range(self.schema_version, SCHEMA_VERSION):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                with self.db.atomic():
                    version = self.schema_version
                    if version > SCHEMA_VERSION:
                        raise RunLogError(f"{self.path}: run log schema version {version} is newer than this "
                                          f"visplay understands ({SCHEMA_VERSION}); upgrade visplay to read it")
                    if version == number:
                        MIGRATIONS[number](self.db)
                        self.db.execute(f"PRAGMA user_version = {number + 1}")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def declare_table(self, name: str, columns: dict[str, type], pk: str | tuple[str, ...] | None = None) -> None:
        """Create a plugin-owned table if it does not exist (e.g. the games plugin's ``gold_truth``)."""
        if name in TABLES:
            raise ValueError(f"table {name!r} is a core table")
        if not self.db[name].exists():
            self.db[name].create(columns, pk=pk)

    # --- writing --------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, iteration: int, phase: str, step: int) -> Iterator[RunLog]:
        """All writes inside commit together with the ``steps`` row that marks (iteration, phase, step) done."""
        if self._step is not None:
            raise RuntimeError(f"step {self._step} still open")
        self._step = (iteration, phase, step)
        try:
            with self._writing(f"step ({iteration}, {phase}, {step})"), self.db.atomic():
                yield self
                self.db["steps"].insert(
                    {"iteration": iteration, "phase": phase, "step": step, "committed_at": time.time()},
                    pk=("iteration", "phase", "step"),
                )
        finally:
            self._step = None

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """A full disk (or a file-size limit, or an I/O error) while writing becomes a RunLogError naming the file:
        the transaction was rolled back, so the run stays resumable once there is space."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if not any(word in str(exc) for word in ("full", "I/O error")):
                raise
            raise RunLogError(f"{self.path}: cannot write the run log ({exc}); {what} was not committed: free disk "
                              f"space, then `visplay resume {self.path.parent}`") from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[RunLog]:
        """Writes that do not belong to a step (run metadata, images, events)."""
        with self._writing("the transaction"), self.db.atomic():
            yield self

    def insert(self, table: str, rows: Iterable[dict[str, Any]], *, replace: bool = False) -> int:
        """Insert rows (dicts, lists/dicts as JSON). Duplicate keys are an error unless ``replace``.

        ``generations`` rows are given as :data:`GENERATION_COLUMNS` (prompt text, lists) and stored compactly.
        """
        if table == "generations":
            return self._insert_generations(list(rows), replace=replace)
        rows = [{k: _json(v) for k, v in row.items()} for row in rows]
        if not rows:
            return 0
        spec = TABLES.get(table)
        if spec is None and not self.db[table].exists():
            raise KeyError(f"unknown run-log table {table!r}; plugins call declare_table first")
        if spec is not None:
            unknown = set().union(*rows) - set(spec["columns"])
            if unknown:
                raise KeyError(f"table {table!r} has no column(s) {sorted(unknown)}")
        with self.db.atomic():
            self.db[table].insert_all(rows, replace=replace, ignore=False, batch_size=500)
        if table == "events" and self.on_event is not None:
            for row in rows:
                self.on_event(row)
        return len(rows)

    def _insert_generations(self, rows: list[dict[str, Any]], *, replace: bool) -> int:
        """One batched write: new prompts once (``INSERT OR IGNORE``), then every row in one ``executemany``."""
        if not rows:
            return 0
        prompts: dict[str, tuple[str | None, str | None]] = {}
        stored = [_encode_generation(row, prompts) for row in rows]
        columns = list(TABLES["generations"]["columns"])
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        with self.db.atomic():
            self.db.conn.executemany("INSERT OR IGNORE INTO prompts (prompt, system, user) VALUES (?, ?, ?)",
                                     [(k, *v) for k, v in prompts.items()])
            self.db.conn.executemany(
                f"{verb} INTO generations ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                [[row[c] for c in columns] for row in stored])
        return len(stored)

    def upsert_image(self, record: Any, *, store_bytes: bool) -> None:
        """Record an image once, by content hash (ImageRecord from visplay.types).

        A streamed record (plugins/visplay_images) knows its size without decoding; others are asked their image.
        """
        width = getattr(record, "width", None) or record.image.width
        height = getattr(record, "height", None) or record.image.height
        row = {
            "image_id": record.image_id, "source": record.source, "width": width,
            "height": height, "png": record.png if store_bytes else None,
            "meta": json.dumps(record.meta, sort_keys=True, default=str),
        }
        self.db["images"].insert(row, pk="image_id", ignore=True)

    def event(self, kind: str, message: str, *, level: str = "warning", source: str = "visplay",
              iteration: int | None = None, phase: str | None = None, step: int | None = None,
              payload: Any = None) -> None:
        """Record something that happened (a skipped image, a plugin error, a resume...)."""
        if self._step is not None and iteration is None:
            iteration, phase, step = self._step
        row = {"iteration": iteration, "phase": phase, "step": step, "level": level, "kind": kind,
               "source": source, "message": message, "payload": _json(payload)}
        self.db["events"].insert(row, pk="id")
        if self.on_event is not None:
            self.on_event(row)

    def metrics(self, iteration: int, phase: str, step: int, values: dict[str, float]) -> None:
        self.insert("metrics", [
            {"iteration": iteration, "phase": phase, "step": step, "name": k, "value": float(v)}
            for k, v in sorted(values.items())
        ], replace=True)

    def set_run(self, **fields: Any) -> None:
        """Write or update the single ``runs`` row."""
        fields = {k: _json(v) for k, v in fields.items()}
        existing = self.run()
        with self.db.atomic():
            if existing is None:
                self.db["runs"].insert(fields, pk="run_id")
            else:
                self.db["runs"].update(existing["run_id"], fields)

    # --- reading --------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any] | None:
        rows = list(self.db["runs"].rows) if self.db["runs"].exists() else []
        return rows[0] if rows else None

    def rows(self, table: str, where: str | None = None, params: Any = None,
             order_by: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``table``; ``generations`` rows come decoded (:data:`GENERATION_COLUMNS`, arrays as lists)."""
        return list(self.iter_rows(table, where, params, order_by))

    def iter_rows(self, table: str, where: str | None = None, params: Any = None,
                  order_by: str | None = None) -> Iterator[dict[str, Any]]:
        """As :meth:`rows`, streamed (for comparing big logs without holding them)."""
        if not self.db[table].exists():
            return
        order_by = order_by or ",".join(self._pk_columns(table))
        rows = self.db[table].rows_where(where, params, order_by=order_by)
        if table != "generations":
            yield from rows
            return
        legacy = "prompt_system" in self.db[table].columns_dict  # schema 1, opened read-only
        prompts: dict[str, tuple[str | None, str | None]] = {}
        for row in rows:
            yield self._decode_generation(row, legacy, prompts)

    def snapshots(self, iteration: int, role: str) -> list[dict[str, Any]]:
        """The committed step snapshots (``state/...`` checkpoints) of ``role`` in ``iteration``, by step."""
        return self.rows("checkpoints", "iteration = ? and role = ? and name like 'state/%'", [iteration, role],
                         order_by="step")

    def step_rows(self, table: str, iteration: int, role: str, step: int) -> list[dict[str, Any]]:
        """Rows of a training step in ``advantages`` or ``metrics`` (the phase of a training step is its role)."""
        column = {"advantages": "role", "metrics": "phase"}[table]
        return self.rows(table, f"iteration = ? and {column} = ? and step = ?", [iteration, role, step])

    def _decode_generation(self, row: dict[str, Any], legacy: bool,
                           prompts: dict[str, tuple[str | None, str | None]]) -> dict[str, Any]:
        if not legacy:
            ref = row.pop("prompt")
            if ref is not None and ref not in prompts:
                if len(prompts) > 4096:  # a bounded cache: a step's rows share a handful of prompts
                    prompts.clear()
                found = self.db.execute("SELECT system, user FROM prompts WHERE prompt = ?", [ref]).fetchone()
                if found is None:
                    raise RunLogError(f"{self.path}: generations[{row['key']}] names prompt {ref}, which is not in "
                                      f"the prompts table")
                prompts[ref] = tuple(found)
            row["prompt_system"], row["prompt_user"] = prompts[ref] if ref is not None else (None, None)
        for column in ("token_ids", "logprobs"):
            try:
                row[column] = arrays.decode(row[column])
            except ValueError as exc:
                raise RunLogError(f"{self.path}: generations[{row['key']}].{column}: {exc}") from exc
        ids, lps = row["token_ids"], row["logprobs"]
        if ids is not None and lps and len(lps) != len(ids):
            raise RunLogError(f"{self.path}: generations[{row['key']}].logprobs: {len(lps)} values for "
                              f"{len(ids)} token ids (truncated or damaged)")
        return {c: row.get(c) for c in GENERATION_COLUMNS}

    def rows_in(self, table: str, column: str, values: Iterable[Any], order_by: str | None = None
                ) -> list[dict[str, Any]]:
        """Rows whose ``column`` is one of ``values`` (e.g. the report's chosen questions), in key order."""
        values = list(dict.fromkeys(values))
        if column not in self.columns(table):
            raise KeyError(f"table {table!r} has no column {column!r}")
        out: list[dict[str, Any]] = []
        for start in range(0, len(values), 500):  # SQLite caps the number of bound parameters
            chunk = values[start:start + 500]
            out += self.rows(table, f"[{column}] in ({','.join('?' * len(chunk))})", chunk, order_by)
        return out

    def count(self, table: str, where: str | None = None, params: Any = None) -> int:
        sql = f"select count(*) from [{table}]" + (f" where {where}" if where else "")
        return self.db.execute(sql, params or []).fetchone()[0]

    # --- named readers (the engine, report and replay ask these; no SQL text is written outside this module) ---

    def metric_values(self, name: str, *, iteration: int | None = None, phase: str | None = None) -> list[float]:
        """Values of metric ``name`` (optionally of one iteration and phase), in step order."""
        where = {"name": name, "iteration": iteration, "phase": phase}
        return [r["value"] for r in self._where("metrics", where, order_by="iteration, phase, step")]

    def metrics_of(self, iteration: int, phase: str) -> dict[str, float]:
        """{name: value} of one iteration's phase (the last step wins when a phase has several)."""
        return {r["name"]: r["value"] for r in self._where("metrics", {"iteration": iteration, "phase": phase},
                                                           order_by="step")}

    def labels_of(self, iteration: int, phase: str = "reasoner_set") -> list[dict[str, Any]]:
        """The silver labels voted in one iteration's phase."""
        return self._where("labels", {"iteration": iteration, "phase": phase})

    def filters_of(self, iteration: int) -> list[dict[str, Any]]:
        """The filter decisions of one iteration's reasoner set."""
        return self._where("filters", {"iteration": iteration})

    def kept_set(self, iteration: int) -> list[KeptQuestion]:
        """The reasoner's training set of an iteration: kept questions with their silver labels, in key order."""
        from visplay.keys import key_order

        sql = ("select q.key, q.image_id, q.question, l.silver_label, l.silver_key, f.reason, q.qtype from questions q "
               "join filters f on f.question_key = q.key join labels l on l.question_key = q.key "
               "where q.iteration = ? and q.phase = 'reasoner_set' and f.keep = 1")
        rows = self.db.execute(sql, [iteration]).fetchall()
        return [KeptQuestion(key=key, image_id=image_id, question=question, silver_label=label, silver_key=skey,
                             gold=label if reason == "gold" else None, qtype=qtype)
                for key, image_id, question, label, skey, reason, qtype in sorted(rows, key=lambda r: key_order(r[0]))]

    def checkpoint_rows(self, *, role: str | None = None, iteration: int | None = None,
                        step: int | None = None) -> list[dict[str, Any]]:
        """``checkpoints`` rows, optionally of one role / iteration / step, in (iteration, step, name) order."""
        return self._where("checkpoints", {"role": role, "iteration": iteration, "step": step},
                           order_by="iteration, step, name")

    def rows_matching(self, table: str, **equal: Any) -> list[dict[str, Any]]:
        """Rows of ``table`` whose columns equal the given values (None values are ignored)."""
        return self._where(table, equal)

    def generations_of(self, iteration: int, phase: str, step: int) -> list[dict[str, Any]]:
        """The decoded generations of one engine step (what the replay's log server serves)."""
        return self._where("generations", {"iteration": iteration, "phase": phase, "step": step})

    def _where(self, table: str, equal: dict[str, Any], order_by: str | None = None) -> list[dict[str, Any]]:
        if not self.db[table].exists():
            return []
        columns = set(self.db[table].columns_dict)
        wanted = {k: v for k, v in equal.items() if v is not None}
        unknown = set(wanted) - columns
        if unknown:
            raise KeyError(f"table {table!r} has no column(s) {sorted(unknown)}")
        where = " and ".join(f"[{c}] = ?" for c in wanted) or None
        return self.rows(table, where, list(wanted.values()), order_by=order_by)

    def step_clock(self, iteration: int, phase: str, step: int) -> dict[str, Any] | None:
        """Where a committed step sits in the run: ``global_step`` (its position among all committed steps, from
        0; steps commit in order, so this is the row number of ``steps``), ``committed_at`` and ``seconds`` since
        the step before it committed (None for the first). None when the step is not committed."""
        row = self.db.execute("select rowid, committed_at from steps where iteration = ? and phase = ? and step = ?",
                              [iteration, phase, step]).fetchone()
        if row is None:
            return None
        before = self.db.execute("select committed_at from steps where rowid < ? order by rowid desc limit 1",
                                 [row[0]]).fetchone()
        return {"global_step": row[0] - 1, "committed_at": row[1],
                "seconds": row[1] - before[0] if before else None}

    def step_tokens(self, iteration: int, phase: str, step: int) -> int:
        """Tokens sampled in a step (all its generations: questions, votes, rollouts)."""
        row = self.db.execute("select coalesce(sum(vp_len(token_ids)), 0) from generations "
                              "where iteration = ? and phase = ? and step = ?", [iteration, phase, step]).fetchone()
        return int(row[0])

    def tokens_through(self, iteration: int, phase: str, step: int) -> int:
        """Tokens sampled in all steps committed up to and including this one (run-wide, in commit order)."""
        row = self.db.execute(
            "select coalesce(sum(vp_len(g.token_ids)), 0) from generations g join steps s on s.iteration = "
            "g.iteration and s.phase = g.phase and s.step = g.step where s.rowid <= (select rowid from steps where "
            "iteration = ? and phase = ? and step = ?)", [iteration, phase, step]).fetchone()
        return int(row[0])

    def checkpoint(self, name: str) -> dict[str, Any] | None:
        """The ``checkpoints`` row of ``name`` (files: {relative path: sha256}), or None."""
        rows = list(self.db["checkpoints"].rows_where("name = ?", [name]))
        if not rows:
            return None
        return {**rows[0], "files": json.loads(rows[0]["files"] or "{}")}

    def image_sources(self) -> dict[str, str]:
        """{image_id: source} of the logged image pool: the pool's fingerprint, checked on resume."""
        return {r["image_id"]: r["source"] for r in self.db["images"].rows_where(select="image_id, source")}

    def first_digested_step(self) -> tuple[int, str, int] | None:
        """The earliest step whose generations carry a ``digest`` (every step written by schema 5 on does); None
        when no row has one (a log written before digests existed)."""
        from visplay.keys import rank

        if "generations" not in self.tables() or "digest" not in self.columns("generations"):
            return None
        steps = self.db.execute("SELECT DISTINCT iteration, phase, step FROM generations "
                                "WHERE digest IS NOT NULL").fetchall()
        return min((tuple(s) for s in steps), key=rank) if steps else None

    def done_steps(self) -> set[tuple[int, str, int]]:
        return {(r["iteration"], r["phase"], r["step"]) for r in self.db["steps"].rows}

    def tables(self) -> list[str]:
        return sorted(self.db.table_names())

    def views(self) -> list[str]:
        return sorted(self.db.view_names())

    def column_kinds(self, name: str) -> dict[str, str]:
        """{column: kind} of a table or view, in column order (kinds: :data:`COLUMN_KINDS`): the declared types
        with what :data:`COLUMN_KINDS` adds. ``generations`` has its decoded shape (:data:`GENERATION_COLUMNS`)."""
        if name == "generations":
            declared = {c: _affinity_kind({int: "INTEGER", str: "TEXT", bytes: "BLOB"}[t])
                        for c, t in TABLES["generations"]["columns"].items()}
            return {c: COLUMN_KINDS.get((name, c), declared.get(c, "text")) for c in GENERATION_COLUMNS}
        if name not in self.db.table_names() and name not in self.db.view_names():
            raise KeyError(f"no table or view named {name!r} in {self.path}")
        info = self.db.execute(f"PRAGMA table_info([{name}])").fetchall()
        return {row[1]: COLUMN_KINDS.get((name, row[1]), _affinity_kind(row[2] or "")) for row in info}

    def row_batches(self, name: str, size: int = 2000) -> Iterator[list[tuple]]:
        """Every row of a table or view as tuples in :meth:`column_kinds` order, ``size`` at a time, in key order,
        from one cursor: memory stays that of one batch however big the log. ``generations`` rows carry their
        prompt texts and their arrays as stored (BLOBs, or JSON text in a schema-1 log): decode them with
        :func:`visplay.log.arrays.decode`, or let the exporter turn whole batches into columns."""
        columns = list(self.column_kinds(name))
        if name == "generations":
            sql = self._generations_select()
        else:
            order = ",".join(f"[{c}]" for c in (self._pk_columns(name) if name in self.db.table_names()
                                                  else columns[:1]))
            sql = f"SELECT {', '.join(f'[{c}]' for c in columns)} FROM [{name}] ORDER BY {order}"
        cursor = self.db.execute(sql)
        while batch := cursor.fetchmany(size):
            yield batch

    def _generations_select(self) -> str:
        """The SELECT of :meth:`row_batches` for ``generations``: prompts joined in; raises RunLogError when a row
        names a prompt the ``prompts`` table lacks (as :meth:`rows` does)."""
        stored = self.db["generations"].columns_dict
        if "prompt_system" in stored:  # schema 1, opened read-only: prompt texts and JSON arrays in the row
            parts = [f"g.[{c}]" if c in stored else f"NULL AS [{c}]" for c in GENERATION_COLUMNS]
            return f"SELECT {', '.join(parts)} FROM generations g ORDER BY g.key"
        dangling = self.db.execute("SELECT g.key, g.prompt FROM generations g LEFT JOIN prompts p ON p.prompt = "
                                   "g.prompt WHERE g.prompt IS NOT NULL AND p.prompt IS NULL LIMIT 1").fetchone()
        if dangling:
            raise RunLogError(f"{self.path}: generations[{dangling[0]}] names prompt {dangling[1]}, which is not in "
                              f"the prompts table")
        joined = {"prompt_system": "p.system", "prompt_user": "p.user"}
        parts = [joined[c] if c in joined else f"g.[{c}]" if c in stored else f"NULL AS [{c}]"
                 for c in GENERATION_COLUMNS]
        return (f"SELECT {', '.join(parts)} FROM generations g LEFT JOIN prompts p ON p.prompt = g.prompt "
                f"ORDER BY g.key")

    def view_rows(self, view: str) -> list[dict[str, Any]]:
        """Every row of a view (``question_outcomes``, ``question_votes``, ``reasoner_rollouts``), in key order."""
        if view not in self.db.view_names():
            return []
        first = next(iter(self.db[view].columns_dict))
        return list(self.db[view].rows_where(order_by=first))

    def columns(self, name: str) -> list[str]:
        """Column names of a table or view, in schema order."""
        return [c.name for c in self.db[name].columns]

    def _pk_columns(self, table: str) -> list[str]:
        pks = self.db[table].pks
        return [c for c in pks if c != "rowid"] or ["rowid"]

    def bad_arrays(self, limit: int = 5) -> list[str]:
        """Binary arrays of ``generations`` that cannot be read as written (``visplay.log.arrays``): an unknown type
        code, a length that is not a whole number of values, or log-probs that do not match the token ids in
        number. Each as ``generations[key].column: what``; at most ``limit``. A scan of the blobs' first byte and
        length (SQLite reads neither blob's values), so commands that read the arrays check a whole log first."""
        if "generations" not in self.tables() or "token_ids" not in self.columns("generations"):
            return []
        sql = f"""
            SELECT key, 'token_ids', token_ids, NULL FROM generations
             WHERE typeof(token_ids) = 'blob' AND NOT (substr(token_ids, 1, 1) = x'69' AND {_whole('token_ids')})
            UNION ALL
            SELECT key, 'logprobs', logprobs, NULL FROM generations
             WHERE typeof(logprobs) = 'blob' AND NOT (substr(logprobs, 1, 1) IN (x'66', x'64') AND {_whole('logprobs')})
            UNION ALL
            SELECT key, 'logprobs', logprobs, (length(token_ids) - 1) / 4 FROM generations
             WHERE typeof(token_ids) = 'blob' AND typeof(logprobs) = 'blob' AND length(logprobs) > 1
               AND {_whole('token_ids')} AND {_whole('logprobs')}
               AND (length(logprobs) - 1) / (CASE substr(logprobs, 1, 1) WHEN x'64' THEN 8 ELSE 4 END)
                   != (length(token_ids) - 1) / 4
            LIMIT {int(limit)}"""
        out = []
        for key, column, blob, ids in self.db.execute(sql).fetchall():
            what = arrays.problem(blob) if ids is None else \
                f"{arrays.length(blob)} values for {ids} token ids (truncated or damaged)"
            out.append(f"generations[{key}].{column}: {what}")
        return out

    def check_arrays(self) -> None:
        """Raise RunLogError naming the first damaged arrays (:meth:`bad_arrays`); nothing is modified."""
        bad = self.bad_arrays()
        if bad:
            raise RunLogError(f"{self.path}: damaged arrays in the run log: " + "; ".join(bad)
                              + ". The log was truncated or edited after the run; restore it from a copy")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[RunLog]:
        """Every read inside sees the log as it was when the block began (one read transaction), however many
        steps another process commits meanwhile: a live run is read as its committed prefix. In WAL mode a reader
        never blocks the writer; the writer's WAL just cannot be checkpointed past this point until the block ends."""
        if self.db.conn.in_transaction:  # already inside one (a nested snapshot, or a writer's transaction)
            yield self
            return
        self.db.execute("BEGIN")
        try:
            self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot is taken at the first read
            yield self
        finally:
            if self.db.conn.in_transaction:
                self.db.execute("ROLLBACK")

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
