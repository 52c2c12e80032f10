"""Where things are in a run, and the names of its rows: the one owner of phases, positions and row keys.

A run is a sequence of steps; a step is a :class:`Position` (iteration, phase, step), ordered by iteration, then by
the phase's place in :data:`PHASES`, then by step. Rows are named by deterministic keys built here and nowhere
else (docs/runlog.md), so two runs of one recipe can be compared row by row and a row's randomness is named by
its key (visplay.seeding):

- a prompt group (one image for the questioner, one question for a reasoner rollout): ``i{it}/{phase}/s{step}/p{p}``
- one sample of a group: ``{group}/g{j}``
- one vote of the frozen reasoner on a question: ``{question_key}/v{j}``
"""

from __future__ import annotations

import re
from typing import NamedTuple

PHASES = ("cold_start", "questioner", "reasoner_set", "reasoner", "eval")
"""The phases of a run, in the order the engine runs them within an iteration (PAPER.md, "The loop")."""

TRAINING_PHASES = ("questioner", "reasoner")
"""Phases whose steps update a role's weights (the phase is named for the role it trains)."""

SAMPLING_PHASES = ("questioner", "reasoner_set", "reasoner")
"""Phases whose generations the engine logs."""


def phase_rank(phase: str | None) -> int:
    """The phase's place in :data:`PHASES`; unknown phases (a plugin's) sort after the known ones."""
    return PHASES.index(phase) if phase in PHASES else len(PHASES)


class Position(NamedTuple):
    """One engine step. Compare positions with :meth:`rank`: tuples of strings do not sort by phase order."""

    iteration: int
    phase: str
    step: int

    def rank(self) -> tuple[int, int, int]:
        return (self.iteration, phase_rank(self.phase), self.step)

    def group(self, prompt: int) -> str:
        """The key of prompt group ``prompt`` of this step."""
        return f"i{self.iteration}/{self.phase}/s{self.step}/p{prompt}"


def rank(position: tuple[int, str, int]) -> tuple[int, int, int]:
    """Sort key of a (iteration, phase, step) tuple."""
    return Position(*position).rank()


def sample_key(group: str, sample: int) -> str:
    """The key of sample ``sample`` of a prompt group."""
    return f"{group}/g{sample}"


def vote_key(question_key: str, vote: int) -> str:
    """The key of the frozen reasoner's vote ``vote`` on a question."""
    return f"{question_key}/v{vote}"


def group_of(sample: str) -> str:
    """The prompt group of a sample key (``.../p3/g1`` -> ``.../p3``)."""
    return sample.rsplit("/", 1)[0]


_KEY = re.compile(r"^i(\d+)/([a-z_]+)/s(\d+)(?:/p(\d+))?(?:/g(\d+))?")


def key_position(key: str) -> Position | None:
    """The step a row key names, for tables that hold no ``step`` column (labels, filters); None if not a key."""
    match = _KEY.match(key)
    return Position(int(match[1]), match[2], int(match[3])) if match else None


def key_order(key: str) -> tuple[int, int, int, int]:
    """Numeric (rank of phase, step, prompt, sample) of a row key, so ``s10`` sorts after ``s2``."""
    match = _KEY.match(key)
    if not match:
        return (len(PHASES), 0, 0, 0)
    return (phase_rank(match[2]), int(match[3]), int(match[4] or 0), int(match[5] or 0))
