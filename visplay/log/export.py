"""``visplay export RUN --format parquet|csv [--tables ...]``: a run log's tables and views as files.

One file per table or view, ``<out>/<name>.parquet`` or ``<out>/<name>.csv``, columns in schema order. JSON columns
stay JSON text (pandas/polars parse them when asked); image PNGs are bytes in parquet and base64 text in CSV.
Everything is read through :class:`RunLog` opened read-only, so exporting a running or finished run is safe.
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
from visplay.log.runlog import GENERATION_COLUMNS, RunLog, RunLogError
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


def _rows(log: RunLog, name: str) -> list[dict[str, Any]]:
    return log.view_rows(name) if name in log.views() else log.rows(name)


def _write_parquet(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: pa.array([r[c] for r in rows]) for c in columns})
    pq.write_table(table, path)


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in rows:
            writer.writerow(["" if r[c] is None else base64.b64encode(r[c]).decode() if isinstance(r[c], bytes)
                             else json.dumps(r[c]) if isinstance(r[c], list) else r[c] for c in columns])


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
    with RunLog(db, readonly=True) as log:
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
    columns = list(GENERATION_COLUMNS) if name == "generations" else log.columns(name)  # decoded shape
    # written, then renamed: a killed export leaves no short file; a new name (O_EXCL), so a link planted at it
    # is never written through
    descriptor, part_name = tempfile.mkstemp(prefix=f".{name}.{fmt}.", suffix=".part", dir=out_dir)
    os.close(descriptor)
    part = Path(part_name)
    try:
        (_write_parquet if fmt == "parquet" else _write_csv)(part, columns, _rows(log, name))
        os.replace(part, path)
    except OSError as exc:  # a full disk, a folder at the file's name...
        raise ExportError(f"--out {out_dir}: cannot write {path.name} ({exc.strerror or exc})") from exc
    finally:
        part.unlink(missing_ok=True)
    return path
