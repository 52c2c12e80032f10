"""Majority vote over the reasoner's m answers: the silver label and its confidence.

Keys are computed once per answer (``visplay_answer_key``), so the vote is a count: O(m), not the released code's
m^2 pairwise symbolic comparisons. Where equal keys are not the whole rule (the released code grades answers
pairwise), ``equivalent`` is asked only between the few *distinct* keys of one question.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from visplay.types import Vote

NONE_VOTE_KEY = "text:none"
"""The key a missing answer votes for under ``none_as_vote`` (the canonical key of the string "None")."""

DENOMINATORS = ("samples", "answered")
"""What the confidence divides by: all m samples, or only the samples with an answer (a non-None key)."""


def majority_vote(answers: Sequence[str | None], keys: Sequence[str | None], *, none_as_vote: bool = False,
                  equivalent: Callable[[str, str], bool] | None = None, denominator: str = "samples") -> Vote:
    """The majority key among ``keys`` and its share of the samples.

    :param answers: the m extracted answers (None: the sample gave no answer).
    :param keys: their keys (None: no answer, not counted); same length as ``answers``.
    :param none_as_vote: a None key votes for ``NONE_VOTE_KEY`` (the answer text becomes "None").
    :param equivalent: when given, distinct keys are merged as the released vote loop merges answers: in order of
        first occurrence, a key joins the first earlier group whose representative answer is ``equivalent`` to
        its own answer, else opens a group. Exact only if ``equivalent`` depends on the answers through their keys
        (then every answer with one key lands where the first one did). ``Vote.keys`` then holds each answer's
        group key (the key of the group's first answer).
    :param denominator: ``samples`` (m, unanswered samples count) or ``answered`` (non-None keys only).
    :return: a Vote. Ties are broken by the earliest first occurrence (what the released code's insertion-ordered
        ``max`` over a dict does). The silver label is the answer text of the winning group's first occurrence.
        No answers at all: silver label None and confidence 0.
    """
    if len(answers) != len(keys):
        raise ValueError(f"majority_vote: {len(answers)} answers but {len(keys)} keys")
    if denominator not in DENOMINATORS:
        raise ValueError(f"majority_vote: denominator must be one of {DENOMINATORS}, got {denominator!r}")
    answers, keys = list(answers), list(keys)
    if none_as_vote:
        keys = [NONE_VOTE_KEY if k is None else k for k in keys]
        answers = ["None" if a is None and k == NONE_VOTE_KEY else a for a, k in zip(answers, keys)]
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key is not None:
            first.setdefault(key, index)
    group_of = _merge(first, answers, equivalent) if equivalent is not None else {k: k for k in first}
    keys = [None if k is None else group_of[k] for k in keys]
    counts: dict[str, int] = {}
    for key in keys:
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    m = len(keys) if denominator == "samples" else sum(counts.values())
    if not counts:
        return Vote(answers=answers, keys=keys, silver_label=None, silver_key=None, confidence=0.0)
    best = max(counts, key=lambda k: (counts[k], -first[k]))
    return Vote(answers=answers, keys=keys, silver_label=answers[first[best]], silver_key=best,
                confidence=counts[best] / m)


def _merge(first: dict[str, int], answers: list[str | None],
           equivalent: Callable[[str, str], bool]) -> dict[str, str]:
    """{key: its group's key}: each distinct key, in first-occurrence order, joins the first equivalent group."""
    groups: list[str] = []
    group_of: dict[str, str] = {}
    for key, index in first.items():  # dicts keep insertion order: first occurrences in sample order
        answer = answers[index] or ""
        for group in groups:
            if equivalent(answer, answers[first[group]] or ""):
                group_of[key] = group
                break
        else:
            groups.append(key)
            group_of[key] = key
    return group_of
