"""The filter band, where it is defined, defaulted and validated: the algorithm plugin's ``plugins.algorithm.filter``
(visplay_algorithm/options.py)."""

from __future__ import annotations

import pytest
from support.algorithm import make_ctx
from visplay_algorithm.api import filter_options
from visplay_algorithm.options import FilterOptions

from visplay.config import RecipeError


@pytest.mark.parametrize("variant, band, skip_rules", [("paper", [0.25, 0.75], False), ("released", [0.3, 0.8], True)])
def test_each_variant_has_its_band_and_skip_rules(variant, band, skip_rules):
    ctx = make_ctx(variant)
    assert list(ctx.recipe.plugins.algorithm.filter.band) == band
    assert filter_options(ctx.recipe).released_skip_rules is skip_rules


def test_a_band_given_wins_over_the_variant():
    ctx = make_ctx("released", ["plugins.algorithm.filter.band=[0.1,0.2]"])
    assert list(filter_options(ctx.recipe).band) == [0.1, 0.2]


@pytest.mark.parametrize("band", ["[0.8,0.2]", "[0.1]", "[0.1,0.5,0.9]", "[-0.1,0.5]", "[0.2,1.5]"])
def test_a_bad_band_is_refused_at_load_naming_the_key(band):
    with pytest.raises(RecipeError, match=r"key 'plugins\.algorithm\.filter\.band': must be \[low, high\]"):
        make_ctx("paper", [f"plugins.algorithm.filter.band={band}"])


def test_the_band_test_is_inclusive_with_a_rounding_tolerance():
    band = FilterOptions(band=[0.3, 0.8])
    assert band.keeps(3 / 10) and band.keeps(0.8) and band.keeps(0.3 - 1e-12)
    assert not band.keeps(0.29) and not band.keeps(0.81)


def test_the_old_key_still_moves_here():
    ctx = make_ctx("paper", ["reasoner.filter.band=[0.4,0.6]"])
    assert list(ctx.recipe.plugins.algorithm.filter.band) == [0.4, 0.6]
    assert "filter" not in ctx.recipe.reasoner


def test_filter_options_of_a_recipe_without_the_plugin_is_none():
    from visplay.testing import make_context

    assert filter_options(make_context().recipe) is None
