"""The ``kind_cap`` plugin: no one kind of question fills the reasoner's set (a gold-free guard).

Kinds come from ``visplay_question_kinds`` (the games plugin names its templates), else from the silver label's
form (plugins/visplay_collapse/kinds.py). Each kind may keep at most ``max_share`` of the iteration's reasoner set
(``reasoner.set_images`` x ``reasoner.questions_per_image`` questions, rounded down, at least ``min_count``);
questions over the cap are rejected with the reason ``kind_cap``, in the order they are voted. The count includes
the questions kept in the iteration's earlier set steps (read from the run log), so a resumed run decides alike.
Off (``max_share: null``, the default) the plugin abstains.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from visplay.api import FilterDecision, hookimpl, number_in, plugin_section
from visplay_collapse.kinds import answer_form, kept_by_band_and_margin

PHASE = "reasoner_set"


@dataclass
class KindCapOptions:
    """Cap each question kind's share of the reasoner's set."""

    max_share: float | None = None
    """Largest share of the iteration's reasoner set one kind may keep (None: off)."""
    min_count: int = 2
    """Every kind may keep at least this many questions, whatever the share gives."""

    def validate(self) -> dict[str, str]:
        checks = {}
        if self.max_share is not None:
            checks["max_share"] = number_in(self.max_share, 0.0, 1.0, low_open=True)
        if isinstance(self.min_count, bool) or not isinstance(self.min_count, int) or self.min_count < 0:
            checks["min_count"] = f"must be an integer >= 0, got {self.min_count!r}"
        return {key: why for key, why in checks.items() if why is not None}


@hookimpl
def visplay_recipe_sections() -> dict[str, type]:
    return {"kind_cap": KindCapOptions}


def _kinds(ctx: Any, pairs: list[tuple[str, str]], labels: list[str | None]) -> list[str]:
    named = ctx.hooks.question_kinds(pairs)
    return [k if k is not None else answer_form(label) for k, label in zip(named, labels)]


def kept_so_far(ctx: Any) -> Counter:
    """Kept questions per kind in this iteration's committed set steps."""
    log = ctx.log
    if log is None:
        return Counter()
    kept = {f["question_key"] for f in log.filters_of(ctx.iteration) if f["keep"]}
    if not kept:
        return Counter()
    questions = [q for q in log.rows_matching("questions", iteration=ctx.iteration, phase=PHASE) if q["key"] in kept]
    labels = {lab["question_key"]: lab["silver_label"] for lab in log.labels_of(ctx.iteration, PHASE)}
    return Counter(_kinds(ctx, [(q["image_id"], q["question"] or "") for q in questions],
                          [labels.get(q["key"]) for q in questions]))


@hookimpl(trylast=True)  # after the band and the other filters: only questions they keep count against the cap
def visplay_filter_questions(ctx: Any, items: Any) -> list[FilterDecision] | None:
    opts: KindCapOptions = plugin_section(ctx.recipe, "kind_cap")
    if opts.max_share is None:
        return None
    cfg = ctx.recipe.reasoner
    cap = max(opts.min_count, math.floor(opts.max_share * int(cfg.set_images) * int(cfg.questions_per_image)))
    counts = kept_so_far(ctx)
    kinds = _kinds(ctx, [(it.image_id, it.parsed.question or "") for it in items],
                   [it.vote.silver_label for it in items])
    decisions = []
    for item, kind in zip(items, kinds):
        if not kept_by_band_and_margin(ctx, item):
            decisions.append(FilterDecision(True, "kept"))  # another filter rejects it: it does not count
        elif counts[kind] >= cap:
            decisions.append(FilterDecision(False, "kind_cap"))
        else:
            counts[kind] += 1
            decisions.append(FilterDecision(True, "kept"))
    return decisions

