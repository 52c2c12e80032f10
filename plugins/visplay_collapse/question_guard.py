"""The ``question_guard`` plugin: degenerate questions stay out of the reasoner's set (a gold-free guard).

Self-play's questioner can drift to questions that say nothing ("How?", "Can?"), on which the reasoner's votes
still split near 50% (the questioner's reward peak) and its majority settles on one answer ("0", "yes"); the
reasoner is then trained to answer that to anything that starts alike. This guard rejects, for the reasoner's set:

- questions of fewer than ``min_words`` words (reason ``short_question``);
- a question text kept more than ``max_repeats`` times in the iteration's set, counting the set steps already
  committed (reason ``repeated_question``; texts compared lower-cased with spacing and final punctuation ignored).

With ``at_parse: true`` a short question is also refused where questions are parsed (``visplay_parse_question``,
ahead of the other parsers): it is invalid everywhere, so the questioner earns what any invalid question earns
(nothing, under the paper's and the released rewards) and stops being paid for drifting to it, and it never
reaches the reasoner's votes. Both off (0, the default): the plugin abstains, so the filters table is unchanged.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from visplay.api import FilterDecision, ParsedQuestion, hookimpl, plugin_section
from visplay_collapse.kinds import kept_by_band_and_margin

PHASE = "reasoner_set"


@dataclass
class QuestionGuardOptions:
    """Reject degenerate questions (too short, or the same text over and over) from the reasoner's set."""

    min_words: int = 0
    """Fewest words a question needs to enter the reasoner's set (0: off)."""
    max_repeats: int = 0
    """Most times one question text may be kept in an iteration's set (0: off)."""
    at_parse: bool = False
    """Also refuse questions under ``min_words`` words when they are parsed, for the questioner's reward too."""

    def validate(self) -> dict[str, str]:
        problems = {key: f"must be an integer >= 0, got {getattr(self, key)!r}" for key in ("min_words", "max_repeats")
                    if isinstance(getattr(self, key), bool) or not isinstance(getattr(self, key), int)
                    or getattr(self, key) < 0}
        if not isinstance(self.at_parse, bool):
            problems["at_parse"] = "must be true or false"
        elif self.at_parse and not problems and not self.min_words:
            problems["at_parse"] = "needs plugins.question_guard.min_words > 0"
        return problems


@hookimpl
def visplay_recipe_sections() -> dict[str, type]:
    return {"question_guard": QuestionGuardOptions}


def normal(text: str | None) -> str:
    return re.sub(r"\s+", " ", (text or "").lower()).strip().rstrip("?.!").strip()


def words(text: str | None) -> int:
    return len(re.findall(r"[^\W_]+", text or ""))


def kept_texts(ctx: Any) -> Counter:
    """Kept question texts (normalised) of this iteration's committed set steps."""
    if ctx.log is None:
        return Counter()
    kept = {f["question_key"] for f in ctx.log.filters_of(ctx.iteration) if f["keep"]}
    return Counter(normal(q["question"]) for q in ctx.log.rows_matching("questions", iteration=ctx.iteration,
                                                                         phase=PHASE) if q["key"] in kept)


@hookimpl(tryfirst=True)  # ahead of the parsers it defers to
def visplay_parse_question(ctx: Any, text: str) -> ParsedQuestion | None:
    opts: QuestionGuardOptions = plugin_section(ctx.recipe, "question_guard")
    if not opts.at_parse:
        return None
    parsed = next_parse(ctx, text)
    if parsed is None or not parsed.valid or words(parsed.question) >= opts.min_words:
        return parsed
    return dataclasses.replace(parsed, valid=False, reason="short_question")


def next_parse(ctx: Any, text: str) -> ParsedQuestion | None:
    """What the other parsers make of ``text`` (the first that answers, in pluggy's order)."""
    me = sys.modules[__name__]
    for impl in reversed(ctx.pm.hook.visplay_parse_question.get_hookimpls()):
        if impl.plugin is me:
            continue
        parsed = impl.function(**{arg: {"ctx": ctx, "text": text}[arg] for arg in impl.argnames})
        if parsed is not None:
            return parsed
    return None


@hookimpl
def visplay_filter_questions(ctx: Any, items: Any) -> list[FilterDecision] | None:
    opts: QuestionGuardOptions = plugin_section(ctx.recipe, "question_guard")
    if not opts.min_words and not opts.max_repeats:
        return None
    seen = kept_texts(ctx) if opts.max_repeats else Counter()
    decisions = []
    for item in items:
        text = item.parsed.question
        if opts.min_words and words(text) < opts.min_words:
            decisions.append(FilterDecision(False, "short_question"))
        elif opts.max_repeats and seen[normal(text)] >= opts.max_repeats:
            decisions.append(FilterDecision(False, "repeated_question"))
        else:
            if kept_by_band_and_margin(ctx, item):  # only questions the other filters keep count as repeats
                seen[normal(text)] += 1
            decisions.append(FilterDecision(True, "kept"))
    return decisions
