"""Every advantage estimator, policy loss, loss aggregation and KL estimator of visplay_grpo against its source's
own implementation, executed on the same tensors: values and gradients. The sources are vendored as test data in
tests/grpo/anchors/ (EasyR1 and verl, Apache 2.0, pinned commits named in each file)."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest
import torch
from visplay_grpo import core_algos as ca

ANCHORS = Path(__file__).parent / "anchors"
SETTINGS = {"clip_low": 0.2, "clip_high": 0.3, "dual_clip": 3.0, "tau_positive": 1.0, "tau_negative": 1.05,
            "clip_cov_ratio": 2e-4, "clip_cov_lb": 1.0, "clip_cov_ub": 5.0, "kl_cov_ratio": 2e-4, "ppo_kl_coef": 0.1}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"anchor_{name}", ANCHORS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


easyr1 = _load("easyr1_core_algos")
verl = _load("verl_agg_loss")
verl_cov = _load("verl_cov_losses")


def _batch(seed: int, n: int = 12, t: int = 9):
    """Random rollouts: rewards, 3 groups of 4 (ragged lengths), and the (N, T) response mask."""
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randint(0, 5, (n,), generator=g).float() / 4
    groups = [f"q{i // 4}" for i in range(n)]
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).float()
    return rewards, groups, lengths, mask


def _token_rewards(rewards: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """EasyR1's token_level_rewards: each rollout's score on its last response token."""
    out = torch.zeros_like(mask)
    out[torch.arange(len(rewards)), lengths - 1] = rewards
    return out


# --- advantage estimators ----------------------------------------------------------------------------------------

EASYR1_ESTIMATORS = {
    "grpo": lambda tr, m, idx: easyr1.compute_grpo_outcome_advantage(tr, m, idx, eps=1e-6),
    "grpo_passk": lambda tr, m, idx: easyr1.compute_grpo_passk_outcome_advantage(tr, m, idx, eps=1e-6),
    "rloo": lambda tr, m, idx: easyr1.compute_rloo_outcome_advantage(tr, m, idx),
    "reinforce_plus_plus": lambda tr, m, idx: easyr1.compute_reinforce_plus_plus_outcome_advantage(tr, m, gamma=1.0),
}


@pytest.mark.parametrize("name", sorted(EASYR1_ESTIMATORS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_estimators_equal_easyr1_in_float32(name, seed):
    rewards, groups, lengths, mask = _batch(seed)
    theirs, _ = EASYR1_ESTIMATORS[name](_token_rewards(rewards, lengths, mask), mask, groups)
    theirs = theirs * mask  # reinforce_plus_plus whitens the padding too; the loss never reads it
    ours = ca.ADVANTAGE_ESTIMATORS[name](rewards, groups, lengths, eps=1e-6, dtype=torch.float32)
    torch.testing.assert_close(ours[:, None] * mask, theirs, rtol=1e-6, atol=1e-6)
    wide = ca.ADVANTAGE_ESTIMATORS[name](rewards, groups, lengths, eps=1e-6, dtype=torch.float64)
    torch.testing.assert_close(wide[:, None] * mask, theirs, rtol=1e-4, atol=1e-4)  # float64: all-equal groups


@pytest.mark.parametrize(("value", "expected"), [(0.9, -0.0560), (0.1, -0.0074), (0.3, 0.0289)])
def test_all_equal_group_float32_as_easyr1(value, expected):
    """Eight equal rewards: EasyR1's float32 mean is not the reward, so the group gets a small push; float64: 0."""
    rewards, groups = torch.full((8,), value), ["g"] * 8
    lengths = torch.full((8,), 3)
    mask = torch.ones(8, 3)
    theirs, _ = easyr1.compute_grpo_outcome_advantage(_token_rewards(rewards, lengths, mask), mask, groups)
    ours = ca.group_advantages(rewards, groups, 1e-6, dtype=torch.float32)
    assert ours.tolist() == theirs[:, 0].tolist()
    assert ours.tolist() == pytest.approx([expected] * 8, abs=5e-5)
    assert ca.group_advantages(rewards, groups, 1e-6).tolist() == [0.0] * 8


def test_grpo_without_std_is_reward_minus_group_mean():
    """Dr.GRPO's advantage (verl ``norm_adv_by_std_in_grpo=False``): EasyR1's GRPO advantage times (std + eps)."""
    rewards, groups, lengths, mask = _batch(3)
    theirs, _ = easyr1.compute_grpo_outcome_advantage(_token_rewards(rewards, lengths, mask), mask, groups, eps=0.0)
    ours = ca.group_advantages(rewards, groups, 1e-6, norm_by_std=False, dtype=torch.float32)
    stds = torch.tensor([float(rewards[[j for j in range(12) if groups[j] == g]].std()) for g in groups])
    torch.testing.assert_close(ours, torch.where(stds > 0, theirs[:, 0] * stds, ours), rtol=1e-5, atol=1e-6)
    means = torch.tensor([float(rewards[[j for j in range(12) if groups[j] == g]].mean()) for g in groups])
    torch.testing.assert_close(ours, rewards - means, rtol=0, atol=1e-6)


