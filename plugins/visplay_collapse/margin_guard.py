"""The ``margin_guard`` plugin: keep a silver label only when its majority is clear (a gold-free guard).

Of the m votes on a question, the majority answer must have at least ``plugins.margin_guard.min_votes`` more votes
than the runner-up (missing answers are no one's votes); closer votes are rejected with the reason
``vote_margin``. The confidence band (plugins.algorithm.filter) bounds the majority's share; this bounds its lead,
which separates a split vote (4 of 9 against 3) from a scattered one (4 of 9 against five singletons). Off
(``min_votes: 0``, the default) the plugin abstains, so the filters table is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from visplay.api import FilterDecision, hookimpl, plugin_section
from visplay_collapse.kinds import vote_margin


@dataclass
class MarginGuardOptions:
    """Reject silver labels whose majority leads the runner-up by fewer than ``min_votes`` votes."""

    min_votes: int = 0
    """Votes the majority must lead the runner-up by (0: off)."""

    def validate(self) -> dict[str, str]:
        if isinstance(self.min_votes, bool) or not isinstance(self.min_votes, int) or self.min_votes < 0:
            return {"min_votes": f"must be an integer >= 0, got {self.min_votes!r}"}
        return {}


@hookimpl
def visplay_recipe_sections() -> dict[str, type]:
    return {"margin_guard": MarginGuardOptions}


@hookimpl
def visplay_filter_questions(ctx: Any, items: Any) -> list[FilterDecision] | None:
    need = plugin_section(ctx.recipe, "margin_guard").min_votes
    if not need:
        return None
    return [FilterDecision(True, "kept") if vote_margin(item.vote.keys) >= need
            else FilterDecision(False, "vote_margin") for item in items]
