"""Analogue clocks: a face with twelve ticks (12, 3, 6 and 9 printed) and two hands.

Engine state: ``{"hour": 1..12, "minute": 0..59}``. Times are written ``H:MM`` on a 12-hour dial.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from visplay_games.core import Template, check_difficulty
from visplay_games.render import canvas, draw_text

GAME = "clock"
# difficulty -> minute step (60: on the hour only)
LEVELS = {1: 60, 2: 15, 3: 5}


def fmt(hour: int, minute: int) -> str:
    return f"{hour}:{minute:02d}"


def shift(hour: int, minute: int, delta: int) -> tuple[int, int]:
    """The dial time ``delta`` minutes later (earlier when negative)."""
    total = ((hour % 12) * 60 + minute + delta) % 720
    return (total // 60) or 12, total % 60


def generate(rng: np.random.Generator, difficulty: int) -> dict:
    step = LEVELS[check_difficulty(difficulty)]
    return {"hour": int(rng.integers(1, 13)), "minute": int(rng.integers(0, 60 // step)) * step}


def render(state: dict, size: int) -> Image.Image:
    image, draw = canvas(size)
    c = size / 2
    radius = size / 2 - 2
    draw.ellipse([2, 2, size - 3, size - 3], fill=(250, 248, 235), outline=(0, 0, 0), width=max(1, size // 64))
    scale = max(1, size // 64)
    for k in range(12):
        a = math.radians(k * 30)
        r0 = radius * (0.82 if k % 3 else 0.74)
        draw.line([(c + r0 * math.sin(a), c - r0 * math.cos(a)),
                   (c + radius * 0.95 * math.sin(a), c - radius * 0.95 * math.cos(a))], fill=(0, 0, 0), width=1)
    for k, label in ((0, "12"), (3, "3"), (6, "6"), (9, "9")):
        a = math.radians(k * 30)
        draw_text(draw, (c + radius * 0.58 * math.sin(a), c - radius * 0.58 * math.cos(a)), label, scale,
                  (90, 90, 90))
    minute_angle = math.radians(state["minute"] * 6)
    hour_angle = math.radians((state["hour"] % 12) * 30 + state["minute"] * 0.5)
    for angle, length, width, colour in ((hour_angle, 0.5, max(2, size // 32), (20, 20, 20)),
                                         (minute_angle, 0.85, max(1, size // 64), (200, 30, 30))):
        draw.line([(c, c), (c + radius * length * math.sin(angle), c - radius * length * math.cos(angle))],
                  fill=colour, width=width)
    return image


def describe(state: dict) -> str:
    return (f"Analogue clock showing {fmt(state['hour'], state['minute'])}: the short black hour hand near "
            f"{state['hour']}, the long red minute hand at {state['minute']} minutes.")


def _later(state: dict, n: int, unit: str, direction: str) -> str | None:
    minutes = n * (60 if unit.startswith("hour") else 1)
    if n <= 0 or n > 12 * 60:
        return None
    return fmt(*shift(state["hour"], state["minute"], minutes if direction == "in" else -minutes))


TEMPLATES = [
    Template("time", "perception", "What time does the clock show? Answer as H:MM.",
             r"what time does the clock show(?:\? answer as h:mm)?", lambda s: fmt(s["hour"], s["minute"])),
    Template("hour", "perception", "What hour is it?", r"what hour is it", lambda s: str(s["hour"])),
    Template("minute", "perception", "How many minutes past the hour is it?",
             r"how many minutes past the hour is it", lambda s: str(s["minute"])),
    Template("later", "reasoning", "What time will it be in {} {}? Answer as H:MM.",
             r"what time will it be in (\d+) (minutes|hours?)(?:\? answer as h:mm)?",
             lambda s, n, unit: _later(s, n, unit, "in")),
    Template("earlier", "reasoning", "What time was it {} {} ago? Answer as H:MM.",
             r"what time was it (\d+) (minutes|hours?) ago(?:\? answer as h:mm)?",
             lambda s, n, unit: _later(s, n, unit, "ago")),
]


def propose(state: dict, rng: np.random.Generator, full: bool = True) -> list[tuple[str, tuple]]:
    minutes = int(rng.choice([15, 20, 30, 45]))
    hours = int(rng.integers(2, 6))
    return [("time", ()), ("hour", ()), ("minute", ()), ("later", (minutes, "minutes")),
            ("earlier", (hours, "hours"))]
