"""Shisen-Sho: pairs of lettered tiles; two equal tiles can be removed when a path of at most three straight
segments (at most two turns) joins them through empty cells, possibly running just outside the board.

Engine state: ``{"grid": [[str]]}`` with ``""`` for an empty cell, rows top to bottom.
"""

from __future__ import annotations

from collections import deque
from itertools import combinations

import numpy as np
from PIL import Image

from visplay_games.core import Template, cell_choice, check_difficulty
from visplay_games.render import canvas, draw_text, fit_scale

GAME = "shisen"
# difficulty -> (rows, cols, distinct letters, fraction of tiles already removed)
LEVELS = {1: (4, 4, 4, 0.5), 2: (4, 6, 6, 0.35), 3: (6, 6, 9, 0.25)}
LETTERS = "ABCDEFGHK"
_TILE_COLOURS = [(200, 40, 40), (30, 120, 40), (30, 60, 200), (150, 40, 160), (200, 110, 0), (0, 130, 140),
                 (120, 80, 40), (90, 90, 90), (200, 40, 120)]
_STEPS = ((-1, 0), (1, 0), (0, -1), (0, 1))


# --- engine ----------------------------------------------------------------------------------------------------


def min_turns(grid: list[list[str]], a: tuple[int, int], b: tuple[int, int]) -> int | None:
    """Fewest turns of a path from cell a to cell b (0-based) through empty cells and the one-cell ring around
    the board; None when unreachable. A 0-1 BFS over (cell, heading) states."""
    rows, cols = len(grid), len(grid[0])

    def free(r: int, c: int) -> bool:
        if (r, c) == b:
            return True
        if r < -1 or r > rows or c < -1 or c > cols:
            return False
        return not (0 <= r < rows and 0 <= c < cols) or grid[r][c] == ""

    best: dict[tuple[int, int, int], int] = {}
    queue: deque[tuple[int, int, int, int]] = deque()
    for d, (dr, dc) in enumerate(_STEPS):
        r, c = a[0] + dr, a[1] + dc
        if free(r, c):
            best[(r, c, d)] = 0
            queue.append((0, r, c, d))
    while queue:
        turns, r, c, d = queue.popleft()
        if best.get((r, c, d), 99) < turns:
            continue
        if (r, c) == b:
            return turns
        for nd, (dr, dc) in enumerate(_STEPS):
            if nd == d ^ 1:  # _STEPS pairs opposite headings as (0,1) and (2,3): never reverse
                continue
            nt = turns + (nd != d)
            nr, nc = r + dr, c + dc
            if nt > 2 or not free(nr, nc) or best.get((nr, nc, nd), 99) <= nt:
                continue
            best[(nr, nc, nd)] = nt
            if nd == d:
                queue.appendleft((nt, nr, nc, nd))
            else:
                queue.append((nt, nr, nc, nd))
    return None


