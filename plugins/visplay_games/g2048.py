"""2048: a board of numbered tiles; a move slides every tile one way and merges equal neighbours once.

Engine state: ``{"board": [[int]]}`` with 0 for an empty cell, rows top to bottom. Points follow the game: a merge
earns the value of the new tile. Rows and columns in questions count from 1.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from visplay_games.core import Template, cell_choice, check_difficulty
from visplay_games.render import canvas, draw_text, fit_scale

GAME = "2048"
MOVES = ("up", "down", "left", "right")
# difficulty -> (board side, highest exponent, filled fraction range)
LEVELS = {1: (3, 4, (0.3, 0.6)), 2: (4, 6, (0.4, 0.7)), 3: (4, 9, (0.6, 0.9))}


# --- engine ----------------------------------------------------------------------------------------------------


def slide_line(line: list[int]) -> tuple[list[int], int, int]:
    """Slide one line towards index 0. Returns (new line, number of merges, points earned)."""
    tiles = [v for v in line if v]
    out: list[int] = []
    merges = points = 0
    i = 0
    while i < len(tiles):
        if i + 1 < len(tiles) and tiles[i] == tiles[i + 1]:
            out.append(tiles[i] * 2)
            merges += 1
            points += tiles[i] * 2
            i += 2
        else:
            out.append(tiles[i])
            i += 1
    return out + [0] * (len(line) - len(out)), merges, points


def apply_move(board: list[list[int]], move: str) -> tuple[list[list[int]], int, int]:
    """The board after ``move`` (no new tile is spawned), with merges and points."""
    if move not in MOVES:
        raise ValueError(f"move must be one of {MOVES}, got {move!r}")
    grid = np.array(board, dtype=np.int64)
    # Rotate so the move slides towards column 0, slide rows, rotate back.
    turns = {"left": 0, "up": 1, "right": 2, "down": 3}[move]
    rotated = np.rot90(grid, turns)
    merges = points = 0
    rows = []
    for row in rotated.tolist():
        new, m, p = slide_line(row)
        rows.append(new)
        merges += m
        points += p
    result = np.rot90(np.array(rows, dtype=np.int64), -turns)
    return result.tolist(), merges, points


# --- generation and rendering ----------------------------------------------------------------------------------


def generate(rng: np.random.Generator, difficulty: int) -> dict:
    side, top, (lo, hi) = LEVELS[check_difficulty(difficulty)]
    n_cells = side * side
    filled = int(rng.integers(max(2, int(lo * n_cells)), int(hi * n_cells) + 1))
    cells = rng.permutation(n_cells)[:filled]
    board = [[0] * side for _ in range(side)]
    for c in cells:
        # Lower exponents are commoner, as in play; the top one still appears.
        exponent = int(min(rng.geometric(0.45), top))
        board[int(c) // side][int(c) % side] = 2 ** exponent
    return {"board": board}


def _tile_colour(value: int) -> tuple[int, int, int]:
    if value == 0:
        return (205, 193, 180)
    level = int(np.log2(value))
    shades = [(238, 228, 218), (237, 224, 200), (242, 177, 121), (245, 149, 99), (246, 124, 95),
              (246, 94, 59), (237, 207, 114), (237, 204, 97), (237, 200, 80), (237, 197, 63), (237, 194, 46)]
    return shades[min(level - 1, len(shades) - 1)]


def render(state: dict, size: int) -> Image.Image:
    board = state["board"]
    side = len(board)
    image, draw = canvas(size, (187, 173, 160))
    gap = max(1, size // 40)
    cell = (size - gap * (side + 1)) // side
    offset = (size - (cell * side + gap * (side + 1))) // 2
    for r in range(side):
        for c in range(side):
            x0 = offset + gap + c * (cell + gap)
            y0 = offset + gap + r * (cell + gap)
            value = board[r][c]
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=_tile_colour(value))
            if value:
                text = str(value)
                scale = fit_scale(text, cell - 2, cell - 2)
                ink = (119, 110, 101) if value <= 4 else (255, 255, 255)
                draw_text(draw, (x0 + cell / 2, y0 + cell / 2), text, scale, ink)
    return image


def describe(state: dict) -> str:
    board = state["board"]
    rows = "; ".join(f"row {i + 1}: " + " ".join(str(v) for v in row) for i, row in enumerate(board))
    return f"2048 board {len(board)}x{len(board)} (0 = empty). {rows}."


# --- questions -------------------------------------------------------------------------------------------------


def _cell(state: dict, r: int, c: int) -> int | None:
    board = state["board"]
    if 1 <= r <= len(board) and 1 <= c <= len(board):
        return board[r - 1][c - 1]
    return None


def _tile_at(state: dict, r: int, c: int) -> str | None:
    value = _cell(state, r, c)
    return None if value is None else str(value)


def compare_moves(state: dict, a: str, b: str, index: int) -> str | None:
    """Of moves a and b, the one with strictly more merges (index 1) or points (index 2); None on a tie.

    A horizontal and a vertical move are compared: left and right (up and down) always merge the same tiles."""
    score_a, score_b = (apply_move(state["board"], m)[index] for m in (a, b))
    return None if score_a == score_b else (a if score_a > score_b else b)


def _can_move(state: dict, move: str) -> str:
    return "yes" if apply_move(state["board"], move)[0] != state["board"] else "no"


_MOVE = "(up|down|left|right)"
TEMPLATES = [
    Template("empty_cells", "perception", "How many empty cells are there?", r"how many empty cells are there",
             lambda s: str(sum(v == 0 for row in s["board"] for v in row))),
    Template("tile_at", "perception", "What number is at row {}, column {}? Answer 0 if empty.",
             r"what number is at row (\d+),? column (\d+)(?:\? answer 0 if empty)?", _tile_at),
    Template("largest_tile", "perception", "What is the largest tile?", r"what is the largest tile",
             lambda s: str(max(v for row in s["board"] for v in row))),
    Template("merges", "reasoning", "How many merges does moving {} make?",
             r"how many merges does moving " + _MOVE + " make",
             lambda s, m: str(apply_move(s["board"], m)[1])),
    Template("points", "reasoning", "How many points does moving {} earn?",
             r"how many points does moving " + _MOVE + " earn",
             lambda s, m: str(apply_move(s["board"], m)[2])),
    Template("most_merges", "reasoning", "Which move merges more tiles, {} or {}?",
             r"which move merges more tiles,? (left|right) or (up|down)",
             lambda s, a, b: compare_moves(s, a, b, 1)),
    Template("best_move", "reasoning", "Which move earns more points, {} or {}?",
             r"which move earns more points,? (left|right) or (up|down)",
             lambda s, a, b: compare_moves(s, a, b, 2)),
    Template("can_move", "reasoning", "Can the tiles move {}?", r"can the tiles move " + _MOVE, _can_move),
]


def propose(state: dict, rng: np.random.Generator, full: bool = True) -> list[tuple[str, tuple]]:
    board = state["board"]
    side = len(board)
    # full: any cell, empty ones too (a questioner can ask about any cell); else filled cells only (before issue 15)
    cells = [(r + 1, c + 1) for r in range(side) for c in range(side) if full or board[r][c]]
    moves = [MOVES[int(i)] for i in rng.permutation(4)]
    out: list[tuple[str, tuple]] = [("empty_cells", ()), ("largest_tile", ())]
    out += [("tile_at", rc) for rc in cell_choice(rng, cells, 2)]
    out += [("merges", (moves[0],)), ("points", (moves[1],)), ("can_move", (moves[2],))]
    horizontal, vertical = ("left", "right")[int(rng.integers(2))], ("up", "down")[int(rng.integers(2))]
    # dropped by build_qa on a tie
    out += [("most_merges", (horizontal, vertical)), ("best_move", (horizontal, vertical))]
    return out
