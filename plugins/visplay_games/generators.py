"""The registry of games and the one entry point that makes a game state from (game, difficulty, seed, size)."""

from __future__ import annotations

from types import ModuleType

import numpy as np

from visplay_games import bars, clock, g2048, shapes, shisen, swap
from visplay_games.core import GameState, answer_question, build_qa, check_difficulty
from visplay_games.render import image_record

GAMES: dict[str, ModuleType] = {m.GAME: m for m in (g2048, shisen, swap, shapes, bars, clock)}
MIN_SIZE, MAX_SIZE = 48, 1024


def game_module(game: str) -> ModuleType:
    if game not in GAMES:
        raise ValueError(f"unknown game {game!r}; known games: {', '.join(GAMES)}")
    return GAMES[game]


def make_state(game: str, difficulty: int, seed: int, size: int, full: bool = True) -> GameState:
    """Generate, render and annotate one state. Deterministic: same arguments, same PNG bytes and truth.
    ``full``: QA pairs over the templates' whole question space (else the proposals before issue 15); the picture
    does not depend on it."""
    module = game_module(game)
    check_difficulty(difficulty)
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise ValueError(f"image size must be in [{MIN_SIZE}, {MAX_SIZE}] pixels, got {size!r}")
    rng = np.random.default_rng(int(seed))
    state = module.generate(rng, difficulty)
    image = module.render(state, int(size))
    qa = build_qa(module, state, rng, full)
    return GameState(game=game, difficulty=int(difficulty), seed=int(seed), state=state,
                     description=module.describe(state), qa=qa, image=image)


def to_record(gs: GameState, source: str):
    """The ImageRecord the loop sees: pixels only, plus where it came from (no answers in ``meta``)."""
    return image_record(gs.image, source, {"game": gs.game, "difficulty": gs.difficulty, "seed": gs.seed})


def answer(gs: GameState, question: str):
    """Answer a templated question about a state: (template, answer) or None when the engine cannot parse it."""
    return answer_question(game_module(gs.game), gs.state, question)
