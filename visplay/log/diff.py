"""Compare two run databases row by row: ``visplay diff a.db b.db``.

Rows are matched by primary key (visplay.log.runlog.TABLES; plugin-owned tables by their own key) and compared column by
column, skipping wall-clock columns (visplay.log.runlog.VOLATILE_COLUMNS). Both files are opened read-only; nothing is
ever written. The *first* divergence is the one earliest in the run: rows are placed at the (iteration, phase, step)
their key or columns name, and within a step in the order the engine computes them (STAGES: question
generations, parsed questions, vote generations, extracted answers, labels, filter decisions, rewards, advantages,
metrics, checkpoints), then by key. Metrics named ``time/...`` are wall-clock and skipped. Floats are compared bit for bit unless a
tolerance is given: ``|a - b| <= tolerance * max(1, |a|, |b|)`` (mixed absolute/relative), also applied to the
numbers inside JSON lists such as ``generations.logprobs``; a GPU run needs one, a CPU run does not.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from visplay.keys import key_position, phase_rank
from visplay.log.runlog import ADDED_LATER, GENERATION_COLUMNS, TABLES, VOLATILE_COLUMNS, RunLog

# Pipeline order of the tables; a divergence in an earlier table of the same step explains the later ones.
PIPELINE = ("runs", "plugins", "images", "generations", "questions", "labels", "filters", "answers", "rewards",
            "advantages", "dropped_groups", "metrics", "checkpoints", "steps")
# Compared by default; ``events`` is left out because a resumed run legitimately logs extra events (the resume).
SKIPPED_TABLES = frozenset({"events"})
# Of the ``runs`` row only what defines the run is compared; versions, host and times are machine facts.
RUN_COLUMNS = ("seed", "variant", "recipe_yaml")
# Metrics whose names start with these are wall-clock measurements (seconds, throughput): never compared.
VOLATILE_METRIC_PREFIXES = ("time/",)


@dataclass(frozen=True)
class Divergence:
    """One differing cell, or a row present on one side only (``column`` None, the values "present"/"absent")."""

    table: str
    key: tuple[Any, ...]
    column: str | None
    a: Any
    b: Any
    position: tuple[Any, ...] = ()
    tolerance: float = 0.0  # the comparison's: the detail names the first element outside it

    @property
    def detail(self) -> tuple[str, Any, Any] | None:
        """For JSON cells (token ids, log-probs, checkpoint file hashes): the first element that differs beyond
        the comparison's tolerance (bit for bit without one)."""
        return json_difference(self.a, self.b, self.tolerance)

    def describe(self) -> str:
        key = "/".join(str(k) for k in self.key) if len(self.key) != 1 else str(self.key[0])
        if self.column is None:
            return f"{self.table}[{key}]: row {self.a} in a, {self.b} in b"
        if self.table == "runs" and self.column == "recipe_yaml":
            changes = recipe_changes(self.a, self.b)
            if changes:  # key by key, not two cut YAML blobs
                return f"{self.table}[{key}].recipe_yaml: {len(changes)} key(s) differ: " + "; ".join(
                    f"{k}: a={_short(a)} b={_short(b)}" for k, a, b in changes)
        detail = self.detail
        if detail is not None:
            where, a, b = detail
            return f"{self.table}[{key}].{self.column}{where}: a={_short(a)} b={_short(b)}"
        return f"{self.table}[{key}].{self.column}: a={_short(self.a)} b={_short(self.b)}"


@dataclass
class TableStats:
    """How far two runs agree on one table."""

    rows_a: int = 0
    rows_b: int = 0
    equal: int = 0
    differing: int = 0
    only_a: int = 0
    only_b: int = 0


@dataclass
class DiffResult:
    """The outcome of :func:`diff_runs`: per-table agreement and the earliest divergences (at most ``limit``)."""

    a: Path
    b: Path
    tables: dict[str, TableStats] = field(default_factory=dict)
    divergences: list[Divergence] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was left out and why (a live run's uncommitted steps)

    @property
    def equal(self) -> bool:
        return all(s.differing == s.only_a == s.only_b == 0 for s in self.tables.values())

    @property
    def first(self) -> Divergence | None:
        return self.divergences[0] if self.divergences else None

    def summary(self) -> str:
        lines = [f"{'table':<18}{'rows a':>9}{'rows b':>9}{'equal':>9}{'differ':>9}{'only a':>9}{'only b':>9}"]
        for name, s in self.tables.items():
            lines.append(f"{name:<18}{s.rows_a:>9}{s.rows_b:>9}{s.equal:>9}{s.differing:>9}{s.only_a:>9}"
                         f"{s.only_b:>9}")
        return "\n".join(lines)


# --- values -------------------------------------------------------------------------------------------------


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _float_bits(x: float) -> bytes:
    return struct.pack("<d", x)


def values_equal(a: Any, b: Any, tolerance: float = 0.0) -> bool:
    """Equality of two cells: floats bit for bit (or within ``tolerance``), JSON lists element-wise."""
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            return False
        a, b = float(a), float(b)
        if tolerance == 0.0 or math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
            return _float_bits(a) == _float_bits(b)
        return abs(a - b) <= tolerance * max(1.0, abs(a), abs(b))
    if a == b:
        return True
    if tolerance and isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):  # decoded arrays (log-probs)
        return _json_close(list(a), list(b), tolerance)
    if tolerance and isinstance(a, str) and isinstance(b, str) and a[:1] in "[{" and b[:1] in "[{":
        try:
            return _json_close(json.loads(a), json.loads(b), tolerance)
        except ValueError:
            return False
    return False


