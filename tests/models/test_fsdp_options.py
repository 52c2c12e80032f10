"""``plugins.models.fsdp`` (issue 22): the settings reach the policy the plugin loads, and are validated at load."""

from __future__ import annotations

import pytest

from visplay.config import RecipeError, load_recipe
from visplay.context import RunContext
from visplay.plugins import get_plugin_manager


def _loaded_with(tmp_path, monkeypatch, *overrides) -> dict:
    import visplay_models.policy as policy
    from visplay_models.plugin import visplay_load_policy

    seen = {}
    monkeypatch.setattr(policy, "load_policy", lambda path, role, **kwargs: seen.update(kwargs) or "policy")
    ctx = RunContext(recipe=load_recipe("tiny", list(overrides)), pm=get_plugin_manager(), run_dir=tmp_path)
    assert visplay_load_policy(ctx, "reasoner", str(tmp_path / "model")) == "policy"
    return seen


def test_the_fsdp_section_reaches_load_policy(tmp_path, monkeypatch):
    default = _loaded_with(tmp_path, monkeypatch)
    assert (default["state_format"], default["offload"]) == ("full", False)  # what every run did before
    chosen = _loaded_with(tmp_path, monkeypatch, "plugins.models.fsdp.state_format=sharded",
                          "plugins.models.fsdp.offload=true")
    assert (chosen["state_format"], chosen["offload"]) == ("sharded", True)


def test_an_unknown_state_format_is_refused_naming_the_key(tmp_path):
    with pytest.raises(RecipeError, match=r"plugins\.models\.fsdp\.state_format': must be one of full, sharded"):
        load_recipe("tiny", ["plugins.models.fsdp.state_format=dcp"])


def test_a_single_process_policy_writes_its_snapshots_as_model_folders():
    """One process never shards, so ``sharded`` changes nothing there (save_snapshot is save)."""
    from visplay_models.policy import HFPolicy

    policy = HFPolicy.__new__(HFPolicy)
    policy.state_format, policy.sharded = "sharded", False
    policy.save = lambda directory: {"saved": str(directory)}
    assert not policy.sharded_state and policy.save_snapshot("d") == {"saved": "d"}
