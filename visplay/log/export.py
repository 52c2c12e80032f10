"""``visplay export RUN --format parquet|csv [--tables ...]``: a run log's tables and views as files.

One file per table or view, ``<out>/<name>.parquet`` or ``<out>/<name>.csv``, columns in schema order. A Parquet
file's schema is declared from the run log's column types (:func:`arrow_schema`), never inferred from the rows, so
an all-NULL column has the type a filled one has and two runs' files line up; booleans are bool, times timestamps,
token ids and log-probs lists. JSON columns stay JSON text (pandas/polars parse them when asked); image PNGs are
bytes in parquet and base64 text in CSV. Rows are read and written in batches (:data:`BATCH_ROWS`), so memory stays
that of one batch whatever the log's size. Everything is read through :class:`RunLog` opened read-only (in one read
transaction), so exporting a running or finished run is safe and gives one moment of it.
"""

from __future__ import annotations

import base64
import csv
import difflib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from visplay.files import check_run_subfolder
from visplay.log import arrays
from visplay.log.runlog import RunLog, RunLogError
from visplay.types import PartProgress, in_part

FORMATS = ("parquet", "csv")


class ExportError(Exception):
    """A bad export request (unknown table, unknown format); the message names it."""


def _db_path(run: str | Path) -> Path:
    path = Path(run)
    db = path / "run.db" if path.is_dir() else path
    if not db.is_file():
        raise RunLogError(f"{run}: no run.db here (pass a run directory or its run.db)")
    return db


def _select(log: RunLog, tables: list[str] | None) -> list[str]:
    known = [t for t in log.tables() if not t.startswith("sqlite_")] + log.views()
    if not tables:
        return known
    for name in tables:
        if name not in known:
            hint = difflib.get_close_matches(name, known, n=1)
            raise ExportError(f"no table or view named {name!r} in {log.path}"
                              + (f"; did you mean {hint[0]!r}?" if hint else "") + f" (known: {', '.join(known)})")
    return tables


BATCH_ROWS = 2000  # rows per batch read and per Parquet row group; with the paper's ~500-token votes ~10 MB


def arrow_schema(kinds: dict[str, str]) -> Any:
    """The Parquet schema of a table or view from its column kinds (:meth:`RunLog.column_kinds`): integer ->
    int64, real -> float64, text -> string, blob -> binary, bool -> bool, time -> timestamp[us, UTC], json ->
    string (field metadata ``visplay.json: true``), ids -> list<int32>, floats -> list<float64> (log-probs are
    float32 values, or float64 where a value was not one: float64 holds both exactly)."""
    import pyarrow as pa

    types = {"integer": pa.int64(), "real": pa.float64(), "text": pa.string(), "blob": pa.binary(),
             "bool": pa.bool_(), "time": pa.timestamp("us", tz="UTC"), "json": pa.string(),
             "ids": pa.list_(pa.int32()), "floats": pa.list_(pa.float64())}
    return pa.schema([pa.field(c, types[k], metadata={"visplay.json": "true"} if k == "json" else None)
                      for c, k in kinds.items()])


def _list_column(values: list[Any], kind: str) -> Any:
    """Stored arrays (BLOBs, or schema 1's JSON text) of one batch as one Arrow list column, without a Python
    list per array: each BLOB's body is viewed as numpy values (visplay.log.arrays' format)."""
    import numpy as np
    import pyarrow as pa

    target = np.int32 if kind == "ids" else np.float64
    dtypes = {ord("i"): "<i4", ord("f"): "<f4", ord("d"): "<f8"}
    offsets, parts, nulls = np.zeros(len(values) + 1, dtype=np.int32), [], np.zeros(len(values), dtype=bool)
    for n, value in enumerate(values):
        if value is None:
            nulls[n] = True
            part = np.empty(0, dtype=target)
        elif isinstance(value, str):
            part = np.asarray(json.loads(value), dtype=target)
        else:
            part = np.frombuffer(value, dtype=dtypes[value[0]], offset=1).astype(target)
        parts.append(part)
        offsets[n + 1] = offsets[n] + len(part)
    flat = pa.array(np.concatenate(parts) if parts else np.empty(0, dtype=target))
    return pa.ListArray.from_arrays(pa.array(offsets), flat, mask=pa.array(nulls))


