"""Datasette plugin (entry point ``datasette: visplay``): the run log browsable in datasette.

- Registers :data:`visplay.log.arrays.SQL_FUNCTIONS` (``vp_json``, ``vp_len``, ``vp_at``, ``vp_sum``) on every
  connection datasette opens, so ``datasette runs/<name>/run.db`` can browse ``generations_json`` and decode the
  token-id and log-prob BLOBs.
- Serves a PNG cell as an image: ``/<db>/<table>/<pk>.png?_blob_column=<column>`` answers ``image/png`` with a
  ``.png`` file name (datasette's own ``.blob`` link downloads ``application/binary``), and ``images.png`` cells show
  the picture, linked to it.
- Links ``generations.prompt`` to its ``prompts`` row (the schema declares no foreign key there: adding one means
  rebuilding the biggest table of every log; docs/runlog.md), so the prompt of a generation is one click away.

Table and column descriptions and label columns come from the ``datasette.json`` written beside each run.db
(visplay.log.schema_docs). Imported only by datasette (visplay does not depend on it).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from datasette import hookimpl

from visplay.log.arrays import SQL_FUNCTIONS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@hookimpl
def prepare_connection(conn: Any) -> None:
    for name, (nargs, function) in SQL_FUNCTIONS.items():
        conn.create_function(name, nargs, function, deterministic=True)


def _row_path(datasette: Any, database: str, table: str, pk: str) -> str:
    return f"{datasette.urls.table(database, table)}/{quote(str(pk), safe='')}"


@hookimpl
def render_cell(row: Any, value: Any, column: str, table: str | None, database: str, datasette: Any) -> Any:
    from markupsafe import Markup, escape

    if table == "images" and column == "png" and isinstance(value, bytes) and value.startswith(PNG_MAGIC):
        url = f"{_row_path(datasette, database, table, row['image_id'])}.png?_blob_column=png"
        return Markup(f'<a href="{escape(url)}"><img src="{escape(url)}" alt="image {escape(row["image_id"][:12])}" '
                      f'style="max-width: 96px; max-height: 96px"></a>')
    if table == "generations" and column == "prompt" and isinstance(value, str):
        url = _row_path(datasette, database, "prompts", value)
        return Markup(f'<a href="{escape(url)}" title="the prompt (prompts.prompt)">{escape(value[:12])}…</a>')
    return None


def _can_render_png(columns: list[str], request: Any) -> bool:
    return request is not None and request.args.get("_blob_column") in (columns or [])


async def _render_png(rows: list[Any], request: Any, table: str | None) -> Any:
    from datasette.utils.asgi import Response

    column = request.args.get("_blob_column")
    if len(rows) != 1 or not column:
        return Response.text("a .png is one row's PNG cell: /<db>/<table>/<pk>.png?_blob_column=<column>", status=400)
    value = rows[0][column]
    if not isinstance(value, bytes) or not value.startswith(PNG_MAGIC):
        return Response.text(f"{table}.{column} of this row holds no PNG image", status=404)
    name = f"{table or 'image'}-{request.url_vars.get('pks', 'row')}.png"
    return Response(body=value, content_type="image/png",
                    headers={"content-disposition": f'inline; filename="{name}"'})


@hookimpl
def register_output_renderer(datasette: Any) -> dict[str, Any]:
    return {"extension": "png", "render": _render_png, "can_render": _can_render_png}
