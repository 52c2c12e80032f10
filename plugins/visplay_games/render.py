"""Drawing helpers shared by the game renderers: a built-in pixel font, colours and deterministic PNG bytes.

Why a pixel font of our own: ``PIL.ImageFont.load_default()`` returns, on Pillow >= 10.1 with FreeType, the
embedded Aileron TrueType font, whose anti-aliased rasterisation depends on the FreeType build, so the same seed
could give different PNG bytes on another machine. Its bitmap fallback is 6x11 pixels a glyph, too wide for a
"2048" tile on a 64x64 board. The 3x5 glyphs below are drawn as filled rectangles, scaled by an integer factor:
bit-exact everywhere and legible down to 64-pixel images.
"""

from __future__ import annotations

import hashlib
import io

from PIL import Image, ImageDraw

from visplay.api import ImageRecord

# 3 columns x 5 rows per glyph; "1" = ink. Digits, capitals and the few punctuation marks the games print.
_GLYPHS: dict[str, tuple[str, ...]] = {
    "0": ("111", "101", "101", "101", "111"), "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"), "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"), "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"), "7": ("111", "001", "001", "010", "010"),
    "8": ("111", "101", "111", "101", "111"), "9": ("111", "101", "111", "001", "111"),
    "A": ("010", "101", "111", "101", "101"), "B": ("110", "101", "110", "101", "110"),
    "C": ("011", "100", "100", "100", "011"), "D": ("110", "101", "101", "101", "110"),
    "E": ("111", "100", "110", "100", "111"), "F": ("111", "100", "110", "100", "100"),
    "G": ("011", "100", "101", "101", "011"), "H": ("101", "101", "111", "101", "101"),
    "I": ("111", "010", "010", "010", "111"), "J": ("001", "001", "001", "101", "010"),
    "K": ("101", "101", "110", "101", "101"), "L": ("100", "100", "100", "100", "111"),
    "M": ("101", "111", "111", "101", "101"), "N": ("110", "101", "101", "101", "101"),
    "O": ("010", "101", "101", "101", "010"), "P": ("110", "101", "110", "100", "100"),
    "Q": ("010", "101", "101", "110", "011"), "R": ("110", "101", "110", "101", "101"),
    "S": ("011", "100", "010", "001", "110"), "T": ("111", "010", "010", "010", "010"),
    "U": ("101", "101", "101", "101", "111"), "V": ("101", "101", "101", "101", "010"),
    "W": ("101", "101", "111", "111", "101"), "X": ("101", "101", "010", "101", "101"),
    "Y": ("101", "101", "010", "010", "010"), "Z": ("111", "001", "010", "100", "111"),
    ":": ("000", "010", "000", "010", "000"), "-": ("000", "000", "111", "000", "000"),
    " ": ("000", "000", "000", "000", "000"),
}
GLYPH_W, GLYPH_H = 3, 5

# Named colours: the names are what the answers say, so each must be unmistakable at a few pixels.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 160, 50), "blue": (30, 70, 220), "yellow": (235, 200, 20),
    "purple": (140, 40, 170), "orange": (245, 130, 20),
}
INK = (20, 20, 20)
WHITE = (255, 255, 255)


def text_size(text: str, scale: int) -> tuple[int, int]:
    """Width and height in pixels of ``text`` drawn at ``scale`` (one blank column between glyphs)."""
    n = len(text)
    return (n * (GLYPH_W + 1) - 1) * scale if n else 0, GLYPH_H * scale


def fit_scale(text: str, box_w: int, box_h: int) -> int:
    """The largest integer scale (at least 1) at which ``text`` fits a box_w x box_h box."""
    scale = 1
    while True:
        w, h = text_size(text, scale + 1)
        if w > box_w or h > box_h:
            return scale
        scale += 1


def draw_text(draw: ImageDraw.ImageDraw, center: tuple[float, float], text: str, scale: int,
              fill: tuple[int, int, int] = INK) -> None:
    """Draw ``text`` centred on ``center`` with the pixel font. Unknown characters are an error."""
    w, h = text_size(text, scale)
    x0 = int(round(center[0] - w / 2))
    y0 = int(round(center[1] - h / 2))
    for i, ch in enumerate(text.upper()):
        glyph = _GLYPHS.get(ch)
        if glyph is None:
            raise ValueError(f"pixel font has no glyph for {ch!r} (in {text!r})")
        gx = x0 + i * (GLYPH_W + 1) * scale
        for row, bits in enumerate(glyph):
            for col, bit in enumerate(bits):
                if bit == "1":
                    x, y = gx + col * scale, y0 + row * scale
                    draw.rectangle([x, y, x + scale - 1, y + scale - 1], fill=fill)


def canvas(size: int, colour: tuple[int, int, int] = WHITE) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (size, size), colour)
    return image, ImageDraw.Draw(image)


def png_bytes(image: Image.Image) -> bytes:
    """PNG bytes of an RGB image with fixed encoder settings and no metadata (same pixels -> same bytes)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def image_record(image: Image.Image, source: str, meta: dict) -> ImageRecord:
    """An ImageRecord whose id is the sha256 of the PNG bytes, as visplay.types requires."""
    png = png_bytes(image)
    return ImageRecord(image_id=hashlib.sha256(png).hexdigest(), image=image, source=source, png=png, meta=meta)
