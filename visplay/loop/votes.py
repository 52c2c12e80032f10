"""Majority vote over the reasoner's m answers: the silver label and its confidence.

Keys are computed once per answer (``visplay_answer_key``), so the vote is a count: O(m), not the released code's
m^2 pairwise symbolic comparisons.
"""

from __future__ import annotations

from collections.abc import Sequence

from visplay.types import Vote

NONE_VOTE_KEY = "text:none"
"""The key a missing answer votes for under ``none_as_vote`` (the canonical key of the string "None")."""


def majority_vote(answers: Sequence[str | None], keys: Sequence[str | None], *, none_as_vote: bool = False) -> Vote:
    """The majority key among ``keys`` and its share of all m samples.

    :param answers: the m extracted answers (None: the sample gave no answer).
    :param keys: their canonical keys (None: no answer); same length as ``answers``.
    :param none_as_vote: reproduce the released code's bug: a missing answer votes for "None".
    :return: a Vote. ``confidence`` = majority count / m, where unanswered samples count in m. Ties are broken
        by the earliest first occurrence (the key that appears at the lowest sample index wins), which is
        deterministic and matches the released code's insertion-ordered ``max`` over a dict. The silver label is
        the answer text of that first occurrence. No answers at all: silver label None and confidence 0.
    """
    if len(answers) != len(keys):
        raise ValueError(f"majority_vote: {len(answers)} answers but {len(keys)} keys")
    answers, keys = list(answers), list(keys)
    if none_as_vote:
        keys = [NONE_VOTE_KEY if k is None else k for k in keys]
        answers = ["None" if a is None and k == NONE_VOTE_KEY else a for a, k in zip(answers, keys)]
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key is None:
            continue
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, index)
    m = len(keys)
    if not counts:
        return Vote(answers=answers, keys=keys, silver_label=None, silver_key=None, confidence=0.0)
    best = max(counts, key=lambda k: (counts[k], -first[k]))
    return Vote(answers=answers, keys=keys, silver_label=answers[first[best]], silver_key=best,
                confidence=counts[best] / m)
