"""Streaming image records: the pool holds ids, sources and sizes; pixels are decoded on demand.

A paper-scale pool (Vision-47K: ~47k images) decoded up front holds gigabytes of pixels for the whole run, while a
step touches a few hundred images. Here each record keeps only what identifies its image (content id, source,
size, and the bytes of generated images, which exist nowhere else) plus a small picklable *loader*; ``record.image``
decodes through the pool's bounded LRU cache (:class:`ImageCache`, ``plugins.images.image_cache`` entries).

Reloading must give the very pixels whose hash is the image id: loaders decode with the same function as the
pool did when it opened (visplay_images.decode), and a folder loader refuses a file whose size or modification
time changed since (the run would otherwise silently train on another picture).
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from visplay.api import ImageRecord
from visplay_images.decode import BadImage, DecodeLimits, decode_image

DEFAULT_CACHE_SIZE = 256  # decoded images; at 224 px ~150 kB each, ~38 MB


class ImageCache:
    """A thread-safe LRU of decoded images keyed by image id, holding at most ``capacity`` images."""

    def __init__(self, capacity: int = DEFAULT_CACHE_SIZE):
        if capacity < 1:
            raise ValueError(f"image cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._images: OrderedDict[str, Image.Image] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: str, load: Callable[[], Image.Image]) -> Image.Image:
        with self._lock:
            if key in self._images:
                self._images.move_to_end(key)
                self.hits += 1
                return self._images[key]
        image = load()  # outside the lock: decoding is the slow part
        with self._lock:
            self.misses += 1
            self._images[key] = image
            self._images.move_to_end(key)
            while len(self._images) > self.capacity:
                self._images.popitem(last=False)
        return image

    def __len__(self) -> int:
        return len(self._images)


_PROCESS_CACHE = ImageCache()  # what an unpickled record (in another process) decodes through


# --- loaders: picklable recipes for one image's pixels ------------------------------------------------------


@dataclass(frozen=True)
class FileLoader:
    """A file of a user folder, decoded as when the pool opened it."""

    path: str
    limits: DecodeLimits
    size: int
    mtime_ns: int

    def __call__(self) -> Image.Image:
        stat = os.stat(self.path)
        if (stat.st_size, stat.st_mtime_ns) != (self.size, self.mtime_ns):
            raise BadImage(f"{self.path} changed on disk since the run opened it (size or modification time); "
                           f"its pixels no longer match the logged image id")
        return decode_image(Path(self.path).read_bytes(), self.limits)


@dataclass(frozen=True)
class ParquetLoader:
    """One cell (or one image of a list cell) of a parquet file's ``images`` column, by row group and row."""

    path: str
    row_group: int
    row: int
    item: int | None
    limits: DecodeLimits

    def __call__(self) -> Image.Image:
        import pyarrow.parquet as pq

        from visplay_images.sources import cell_bytes

        column = pq.ParquetFile(self.path).read_row_group(self.row_group, columns=["images"]).column(0)
        cell = column[self.row].as_py()
        data = cell_bytes(cell[self.item] if self.item is not None else cell)
        if isinstance(data, BadImage):
            raise data
        return decode_image(data, self.limits)


@dataclass(frozen=True)
class PngLoader:
    """A generated image: its decoded RGB PNG (lossless, so the pixels are the ones that were hashed)."""

    png: bytes

    def __call__(self) -> Image.Image:
        with Image.open(io.BytesIO(self.png)) as img:
            img.load()
            return img.convert("RGB")


# --- the record ---------------------------------------------------------------------------------------------


class StreamedImageRecord(ImageRecord):
    """An :class:`ImageRecord` whose ``image`` is decoded on first use (and again after the cache evicts it)."""

    def __init__(self, image_id: str, source: str, load: Callable[[], Image.Image], cache: ImageCache, *,
                 width: int, height: int, png: bytes | None = None, meta: dict[str, Any] | None = None):
        # the parent is a frozen dataclass: fields are set the way its own __init__ does
        for name, value in (("image_id", image_id), ("source", source), ("png", png), ("meta", meta or {}),
                            ("width", width), ("height", height), ("_load", load), ("_cache", cache)):
            object.__setattr__(self, name, value)

    @property
    def image(self) -> Image.Image:  # type: ignore[override]
        return self._cache.get(self.image_id, self._load)

    def __repr__(self) -> str:  # the dataclass repr would decode the pixels
        return f"StreamedImageRecord(image_id={self.image_id[:12]!r}, source={self.source!r})"

    def __reduce__(self) -> tuple:
        # picklable for other processes (the loaders are plain data); there it decodes through that process's cache
        return (_rebuild, (self.image_id, self.source, self._load, self.width, self.height, self.png, self.meta))


def _rebuild(image_id: str, source: str, load: Any, width: int, height: int, png: bytes | None,
             meta: dict[str, Any]) -> StreamedImageRecord:
    return StreamedImageRecord(image_id, source, load, _PROCESS_CACHE, width=width, height=height, png=png,
                               meta=meta)
