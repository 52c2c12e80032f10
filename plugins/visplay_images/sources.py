"""Image pools: a local folder, a parquet file with an ``images`` column, and procedurally drawn shapes.

Each pool is read once when opened, in a deterministic order (folder: sorted relative paths; parquet: row
order; procedural: index order), to give every image its content id (visplay_images.decode.image_id); the pixels are
then dropped and decoded again on demand through a bounded cache (visplay_images.stream), so memory does not grow
with the pool. Bad inputs go to ``on_skip(source, reason)`` and are left out; duplicates (same content hash) are
kept once. An empty pool is an error naming the path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from visplay.api import ImageRecord
from visplay_images.decode import BadImage, DecodeLimits, decode_image, image_id, png_bytes
from visplay_images.stream import (
    DEFAULT_CACHE_SIZE,
    FileLoader,
    ImageCache,
    ParquetLoader,
    PngLoader,
    StreamedImageRecord,
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
SkipCallback = Callable[[str, str], None]
# (source, bytes or the reason they are unusable, the loader that reads them again)
Item = tuple[str, Any, Callable[[], Image.Image] | None]


class ImagePool:
    """A finite, ordered list of ImageRecords (implements visplay.types.ImageSource, plus indexing).

    The records are light (id, source, size, loader); ``cache`` holds the decoded pixels of the recently used ones.
    """

    def __init__(self, records: list[ImageRecord], origin: str, skipped: int = 0, duplicates: int = 0,
                 cache: ImageCache | None = None):
        self.records = records
        self.origin = origin
        self.skipped = skipped
        self.duplicates = duplicates
        self.cache = cache

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)

    def __getitem__(self, index: int) -> ImageRecord:
        return self.records[index]


def _collect(items: Iterator[Item], limits: DecodeLimits, on_skip: SkipCallback, origin: str,
             max_images: int | None, keep_png: bool, meta: Callable[[str], dict] | None = None,
             cache_size: int = DEFAULT_CACHE_SIZE) -> ImagePool:
    """Decode (source, bytes-or-error, loader) items once for their ids, skipping bad ones; keep light records."""
    cache = ImageCache(cache_size)
    records: list[ImageRecord] = []
    seen: set[str] = set()
    skipped = duplicates = 0
    for source, data, loader in items:
        if max_images is not None and len(records) >= max_images:
            break
        try:
            if isinstance(data, BadImage):
                raise data
            img = decode_image(data, limits)
        except BadImage as exc:
            skipped += 1
            on_skip(source, str(exc))
            continue
        png = png_bytes(img)
        ident = image_id(png)
        if ident in seen:
            duplicates += 1
            continue
        seen.add(ident)
        records.append(StreamedImageRecord(ident, source, PngLoader(png) if keep_png else loader, cache,
                                           width=img.width, height=img.height, png=png if keep_png else None,
                                           meta=meta(source) if meta else {}))
    if not records:
        raise ValueError(f"{origin}: no usable images ({skipped} skipped as unreadable; see the image_skipped "
                         f"events or the messages above)")
    return ImagePool(records, origin, skipped=skipped, duplicates=duplicates, cache=cache)


# --- folder ----------------------------------------------------------------------------------------------------


def open_folder(path: str, limits: DecodeLimits, on_skip: SkipCallback, max_images: int | None = None,
                cache_size: int = DEFAULT_CACHE_SIZE) -> ImagePool:
    """Every image file under ``path`` (recursively), in sorted order of relative path."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"data.images={path!r}: not a folder")
    files = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix())

    def items() -> Iterator[Item]:
        for file in files:
            if file.name.startswith("."):
                continue
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                yield str(file), BadImage(f"not an image file name (suffix {file.suffix or 'none'!r})"), None
                continue
            yield (str(file), *_read(file, limits))

    return _collect(items(), limits, on_skip, str(root), max_images, keep_png=False, cache_size=cache_size)


def _read(file: Path, limits: DecodeLimits) -> tuple[bytes | BadImage, FileLoader | None]:
    """The file's bytes and its loader, or why not: too large (checked before reading it into memory) or
    unreadable (an I/O error, no permission, vanished), which skips the file like a corrupt one instead of ending
    the run."""
    try:
        stat = os.stat(file)
        if stat.st_size > limits.max_file_mb * 1024 * 1024:
            return BadImage(f"file is {stat.st_size / 2**20:.1f} MB > plugins.images.max_file_mb={limits.max_file_mb}"), None
        data = file.read_bytes()
    except OSError as exc:
        return BadImage(f"cannot read the file ({type(exc).__name__}: [Errno {exc.errno}] {exc.strerror})"), None
    return data, FileLoader(str(file), limits, stat.st_size, stat.st_mtime_ns)