# --- policy losses -------------------------------------------------------------------------------------------------

OURS_TO_EASYR1 = {"dual_clip": ("default", 3.0), "vanilla": ("default", 1e30), "gspo": ("gspo", 3.0),
                  "gspo_token": ("gspo_token", 3.0), "cispo": ("cispo", 3.0), "sapo": ("sapo", 3.0)}


def _logps(seed: int, mask: torch.Tensor):
    g = torch.Generator().manual_seed(100 + seed)
    old = -torch.rand(mask.shape, generator=g) * 3
    logp = (old + torch.randn(mask.shape, generator=g) * 0.4).requires_grad_(True)
    adv = torch.randn(mask.shape[0], 1, generator=g).expand(mask.shape).contiguous()
    return old, logp, adv


@pytest.mark.parametrize("name", sorted(OURS_TO_EASYR1))
@pytest.mark.parametrize("mode", ["token", "seq"])
@pytest.mark.parametrize("seed", [0, 1])
def test_policy_losses_equal_easyr1_values_gradients_metrics(name, mode, seed):
    _, _, _, mask = _batch(seed)
    old, logp, adv = _logps(seed, mask)
    loss_type, dual = OURS_TO_EASYR1[name]
    theirs, metrics = easyr1.compute_policy_loss(old, logp, adv, mask, 0.2, 0.3, dual, 1.0, 1.05, loss_type, mode)
    (their_grad,) = torch.autograd.grad(theirs, logp)
    terms = ca.POLICY_LOSSES[name](old, logp, adv, mask, **SETTINGS)
    reduce = ca.masked_mean if mode == "token" else ca.seq_mean_token_mean
    ours = reduce(terms["loss"], mask)
    (our_grad,) = torch.autograd.grad(ours, logp)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(our_grad, their_grad, rtol=1e-5, atol=1e-8)
    assert float(ca.masked_mean(terms["neg_log_ratio"], mask)) == pytest.approx(metrics["ppo_kl"], rel=1e-5, abs=1e-7)
    if loss_type == "default":
        assert float(ca.masked_mean(terms["clipped_higher_any"], mask)) == pytest.approx(metrics["pg_clipfrac_higher"])
        assert float(ca.masked_mean(terms["clipped_lower"], mask)) == pytest.approx(metrics["pg_clipfrac_lower"])


def test_clipfrac_higher_as_easyr1_for_a_negative_advantage_below_the_band():
    """A = -1, ratio 0.5: EasyR1's pg_clipfrac_higher counts it (1.0); visplay's positive-only one does not."""
    old, mask = torch.zeros(1, 1), torch.ones(1, 1)
    logp, adv = torch.log(torch.full((1, 1), 0.5)), torch.full((1, 1), -1.0)
    _, metrics = easyr1.compute_policy_loss(old, logp, adv, mask, 0.2, 0.3, 3.0, 1.0, 1.05, "default", "token")
    terms = ca.POLICY_LOSSES["dual_clip"](old, logp, adv, mask, **SETTINGS)
    assert metrics["pg_clipfrac_higher"] == pytest.approx(1.0) and terms["clipped_higher_any"].item() == 1.0
    assert terms["clipped_higher"].item() == 0.0


def test_vanilla_has_no_dual_clip_and_no_nan_at_zero_advantage():
    old, mask = torch.zeros(1, 3), torch.ones(1, 3)
    logp = torch.log(torch.tensor([[5.0, 5.0, 1.0]])).requires_grad_(True)
    adv = torch.tensor([[-1.0, 0.0, 0.0]])
    terms = ca.POLICY_LOSSES["vanilla"](old, logp, adv, mask, **SETTINGS)
    assert terms["loss"].detach()[0].tolist() == pytest.approx([5.0, 0.0, 0.0], rel=1e-6)  # dual_clip caps at 3
    terms["loss"].sum().backward()
    assert torch.isfinite(logp.grad).all()


# --- verl's Clip-Cov / KL-Cov (the Entropy Mechanism paper) ----------------------------------------------------------


def _verl_config(**policy_loss):
    return types.SimpleNamespace(clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.3, global_batch_info={},
                                 policy_loss=types.SimpleNamespace(**policy_loss))


