"""Games generators: determinism (same seed -> same PNG bytes) and answers re-derived independently of the
generator code (parse the description, recompute with a separate implementation, or read the pixels)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
from collections import Counter
from itertools import combinations, product

import pytest
from PIL import Image
from visplay_games import bars, clock, g2048, shisen
from visplay_games.core import answer_question, answers_match, canonical_answer
from visplay_games.generators import GAMES, make_state, to_record
from visplay_games.render import draw_text, png_bytes, text_size

SEEDS = range(60)


def qa_map(gs):
    return {q.kind: q.answer for q in gs.qa}


# --- determinism and structure ------------------------------------------------------------------------------


@pytest.mark.parametrize("game", list(GAMES))
@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_same_seed_same_png_bytes_and_truth(game, difficulty):
    a, b = make_state(game, difficulty, 123, 64), make_state(game, difficulty, 123, 64)
    assert png_bytes(a.image) == png_bytes(b.image)
    assert a.truth() == b.truth()
    other = {png_bytes(make_state(game, difficulty, s, 64).image) for s in range(8)}
    assert len(other) >= 4  # different seeds give different pictures
    assert a.image.size == (64, 64) and a.image.mode == "RGB"
    assert len(a.qa) >= 4 and {q.category for q in a.qa} == {"perception", "reasoning"}


def test_png_bytes_pinned():
    # Guards determinism across machines/processes: a change here means the pictures changed.
    digest = hashlib.sha256(png_bytes(make_state("2048", 2, 7, 64).image)).hexdigest()
    again = hashlib.sha256(png_bytes(make_state("2048", 2, 7, 64).image)).hexdigest()
    assert digest == again
    record = to_record(make_state("clock", 3, 5, 96), "games:test")
    assert record.image_id == hashlib.sha256(record.png).hexdigest()
    assert Image.open(io.BytesIO(record.png)).size == (96, 96)
    assert "qa" not in record.meta and "state" not in record.meta  # the loop never sees answers


@pytest.mark.parametrize("game", list(GAMES))
def test_every_question_parses_back_to_its_answer(game):
    module = GAMES[game]
    for seed in range(20):
        gs = make_state(game, 1 + seed % 3, seed, 64)
        for q in gs.qa:
            template, ans = answer_question(module, gs.state, q.question)
            assert (template.kind, ans) == (q.kind, q.answer)
            # the parser tolerates case, spacing and a missing question mark
            assert answer_question(module, gs.state, "  " + q.question.upper().rstrip("?"))[1] == q.answer


def test_proposals_cover_the_answers_a_questioner_can_ask_for():
    # A questioner may write any templated question: about an empty cell, a colour or letter that is not there, two
    # tiles with different letters. The cold start and the held-out set ask those too (else the reasoner never
    # learns "none", "0" or "no" for them and its silver labels are wrong whenever the questioner asks one).
    answers: dict[tuple[str, str], Counter] = {}
    for seed, game in product(range(60), ["2048", "shisen", "shapes"]):
        for q in make_state(game, 1, seed, 64).qa:
            answers.setdefault((game, q.kind), Counter())[q.answer] += 1
    assert answers[("2048", "tile_at")]["0"] >= 20  # empty cells (3x3 boards are about half empty)
    assert answers[("shisen", "letter_at")]["none"] >= 10  # removed tiles
    assert answers[("shisen", "connect")]["no"] > answers[("shisen", "connect")]["yes"] > 20  # different letters
    assert answers[("shapes", "colour_count")]["0"] >= 10  # colours not in the scene
    for seed, game in product(range(20), ["2048", "shisen", "shapes"]):  # full=False: the proposals before that
        narrow, full = make_state(game, 1, seed, 64, full=False), make_state(game, 1, seed, 64)
        assert png_bytes(narrow.image) == png_bytes(full.image)  # the same picture either way
        for q in narrow.qa:
            assert q.answer != "none" and not (q.kind in ("tile_at", "colour_count") and q.answer == "0")
            if q.kind == "connect":
                r1, c1, r2, c2 = map(int, re.findall(r"\d+", q.question))
                assert narrow.state["grid"][r1 - 1][c1 - 1] == narrow.state["grid"][r2 - 1][c2 - 1]
    for seed in range(20):  # a different-letter pair is never connectable
        gs = make_state("shisen", 1, seed, 64)
        for q in gs.qa:
            if q.kind == "connect":
                r1, c1, r2, c2 = map(int, re.findall(r"\d+", q.question))
                grid = gs.state["grid"]
                if grid[r1 - 1][c1 - 1] != grid[r2 - 1][c2 - 1]:
                    assert q.answer == "no"


def test_unparseable_or_out_of_range_questions_are_none():
    gs = make_state("2048", 2, 1, 64)
    assert answer_question(g2048, gs.state, "What is the meaning of life?") is None
    assert answer_question(g2048, gs.state, "What number is at row 9, column 1?") is None
    with pytest.raises(ValueError, match="difficulty"):
        make_state("2048", 4, 1, 64)
    with pytest.raises(ValueError, match="unknown game"):
        make_state("chess", 1, 1, 64)
    with pytest.raises(ValueError, match="size"):
        make_state("2048", 1, 1, 8)


# --- 2048 ----------------------------------------------------------------------------------------------------


def parse_2048(description):
    return [[int(v) for v in row.split()] for row in re.findall(r"row \d+: ([\d ]+)", description)]


def reference_move(board, move):
    """Straightforward 2048 move written independently of g2048: walk each line from the wall."""
    n = len(board)
    out = [[0] * n for _ in range(n)]
    merges = points = 0
    for k in range(n):
        if move in ("left", "right"):
            cells = [(k, c) for c in range(n)]
        else:
            cells = [(r, k) for r in range(n)]
        if move in ("right", "down"):
            cells.reverse()
        values = [board[r][c] for r, c in cells if board[r][c]]
        merged = []
        skip = False
        for i, v in enumerate(values):
            if skip:
                skip = False
                continue
            if i + 1 < len(values) and values[i + 1] == v:
                merged.append(2 * v)
                merges += 1
                points += 2 * v
                skip = True
            else:
                merged.append(v)
        for (r, c), v in zip(cells, merged):
            out[r][c] = v
    return out, merges, points


def test_2048_answers_rederived_from_description():
    kinds = set()
    for seed, difficulty in product(SEEDS, [1, 2, 3]):
        gs = make_state("2048", difficulty, seed, 64)
        board = parse_2048(gs.description)
        assert board == gs.state["board"]
        qa = qa_map(gs)
        assert int(qa["empty_cells"]) == sum(v == 0 for row in board for v in row)
        assert int(qa["largest_tile"]) == max(max(row) for row in board)
        results = {m: reference_move(board, m) for m in g2048.MOVES}
        for q in gs.qa:
            move = next((m for m in g2048.MOVES if m in q.question), None)
            if q.kind == "merges":
                assert int(q.answer) == results[move][1]
            elif q.kind == "points":
                assert int(q.answer) == results[move][2]
            elif q.kind == "can_move":
                assert q.answer == ("yes" if results[move][0] != board else "no")
            elif q.kind in ("best_move", "most_merges"):
                a, b = re.findall(r"(left|right|up|down)", q.question)
                index = 2 if q.kind == "best_move" else 1
                other = b if q.answer == a else a
                assert q.answer in (a, b) and results[q.answer][index] > results[other][index]
            elif q.kind == "tile_at":
                r, c = map(int, re.findall(r"\d+", q.question)[:2])
                assert int(q.answer) == board[r - 1][c - 1]
        for m in g2048.MOVES:
            assert g2048.apply_move(board, m) == results[m]
            kinds.update(q.kind for q in gs.qa)
    assert {"best_move", "most_merges"} <= kinds


def test_2048_known_line():
    assert g2048.slide_line([2, 2, 2, 2]) == ([4, 4, 0, 0], 2, 8)
    assert g2048.slide_line([0, 4, 4, 8]) == ([8, 8, 0, 0], 1, 8)
    assert g2048.apply_move([[2, 0], [2, 4]], "up") == ([[4, 4], [0, 0]], 1, 4)


def test_2048_pixels_show_exactly_the_filled_tiles():
    for seed in range(10):
        gs = make_state("2048", 2, seed, 64)
        board = gs.state["board"]
        n = len(board)
        px = gs.image.load()
        cell = 64 // n
        for r, c in product(range(n), range(n)):
            box = [px[x, y] for x in range(c * cell + 4, (c + 1) * cell - 4) for y in range(r * cell + 4,
                                                                                          (r + 1) * cell - 4)]
            assert (len(set(box)) > 1) == bool(board[r][c]), (seed, r, c)  # digits drawn only on tiles


# --- Shisen-Sho ----------------------------------------------------------------------------------------------


def reference_connect(grid, a, b):
    """Classic corner enumeration: a -> p1 -> p2 -> b, straight clear segments, corners anywhere in the ring."""
    rows, cols = len(grid), len(grid[0])

    def empty(p):
        r, c = p
        return not (0 <= r < rows and 0 <= c < cols) or grid[r][c] == ""

    def clear(p, q):  # straight segment, endpoints excluded
        if p[0] != q[0] and p[1] != q[1]:
            return False
        if p[0] == q[0]:
            lo, hi = sorted((p[1], q[1]))
            return all(empty((p[0], c)) for c in range(lo + 1, hi))
        lo, hi = sorted((p[0], q[0]))
        return all(empty((r, p[1])) for r in range(lo + 1, hi))

    ring = [(r, c) for r in range(-1, rows + 1) for c in range(-1, cols + 1)]
    if clear(a, b):
        return True
    for p in ring:
        if p not in (a, b) and empty(p) and clear(a, p) and clear(p, b):
            return True
    for p1 in ring:
        if p1 in (a, b) or not empty(p1) or not clear(a, p1):
            continue
        for p2 in ring:
            if p2 not in (a, b) and empty(p2) and clear(p1, p2) and clear(p2, b):
                return True
    return False


def test_shisen_connectivity_matches_corner_enumeration():
    checked = 0
    for seed, difficulty in product(range(25), [1, 2, 3]):
        gs = make_state("shisen", difficulty, seed, 64)
        grid = [["" if v == "." else v for v in row.split()]
                for row in re.findall(r"row \d+: ([A-Z. ]+?)(?:;|\.$)", gs.description)]
        assert grid == gs.state["grid"]
        tiles = [(r, c) for r in range(len(grid)) for c in range(len(grid[0])) if grid[r][c]]
        pairs = [(a, b) for a, b in combinations(tiles, 2) if grid[a[0]][a[1]] == grid[b[0]][b[1]]]
        expected = [p for p in pairs if reference_connect(grid, *p)]
        assert shisen.removable_pairs(grid) == expected
        assert qa_map(gs)["removable_pairs"] == str(len(expected))
        checked += len(pairs)
    assert checked > 200


# --- Swap ----------------------------------------------------------------------------------------------------


def reference_lines(grid):
    lines = [" ".join(row) for row in grid] + [" ".join(col) for col in zip(*grid)]
    return any(re.search(r"\b(\w+) \1 \1\b", line) for line in lines)


def test_swap_boards_have_no_line_and_swaps_rederived():
    for seed, difficulty in product(SEEDS, [1, 2, 3]):
        gs = make_state("swap", difficulty, seed, 64)
        grid = [row.split() for row in re.findall(r"row \d+: ([a-z ]+?)(?:;|\.$)", gs.description)]
        assert grid == gs.state["grid"]
        assert not reference_lines(grid)
        n = len(grid)
        good = []
        for r, c in product(range(n), range(n)):
            for r2, c2 in ((r, c + 1), (r + 1, c)):
                if r2 < n and c2 < n:
                    g = [row[:] for row in grid]
                    g[r][c], g[r2][c2] = g[r2][c2], g[r][c]
                    if reference_lines(g):
                        good.append(f"{r + 1},{c + 1}-{r2 + 1},{c2 + 1}")
        qa = qa_map(gs)
        assert qa["scoring_swaps"] == str(len(good))
        if "which_swap" in qa:
            assert good == [qa["which_swap"]]


# --- scenes --------------------------------------------------------------------------------------------------


def test_shapes_counts_rederived_from_description():
    for seed, difficulty in product(SEEDS, [1, 2, 3]):
        gs = make_state("shapes", difficulty, seed, 64)
        items = re.findall(r"(\w+) (circle|square|triangle)", gs.description.split(":", 1)[1])
        for q in gs.qa:
            if q.kind == "total":
                assert int(q.answer) == len(items)
            elif q.kind == "colour_shape_count":
                colour, plural = q.question.split()[2:4]
                assert int(q.answer) == sum(i == (colour, plural[:-1]) for i in items)


def test_bar_heights_in_pixels_follow_the_values():
    for seed in range(10):
        gs = make_state("bars", 3, seed, 128)
        values = [int(v) for v in re.findall(r"=(\d+)", gs.description)]
        px = gs.image.load()
        heights = []
        for i in range(len(values)):
            x = int((i + 0.5) * 128 / len(values))
            heights.append(sum(px[x, y] == bars._BAR_COLOURS[i] for y in range(128)))
        order = sorted(range(len(values)), key=lambda i: values[i])
        assert [heights[i] for i in order] == sorted(heights)
        assert qa_map(gs)["extreme"] in "ABCDE"


def test_clock_arithmetic_matches_datetime():
    for seed, difficulty in product(SEEDS, [1, 2, 3]):
        gs = make_state("clock", difficulty, seed, 64)
        h, m = gs.state["hour"], gs.state["minute"]
        assert m % clock.LEVELS[difficulty] == 0
        base = dt.datetime(2000, 1, 1, h % 12, m)
        for q in gs.qa:
            n = int(re.findall(r"\d+", q.question)[0]) if q.kind in ("later", "earlier") else 0
            unit = 60 if "hour" in q.question else 1
            delta = dt.timedelta(minutes=n * unit) * (1 if q.kind == "later" else -1)
            if q.kind in ("later", "earlier"):
                t = base + delta
                assert q.answer == f"{t.hour % 12 or 12}:{t.minute:02d}"


# --- answers and the pixel font ------------------------------------------------------------------------------


def test_canonical_answers():
    assert canonical_answer(" 4.0 ") == "4"
    assert canonical_answer("$12$") == "12"
    assert canonical_answer("\\text{Yes}.") == "yes"
    assert canonical_answer("2,4-2,3", "which_swap") == canonical_answer("2,3 - 2,4", "which_swap")
    assert canonical_answer("") is None
    assert answers_match("LEFT", "left") and not answers_match(None, "left")
    assert answers_match("3:05", "3:05") and not answers_match("3:50", "3:05")


def test_pixel_font():
    assert text_size("2048", 1) == (15, 5) and text_size("A", 2) == (6, 10)
    image = Image.new("RGB", (20, 10), (255, 255, 255))
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    draw_text(draw, (10, 5), "1", 1)
    assert sum(image.getpixel((x, y)) != (255, 255, 255) for x in range(20) for y in range(10)) == 8
    with pytest.raises(ValueError, match="glyph"):
        draw_text(draw, (10, 5), "?", 1)
