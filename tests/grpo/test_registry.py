"""The grpo plugin's registries: recipe names checked at load, the variant's defaults, a third-party policy loss
registered from its own package (through visplay.testing), and the optimizer running what the recipe names."""

from __future__ import annotations

import types

import pytest
import torch
from support.models import make_policy, prompts
from visplay_grpo import api
from visplay_grpo import core_algos as ca
from visplay_grpo import plugin as grpo_plugin
from visplay_grpo.optimizer import GRPOOptimizer

from visplay.api import RecipeError
from visplay.testing import make_context
from visplay.types import Rollout


def _rollouts(rewards):
    ps = prompts()
    return [Rollout(f"p0/g{g}", "p0", ps[0], [40 + g, 41, 42], [], float(r)) for g, r in enumerate(rewards)]


@pytest.mark.parametrize(("key", "names"), [
    ("policy_loss", "dual_clip, vanilla, gspo, gspo_token, cispo, sapo, clip_cov, kl_cov, geo_mean"),
    ("advantage_estimator", "grpo, rloo, reinforce_plus_plus, grpo_passk"),
    ("loss_agg", "token_mean, seq_mean_token_mean, seq_mean_token_sum, seq_mean_token_sum_norm"),
])
def test_unknown_name_is_refused_at_load_naming_key_and_known_names(key, names):
    with pytest.raises(RecipeError, match=rf"plugins\.grpo\.{key}.*must be one of {names}, got 'nope'"):
        make_context([f"plugins.grpo.{key}=nope"], plugins=[grpo_plugin])


@pytest.mark.parametrize(("setting", "why"), [
    ("clip_cov_ratio=0", r"plugins\.grpo\.clip_cov_ratio.*0"), ("kl_cov_ratio=1.5", r"plugins\.grpo\.kl_cov_ratio"),
    ("ppo_kl_coef=-1", r"plugins\.grpo\.ppo_kl_coef"), ("clip_cov_ub=0.5", r"plugins\.grpo\.clip_cov_ub.*clip_cov_lb"),
    ("clip_cov_lb=inf", r"plugins\.grpo\.clip_cov_lb.*finite number"),
])
def test_cov_loss_settings_are_checked_naming_the_key(setting, why):
    with pytest.raises(RecipeError, match=why):
        make_context([f"plugins.grpo.{setting}"], plugins=[grpo_plugin])


def test_cov_loss_settings_default_to_verls_config():
    opt = make_context(plugins=[grpo_plugin]).recipe.plugins.grpo
    assert (opt.clip_cov_ratio, opt.clip_cov_lb, opt.clip_cov_ub, opt.kl_cov_ratio, opt.ppo_kl_coef) == (
        2e-4, 1.0, 5.0, 2e-4, 0.1)


def test_cov_loss_settings_reach_the_optimizer_from_the_recipe():
    ctx = make_context(["plugins.grpo.policy_loss=kl_cov", "plugins.grpo.kl_cov_ratio=0.25",
                        "plugins.grpo.ppo_kl_coef=0.5", "plugins.grpo.clip_cov_ub=7"], plugins=[grpo_plugin])
    opt = grpo_plugin.visplay_make_optimizer(ctx, "reasoner", make_policy())
    assert opt.policy_loss is ca.kl_cov_loss
    assert {k: opt.loss_settings[k] for k in ("kl_cov_ratio", "ppo_kl_coef", "clip_cov_ub", "clip_cov_lb")} == {
        "kl_cov_ratio": 0.25, "ppo_kl_coef": 0.5, "clip_cov_ub": 7.0, "clip_cov_lb": 1.0}


def test_variant_defaults_released_float32_and_easyr1_clipfrac():
    paper = make_context(plugins=[grpo_plugin]).recipe.plugins.grpo
    released = make_context(["variant=released"], plugins=[grpo_plugin]).recipe.plugins.grpo
    assert (paper.advantage_dtype, paper.clipfrac_higher) == ("float64", "positive")
    assert (released.advantage_dtype, released.clipfrac_higher) == ("float32", "any_sign")


def test_released_optimizer_pushes_an_all_correct_group_as_easyr1():
    """Eight rewards of 0.9 under ``released``: -0.0560 each (EasyR1's float32 arithmetic); paper: 0."""
    for variant, expected in (("released", -0.0560), ("paper", 0.0)):
        ctx = make_context([f"variant={variant}", "reasoner.group_size=8"], plugins=[grpo_plugin])
        opt = grpo_plugin.visplay_make_optimizer(ctx, "reasoner", make_policy())
        adv = opt.update(_rollouts([0.9] * 8)).advantages
        assert list(adv.values()) == pytest.approx([expected] * 8, abs=5e-5), variant


# --- a third-party loss from its own package, in under 25 lines ---------------------------------------------------

THIRD_PARTY = '''
import torch
from visplay_grpo.api import register_policy_loss

CALLS = []


def reinforce_loss(old_logp, logp, advantages, mask, **settings):
    """Plain REINFORCE: -A * logp per token (no ratio, no clip)."""
    CALLS.append(tuple(logp.shape))
    return {"loss": -advantages * logp}


register_policy_loss("plain_reinforce", reinforce_loss)
'''


@pytest.fixture
def third_party():
    module = types.ModuleType("my_visplay_losses")
    exec(compile(THIRD_PARTY, "my_visplay_losses.py", "exec"), module.__dict__)
    yield module
    api.unregister("policy_loss", "plain_reinforce")