def _cov_inputs(seed: int):
    """Rollouts whose advantage-log-prob covariances spread past 1 (the clip_cov band is (1, 5) by default)."""
    _, _, _, mask = _batch(seed, n=16, t=12)
    old, logp, _ = _logps(seed, mask)
    adv = torch.randn(mask.shape[0], 1, generator=torch.Generator().manual_seed(200 + seed)) * 3
    return old, logp, adv.expand(mask.shape).contiguous(), mask


COV_CASES = {  # (ratio, loss_agg): verl's default ratio (one token), and ratios that pick several / every candidate
    "default": (2e-4, "token-mean"), "ten_percent": (0.1, "token-mean"), "seq_mean": (0.05, "seq-mean-token-mean"),
    "every_candidate": (1.0, "token-mean"),
}


@pytest.mark.parametrize("case", sorted(COV_CASES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clip_cov_equals_verl_values_gradients_metrics(case, seed):
    """verl draws the cut tokens with torch.randperm on the global generator: both run under the same seed."""
    ratio, mode = COV_CASES[case]
    old, logp, adv, mask = _cov_inputs(seed)
    config = _verl_config(clip_cov_ratio=ratio, clip_cov_lb=1.0, clip_cov_ub=5.0)
    torch.manual_seed(1000 + seed)
    theirs, metrics = verl_cov.compute_policy_loss_clip_cov(old, logp, adv, mask, mode, config)
    (their_grad,) = torch.autograd.grad(theirs, logp)
    torch.manual_seed(1000 + seed)
    terms = ca.POLICY_LOSSES["clip_cov"](old, logp, adv, mask, **{**SETTINGS, "clip_cov_ratio": ratio})
    ours = (ca.masked_mean if mode == "token-mean" else ca.seq_mean_token_mean)(terms["loss"], mask)
    (our_grad,) = torch.autograd.grad(ours, logp)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(our_grad, their_grad, rtol=1e-5, atol=1e-8)
    cut = float(ca.masked_mean(terms["clipped_higher"], mask))
    assert cut == pytest.approx(metrics["actor/pg_clipfrac"], rel=1e-6, abs=1e-9)
    assert float(ca.masked_mean(terms["neg_log_ratio"], mask)) == pytest.approx(metrics["actor/ppo_kl"], rel=1e-5)
    assert cut > 0  # the inputs reach the band: some gradient is cut
    if case == "default":
        assert float(terms["clipped_higher"].sum()) == 1.0  # max(int(2e-4 x tokens), 1) = 1 token


def test_clip_cov_cuts_a_seeded_random_choice_of_the_candidates():
    """More candidates than the count: the seed picks which (verl's randperm); every candidate: any seed."""
    old, logp, adv, mask = _cov_inputs(0)
    cut = {}
    for ratio in (0.02, 1.0):
        for seed in (0, 1, 2):
            torch.manual_seed(seed)
            terms = ca.POLICY_LOSSES["clip_cov"](old, logp, adv, mask, **{**SETTINGS, "clip_cov_ratio": ratio})
            cut[ratio, seed] = terms["clipped_higher"].nonzero().tolist()
        torch.manual_seed(0)
        again = ca.POLICY_LOSSES["clip_cov"](old, logp, adv, mask, **{**SETTINGS, "clip_cov_ratio": ratio})
        assert again["clipped_higher"].nonzero().tolist() == cut[ratio, 0]
    assert len({str(cut[0.02, s]) for s in (0, 1, 2)}) > 1
    assert cut[1.0, 0] == cut[1.0, 1] == cut[1.0, 2] and len(cut[1.0, 0]) > len(cut[0.02, 0])


@pytest.mark.parametrize(("ratio", "coef", "mode"), [(2e-4, 0.1, "token-mean"), (0.1, 0.1, "token-mean"),
                                                     (0.3, 1.0, "seq-mean-token-mean")])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_cov_equals_verl_values_gradients_metrics(ratio, coef, mode, seed):
    """verl picks the penalised tokens with torch.topk: continuous random inputs make the selection unique."""
    old, logp, adv, mask = _cov_inputs(seed)
    config = _verl_config(kl_cov_ratio=ratio, ppo_kl_coef=coef)
    theirs, metrics = verl_cov.compute_policy_loss_kl_cov(old, logp, adv, mask, mode, config)
    (their_grad,) = torch.autograd.grad(theirs, logp)
    terms = ca.POLICY_LOSSES["kl_cov"](old, logp, adv, mask, **{**SETTINGS, "kl_cov_ratio": ratio,
                                                                 "ppo_kl_coef": coef})
    ours = (ca.masked_mean if mode == "token-mean" else ca.seq_mean_token_mean)(terms["loss"], mask)
    (our_grad,) = torch.autograd.grad(ours, logp)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(our_grad, their_grad, rtol=1e-5, atol=1e-8)
    assert float(ca.masked_mean(terms["neg_log_ratio"], mask)) == pytest.approx(metrics["actor/ppo_kl"], rel=1e-5)
    plain = ca.masked_mean(-adv * torch.exp(logp - old), mask) if mode == "token-mean" else None
    if plain is not None:
        assert float(ours.detach()) > float(plain)  # the penalty adds to the loss


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_geo_mean_equals_verl_values_gradients_metrics(seed):
    """verl's GMPO averages the rollout losses over the micro-batch (its loss_agg_mode unused): ours repeats each
    rollout's loss over its tokens, so seq_mean_token_mean gives the same value and gradient. The log-ratio noise
    (std 0.4) puts many tokens outside [-0.2, 0.3], so the log-space clip is exercised on both signs of A."""
    old, logp, adv = _logps(seed, _batch(seed)[3])
    mask = _batch(seed)[3]
    theirs, metrics = verl_cov.compute_policy_loss_geo_mean(old, logp, adv, mask, "token-mean", _verl_config())
    (their_grad,) = torch.autograd.grad(theirs, logp)
    terms = ca.POLICY_LOSSES["geo_mean"](old, logp, adv, mask, **SETTINGS)
    ours = ca.seq_mean_token_mean(terms["loss"], mask)
    (our_grad,) = torch.autograd.grad(ours, logp)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(our_grad, their_grad, rtol=1e-5, atol=1e-8)
    higher, lower = (float(ca.masked_mean(terms[k], mask)) for k in ("clipped_higher", "clipped_lower"))
    assert higher == pytest.approx(metrics["actor/pg_clipfrac"], rel=1e-6, abs=1e-9)
    assert lower == pytest.approx(metrics["actor/pg_clipfrac_lower"], rel=1e-6, abs=1e-9)
    assert float(ca.masked_mean(terms["neg_log_ratio"], mask)) == pytest.approx(metrics["actor/ppo_kl"], rel=1e-5)
    assert higher > 0 and lower > 0
    # the clip cut some tokens' gradient: those have zero gradient where the plain geometric mean has none
    assert int((our_grad == 0).logical_and(mask > 0).sum()) > 0


# --- loss aggregations ---------------------------------------------------------------------------------------------

VERL_MODES = {"token_mean": "token-mean", "seq_mean_token_mean": "seq-mean-token-mean",
              "seq_mean_token_sum": "seq-mean-token-sum", "seq_mean_token_sum_norm": "seq-mean-token-sum-norm"}


@pytest.mark.parametrize("name", sorted(VERL_MODES))
def test_aggregations_equal_verl_and_add_up_over_micro_batches(name):
    _, _, _, mask = _batch(4)
    values = torch.randn(mask.shape, generator=torch.Generator().manual_seed(7)).requires_grad_(True)
    norm = 16.0
    scale = mask.shape[0] * norm if name == "seq_mean_token_sum_norm" else None  # TRL dr_grpo's N x max length
    theirs = verl.agg_loss(values, mask, VERL_MODES[name], loss_scale_factor=scale)
    (their_grad,) = torch.autograd.grad(theirs, values)
    reduce, weigh_by = ca.LOSS_AGGREGATIONS[name]
    ours = reduce(values, mask, norm)
    (our_grad,) = torch.autograd.grad(ours, values)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(our_grad, their_grad, rtol=1e-6, atol=1e-8)
    # the optimizer's gradient accumulation: micro-batches weighted by their tokens or rollouts add up to the whole
    parts = [slice(0, 5), slice(5, 7), slice(7, 12)]
    total = sum(reduce(values[p], mask[p], norm) * (float(mask[p].sum()) / float(mask.sum()) if weigh_by == "tokens"
                                                    else (p.stop - p.start) / 12) for p in parts)
    torch.testing.assert_close(total, theirs, rtol=1e-6, atol=1e-7)


# --- KL ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["low_var_kl", "kl", "mse"])
def test_kl_equals_easyr1_including_the_clamp(kind):
    g = torch.Generator().manual_seed(5)
    ref = -torch.rand(4, 6, generator=g) * 3
    logp = ref + torch.randn(4, 6, generator=g)
    logp[0, 0], logp[0, 1] = ref[0, 0] - 100.0, ref[0, 1] + 100.0  # ref - logp = +100 and -100
    logp.requires_grad_(True)
    theirs = easyr1.compute_kl(logp, ref, kind)
    (their_grad,) = torch.autograd.grad(theirs.sum(), logp)
    ours = ca.kl_penalty(logp, ref, kind)
    (our_grad,) = torch.autograd.grad(ours.sum(), logp)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(our_grad, their_grad)
    assert torch.isfinite(our_grad).all()
    if kind == "low_var_kl":
        assert ours[0, 0].item() == 10.0 and our_grad[0, 0].item() == 0.0
