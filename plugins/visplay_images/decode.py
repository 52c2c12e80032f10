"""Safe image decoding: bytes -> RGB PIL image, resized per the recipe, with a content-hash id.

Untrusted files are checked in the cheapest order: file size, then the header's dimensions (PIL reads only the
header on ``open``), and only then the pixels. Every failure raises :class:`BadImage` with a short reason; the
source turns that into an ``image_skipped`` event instead of stopping the run.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image

from visplay_images.options import RESIZE_MODES, ImagesOptions


class BadImage(Exception):
    """A file or blob that is not a usable image; ``str(err)`` is the reason."""


@dataclass(frozen=True)
class DecodeLimits:
    """What the recipe allows (``plugins.images``): resize mode and the guards against hostile files."""

    # the section's defaults, not a second copy of them
    resize: str = ImagesOptions.resize
    size: int = ImagesOptions.size
    min_pixels: int = ImagesOptions.min_pixels
    max_pixels: int = ImagesOptions.max_pixels
    max_file_mb: float = ImagesOptions.max_file_mb
    max_decode_pixels: int = ImagesOptions.max_decode_pixels
    max_aspect_ratio: float | None = ImagesOptions.max_aspect_ratio

    @classmethod
    def from_options(cls, options: ImagesOptions | dict) -> DecodeLimits:
        values = options if isinstance(options, dict) else vars(options)
        keys = ("resize", "size", "min_pixels", "max_pixels", "max_file_mb", "max_decode_pixels")
        limits = cls(**{k: values[k] for k in keys if values.get(k) is not None},
                     max_aspect_ratio=values.get("max_aspect_ratio", ImagesOptions.max_aspect_ratio))
        if limits.resize not in RESIZE_MODES:
            raise ValueError(f"plugins.images.resize must be one of {', '.join(RESIZE_MODES)}, got {limits.resize!r}")
        return limits


def decode_image(data: bytes, limits: DecodeLimits) -> Image.Image:
    """Decode ``data`` into a resized RGB image, or raise BadImage saying why not."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    if len(data) > limits.max_file_mb * 1024 * 1024:
        raise BadImage(f"file is {len(data) / 2**20:.1f} MB > plugins.images.max_file_mb={limits.max_file_mb}")
    with warnings.catch_warnings():
        # PIL's own bomb guard (a warning, or an error at open) is replaced by plugins.images.max_decode_pixels below,
        # checked on the header's dimensions before any pixel is decoded.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        pil_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            img = Image.open(io.BytesIO(data))
        except Exception as exc:  # PIL raises many types for garbage input
            raise BadImage(f"not a readable image ({type(exc).__name__}: {exc})") from exc
        finally:
            Image.MAX_IMAGE_PIXELS = pil_limit
        width, height = img.size
        if width <= 0 or height <= 0:
            raise BadImage(f"invalid dimensions {width}x{height}")
        if width * height > limits.max_decode_pixels:
            raise BadImage(f"{width}x{height} = {width * height} pixels > plugins.images.max_decode_pixels="
                           f"{limits.max_decode_pixels}; not decoded")
        try:
            img.load()
            rgb = _to_rgb(img)
        except Exception as exc:  # truncated or corrupt pixel data
            raise BadImage(f"corrupt or truncated image data ({type(exc).__name__}: {exc})") from exc
    out = resize(rgb, limits)
    ratio = max(out.size) / min(out.size)
    if limits.max_aspect_ratio is not None and ratio > limits.max_aspect_ratio:
        raise BadImage(f"aspect ratio {out.width}x{out.height} ({ratio:.0f}:1) > plugins.images.max_aspect_ratio="
                       f"{limits.max_aspect_ratio:g} (vision processors such as Qwen2-VL's refuse it)")
    return out


WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
"""Integer modes PIL opens 16-bit greyscale files in (PNG, TIFF); ``convert("RGB")`` would clip every value above
255, so a 16-bit image decoded nearly white."""


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img.copy()
    if img.mode in WIDE_MODES:
        return _wide_to_rgb(img)
    if img.mode == "F":
        return _float_to_rgb(img)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels become white rather than whatever colour happens to sit under the alpha.
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def _wide_to_rgb(img: Image.Image) -> Image.Image:
    """16-bit greyscale -> 8-bit RGB by value * 255 / 65535, rounded (the full 16-bit range maps to 0..255).
    Mode ``I`` (32-bit) holds 16-bit files in older PIL versions, or 8-bit values: scaled only when a value
    exceeds 255, and clipped to 0..65535."""
    import numpy as np

    values = np.asarray(img, dtype=np.int64)
    if img.mode != "I" or values.max(initial=0) > 255:
        values = (np.clip(values, 0, 65535) * 255 + 32767) // 65535
    grey = Image.fromarray(values.astype(np.uint8))
    return grey.convert("RGB")


def _float_to_rgb(img: Image.Image) -> Image.Image:
    """32-bit float greyscale (TIFF mode ``F``) -> 8-bit RGB. ``convert("RGB")`` truncates each value to an integer,
    so the usual 0..1 float image decoded black. Values within 0..1 are scaled by 255, values past 255 are taken as
    16-bit (x 255 / 65535), anything else as 8-bit; then rounded and clipped to 0..255, NaN as 0."""
    import numpy as np

    values = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    top = values.max(initial=0.0)
    if top <= 1.0:
        values = values * 255
    elif top > 255:
        values = values * 255 / 65535
    grey = Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8))
    return grey.convert("RGB")


def resize(img: Image.Image, limits: DecodeLimits) -> Image.Image:
    """Resize per ``limits.resize``: ``fixed`` (size x size, the paper), ``pixels`` (released code), ``none``."""
    if limits.resize == "fixed":
        if img.size == (limits.size, limits.size):
            return img
        return img.resize((limits.size, limits.size), Image.Resampling.BICUBIC)
    if limits.resize == "pixels":
        return _resize_pixels(img, limits.min_pixels, limits.max_pixels)
    return img


def _resize_pixels(img: Image.Image, min_pixels: int, max_pixels: int) -> Image.Image:
    # As EasyR1's process_image (the released code): shrink above max_pixels, then grow below min_pixels,
    # keeping the aspect ratio and truncating to whole pixels.
    if img.width * img.height > max_pixels:
        factor = math.sqrt(max_pixels / (img.width * img.height))
        img = img.resize((max(1, int(img.width * factor)), max(1, int(img.height * factor))),
                         Image.Resampling.BICUBIC)
    if img.width * img.height < min_pixels:
        factor = math.sqrt(min_pixels / (img.width * img.height))
        img = img.resize((max(1, int(img.width * factor)), max(1, int(img.height * factor))),
                         Image.Resampling.BICUBIC)
    return img


def png_bytes(img: Image.Image) -> bytes:
    """Deterministic PNG encoding (fixed compression, no metadata)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def image_id(png: bytes) -> str:
    """The content id of an image: sha256 of its decoded RGB image's PNG bytes."""
    return hashlib.sha256(png).hexdigest()
