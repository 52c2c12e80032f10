"""Streaming image pools (issue 14): records hold ids and sources, pixels come from a bounded LRU cache and are the
very pixels whose hash is the image id."""

from __future__ import annotations

import hashlib
import io
import os
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from visplay_images.decode import BadImage, DecodeLimits, decode_image, png_bytes
from visplay_images.sources import draw_shapes, open_folder, open_parquet, open_procedural
from visplay_images.stream import ImageCache, StreamedImageRecord

LIMITS = DecodeLimits(resize="fixed", size=32)


def _folder(tmp_path, n: int):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(n):
        img, _ = draw_shapes(seed=i, side=48)
        img.save(folder / f"{i:03d}.jpg", quality=90)
    return folder


def _skip(source, reason):
    raise AssertionError(f"unexpected skip {source}: {reason}")


def test_folder_pool_decodes_on_demand_through_a_bounded_cache(tmp_path):
    folder = _folder(tmp_path, 8)
    pool = open_folder(str(folder), LIMITS, _skip, cache_size=3)
    assert len(pool) == 8 and len(pool.cache) == 0  # opening hashed every image and kept no pixels
    assert all(isinstance(r, StreamedImageRecord) and (r.width, r.height) == (32, 32) for r in pool)
    for record in pool:
        eager = decode_image((folder / os.path.basename(record.source)).read_bytes(), LIMITS)
        assert record.image.tobytes() == eager.tobytes()
        assert hashlib.sha256(png_bytes(record.image)).hexdigest() == record.image_id
        assert len(pool.cache) <= 3
    assert pool.cache.misses == 8 and pool.cache.hits == 8  # hashing above re-read each image from the cache
    assert pool[0].png is None  # a user's file is logged by path and hash, never by bytes


def test_a_file_changed_after_opening_is_refused_by_name(tmp_path):
    folder = _folder(tmp_path, 2)
    pool = open_folder(str(folder), LIMITS, _skip, cache_size=1)
    target = folder / "001.jpg"
    draw_shapes(seed=99, side=48)[0].save(target, quality=90)
    os.utime(target, ns=(0, 12345))
    with pytest.raises(BadImage, match="001.jpg changed on disk since the run opened it"):
        _ = pool[1].image


def test_generated_images_keep_their_png_and_reload_exactly():
    pool = open_procedural(5, LIMITS, lambda i: 100 + i, cache_size=2)
    for i, record in enumerate(pool):
        drawn, meta = draw_shapes(100 + i, 32)
        assert record.png is not None and record.meta == meta
        assert record.image.tobytes() == drawn.tobytes()
        assert hashlib.sha256(record.png).hexdigest() == record.image_id


def test_parquet_pool_reloads_cells_by_row_group(tmp_path):
    blobs = []
    for i in range(5):
        buf = io.BytesIO()
        draw_shapes(seed=i, side=40)[0].save(buf, format="PNG")
        blobs.append(buf.getvalue())
    table = pa.table({"images": [[{"bytes": blobs[0]}, {"bytes": blobs[1]}], [{"bytes": blobs[2]}],
                                 [{"bytes": blobs[3]}], [{"bytes": blobs[4]}]]})
    path = tmp_path / "imgs.parquet"
    pq.write_table(table, path, row_group_size=2)
    assert pq.ParquetFile(path).num_row_groups == 2
    pool = open_parquet(str(path), LIMITS, _skip, cache_size=1)
    assert [r.source.rsplit("#", 1)[1] for r in pool] == ["row0/0", "row0/1", "row1/0", "row2/0", "row3/0"]
    for record, blob in zip(pool, blobs):
        assert record.image.tobytes() == decode_image(blob, LIMITS).tobytes()


def test_records_pickle_for_other_processes(tmp_path):
    pool = open_folder(str(_folder(tmp_path, 2)), LIMITS, _skip)
    back = pickle.loads(pickle.dumps(pool[1]))
    assert back.image_id == pool[1].image_id and back.source == pool[1].source
    assert back.image.tobytes() == pool[1].image.tobytes()
    assert "image_id=" in repr(back)


def test_cache_is_least_recently_used():
    cache = ImageCache(2)
    made = []

    def loader(name):
        return lambda: made.append(name) or Image.new("RGB", (1, 1))

    for name in ("a", "b", "a", "c", "a", "b"):
        cache.get(name, loader(name))
    assert made == ["a", "b", "c", "b"]  # "b" was evicted by "c" (a was used more recently), then reloaded
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        ImageCache(0)


def test_engine_rows_do_not_depend_on_the_cache_size(tmp_path, no_autoload):
    from support.engine import comparable_rows, standin_plugins, standin_recipe

    from visplay.loop.engine import run_recipe

    folder = _folder(tmp_path, 10)
    rows = []
    for cache in (1, 256):
        run_dir = tmp_path / f"run{cache}"
        recipe = standin_recipe(run_dir, ["data.source=folder", f"data.images={folder}", f"data.image_cache={cache}",
                                          "iterations=1"])
        rows.append(comparable_rows(run_recipe(recipe, extra_plugins=standin_plugins(), quiet=True)))
    for table in rows[0]:
        if table != "runs":  # the recipe (and so the runs row) names the cache size
            assert rows[0][table] == rows[1][table], table
