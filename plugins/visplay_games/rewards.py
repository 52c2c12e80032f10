"""Verifiable rewards for the reasoner: accuracy against gold, and game actions scored by the game engine.

Both components need the game state behind an answer: it is found from the image of the answer's prompt (by
image id) and the question (the gold QA pair whose text appears in the prompt). Self-play rewards never see these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from visplay.api import AnswerItem
from visplay_games import g2048, swap
from visplay_games.core import QA, GameState, answers_match, canonical_answer

COMPONENTS = ("gold_accuracy", "game_points")
"""The reward components this plugin returns (gold_reward on)."""


def find_qa(state: GameState, prompt_text: str) -> QA | None:
    """The state's QA pair whose question the prompt contains (longest first, so no prefix shadows it)."""
    for qa in sorted(state.qa, key=lambda q: -len(q.question)):
        if qa.question in prompt_text:
            return qa
    return None


def game_points(state: GameState, qa: QA, extracted: str | None) -> float:
    """What the answered action earns in the game, in [0, 1]: a 2048 move's points (or merges) over the better
    of the two offered moves' (for "which move" questions); 1 for a swap that makes a line of three (any scoring
    swap counts, not only the gold one)."""
    if extracted is None:
        return 0.0
    if state.game == g2048.GAME and qa.kind in ("best_move", "most_merges"):
        move = canonical_answer(extracted)
        offered = [m for m in g2048.MOVES if m in qa.question.lower()]
        if move not in offered:
            return 0.0
        index = 2 if qa.kind == "best_move" else 1
        best = max(g2048.apply_move(state.state["board"], m)[index] for m in offered)
        return g2048.apply_move(state.state["board"], move)[index] / best if best else 0.0
    if state.game == swap.GAME and qa.kind == "which_swap":
        key = canonical_answer(extracted, "which_swap") or ""
        parts = [p.split(",") for p in key.split("-")]
        if len(parts) != 2 or any(len(p) != 2 or not all(x.isdigit() for x in p) for p in parts):
            return 0.0
        (r1, c1), (r2, c2) = ((int(a), int(b)) for a, b in parts)
        return 1.0 if swap._makes_line(state.state, r1, c1, r2, c2) == "yes" else 0.0
    return 0.0


def reasoner_components(items: Sequence[AnswerItem], states: dict[str, GameState],
                        key_fn: Callable[[str], str | None]) -> dict[str, list[float]]:
    """``gold_accuracy`` (1 when the extracted answer equals the item's gold answer) and ``game_points``."""
    accuracy, points = [], []
    for item in items:
        image = item.generation.prompt.image
        state = states.get(image.image_id) if image is not None else None
        qa = find_qa(state, item.generation.prompt.user) if state is not None else None
        kind = qa.kind if qa is not None else None
        gold = item.gold if item.gold is not None else (qa.answer if qa is not None else None)
        accuracy.append(float(gold is not None and answers_match(item.extracted, gold, kind, key_fn)))
        points.append(game_points(state, qa, item.extracted) if qa is not None else 0.0)
    return {"gold_accuracy": accuracy, "game_points": points}
