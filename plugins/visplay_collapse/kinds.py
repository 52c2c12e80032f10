"""Question kinds and vote margins: the quantities the collapse signals and guards are made of.

A question's kind comes from the first plugin that names it (``visplay_question_kinds``; the games plugin names its
templates, ``2048/tile_at``); the rest are named by the form of their silver label, so real pictures without any
plugin that knows them still get kinds: ``answer/yes-no``, ``answer/number``, ``answer/letter``, ``answer/word``,
``answer/text`` and ``answer/none`` (no majority).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

_NUMBER = re.compile(r"^[-+]?(\d+([.,]\d+)?|\d*[.,]\d+)(\s*%)?$")
_YES_NO = {"yes", "no", "true", "false"}


def answer_form(label: str | None) -> str:
    """The kind of a question no plugin named, from its silver label's form."""
    if label is None or not str(label).strip():
        return "answer/none"
    text = re.sub(r"\\text\{([^}]*)\}", r"\1", str(label)).strip().strip("$").strip().rstrip(".").lower()
    if text in _YES_NO:
        return "answer/yes-no"
    if _NUMBER.match(text):
        return "answer/number"
    if len(text) == 1 and text.isalpha():
        return "answer/letter"
    if " " not in text:
        return "answer/word"
    return "answer/text"


def kinds_of(ctx: Any, rows: Sequence[dict[str, Any]]) -> list[str]:
    """One kind per row (``image_id``, ``question``, ``silver_label``): the plugins' name, else the label's form."""
    named = ctx.hooks.question_kinds([(r["image_id"], r.get("question") or "") for r in rows]) if rows else []
    return [kind if kind is not None else answer_form(r.get("silver_label")) for kind, r in zip(named, rows)]


def vote_margin(keys: Sequence[str | None]) -> int:
    """Votes of the majority answer minus votes of the runner-up (missing answers are no one's votes)."""
    counts = sorted(Counter(k for k in keys if k is not None).values(), reverse=True) + [0, 0]
    return counts[0] - counts[1]


def shares(kinds: Sequence[str]) -> dict[str, float]:
    """{kind: its share of ``kinds``}, by kind name."""
    counts = Counter(kinds)
    return {k: counts[k] / len(kinds) for k in sorted(counts)} if kinds else {}


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    """Half the L1 distance between two kind distributions: 0 the same, 1 disjoint."""
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by linear interpolation (numpy's default), of a non-empty sequence."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def kept_by_band_and_margin(ctx: Any, item: Any) -> bool:
    """Whether the confidence band (the algorithm plugin's filter) and the margin guard keep a voted item: the
    guards that count what is kept (kind_cap, question_guard) count only those."""
    from visplay.api import RecipeError, plugin_section

    try:
        band = plugin_section(ctx.recipe, "algorithm").filter
    except RecipeError:  # a recipe loaded without the algorithm plugin: no band
        band = None
    if band is not None and not band.keeps(item.vote.confidence):
        return False
    try:
        need = plugin_section(ctx.recipe, "margin_guard").min_votes
    except RecipeError:
        need = 0
    return not need or vote_margin(item.vote.keys) >= need
