"""The run log in real datasette: every table described (the plugins' tables and the optional eval tables too),
images labelled by their source where other tables link to them, PNG cells served as ``image/png`` files and shown
as pictures, and a generation's prompt one link away."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json

import pluggy
import pytest
from PIL import Image

from visplay.log.runlog import RunLog, prompt_ref
from visplay.log.schema_docs import datasette_metadata, plugin_table_docs, write_datasette_metadata

datasette_app = pytest.importorskip("datasette.app")
KEY = "i1/questioner/s0/p0/g0"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _games_docs() -> dict:
    import visplay_games.plugin as games

    from visplay import hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(games)
    return plugin_table_docs(pm)


@pytest.fixture
def served(tmp_path):
    from visplay.types import ImageRecord

    png = _png()
    image_id = hashlib.sha256(png).hexdigest()
    db = tmp_path / "run.db"
    with RunLog(db, create=True) as log:
        with log.transaction():
            log.upsert_image(ImageRecord(image_id=image_id, image=Image.open(io.BytesIO(png)), source="games:train/0",
                                         png=png), store_bytes=True)
        with log.step(1, "questioner", 0):
            log.insert("generations", [{"key": KEY, "iteration": 1, "phase": "questioner", "step": 0,
                                        "role": "questioner", "kind": "question", "image_id": image_id,
                                        "sample_index": 0, "seed": 1, "prompt_system": "sys",
                                        "prompt_user": "Ask about the image.", "text": "How many?",
                                        "token_ids": [1, 2], "logprobs": [-0.5, -0.25]}])
    write_datasette_metadata(db, _games_docs())
    metadata = json.loads((tmp_path / "datasette.json").read_text())

    def get(*paths):
        async def fetch():
            ds = datasette_app.Datasette([str(db)], metadata=metadata)
            return [await ds.client.get(p) for p in paths]

        return asyncio.run(fetch())

    return {"get": get, "metadata": metadata, "image_id": image_id, "png": png}


def test_every_table_is_described_the_plugins_tables_too(served):
    from visplay_games import coldstart, gold, pools

    from visplay.eval.run import EVAL_ITEMS, EVAL_SCORES

    assert served["metadata"] == json.loads(json.dumps(datasette_metadata("run", _games_docs())))  # as written
    tables = datasette_metadata("run", _games_docs())["databases"]["run"]["tables"]
    declared = {pools.TRUTH_TABLE: pools.TRUTH_COLUMNS, gold.EVAL_TABLE: gold.EVAL_COLUMNS,
                gold.SILVER_TABLE: gold.SILVER_COLUMNS, coldstart.LOSS_TABLE: coldstart.LOSS_COLUMNS,
                "eval_items": EVAL_ITEMS, "eval_scores": EVAL_SCORES}
    for table, columns in declared.items():
        assert tables[table]["description"].startswith("one row per "), table
        assert list(tables[table]["columns"]) == list(columns), table  # every column, in declared order
    assert datasette_metadata("run")["databases"]["run"]["tables"]["images"]["label_column"] == "source"


def test_tables_link_images_by_their_source_and_generations_to_their_prompt(served):
    labelled, page = served["get"]("/run/generations.json?_shape=objects&_labels=on", "/run/generations")
    row = labelled.json()["rows"][0]
    assert row["image_id"] == {"value": served["image_id"], "label": "games:train/0"}
    ref = prompt_ref("sys", "Ask about the image.")
    assert f'href="/run/prompts/{ref}"' in page.text
    prompt = served["get"](f"/run/prompts/{ref}.json?_shape=objects")[0].json()
    assert prompt["rows"][0]["user"] == "Ask about the image."


def test_png_cells_are_served_as_png_files_and_shown(served):
    url = f"/run/images/{served['image_id']}.png?_blob_column=png"
    file, page, bad = served["get"](url, "/run/images", f"/run/images/{served['image_id']}.png?_blob_column=meta")
    assert file.status_code == 200 and file.headers["content-type"] == "image/png"
    assert file.content == served["png"]
    assert file.headers["content-disposition"].endswith('.png"')
    assert f'<img src="{url.replace("&", "&amp;")}"' in page.text
    assert bad.status_code == 404 and "holds no PNG" in bad.text