def _json_close(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_close(x, y, tolerance) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_close(a[k], b[k], tolerance) for k in a)
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int) and isinstance(b, int):  # token ids, counts: a tolerance is for floats only
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return values_equal(float(a), float(b), tolerance)
    return a == b


def json_difference(a: Any, b: Any, tolerance: float = 0.0) -> tuple[str, Any, Any] | None:
    """Where two JSON texts (or decoded arrays) first differ, as (``[index]``/``["key"]`` path, value a, value b);
    None if not JSON. With a ``tolerance``, elements equal within it (:func:`values_equal`) are passed over, so the
    path names the element that made the cells differ, not the first one off in its last bit."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        va, vb = list(a), list(b)
    elif isinstance(a, str) and isinstance(b, str) and a[:1] in "[{" and b[:1] in "[{":
        try:
            va, vb = json.loads(a), json.loads(b)
        except ValueError:
            return None
    else:
        return None

    def differ(x: Any, y: Any) -> bool:
        return not _json_close(x, y, tolerance) if tolerance else x != y

    path = ""
    while differ(va, vb):
        if isinstance(va, dict) and isinstance(vb, dict):
            key = next((k for k in sorted(set(va) | set(vb)) if differ(va.get(k, ...), vb.get(k, ...))), None)
            path, va, vb = path + f"[{key!r}]", va.get(key), vb.get(key)
        elif isinstance(va, list) and isinstance(vb, list) and len(va) == len(vb):
            index = next(i for i, (x, y) in enumerate(zip(va, vb)) if differ(x, y))
            path, va, vb = path + f"[{index}]", va[index], vb[index]
        else:
            break
    return (path, va, vb) if path else None


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def recipe_changes(a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    """Dotted recipe keys whose values differ between two recipe YAML texts (``run_dir`` ignored), sorted; a key
    missing on one side shows as ``<absent>``. Empty when either side is not a recipe mapping."""
    ra, rb = _normalized_recipe(a), _normalized_recipe(b)
    if not isinstance(ra, dict) or not isinstance(rb, dict):
        return []
    fa, fb = _flatten(ra), _flatten(rb)
    absent = "<absent>"
    return [(k, fa.get(k, absent), fb.get(k, absent)) for k in sorted(set(fa) | set(fb))
            if fa.get(k, absent) != fb.get(k, absent)]


def _normalized_recipe(text: Any) -> Any:
    """A recipe without ``run_dir``: the same recipe run in two places is the same run."""
    if not isinstance(text, str):
        return text
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(data, dict):
        data.pop("run_dir", None)
    return data


def _sort_key(value: Any) -> tuple[int, Any]:
    # SQLite's order of storage classes: NULL < numbers < text < blob.
    if value is None:
        return (0, 0)
    if isinstance(value, (int, float)):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, bytes(value))


def row_position(row: dict[str, Any]) -> tuple[Any, ...]:
    """Where in the run a row belongs: (iteration, phase rank, step), from its key or its columns; () if run-level."""
    for column in ("key", "question_key", "name"):
        value = row.get(column)
        position = key_position(value) if isinstance(value, str) else None
        if position is not None:
            return position.rank()
    iteration = row.get("iteration")
    phase = row.get("phase") or row.get("role")
    if iteration is None:
        return ()
    step = row.get("step")
    return (iteration, phase_rank(phase) if phase else -1, step if step is not None else -1)


# --- tables -------------------------------------------------------------------------------------------------


def table_order(log_a: RunLog, log_b: RunLog, tables: tuple[str, ...] | None = None) -> list[str]:
    """Tables to compare: the core ones in pipeline order, then plugin-owned tables present in either run."""
    present = set(log_a.tables()) | set(log_b.tables())
    names = [t for t in PIPELINE if t in present or t in TABLES]
    names += sorted(t for t in present - set(PIPELINE) - set(TABLES) - SKIPPED_TABLES
                    if not t.startswith(("sqlite_", "_")))
    if tables is not None:
        unknown = set(tables) - set(names) - set(TABLES)
        if unknown:
            raise ValueError(f"unknown table(s) {sorted(unknown)}; known: {', '.join(names)}")
        names = [t for t in names if t in tables]
    return names


def _pk(log: RunLog, table: str) -> list[str]:
    if table in TABLES:
        pk = TABLES[table]["pk"]
        return [pk] if isinstance(pk, str) else list(pk)
    return log._pk_columns(table)  # noqa: SLF001 - same module family, read-only use


def _compared_columns(log_a: RunLog, log_b: RunLog, table: str) -> list[str]:
    if table == "runs":
        return list(RUN_COLUMNS)
    if table == "generations":  # decoded rows, whatever the schema of either log
        return list(GENERATION_COLUMNS)
    cols_a = list(log_a.db[table].columns_dict) if log_a.db[table].exists() else []
    cols_b = list(log_b.db[table].columns_dict) if log_b.db[table].exists() else []
    cols = cols_a + [c for c in cols_b if c not in cols_a]
    return [c for c in cols if c not in VOLATILE_COLUMNS]


def _stream(log: RunLog, table: str, pk: list[str]) -> Iterator[tuple[tuple, dict[str, Any]]]:
    if not log.db[table].exists():
        return
    if table == "runs":  # a single row whose id is a machine fact: match the rows by position
        for row in log.rows("runs"):
            yield ((0, 0),), row
        return
    if table == "generations":
        # Decoded values, as canonical JSON (the form schema-1 logs stored): a binary log and a JSON log of the
        # same run compare equal, and the JSON detail/tolerance code below applies to both.
        for row in log.iter_rows(table, order_by="[key]"):
            row["token_ids"], row["logprobs"] = _json_text(row["token_ids"]), _json_text(row["logprobs"])
            yield tuple(_sort_key(row.get(c)) for c in pk), row
        return
    select = "rowid, *" if pk == ["rowid"] else "*"
    for row in log.db[table].rows_where(select=select, order_by=", ".join(f"[{c}]" for c in pk)):
        yield tuple(_sort_key(row.get(c)) for c in pk), row


def iter_row_pairs(log_a: RunLog, log_b: RunLog, table: str) -> Iterator[tuple[tuple, dict | None, dict | None]]:
    """Merge-join a table of two runs by primary key: yields (key values, row in a or None, row in b or None)."""
    pk = _pk(log_a if log_a.db[table].exists() else log_b, table)
    it_a, it_b = _stream(log_a, table, pk), _stream(log_b, table, pk)
    next_a, next_b = next(it_a, None), next(it_b, None)
    while next_a is not None or next_b is not None:
        if next_b is None or (next_a is not None and next_a[0] < next_b[0]):
            yield _key_values(next_a[1], pk, table), next_a[1], None
            next_a = next(it_a, None)
        elif next_a is None or next_b[0] < next_a[0]:
            yield _key_values(next_b[1], pk, table), None, next_b[1]
            next_b = next(it_b, None)
        else:
            yield _key_values(next_a[1], pk, table), next_a[1], next_b[1]
            next_a, next_b = next(it_a, None), next(it_b, None)


def _json_text(values: list | None) -> str | None:
    return None if values is None else json.dumps(values, separators=(",", ":"))


def _key_values(row: dict[str, Any], pk: list[str], table: str) -> tuple[Any, ...]:
    return ("run",) if table == "runs" else tuple(row.get(c) for c in pk)


# --- the comparison -----------------------------------------------------------------------------------------


def diff_logs(log_a: RunLog, log_b: RunLog, *, tables: tuple[str, ...] | None = None, tolerance: float = 0.0,
              scope: Callable[[dict[str, Any]], bool] | None = None, limit: int = 20) -> DiffResult:
    """Compare two open run logs. ``scope(row)`` (applied to rows of either side) restricts what is compared."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    result = DiffResult(a=log_a.path, b=log_b.path)
    names = table_order(log_a, log_b, tables)
    rank = {name: i for i, name in enumerate(names)}
    found: list[tuple[tuple, Divergence]] = []
    for table in names:
        stats = result.tables.setdefault(table, TableStats())
        columns = _compared_columns(log_a, log_b, table)
        for key, row_a, row_b in iter_row_pairs(log_a, log_b, table):
            row = row_a if row_a is not None else row_b
            if scope is not None and not scope(row):
                continue
            if table == "metrics" and str(row.get("name", "")).startswith(VOLATILE_METRIC_PREFIXES):
                continue
            div = _compare_rows(table, key, row_a, row_b, columns, tolerance, stats)
            if div is not None:
                sort = (div.position, _stage(table, row), rank[table], tuple(_sort_key(k) for k in key))
                found.append((sort, div))
                if len(found) > 4 * limit + 64:  # keep memory bounded on big runs
                    found = sorted(found, key=lambda x: x[0])[:limit]
    result.divergences = [d for _, d in sorted(found, key=lambda x: x[0])[:limit]]
    return result


