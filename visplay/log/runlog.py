"""The run log: one SQLite database per run (runs/<name>/run.db). The only module in visplay that writes SQL (with
the schema and migrations it applies, visplay.log.schema).

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
from visplay.log.schema import (  # noqa: F401  (re-exported: the schema's names were defined here before)
    _V1_GENERATIONS,
    ADDED_LATER,
    COLUMN_KINDS,
    CORE_TABLES,
    FOREIGN_KEYS,
    GENERATION_COLUMNS,
    INDEXES,
    MIGRATIONS,
    SCHEMA_VERSION,
    TABLES,
    VIEWS,
    VOLATILE_COLUMNS,
    _affinity_kind,
    _create_views,
    _encode_generation,
    _run_log_problem,
    prompt_ref,
)


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
