"""Deterministic pools of game states: the training pool (the image source), the held-out set (gold evaluation)
and the cold-start set. Each draws its seeds from its own path; the training and cold-start pools also skip any
picture equal to a held-out one, so gold evaluation never scores an image the model trained on."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from visplay.api import ImageRecord, derive_seed
from visplay_games.core import GameState
from visplay_games.generators import make_state, to_record
from visplay_games.options import GamesOptions

SOURCE = "games"
TRUTH_TABLE = "gold_truth"
TRUTH_COLUMNS = {"key": str, "split": str, "image_id": str, "game": str, "difficulty": int, "seed": int,
                 "description": str, "state": str, "qa": str}


def _spec(opts: GamesOptions, i: int) -> tuple[str, int]:
    """Game and difficulty of pool item i: games cycle fastest, so any prefix of the pool is balanced."""
    game = opts.games[i % len(opts.games)]
    difficulty = opts.difficulties[(i // len(opts.games)) % len(opts.difficulties)]
    return game, difficulty


# A (game, difficulty) cell that yields no new picture in this many draws in a row is exhausted (e.g. only 12
# clock faces exist on the hour); the pool then fills that slot from the next cell instead of failing.
CELL_TRIES = 60


@lru_cache(maxsize=32)
def _pool(root: int, split: str, games: tuple, difficulties: tuple, n: int, size: int,
          exclude: frozenset = frozenset(), full: bool = True) -> tuple[tuple[GameState, ImageRecord], ...]:
    opts = GamesOptions(games=list(games), difficulties=list(difficulties))
    cells = len(games) * len(difficulties)
    out: list[tuple[GameState, ImageRecord]] = []
    seen: set[str] = set()
    exhausted: set[tuple[str, int]] = set()
    i = misses = 0
    while len(out) < n:
        slot = len(out)
        while _spec(opts, slot) in exhausted and slot < len(out) + cells:
            slot += 1  # the next cell in the cycle keeps the pool as balanced as the pictures allow
        if slot == len(out) + cells:
            raise RuntimeError(f"cannot draw {n} distinct {split} images from games {list(games)} at difficulties "
                               f"{list(difficulties)} (too few different pictures exist; lower data.num_images "
                               f"or add games/difficulties)")
        game, difficulty = _spec(opts, slot)
        gs = make_state(game, difficulty, derive_seed(root, "games", split, i), size, full)
        record = to_record(gs, f"{SOURCE}:{split}/{i}")
        i += 1
        if record.image_id in exclude or record.image_id in seen:
            misses += 1  # pictures are distinct within a pool and never equal to an excluded (held-out) one
            if misses >= CELL_TRIES:
                exhausted.add((game, difficulty))
                misses = 0
            continue
        misses = 0
        seen.add(record.image_id)
        out.append((gs, record))
    return tuple(out)


def held_out_pool(opts: GamesOptions, size: int):
    """The held-out set: fixed seeds (``held_out_seed``, not the run's seed), so every run is scored on the same
    items whatever its seed."""
    return _pool(int(opts.held_out_seed), "heldout", tuple(opts.games), tuple(opts.difficulties),
                 int(opts.held_out), int(size), full=bool(opts.full_question_space))


def _held_out_ids(opts: GamesOptions, size: int) -> frozenset:
    return frozenset(r.image_id for _, r in held_out_pool(opts, size)) if opts.held_out else frozenset()


def train_pool(seed: int, opts: GamesOptions, n: int, size: int) -> tuple[tuple[GameState, ImageRecord], ...]:
    """The self-play image pool: ``n`` states from the run's root seed, skipping any picture that is also in
    the held-out set (few clock faces exist on the hour, so collisions do happen)."""
    return _pool(int(seed), "train", tuple(opts.games), tuple(opts.difficulties), int(n), int(size),
                 _held_out_ids(opts, size), bool(opts.full_question_space))


def cold_start_pool(seed: int, opts: GamesOptions, size: int):
    """Fresh states for cold-start SFT (their own seed path; held-out pictures skipped)."""
    return _pool(int(seed), "coldstart", tuple(opts.games), tuple(opts.difficulties), int(opts.cold_start_images),
                 int(size), _held_out_ids(opts, size), bool(opts.full_question_space))


def truth_rows(split: str, pool) -> list[dict[str, Any]]:
    """Rows of the ``gold_truth`` table for a pool."""
    rows = []
    for i, (gs, record) in enumerate(pool):
        truth = gs.truth()
        rows.append({"key": f"{split}/{i:05d}", "split": split, "image_id": record.image_id, "game": gs.game,
                     "difficulty": gs.difficulty, "seed": gs.seed, "description": gs.description,
                     "state": truth["state"], "qa": truth["qa"]})
    return rows


class GamesImageSource:
    """The ``games`` image source: ``len(pool)`` images in a fixed order. The loop sees only ImageRecords;
    ``states`` (the ground truth) stay with the plugin."""

    def __init__(self, pool):
        self._pool = tuple(pool)

    def __len__(self) -> int:
        return len(self._pool)

    def __iter__(self) -> Iterator[ImageRecord]:
        return (record for _, record in self._pool)

    def __getitem__(self, index: int) -> ImageRecord:
        return self._pool[index][1]

    @property
    def states(self) -> list[GameState]:
        return [gs for gs, _ in self._pool]
