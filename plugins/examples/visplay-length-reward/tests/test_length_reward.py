"""The example plugin's own tests, written the way a third party would: with visplay.testing only."""

import pytest
import visplay_length_reward as plugin

from visplay.api import RecipeError, RunLog
from visplay.testing import answer_items, make_context, run_standin


def test_brevity_scores_each_response_and_names_its_plugin():
    ctx = make_context(["plugins.length_reward.max_tokens=4"], plugins=[plugin])
    components = ctx.hooks.reward_components("reasoner", answer_items(["one", "one two three four five"]))
    assert components["brevity"] == ("visplay_length_reward", [0.75, 0.0])


def test_replace_combine_takes_the_mean_of_all_components():
    ctx = make_context(["plugins.length_reward.replace_combine=true"], plugins=[plugin])
    assert ctx.hooks.combine_rewards("reasoner", {"brevity": [1.0, 0.5], "accuracy": [0.0, 1.0]},
                                     answer_items(["a", "b"])) == ("visplay_length_reward", [0.5, 0.75])


def test_a_misspelled_setting_is_refused_at_load():
    with pytest.raises(RecipeError, match=r"plugins\.length_reward\.max_token'.*did you mean 'plugins\.length_reward\.max_tokens'"):
        make_context(["plugins.length_reward.max_token=4"], plugins=[plugin])


def test_in_a_whole_run_every_rollout_gets_a_logged_brevity(tmp_path):
    db = run_standin(tmp_path / "run", ["iterations=1", "plugins.standin.weights={brevity: 0.5}"], plugins=[plugin])
    with RunLog(db, readonly=True) as log:
        brevity = log.rows_matching("rewards", component="brevity")
        advantages = log.rows("advantages")
    assert len(brevity) == len(advantages) > 0
    assert {row["producer"] for row in brevity} == {"visplay_length_reward"}
    assert all(0.0 <= row["value"] <= 1.0 for row in brevity)
