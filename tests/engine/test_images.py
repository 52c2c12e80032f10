"""The images plugin: folder / parquet / procedural sources, hostile files skipped and counted, never fatal."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import visplay_images.plugin as images_plugin
from omegaconf import OmegaConf
from PIL import Image
from support.engine import standin_plugins, standin_recipe
from visplay_images.decode import DecodeLimits, decode_image, png_bytes

from visplay.config import load_recipe
from visplay.context import RunContext
from visplay.log.runlog import RunLog
from visplay.loop.engine import run_recipe
from visplay.plugins import PluginError, get_plugin_manager


def _noise_image(seed: int, size: tuple[int, int] = (48, 40), mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8), mode)


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png_header(width: int = 20000, height: int = 20000) -> bytes:
    """A few hundred bytes that claim a width x height RGB PNG: a decompression bomb for a naive decoder."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * width) * 4)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def make_bad_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a_good.png").write_bytes(_encode(_noise_image(1), "PNG"))
    (folder / "b_good.jpg").write_bytes(_encode(_noise_image(2), "JPEG"))
    full = _encode(_noise_image(3, (128, 128)), "JPEG")
    (folder / "c_truncated.jpg").write_bytes(full[: len(full) // 2])
    (folder / "d_text.png").write_text("this is not an image\n")
    (folder / "e_empty.png").write_bytes(b"")
    (folder / "f_huge.png").write_bytes(huge_png_header())
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "g_good.png").write_bytes(_encode(_noise_image(4, mode="RGBA"), "PNG"))


def _ctx(tmp_path: Path, data: dict) -> RunContext:
    cfg = load_recipe("tiny", [f"data.{k}={v}" for k, v in data.items()])
    log = RunLog(tmp_path / "images.db", create=True)
    return RunContext(recipe=cfg, pm=get_plugin_manager(autoload=False, extra=(images_plugin,)), run_dir=tmp_path,
                      log=log)


def _open(ctx: RunContext):
    return ctx.hooks.image_source(name=ctx.recipe.data.source,
                    options=OmegaConf.to_container(ctx.recipe.data, resolve=True))


def test_folder_skips_bad_files_and_counts_them(tmp_path):
    make_bad_folder(tmp_path / "imgs")
    ctx = _ctx(tmp_path, {"source": "folder", "images": tmp_path / "imgs", "size": 32})
    pool = _open(ctx)
    assert [Path(r.source).name for r in pool] == ["a_good.png", "b_good.jpg", "g_good.png"]
    assert all(r.image.size == (32, 32) and r.image.mode == "RGB" and r.png is None for r in pool)
    skipped = ctx.log.rows("events", "kind = 'image_skipped'")
    reasons = {Path(json.loads(e["payload"])["path"]).name: json.loads(e["payload"])["reason"] for e in skipped}
    assert set(reasons) == {"c_truncated.jpg", "d_text.png", "e_empty.png", "f_huge.png"}
    assert "truncated" in reasons["c_truncated.jpg"] and "0 bytes" in reasons["e_empty.png"]
    assert "20000x20000" in reasons["f_huge.png"] and "not decoded" in reasons["f_huge.png"]
    summary = json.loads(ctx.log.rows("events", "kind = 'images_opened'")[0]["payload"])
    assert summary == {"source": "folder", "origin": str(tmp_path / "imgs"), "usable": 3, "skipped": 4,
                       "duplicates": 0}
    ctx.log.close()


def test_image_id_is_sha256_of_decoded_rgb_png(tmp_path):
    img = _noise_image(5)
    limits = DecodeLimits(resize="none")
    decoded = decode_image(_encode(img, "PNG"), limits)
    assert np.array_equal(np.asarray(decoded), np.asarray(img))
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "one.png").write_bytes(_encode(img, "PNG"))
    (tmp_path / "x" / "same_pixels.bmp").write_bytes(_encode(img, "BMP"))  # same picture, another file format
    ctx = _ctx(tmp_path, {"source": "folder", "images": tmp_path / "x", "resize": "none"})
    pool = _open(ctx)
    assert len(pool) == 1 and pool.duplicates == 1
    assert pool[0].image_id == hashlib.sha256(png_bytes(img)).hexdigest()
    ctx.log.close()


def test_resize_modes():
    data = _encode(_noise_image(6, (300, 100)), "PNG")
    assert decode_image(data, DecodeLimits(resize="fixed", size=224)).size == (224, 224)
    assert decode_image(data, DecodeLimits(resize="none")).size == (300, 100)
    grown = decode_image(data, DecodeLimits(resize="pixels", min_pixels=120_000, max_pixels=500_000))
    assert grown.width * grown.height >= 119_000 and abs(grown.width / grown.height - 3) < 0.05
    shrunk = decode_image(data, DecodeLimits(resize="pixels", min_pixels=100, max_pixels=7_500))
    assert shrunk.size == (150, 50)


def test_parquet_images_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = [_encode(_noise_image(k), "PNG") for k in range(3)]
    table = pa.table({"images": [[{"bytes": good[0], "path": "a.png"}], [{"bytes": b"junk", "path": "b.png"}],
                                 [{"bytes": good[1], "path": "c.png"}, {"bytes": good[2], "path": "d.png"}]]})
    pq.write_table(table, tmp_path / "train.parquet")
    ctx = _ctx(tmp_path, {"source": "parquet", "images": tmp_path / "train.parquet", "size": 16})
    pool = _open(ctx)
    assert [r.source.rsplit("#", 1)[1] for r in pool] == ["row0/0", "row2/0", "row2/1"]
    assert ctx.log.count("events", "kind = 'image_skipped'") == 1
    ctx.log.close()
    pq.write_table(pa.table({"image": [good[0]]}), tmp_path / "wrong.parquet")
    ctx = _ctx(tmp_path, {"source": "parquet", "images": tmp_path / "wrong.parquet"})
    with pytest.raises(PluginError, match="no 'images' column"):
        _open(ctx)
    ctx.log.close()


def test_zero_usable_images_is_an_error_naming_the_path(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_text("nope")
    ctx = _ctx(tmp_path, {"source": "folder", "images": tmp_path / "bad"})
    with pytest.raises(PluginError, match=f"{tmp_path / 'bad'}: no usable images"):
        _open(ctx)
    ctx.log.close()


def test_procedural_pool_is_deterministic_and_stores_bytes(tmp_path):
    first = _open(_ctx(tmp_path, {"source": "procedural", "num_images": 5, "size": 40}))
    second = _open(_ctx(tmp_path, {"source": "procedural", "num_images": 5, "size": 40}))
    assert [r.image_id for r in first] == [r.image_id for r in second]
    assert len({r.image_id for r in first}) == 5
    assert all(r.png and r.image.size == (40, 40) and r.meta["total"] >= 1 for r in first)


def test_run_with_bad_images_finishes(tmp_path, no_autoload):
    make_bad_folder(tmp_path / "imgs")
    cfg = standin_recipe(tmp_path / "run", ["data.source=folder", f"data.images={tmp_path / 'imgs'}",
                                            "iterations=1"])
    db = run_recipe(cfg, extra_plugins=standin_plugins(), quiet=True)
    with RunLog(db, readonly=True) as log:
        assert log.run()["status"] == "finished"
        assert log.count("events", "kind = 'image_skipped'") == 4
        assert log.count("images") == 3
        assert {r["png"] for r in log.rows("images")} == {None}  # user files are referenced, not copied
