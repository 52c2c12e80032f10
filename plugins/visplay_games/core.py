"""The games' shared nouns: templated questions, game states with ground truth, and answer matching.

A game module (``g2048``, ``shisen``, ``swap``, ``scenes``) provides ``generate(rng, difficulty) -> state`` (a
JSON-able dict: the engine state), ``render(state, size) -> PIL image``, ``describe(state) -> str``,
``TEMPLATES`` (question templates with solvers) and ``propose(state, rng, full) -> [(kind, args)]`` (``full``: over
the templates' whole question space, see ``plugins.games.full_question_space``). A question's
text is written from its template and its answer computed by the template's solver on the engine state; the same
template parses the text back, so any templated question - including one the questioner writes - is answerable
(:func:`answer_question`). Nothing is hand-labelled.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

DIFFICULTIES = (1, 2, 3)
CATEGORIES = ("perception", "reasoning")


@dataclass(frozen=True)
class Template:
    """One question family. ``text`` is a str.format pattern, ``pattern`` the regex that reads it back from the
    normalised question (lowercase, single spaces, no final '?'); ``solve(state, *args)`` returns the answer."""

    kind: str
    category: str
    text: str
    pattern: str
    solve: Callable[..., str | None]


@dataclass(frozen=True)
class QA:
    """A verifiable question/answer pair about one game state."""

    question: str
    answer: str
    kind: str
    category: str


@dataclass
class GameState:
    """A generated game state: the engine state, its rendering and its ground truth."""

    game: str
    difficulty: int
    seed: int
    state: dict[str, Any]
    description: str
    qa: list[QA]
    image: Image.Image = field(repr=False)

    def truth(self) -> dict[str, Any]:
        """JSON-able ground truth (what the ``gold_truth`` table stores)."""
        return {"game": self.game, "difficulty": self.difficulty, "seed": self.seed, "state": self.state,
                "description": self.description, "qa": [asdict(q) for q in self.qa]}


def normalise_question(text: str) -> str:
    text = " ".join(str(text).lower().split())
    return text.rstrip(" ?.!").strip()


def build_question(template: Template, args: tuple) -> str:
    return template.text.format(*args)


def answer_question(module: ModuleType, state: dict[str, Any], text: str) -> tuple[Template, str] | None:
    """Parse a question against a game's templates and answer it from the engine state; None if unparseable
    or the question does not apply (e.g. a cell outside the board)."""
    norm = normalise_question(text)
    for template in module.TEMPLATES:
        match = re.fullmatch(template.pattern, norm)
        if match is None:
            continue
        args = tuple(int(g) if g.isdigit() else g for g in match.groups())
        answer = template.solve(state, *args)
        if answer is not None:
            return template, answer
    return None


def build_qa(module: ModuleType, state: dict[str, Any], rng: np.random.Generator, full: bool = True) -> list[QA]:
    """The state's QA pairs: the module proposes (kind, args); each is written from its template and answered
    through :func:`answer_question`, so the parse path and the generation path cannot disagree. ``full``: over the
    templates' whole question space (``plugins.games.full_question_space``)."""
    by_kind = {t.kind: t for t in module.TEMPLATES}
    qa: list[QA] = []
    for kind, args in module.propose(state, rng, full):
        text = build_question(by_kind[kind], args)
        solved = answer_question(module, state, text)
        if solved is None:
            continue
        template, answer = solved
        if template.kind != kind:
            raise AssertionError(f"question {text!r} of kind {kind} parses as {template.kind}")
        qa.append(QA(question=text, answer=answer, kind=kind, category=template.category))
    return qa


# --- answers ---------------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?")
_INTS = re.compile(r"\d+")


def canonical_answer(text: str | None, kind: str | None = None) -> str | None:
    """A comparison key for answers: case, spacing, a final period, ``$...$`` and ``\\text{}`` do not matter;
    ``4.0`` equals ``4``; a swap ``2,3-2,4`` equals ``2,4-2,3`` (kind ``which_swap``)."""
    if text is None:
        return None
    text = re.sub(r"\\text\{([^}]*)\}", r"\1", str(text)).strip().strip("$").strip().rstrip(".").strip()
    text = " ".join(text.lower().split())
    if not text:
        return None
    if _NUMBER.fullmatch(text):
        value = float(text)
        return str(int(value)) if value.is_integer() else repr(value)
    if kind == "which_swap":
        ints = [int(x) for x in _INTS.findall(text)]
        if len(ints) == 4:
            a, b = sorted([(ints[0], ints[1]), (ints[2], ints[3])])
            return f"{a[0]},{a[1]}-{b[0]},{b[1]}"
    return text


def answers_match(answer: str | None, gold: str, kind: str | None = None,
                  key_fn: Callable[[str], str | None] | None = None) -> bool:
    """Is an extracted answer the gold answer? ``key_fn`` (e.g. the run's ``visplay_answer_key`` hook) is
    tried first on both sides; our own canonical form decides when it does not say they are equal."""
    if answer is None:
        return False
    if key_fn is not None and kind != "which_swap":
        a, g = key_fn(answer), key_fn(gold)
        if a is not None and a == g:
            return True
    return canonical_answer(answer, kind) == canonical_answer(gold, kind)


def cell_choice(rng: np.random.Generator, cells: list[tuple[int, int]], k: int) -> list[tuple[int, int]]:
    """Up to k distinct cells from ``cells`` (in the rng's order)."""
    if not cells:
        return []
    idx = rng.choice(len(cells), size=min(k, len(cells)), replace=False)
    return [cells[int(i)] for i in idx]


def check_difficulty(difficulty: int) -> int:
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    return int(difficulty)