def connectable(grid: list[list[str]], a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Can the tiles at a and b (0-based) be removed: equal letters, different cells, a path with <= 2 turns."""
    if a == b or not grid[a[0]][a[1]] or grid[a[0]][a[1]] != grid[b[0]][b[1]]:
        return False
    return min_turns(grid, a, b) is not None


def removable_pairs(grid: list[list[str]]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    tiles = [(r, c) for r in range(len(grid)) for c in range(len(grid[0])) if grid[r][c]]
    return [(a, b) for a, b in combinations(tiles, 2) if connectable(grid, a, b)]


# --- generation and rendering ----------------------------------------------------------------------------------


def generate(rng: np.random.Generator, difficulty: int) -> dict:
    rows, cols, letters, removed = LEVELS[check_difficulty(difficulty)]
    n_pairs = rows * cols // 2
    keep_pairs = max(2, n_pairs - int(round(removed * n_pairs)))
    symbols = [LETTERS[i % letters] for i in range(keep_pairs)]
    tiles = [s for s in symbols for _ in range(2)]
    cells = rng.permutation(rows * cols)[: len(tiles)]
    order = rng.permutation(len(tiles))
    grid = [[""] * cols for _ in range(rows)]
    for cell, t in zip(cells, order):
        grid[int(cell) // cols][int(cell) % cols] = tiles[int(t)]
    return {"grid": grid}


def render(state: dict, size: int) -> Image.Image:
    grid = state["grid"]
    rows, cols = len(grid), len(grid[0])
    image, draw = canvas(size, (40, 110, 60))
    cell = (size - 4) // max(rows, cols)
    x_off = (size - cell * cols) // 2
    y_off = (size - cell * rows) // 2
    for r in range(rows):
        for c in range(cols):
            letter = grid[r][c]
            if not letter:
                continue
            x0, y0 = x_off + c * cell, y_off + r * cell
            draw.rectangle([x0 + 1, y0 + 1, x0 + cell - 2, y0 + cell - 2], fill=(245, 240, 225),
                           outline=(90, 80, 60))
            scale = fit_scale(letter, cell - 4, cell - 4)
            draw_text(draw, (x0 + cell / 2, y0 + cell / 2), letter, scale, _TILE_COLOURS[LETTERS.index(letter)])
    return image


def describe(state: dict) -> str:
    grid = state["grid"]
    rows = "; ".join(f"row {i + 1}: " + " ".join(v or "." for v in row) for i, row in enumerate(grid))
    return f"Shisen-Sho board {len(grid)}x{len(grid[0])} (. = empty). {rows}."


# --- questions -------------------------------------------------------------------------------------------------


def _inside(state: dict, r: int, c: int) -> bool:
    return 1 <= r <= len(state["grid"]) and 1 <= c <= len(state["grid"][0])


def _letter_at(state: dict, r: int, c: int) -> str | None:
    if not _inside(state, r, c):
        return None
    return state["grid"][r - 1][c - 1] or "none"


def _connect(state: dict, r1: int, c1: int, r2: int, c2: int) -> str | None:
    if not (_inside(state, r1, c1) and _inside(state, r2, c2)) or (r1, c1) == (r2, c2):
        return None
    return "yes" if connectable(state["grid"], (r1 - 1, c1 - 1), (r2 - 1, c2 - 1)) else "no"


def _count_letter(state: dict, letter: str) -> str | None:
    if len(letter) != 1 or letter.upper() not in LETTERS:
        return None
    return str(sum(v == letter.upper() for row in state["grid"] for v in row))


TEMPLATES = [
    Template("tile_count", "perception", "How many tiles are on the board?", r"how many tiles are on the board",
             lambda s: str(sum(bool(v) for row in s["grid"] for v in row))),
    Template("letter_at", "perception", "Which letter is at row {}, column {}?",
             r"which letter is at row (\d+),? column (\d+)", _letter_at),
    Template("letter_count", "perception", "How many tiles show the letter {}?",
             r"how many tiles show the letter ([a-z])", _count_letter),
    Template("connect", "reasoning",
             "Can the tiles at row {}, column {} and row {}, column {} be connected with at most two turns?",
             r"can the tiles at row (\d+),? column (\d+) and row (\d+),? column (\d+) be connected with at most "
             r"two turns", _connect),
    Template("removable_pairs", "reasoning", "How many pairs can be removed now?",
             r"how many pairs can be removed now", lambda s: str(len(removable_pairs(s["grid"])))),
]


def propose(state: dict, rng: np.random.Generator, full: bool = True) -> list[tuple[str, tuple]]:
    grid = state["grid"]
    cells = [(r, c) for r in range(len(grid)) for c in range(len(grid[0]))]
    tiles = [(r, c) for r, c in cells if grid[r][c]]
    out: list[tuple[str, tuple]] = [("tile_count", ()), ("removable_pairs", ())]
    if not full:  # the proposals before issue 15 (run logs written then replay with them): tiles only
        out += [("letter_at", (r + 1, c + 1)) for r, c in cell_choice(rng, tiles, 2)]
        pick = tiles[int(rng.integers(len(tiles)))]
        out.append(("letter_count", (grid[pick[0]][pick[1]],)))
    else:  # the whole space a questioner writes in: empty cells ("none") and letters no longer there ("0") too
        out += [("letter_at", (r + 1, c + 1)) for r, c in cell_choice(rng, cells, 2)]
        used = LETTERS[: LETTERS.index(max(v for row in grid for v in row if v)) + 1]
        out.append(("letter_count", (used[int(rng.integers(len(used)))],)))
    # A same-letter pair that connects, one that does not, and (full) two different letters (never connectable).
    same = [(a, b) for a, b in combinations(tiles, 2) if grid[a[0]][a[1]] == grid[b[0]][b[1]]]
    yes = [p for p in same if connectable(grid, *p)]
    no = [p for p in same if not connectable(grid, *p)]
    other = [(a, b) for a, b in combinations(tiles, 2) if grid[a[0]][a[1]] != grid[b[0]][b[1]]] if full else []
    for pool in (yes, no, other):
        if pool:
            a, b = pool[int(rng.integers(len(pool)))]
            out.append(("connect", (a[0] + 1, a[1] + 1, b[0] + 1, b[1] + 1)))
    return out
