"""The images plugin's recipe section, ``plugins.images``: how the ``folder``, ``parquet`` and ``procedural`` sources
decode and resize images, and the guards against hostile files."""

from __future__ import annotations

from dataclasses import dataclass

from visplay.api import int_at_least, number_in, one_of, optional_int_at_least

RESIZE_MODES = ("fixed", "pixels", "none")
MOVED = ("resize", "size", "min_pixels", "max_pixels", "max_file_mb", "max_decode_pixels", "image_cache",
         "max_images")
"""Settings that were the core's ``data.*`` before they moved here."""


@dataclass
class ImagesOptions:
    """Image decoding for the images plugin's sources (``data.source``: folder, parquet, procedural)."""

    resize: str = "fixed"
    """``fixed`` (size x size, the paper), ``pixels`` (min/max pixels, the released code) or ``none``."""
    size: int = 224
    """Side length for ``resize: fixed``."""
    min_pixels: int = 262144
    """Lower pixel bound for ``resize: pixels`` (released: 262144)."""
    max_pixels: int = 4194304
    """Upper pixel bound for ``resize: pixels`` (released: 4194304)."""
    max_file_mb: float = 64.0
    """Files larger than this are skipped (logged as events)."""
    max_decode_pixels: int = 100_000_000
    """Images with more pixels than this are skipped before decoding (decompression-bomb guard)."""
    image_cache: int = 256
    """Decoded images kept in memory (an LRU); the pool itself holds only ids, sources and sizes, and decodes
    pixels on demand (~150 kB per 224 px image)."""
    max_images: int | None = None
    """Use at most this many images from a folder or parquet file (in sorted order); None: all."""
    max_aspect_ratio: float | None = 200.0
    """Images whose longer side is more than this many times the shorter, after resizing, are skipped when the pool
    is built (an event names each): Qwen2-VL-family processors refuse an aspect ratio of 200 or more (transformers'
    ``smart_resize``), which would otherwise stop a run at its first step with that image. None: no limit."""

    legacy_keys = {f"data.{key}": key for key in MOVED}

    def validate(self) -> dict[str, str]:
        checks = {
            "resize": one_of(self.resize, RESIZE_MODES),
            "size": int_at_least(self.size, 1),
            "min_pixels": int_at_least(self.min_pixels, 1),
            "max_pixels": int_at_least(self.max_pixels, 1),
            "max_file_mb": number_in(self.max_file_mb, 0.0, low_open=True),
            "max_decode_pixels": int_at_least(self.max_decode_pixels, 1),
            "image_cache": int_at_least(self.image_cache, 1),
            "max_images": optional_int_at_least(self.max_images, 1),
            "max_aspect_ratio": None if self.max_aspect_ratio is None else number_in(self.max_aspect_ratio, 1.0),
        }
        problems = {key: why for key, why in checks.items() if why is not None}
        if not problems and self.min_pixels > self.max_pixels:
            problems["max_pixels"] = f"must be >= plugins.images.min_pixels ({self.min_pixels}), got {self.max_pixels}"
        return problems