def _arrow_column(name: str, column: str, values: list[Any], kind: str, field: Any) -> Any:
    import pyarrow as pa

    if kind in ("ids", "floats"):
        return _list_column(values, kind)
    if kind == "time":  # unix seconds -> microseconds
        values = [None if v is None else round(float(v) * 1_000_000) for v in values]
        return pa.array(values, pa.int64()).cast(field.type)
    if kind == "bool":
        values = [None if v is None else bool(v) for v in values]
    try:
        return pa.array(values, field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
        bad = next((v for v in values if v is not None and _not_of(v, kind)), "?")
        raise ExportError(f"{name}.{column} is declared {kind} but holds {bad!r} ({type(bad).__name__}); the "
                          f"exported files have the run log's column types (fix the row or the table's "
                          f"declaration)") from exc


def _not_of(value: Any, kind: str) -> bool:
    wanted = {"integer": int, "real": (int, float), "text": str, "json": str, "blob": bytes, "bool": int}[kind]
    return not isinstance(value, wanted)


def _write_parquet(log: RunLog, name: str, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = log.column_kinds(name)
    schema = arrow_schema(kinds)
    with pq.ParquetWriter(path, schema) as writer:
        for batch in log.row_batches(name, BATCH_ROWS):
            columns = [_arrow_column(name, c, [row[n] for row in batch], k, schema.field(n))
                       for n, (c, k) in enumerate(kinds.items())]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))


def _csv_cell(value: Any, kind: str) -> Any:
    if value is None:
        return ""
    if kind in ("ids", "floats"):  # the arrays as JSON lists, as schema 1 logged them
        return arrays.as_json(value)
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


def _write_csv(log: RunLog, name: str, path: Path) -> None:
    kinds = list(log.column_kinds(name).items())
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([c for c, _ in kinds])
        for batch in log.row_batches(name, BATCH_ROWS):
            writer.writerows([_csv_cell(v, k) for v, (_, k) in zip(row, kinds)] for row in batch)


def _make_out(out_dir: Path) -> None:
    """The output folder, made if missing; a file in its place or an unwritable place is an ExportError naming it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} exists and is not a folder; give a folder (made if missing)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file among its parents, no permission, a read-only file system
        raise ExportError(f"--out {out_dir}: cannot create the folder ({exc.strerror or exc})") from exc
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ExportError(f"--out {out_dir} is not writable")


def export_run(run: str | Path, out: str | Path | None = None, fmt: str = "parquet",
               tables: list[str] | None = None, *,
               progress: Callable[[int], PartProgress] | None = None) -> dict[str, Path]:
    """Write the chosen tables/views (default: all); returns {name: file}. ``progress(total)``, when given, makes
    what counts the parts (visplay.loop.progress.Parts): the arrays' check, then one part per table or view."""

    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    db = _db_path(run)
    out_dir = Path(out) if out else check_run_subfolder(db.parent / "export")
    written = {}
    with RunLog(db, readonly=True) as log, log.snapshot():  # every file shows the same moment of a live run
        names = _select(log, tables)
        parts = progress(1 + len(names)) if progress is not None else None
        with in_part(parts, "check the run log's arrays"):
            log.check_arrays()  # before anything is created
        _make_out(out_dir)
        for name in names:
            with in_part(parts, name):
                written[name] = _export(log, name, out_dir, fmt)
    return written


def _export(log: RunLog, name: str, out_dir: Path, fmt: str) -> Path:
    """One table or view as ``<out_dir>/<name>.<fmt>``."""
    path = out_dir / f"{name}.{fmt}"
    # written, then renamed: a killed export leaves no short file; a new name (O_EXCL), so a link planted at it
    # is never written through
    descriptor, part_name = tempfile.mkstemp(prefix=f".{name}.{fmt}.", suffix=".part", dir=out_dir)
    os.close(descriptor)
    part = Path(part_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(part, 0o666 & ~umask)  # mkstemp makes it 0600; an export is for others' tools, as a plain file is
    try:
        (_write_parquet if fmt == "parquet" else _write_csv)(log, name, part)
        os.replace(part, path)
    except OSError as exc:  # a full disk, a folder at the file's name...
        raise ExportError(f"--out {out_dir}: cannot write {path.name} ({exc.strerror or exc})") from exc
    finally:
        part.unlink(missing_ok=True)
    return path