# The order in which one engine step computes things: a divergence in an earlier stage explains the later ones.
STAGES = {"generations": 0, "questions": 1, "votes": 2, "answers": 3, "labels": 4, "filters": 5, "rewards": 6,
          "advantages": 7, "dropped_groups": 7, "metrics": 8, "checkpoints": 9, "steps": 10}


def _stage(table: str, row: dict[str, Any]) -> int:
    """Where in a step a row is computed; the votes' generations come after the questions they answer."""
    if table == "generations" and row.get("kind") == "vote":
        return STAGES["votes"]
    return STAGES.get(table, len(STAGES))


def _compare_rows(table: str, key: tuple, row_a: dict | None, row_b: dict | None, columns: list[str],
                  tolerance: float, stats: TableStats) -> Divergence | None:
    position = row_position(row_a if row_a is not None else row_b)
    if row_b is None:
        stats.rows_a += 1
        stats.only_a += 1
        return Divergence(table, key, None, "present", "absent", position)
    if row_a is None:
        stats.rows_b += 1
        stats.only_b += 1
        return Divergence(table, key, None, "absent", "present", position)
    stats.rows_a += 1
    stats.rows_b += 1
    for column in columns:
        va, vb = row_a.get(column), row_b.get(column)
        if (table, column) in ADDED_LATER and (va is None or vb is None):
            continue  # a log written before the column existed
        if table == "generations" and column == "logprobs" and row_a.get("kind") == "vote" and None in (va, vb):
            continue  # votes' log-probs are optional (log.vote_logprobs); a log without them is not a divergence
        if table == "runs" and column == "recipe_yaml":
            same = _normalized_recipe(va) == _normalized_recipe(vb)
        else:
            same = values_equal(va, vb, tolerance)
        if not same:
            stats.differing += 1
            return Divergence(table, key, column, va, vb, position, tolerance)
    stats.equal += 1
    return None


