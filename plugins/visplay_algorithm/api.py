"""The algorithm plugin's public API: what other plugins may use of it (visplay_games does).

- ``format_question(variant, question, qtype, answer)``: a question in the variant's questioner output format;
- ``reasoner_target(think, answer)``: a reasoner response in the trained format (``<think>`` ... ``\\boxed{}``);
- ``filter_options(recipe)``: the recipe's filter settings (:class:`FilterOptions`: the confidence band and its
  inclusive ``keeps(confidence)`` test), or None when the recipe was loaded without this plugin.
"""

from __future__ import annotations

from typing import Any

from visplay_algorithm.options import FilterOptions
from visplay_algorithm.prompts import format_question, reasoner_target

__all__ = ["FilterOptions", "filter_options", "format_question", "reasoner_target"]


def filter_options(recipe: Any) -> FilterOptions | None:
    from visplay.api import RecipeError, plugin_section

    try:
        return plugin_section(recipe, "algorithm").filter
    except RecipeError:
        return None
