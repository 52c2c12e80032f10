"""Shape counting: coloured circles, squares and triangles on a white background, one per slot of a hidden grid
(so they never overlap).

Engine state: ``{"shapes": [{"shape", "colour", "row", "col"}], "slots": n}``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from visplay_games.core import Template, check_difficulty
from visplay_games.render import COLOURS, canvas

GAME = "shapes"
SHAPES = ("circle", "square", "triangle")
# difficulty -> (slots per side, count range, shape kinds, colours)
LEVELS = {1: (3, (2, 4), 2, 2), 2: (3, (4, 7), 3, 3), 3: (4, (7, 11), 3, 4)}
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles"}
_SINGULAR = {v: k for k, v in PLURAL.items()}


def generate(rng: np.random.Generator, difficulty: int) -> dict:
    slots, (lo, hi), n_shapes, n_colours = LEVELS[check_difficulty(difficulty)]
    count = int(rng.integers(lo, hi + 1))
    colours = [tuple(COLOURS)[i] for i in rng.permutation(len(COLOURS))[:n_colours]]
    kinds = [SHAPES[i] for i in sorted(rng.permutation(len(SHAPES))[:n_shapes])]
    places = sorted(int(p) for p in rng.permutation(slots * slots)[:count])
    shapes = [{"shape": kinds[int(rng.integers(len(kinds)))], "colour": colours[int(rng.integers(len(colours)))],
               "row": p // slots, "col": p % slots} for p in places]
    return {"shapes": shapes, "slots": slots}


def render(state: dict, size: int) -> Image.Image:
    image, draw = canvas(size)
    cell = size / state["slots"]
    for s in state["shapes"]:
        cx, cy = (s["col"] + 0.5) * cell, (s["row"] + 0.5) * cell
        h = cell * 0.36
        box = [int(cx - h), int(cy - h), int(cx + h), int(cy + h)]
        fill = COLOURS[s["colour"]]
        if s["shape"] == "circle":
            draw.ellipse(box, fill=fill)
        elif s["shape"] == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(box[0], box[3]), (box[2], box[3]), (int(cx), box[1])], fill=fill)
    return image


def describe(state: dict) -> str:
    items = ", ".join(f"{s['colour']} {s['shape']}" for s in state["shapes"])
    return f"{len(state['shapes'])} shapes: {items}."


def _count(state: dict, colour: str | None = None, shape: str | None = None) -> int:
    return sum((colour is None or s["colour"] == colour) and (shape is None or s["shape"] == shape)
               for s in state["shapes"])


def _count_colour(state: dict, colour: str) -> str | None:
    return str(_count(state, colour=colour)) if colour in COLOURS else None


def _count_shape(state: dict, plural: str) -> str | None:
    return str(_count(state, shape=_SINGULAR[plural])) if plural in _SINGULAR else None


def _count_both(state: dict, colour: str, plural: str) -> str | None:
    if colour not in COLOURS or plural not in _SINGULAR:
        return None
    return str(_count(state, colour=colour, shape=_SINGULAR[plural]))


def _more(state: dict, a: str, b: str) -> str | None:
    if a not in _SINGULAR or b not in _SINGULAR or a == b:
        return None
    return "yes" if _count(state, shape=_SINGULAR[a]) > _count(state, shape=_SINGULAR[b]) else "no"


def _most_colour(state: dict) -> str | None:
    counts = {c: _count(state, colour=c) for c in COLOURS}
    best = max(counts.values())
    winners = [c for c, n in counts.items() if n == best]
    return winners[0] if len(winners) == 1 else None


_C = "(" + "|".join(COLOURS) + ")"
_S = "(" + "|".join(PLURAL.values()) + ")"
TEMPLATES = [
    Template("total", "perception", "How many shapes are there?", r"how many shapes are there",
             lambda s: str(len(s["shapes"]))),
    Template("colour_count", "perception", "How many {} shapes are there?", r"how many " + _C + " shapes are there",
             _count_colour),
    Template("shape_count", "perception", "How many {} are there?", r"how many " + _S + " are there", _count_shape),
    Template("colour_shape_count", "perception", "How many {} {} are there?",
             r"how many " + _C + " " + _S + " are there", _count_both),
    Template("more_than", "reasoning", "Are there more {} than {}?", r"are there more " + _S + " than " + _S,
             _more),
    Template("most_colour", "reasoning", "Which colour appears most often?", r"which colou?r appears most often",
             _most_colour),
]


def propose(state: dict, rng: np.random.Generator, full: bool = True) -> list[tuple[str, tuple]]:
    present = state["shapes"]
    pick = present[int(rng.integers(len(present)))]
    a, b = (PLURAL[SHAPES[int(i)]] for i in rng.permutation(3)[:2])
    # full: any colour, since a questioner asks about colours that are not there too (answer 0); else a present one
    colour = tuple(COLOURS)[int(rng.integers(len(COLOURS)))] if full else pick["colour"]
    return [("total", ()), ("colour_count", (colour,)), ("shape_count", (PLURAL[pick["shape"]],)),
            ("colour_shape_count", (pick["colour"], PLURAL[pick["shape"]])), ("more_than", (a, b)),
            ("most_colour", ())]
