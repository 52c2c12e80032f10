"""Swap (match-3): a grid of coloured gems; swapping two neighbours scores when it makes a line of three or more
equal colours in a row or column. Generated boards hold no line yet, so every line comes from a swap.

Engine state: ``{"grid": [[colour name]]}``, rows top to bottom. A swap is written ``r1,c1-r2,c2`` (1-based).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from visplay_games.core import Template, cell_choice, check_difficulty
from visplay_games.render import COLOURS, canvas

GAME = "swap"
PALETTE = tuple(COLOURS)  # red green blue yellow purple orange
# difficulty -> (side, colours)
LEVELS = {1: (4, 4), 2: (5, 5), 3: (6, 6)}


# --- engine ----------------------------------------------------------------------------------------------------


def has_line(grid: list[list[str]]) -> bool:
    """Is there a run of three equal gems in a row or a column?"""
    n_rows, n_cols = len(grid), len(grid[0])
    for r in range(n_rows):
        for c in range(n_cols):
            g = grid[r][c]
            if c + 2 < n_cols and grid[r][c + 1] == g == grid[r][c + 2]:
                return True
            if r + 2 < n_rows and grid[r + 1][c] == g == grid[r + 2][c]:
                return True
    return False


def swapped(grid: list[list[str]], a: tuple[int, int], b: tuple[int, int]) -> list[list[str]]:
    out = [row[:] for row in grid]
    out[a[0]][a[1]], out[b[0]][b[1]] = out[b[0]][b[1]], out[a[0]][a[1]]
    return out


def scoring_swaps(grid: list[list[str]]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Every neighbour swap (0-based, right or down) that makes a line of three."""
    out = []
    for r in range(len(grid)):
        for c in range(len(grid[0])):
            for b in ((r, c + 1), (r + 1, c)):
                if b[0] < len(grid) and b[1] < len(grid[0]) and grid[r][c] != grid[b[0]][b[1]]:
                    if has_line(swapped(grid, (r, c), b)):
                        out.append(((r, c), b))
    return out


# --- generation and rendering ----------------------------------------------------------------------------------


def generate(rng: np.random.Generator, difficulty: int) -> dict:
    side, n_colours = LEVELS[check_difficulty(difficulty)]
    colours = PALETTE[:n_colours]
    grid = [[""] * side for _ in range(side)]
    for r in range(side):
        for c in range(side):
            # Fill in reading order, never completing a line of three to the left or above.
            banned = set()
            if c >= 2 and grid[r][c - 1] == grid[r][c - 2]:
                banned.add(grid[r][c - 1])
            if r >= 2 and grid[r - 1][c] == grid[r - 2][c]:
                banned.add(grid[r - 1][c])
            allowed = [x for x in colours if x not in banned]
            grid[r][c] = allowed[int(rng.integers(len(allowed)))]
    return {"grid": grid}


def render(state: dict, size: int) -> Image.Image:
    grid = state["grid"]
    side = len(grid)
    image, draw = canvas(size, (35, 35, 45))
    cell = (size - 2) // side
    off = (size - cell * side) // 2
    for r in range(side):
        for c in range(side):
            x0, y0 = off + c * cell, off + r * cell
            pad = max(1, cell // 8)
            draw.ellipse([x0 + pad, y0 + pad, x0 + cell - 1 - pad, y0 + cell - 1 - pad],
                         fill=COLOURS[grid[r][c]])
    return image


def describe(state: dict) -> str:
    grid = state["grid"]
    rows = "; ".join(f"row {i + 1}: " + " ".join(row) for i, row in enumerate(grid))
    return f"Swap board {len(grid)}x{len(grid)}. {rows}."


# --- questions -------------------------------------------------------------------------------------------------


def _inside(state: dict, r: int, c: int) -> bool:
    return 1 <= r <= len(state["grid"]) and 1 <= c <= len(state["grid"][0])


def _colour_at(state: dict, r: int, c: int) -> str | None:
    return state["grid"][r - 1][c - 1] if _inside(state, r, c) else None


def _count_colour(state: dict, colour: str) -> str | None:
    return str(sum(v == colour for row in state["grid"] for v in row)) if colour in PALETTE else None


def _makes_line(state: dict, r1: int, c1: int, r2: int, c2: int) -> str | None:
    if not (_inside(state, r1, c1) and _inside(state, r2, c2)) or abs(r1 - r2) + abs(c1 - c2) != 1:
        return None
    return "yes" if has_line(swapped(state["grid"], (r1 - 1, c1 - 1), (r2 - 1, c2 - 1))) else "no"


def _which_swap(state: dict) -> str | None:
    swaps = scoring_swaps(state["grid"])
    if len(swaps) != 1:
        return None
    (r1, c1), (r2, c2) = swaps[0]
    return f"{r1 + 1},{c1 + 1}-{r2 + 1},{c2 + 1}"


_COLOUR = "(" + "|".join(PALETTE) + ")"
TEMPLATES = [
    Template("colour_at", "perception", "What colour is the gem at row {}, column {}?",
             r"what colou?r is the gem at row (\d+),? column (\d+)", _colour_at),
    Template("colour_count", "perception", "How many {} gems are there?",
             r"how many " + _COLOUR + " gems are there", _count_colour),
    Template("makes_line", "reasoning",
             "Does swapping row {}, column {} with row {}, column {} make a line of three?",
             r"does swapping row (\d+),? column (\d+) with row (\d+),? column (\d+) make a line of three",
             _makes_line),
    Template("scoring_swaps", "reasoning", "How many swaps make a line of three?",
             r"how many swaps make a line of three", lambda s: str(len(scoring_swaps(s["grid"])))),
    Template("which_swap", "reasoning", "Which swap makes a line of three? Answer as r1,c1-r2,c2.",
             r"which swap makes a line of three(?:\? answer as r1,c1-r2,c2)?", _which_swap),
]


def propose(state: dict, rng: np.random.Generator, full: bool = True) -> list[tuple[str, tuple]]:
    grid = state["grid"]
    side = len(grid)
    cells = [(r + 1, c + 1) for r in range(side) for c in range(side)]
    out: list[tuple[str, tuple]] = [("colour_at", rc) for rc in cell_choice(rng, cells, 2)]
    present = sorted({v for row in grid for v in row})
    out.append(("colour_count", (present[int(rng.integers(len(present)))],)))
    out += [("scoring_swaps", ()), ("which_swap", ())]
    # One scoring swap and one that does not score: balanced yes/no.
    good = scoring_swaps(grid)
    if good:
        a, b = good[int(rng.integers(len(good)))]
        out.append(("makes_line", (a[0] + 1, a[1] + 1, b[0] + 1, b[1] + 1)))
    r, c = cells[int(rng.integers(len(cells)))]
    b = (r, c + 1) if c < side else (r, c - 1)
    if _makes_line(state, r, c, *b) == "no":
        out.append(("makes_line", (r, c, *b)))
    return out