def diff_runs(a: str | Path, b: str | Path, **kwargs: Any) -> DiffResult:
    """Compare two run databases, both opened read-only (a newer-schema or non-SQLite file raises RunLogError).

    Each is read as one snapshot. A run that a live process is still writing (it holds the ``run.lock`` beside the
    database) is compared as its committed prefix: only rows up to its last committed step, on both sides, and
    the result's ``notes`` say so (else the other run's later steps would read as a divergence at the step being
    written)."""
    from visplay.keys import rank
    from visplay.log.status import LOCK_NAME, lock_holder

    with RunLog(a, readonly=True) as log_a, RunLog(b, readonly=True) as log_b, log_a.snapshot(), log_b.snapshot():
        log_a.check_arrays()
        log_b.check_arrays()
        notes, stops = [], []
        for side, log in (("a", log_a), ("b", log_b)):
            holder = lock_holder(log.path.parent)
            if holder is None:
                continue
            done = log.done_steps()
            stop = max(done, key=rank) if done else None
            stops.append(rank(stop) if stop else ())
            notes.append(f"{side} ({log.path}) is being written by process {holder} (it holds "
                         f"{log.path.parent / LOCK_NAME}): compared up to its last committed step {stop} "
                         f"({len(done)} steps); later steps of either run are not compared")
        if stops:
            limit, outer = min(stops), kwargs.pop("scope", None)
            kwargs["scope"] = lambda row: (row_position(row) <= limit) and (outer is None or outer(row))
        result = diff_logs(log_a, log_b, **kwargs)
        result.notes = notes
        return result


# --- command line -------------------------------------------------------------------------------------------


def format_diff(result: DiffResult, *, tolerance: float = 0.0, limit: int = 1) -> str:
    """The agreement table, then either "equal" or the earliest ``limit`` divergences."""
    lines = [f"note: {note}" for note in result.notes] + [result.summary()]
    if result.equal:
        lines.append(f"\nequal: {sum(s.equal for s in result.tables.values())} rows agree"
                     + (f" (tolerance {tolerance})" if tolerance else " (bit for bit)"))
        return "\n".join(lines)
    lines.append("\nfirst divergence:" if limit <= 1 else f"\nfirst {len(result.divergences[:limit])} divergences:")
    lines += [f"  {div.describe()}" for div in result.divergences[:limit]]
    return "\n".join(lines)
