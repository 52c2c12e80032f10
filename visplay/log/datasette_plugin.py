"""Datasette plugin (entry point ``datasette: visplay``): the run log's array functions in datasette.

Registers :data:`visplay.log.arrays.SQL_FUNCTIONS` (``vp_json``, ``vp_len``, ``vp_at``, ``vp_sum``) on every
connection datasette opens, so ``datasette runs/<name>/run.db`` can browse ``generations_json`` and decode the
token-id and log-prob BLOBs. Imported only by datasette (visplay does not depend on it).
"""

from __future__ import annotations

from typing import Any

from datasette import hookimpl

from visplay.log.arrays import SQL_FUNCTIONS


@hookimpl
def prepare_connection(conn: Any) -> None:
    for name, (nargs, function) in SQL_FUNCTIONS.items():
        conn.create_function(name, nargs, function, deterministic=True)
