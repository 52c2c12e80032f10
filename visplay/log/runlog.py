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
from pathlib import Path
from typing import Any

import sqlite_utils

from visplay.log import arrays

SCHEMA_VERSION = 2

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
            "token_ids": bytes, "logprobs": bytes, "finish_reason": str,
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
        "columns": {"question_key": str, "iteration": int, "keep": int, "reason": str},
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
        "columns": {"key": str, "component": str, "iteration": int, "role": str, "step": int, "value": float},
        "pk": ("key", "component"),
    },
    "advantages": {
        "columns": {"key": str, "iteration": int, "role": str, "step": int, "grp": str, "reward": float,
                    "advantage": float},
        "pk": "key",
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

# What a ``generations`` row looks like to writers and readers: prompts as text, arrays as lists. On disk the
# prompt is a reference into ``prompts`` and the arrays are BLOBs (visplay.log.arrays); RunLog converts both ways,
# and reads run logs of schema 1 (prompt text and JSON arrays in the row) the same way.
GENERATION_COLUMNS = ("key", "iteration", "phase", "step", "role", "kind", "image_id", "parent_key", "sample_index",
                      "seed", "prompt_system", "prompt_user", "text", "token_ids", "logprobs", "finish_reason")
# Schema 1's ``generations`` columns (what _migrate_1 creates; _migrate_issue14 converts them).
_V1_GENERATIONS = {c: int if c in ("iteration", "step", "sample_index", "seed") else str for c in GENERATION_COLUMNS}

# Columns that differ between otherwise identical runs (wall-clock times); comparisons skip them.
VOLATILE_COLUMNS = {"created_at", "finished_at", "committed_at"}


class RunLogError(Exception):
    """The file is not a run log this version can use. Nothing was modified."""


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
        if name == "prompts":  # added by _migrate_issue14
            continue
        columns = _V1_GENERATIONS if name == "generations" else spec["columns"]
        db[name].create(columns, pk=spec["pk"], not_null=None)
    db["generations"].create_index(["iteration", "phase", "step"])
    db["questions"].create_index(["iteration", "phase"])
    db["answers"].create_index(["question_key"])
    db["events"].create_index(["kind"])


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


def _migrate_issue14(db: sqlite_utils.Database) -> None:
    """Schema 1 -> 2: prompts stored once in ``prompts``; token ids and log-probs as BLOBs (visplay.log.arrays).

    The rows are converted in place, in batches; the values do not change (log-probs that are not float32 values
    are kept as float64), so a converted log replays and diffs exactly as before.
    """
    db["prompts"].create(TABLES["prompts"]["columns"], pk="prompt", not_null=None)
    db.execute("ALTER TABLE generations RENAME TO generations_v1")
    db["generations"].create(TABLES["generations"]["columns"], pk="key", not_null=None)
    columns = list(TABLES["generations"]["columns"])
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
    _create_views(db)


def _create_views(db: sqlite_utils.Database) -> None:
    # Needs the vp_* functions (registered by RunLog and by the datasette plugin); see docs/runlog.md.
    db.execute("""
        CREATE VIEW IF NOT EXISTS generations_json AS
        SELECT g.key, g.iteration, g.phase, g.step, g.role, g.kind, g.image_id, g.parent_key, g.sample_index, g.seed,
               p.system AS prompt_system, p.user AS prompt_user, g.text, vp_json(g.token_ids) AS token_ids,
               vp_json(g.logprobs) AS logprobs, vp_len(g.token_ids) AS tokens, g.finish_reason
        FROM generations g LEFT JOIN prompts p ON p.prompt = g.prompt""")


MIGRATIONS = [_migrate_1, _migrate_issue14]  # MIGRATIONS[i] upgrades user_version i -> i + 1


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
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
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

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise RunLogError(f"{self.path}: schema version {version} is newer than {SCHEMA_VERSION}")
        for number in range(version, SCHEMA_VERSION):
            with self.db.atomic():
                MIGRATIONS[number](self.db)
                self.db.execute(f"PRAGMA user_version = {number + 1}")

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
            with self.db.atomic():
                yield self
                self.db["steps"].insert(
                    {"iteration": iteration, "phase": phase, "step": step, "committed_at": time.time()},
                    pk=("iteration", "phase", "step"),
                )
        finally:
            self._step = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[RunLog]:
        """Writes that do not belong to a step (run metadata, images, events)."""
        with self.db.atomic():
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
        self.db["events"].insert({
            "iteration": iteration, "phase": phase, "step": step, "level": level, "kind": kind,
            "source": source, "message": message, "payload": _json(payload),
        }, pk="id")

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

    def generations(self, iteration: int, phase: str, step: int) -> list[dict[str, Any]]:
        """The decoded generations of one engine step (what the replay plugin serves)."""
        return self.rows("generations", "iteration = ? and phase = ? and step = ?", [iteration, phase, step])

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
        row["token_ids"] = arrays.decode(row["token_ids"])
        row["logprobs"] = arrays.decode(row["logprobs"])
        return {c: row.get(c) for c in GENERATION_COLUMNS}

    def count(self, table: str, where: str | None = None, params: Any = None) -> int:
        sql = f"select count(*) from [{table}]" + (f" where {where}" if where else "")
        return self.db.execute(sql, params or []).fetchone()[0]

    def done_steps(self) -> set[tuple[int, str, int]]:
        return {(r["iteration"], r["phase"], r["step"]) for r in self.db["steps"].rows}

    def tables(self) -> list[str]:
        return sorted(self.db.table_names())

    def _pk_columns(self, table: str) -> list[str]:
        pks = self.db[table].pks
        return [c for c in pks if c != "rowid"] or ["rowid"]

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
