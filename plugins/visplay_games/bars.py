"""Bar charts: lettered bars with their values printed above them.

Engine state: ``{"values": [int], "labels": [str]}`` (bars left to right).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from visplay_games.core import Template, check_difficulty
from visplay_games.render import canvas, draw_text, fit_scale

GAME = "bars"
# difficulty -> (bars, highest value)
LEVELS = {1: (3, 9), 2: (4, 20), 3: (5, 50)}
_BAR_COLOURS = [(60, 110, 200), (220, 120, 40), (60, 160, 80), (180, 60, 60), (130, 80, 170)]


def generate(rng: np.random.Generator, difficulty: int) -> dict:
    n, top = LEVELS[check_difficulty(difficulty)]
    values = [int(v) + 1 for v in rng.permutation(top)[:n]]  # distinct: tallest and shortest are unique
    return {"values": values, "labels": [chr(ord("A") + i) for i in range(n)]}


def render(state: dict, size: int) -> Image.Image:
    image, draw = canvas(size)
    values, labels = state["values"], state["labels"]
    n = len(values)
    scale = max(1, size // 64)
    text_h = 5 * scale + 2
    base = size - text_h - 1
    top = text_h + 1
    slot = size / n
    peak = max(values)
    draw.line([(0, base), (size - 1, base)], fill=(0, 0, 0))
    for i, (v, label) in enumerate(zip(values, labels)):
        x0, x1 = int(i * slot + slot * 0.2), int((i + 1) * slot - slot * 0.2)
        y = base - int(round((base - top - text_h) * v / peak))
        draw.rectangle([x0, y, x1, base - 1], fill=_BAR_COLOURS[i % len(_BAR_COLOURS)])
        s = min(scale, fit_scale(str(v), int(slot) - 1, text_h))
        draw_text(draw, ((x0 + x1) / 2, y - text_h / 2), str(v), s)
        draw_text(draw, ((x0 + x1) / 2, base + text_h / 2 + 1), label, scale)
    return image


def describe(state: dict) -> str:
    items = ", ".join(f"{lab}={v}" for lab, v in zip(state["labels"], state["values"]))
    return f"Bar chart with {len(state['values'])} bars: {items}."


def _value(state: dict, label: str) -> int | None:
    label = label.upper()
    return state["values"][state["labels"].index(label)] if label in state["labels"] else None


def _bar(state: dict, label: str) -> str | None:
    v = _value(state, label)
    return None if v is None else str(v)


def _sum(state: dict, a: str, b: str) -> str | None:
    va, vb = _value(state, a), _value(state, b)
    return None if va is None or vb is None or a == b else str(va + vb)


def _diff(state: dict, a: str, b: str) -> str | None:
    va, vb = _value(state, a), _value(state, b)
    return None if va is None or vb is None or a == b else str(abs(va - vb))


def _extreme(state: dict, pick: str) -> str:
    values = state["values"]
    target = max(values) if pick == "tallest" else min(values)
    return state["labels"][values.index(target)]


TEMPLATES = [
    Template("bar_value", "perception", "What is the value of bar {}?", r"what is the value of bar ([a-z])", _bar),
    Template("extreme", "perception", "Which bar is the {}?", r"which bar is the (tallest|shortest)", _extreme),
    Template("sum", "reasoning", "What is the sum of bars {} and {}?", r"what is the sum of bars ([a-z]) and ([a-z])",
             _sum),
    Template("difference", "reasoning", "What is the difference between bars {} and {}?",
             r"what is the difference between bars ([a-z]) and ([a-z])", _diff),
    Template("count_above", "reasoning", "How many bars are taller than {}?", r"how many bars are taller than (\d+)",
             lambda s, v: str(sum(x > v for x in s["values"]))),
]


def propose(state: dict, rng: np.random.Generator, full: bool = True) -> list[tuple[str, tuple]]:
    labels = state["labels"]
    a, b = (labels[int(i)] for i in rng.permutation(len(labels))[:2])
    threshold = int(sorted(state["values"])[len(labels) // 2])
    return [("bar_value", (a,)), ("extreme", ("tallest",)), ("extreme", ("shortest",)), ("sum", (a, b)),
            ("difference", (a, b)), ("count_above", (threshold,))]