# --- parquet ---------------------------------------------------------------------------------------------------


def open_parquet(path: str, limits: DecodeLimits, on_skip: SkipCallback, max_images: int | None = None,
                 cache_size: int = DEFAULT_CACHE_SIZE) -> ImagePool:
    """The ``images`` column of a parquet file: bytes, {"bytes": ...} structs (HF datasets), or lists of them.

    Read one row group at a time; a record reloads its cell by (row group, row) when its pixels are needed.
    """
    import pyarrow.parquet as pq

    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"data.images={path!r}: no such parquet file")
    try:
        parquet = pq.ParquetFile(file)
    except Exception as exc:
        raise ValueError(f"data.images={path!r}: not a readable parquet file ({exc})") from exc
    if "images" not in parquet.schema_arrow.names:
        raise ValueError(f"{path}: no 'images' column (columns: {', '.join(parquet.schema_arrow.names)})")

    def items() -> Iterator[Item]:
        row = 0
        for group in range(parquet.num_row_groups):
            cells = parquet.read_row_group(group, columns=["images"]).column(0).to_pylist()
            for index, cell in enumerate(cells):
                values = cell if isinstance(cell, list) else [cell]
                for k, value in enumerate(values):
                    name = f"{file}#row{row}" + (f"/{k}" if isinstance(cell, list) else "")
                    loader = ParquetLoader(str(file), group, index, k if isinstance(cell, list) else None, limits)
                    yield name, cell_bytes(value), loader
                row += 1

    return _collect(items(), limits, on_skip, str(file), max_images, keep_png=False, cache_size=cache_size)


def cell_bytes(value: Any) -> bytes | BadImage:
    if isinstance(value, dict):
        value = value.get("bytes")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if value is None:
        return BadImage("empty cell (no bytes)")
    return BadImage(f"cell holds {type(value).__name__}, not image bytes")


# --- procedural ------------------------------------------------------------------------------------------------

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30),
          "purple": (140, 60, 180), "orange": (240, 130, 20)}
SHAPES = ("circle", "square", "triangle")


def draw_shapes(seed: int, side: int = 224) -> tuple[Image.Image, dict[str, Any]]:
    """One image of 1-6 coloured shapes on a light background, and what was drawn (its ground truth)."""
    rng = np.random.default_rng(seed)
    background = tuple(int(v) for v in rng.integers(225, 256, size=3))
    img = Image.new("RGB", (side, side), background)
    draw = ImageDraw.Draw(img)
    shapes = []
    for _ in range(int(rng.integers(1, 7))):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        color = list(COLORS)[int(rng.integers(len(COLORS)))]
        r = int(rng.integers(side // 12, side // 5))
        cx, cy = (int(v) for v in rng.integers(r, side - r, size=2))
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape == "circle":
            draw.ellipse(box, fill=COLORS[color])
        elif shape == "square":
            draw.rectangle(box, fill=COLORS[color])
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=COLORS[color])
        shapes.append({"shape": shape, "color": color, "x": cx, "y": cy, "r": r})
    counts = {s: sum(1 for d in shapes if d["shape"] == s) for s in SHAPES}
    return img, {"generator": "procedural/shapes-v1", "shapes": shapes, "counts": counts, "total": len(shapes)}


def open_procedural(num_images: int, limits: DecodeLimits, seed_for: Callable[[int], int],
                    cache_size: int = DEFAULT_CACHE_SIZE) -> ImagePool:
    """``num_images`` generated images; image i is drawn from seed ``seed_for(i)``. Bytes are kept (stored in the
    run log, since these images exist nowhere else)."""
    if num_images < 1:
        raise ValueError(f"data.num_images must be >= 1 for the procedural source, got {num_images}")
    side = limits.size if limits.resize == "fixed" else 224
    metas: dict[str, dict[str, Any]] = {}

    def items() -> Iterator[Item]:
        for i in range(num_images):  # drawn one at a time: only the PNG bytes of each stay
            img, metas[f"procedural:{i}"] = draw_shapes(seed_for(i), side)
            yield f"procedural:{i}", png_bytes(img), None

    def no_skip(source: str, reason: str) -> None:  # generated images are always valid
        raise RuntimeError(f"{source}: generated image failed to decode: {reason}")

    return _collect(items(), limits, no_skip, "procedural", None, keep_png=True, meta=metas.__getitem__,
                    cache_size=cache_size)