def test_a_third_party_policy_loss_is_named_in_the_recipe_and_runs(third_party):
    assert len(THIRD_PARTY.strip().splitlines()) <= 25
    ctx = make_context(["plugins.grpo.policy_loss=plain_reinforce", "plugins.grpo.kl_coef=0"],
                       plugins=[grpo_plugin, third_party])
    assert "plain_reinforce" in api.known("policy_loss")
    policy = make_policy()
    before = policy.weights_sha256()
    opt = grpo_plugin.visplay_make_optimizer(ctx, "reasoner", policy)
    metrics = opt.update(_rollouts([1.0, 0.0, 0.0, 1.0])).metrics
    assert third_party.CALLS and policy.weights_sha256() != before
    assert metrics["actor/pg_clipfrac_higher"] == 0.0  # indicators it does not give log 0
    with pytest.raises(ValueError, match="already registered"):
        api.register_policy_loss("plain_reinforce", third_party.reinforce_loss)


@pytest.mark.parametrize(("loss", "agg", "estimator"), [
    ("gspo", "token_mean", "grpo"), ("gspo_token", "seq_mean_token_sum_norm", "rloo"),
    ("cispo", "seq_mean_token_sum", "reinforce_plus_plus"), ("sapo", "seq_mean_token_mean", "grpo_passk"),
    ("vanilla", "token_mean", "grpo"), ("clip_cov", "token_mean", "grpo"), ("kl_cov", "seq_mean_token_mean", "rloo"),
    ("geo_mean", "seq_mean_token_mean", "grpo"),
])
def test_every_builtin_trains_deterministically(loss, agg, estimator):
    def run():
        torch.manual_seed(0)
        policy = make_policy()
        opt = GRPOOptimizer(policy, lr=1e-3, kl_coef=1e-2, micro_batch_size=2, policy_loss=loss, loss_agg=agg,
                            advantage_estimator=estimator, norm_length=8)
        metrics = opt.update(_rollouts([1.0, 0.0, 0.5, 0.0])).metrics
        return policy.weights_sha256(), metrics

    (sha_a, m_a), (sha_b, m_b) = run(), run()
    assert sha_a == sha_b and m_a == m_b
    assert sha_a != make_policy().weights_sha256() and all(v == v for v in m_a.values())


# --- dynamic sampling (DAPO's filter) ------------------------------------------------------------------------------


def _two_groups():
    ps = prompts()
    same = [Rollout(f"a/g{g}", "a", ps[0], [40 + g, 41], [], 1.0) for g in range(4)]
    mixed = [Rollout(f"b/g{g}", "b", ps[1], [50 + g, 51, 52], [], float(g % 2)) for g in range(4)]
    return same, mixed


def _update(rollouts, drop):
    policy = make_policy()
    opt = GRPOOptimizer(policy, lr=1e-3, kl_coef=1e-2, micro_batch_size=4, advantage_dtype="float32",
                        drop_zero_variance=drop)
    return opt.update(rollouts), policy.weights_sha256()


def test_dynamic_sampling_drops_zero_variance_groups_from_the_update():
    same, mixed = _two_groups()
    result, sha = _update(same + mixed, drop=True)
    alone, sha_alone = _update(mixed, drop=False)
    assert sha == sha_alone  # the all-equal group took no part in the step
    assert [result.advantages[r.key] for r in same] == [0.0] * 4
    assert [result.advantages[r.key] for r in mixed] == [alone.advantages[r.key] for r in mixed]
    assert (result.metrics["dynamic_sampling/dropped_groups"], result.metrics["dynamic_sampling/dropped_rollouts"]) \
        == (1.0, 4.0)
    assert result.dropped_groups == ["a"]  # which groups: the engine logs them in dropped_groups
    kept, sha_kept = _update(same + mixed, drop=False)
    assert sha_kept != sha and "dynamic_sampling/dropped_groups" not in kept.metrics
    assert kept.dropped_groups == []
    assert _update(same + mixed, drop=True) == (result, sha)  # deterministic


def test_dynamic_sampling_with_every_group_dropped_makes_no_step():
    same, _ = _two_groups()
    before = make_policy().weights_sha256()
    result, sha = _update(same, drop=True)
    assert sha == before and result.metrics["actor/updates"] == 0.0
    assert result.metrics["dynamic_sampling/dropped_groups"] == 1.0 and result.dropped_groups == ["a"]


def test_dropped_groups_become_run_log_rows_in_the_order_given():
    from visplay.keys import Position
    from visplay.loop import phases
    from visplay.plugins import PluginError

    same, mixed = _two_groups()
    out = phases.StepResult()
    at = Position(2, "reasoner", 5)
    phases.dropped_rows(at, "grpo", "reasoner", [*mixed, *same], ["a", "b"], out)
    assert out.rows["dropped_groups"] == [
        {"grp": "a", "iteration": 2, "role": "reasoner", "step": 5, "rollouts": 4, "reward": 1.0, "producer": "grpo"},
        {"grp": "b", "iteration": 2, "role": "reasoner", "step": 5, "rollouts": 4, "reward": 0.0, "producer": "grpo"}]
    with pytest.raises(PluginError, match="optimizer 'grpo' dropped group 'c', which is not in the step's rollouts"):
        phases.dropped_rows(at, "grpo", "reasoner", same, ["c"], phases.StepResult())
