"""Why ``policy_loss=kl_cov`` trains a tiny run exactly as the default does: on an on-policy update the ratio is 1.

KL-Cov's penalty is ``ppo_kl_coef x |logp - old_logp|`` on the tokens of largest covariance (verl
``compute_policy_loss_kl_cov``). At ratio 1 the penalty is |0| = 0 and its gradient is torch's sign(0) = 0, and the
PPO clip is inactive too, so the loss and its gradient are those of the plain surrogate -A x ratio, i.e. of
``vanilla`` / ``dual_clip``. They differ only once the ratio moves off 1: a second update batch in the same step
(``update_batch_size`` below the rollout batch), or stale (sampler) old log-probs.
"""

from __future__ import annotations

import torch
from support.models import digit_reward, make_policy, prompts
from visplay_grpo import core_algos as ca
from visplay_grpo.optimizer import GRPOOptimizer

from visplay.types import Rollout, SamplingParams

SETTINGS = {"clip_low": 0.2, "clip_high": 0.3, "dual_clip": 3.0, "tau_positive": 1.0, "tau_negative": 1.05,
            "clip_cov_ratio": 2e-4, "clip_cov_lb": 1.0, "clip_cov_ub": 5.0, "kl_cov_ratio": 0.2, "ppo_kl_coef": 0.1}


def _inputs(stale: bool):
    g = torch.Generator().manual_seed(7)
    mask = (torch.arange(10)[None, :] < torch.tensor([10, 7, 4, 9, 6, 10])[:, None]).float()
    logp = (-torch.rand(mask.shape, generator=g) * 3).requires_grad_(True)
    old = logp.detach() + (torch.randn(mask.shape, generator=g) * 0.05 if stale else 0.0)
    adv = (torch.randn(mask.shape[0], 1, generator=g) * 2).expand(mask.shape).contiguous()
    return old, logp, adv, mask


def _loss_and_grad(name: str, old, logp, adv, mask):
    loss = ca.masked_mean(ca.POLICY_LOSSES[name](old, logp, adv, mask, **SETTINGS)["loss"], mask)
    (grad,) = torch.autograd.grad(loss, logp)
    return float(loss.detach()), grad


def test_at_ratio_one_kl_cov_has_the_vanilla_value_and_gradient():
    old, logp, adv, mask = _inputs(stale=False)
    terms = ca.kl_cov_loss(old, logp, adv, mask, **SETTINGS)
    assert int((terms["loss"] != -adv * torch.exp(logp - old)).sum()) == 0  # the penalty adds exactly 0
    kl_cov, vanilla, dual = (_loss_and_grad(n, old, logp, adv, mask) for n in ("kl_cov", "vanilla", "dual_clip"))
    assert kl_cov[0] == vanilla[0] == dual[0]
    assert torch.equal(kl_cov[1], vanilla[1]) and torch.equal(kl_cov[1], dual[1])


def test_off_ratio_one_kl_cov_moves_the_penalised_tokens_by_the_coefficient():
    old, logp, adv, mask = _inputs(stale=True)
    kl_cov = _loss_and_grad("kl_cov", old, logp, adv, mask)
    plain_loss = ca.masked_mean(-adv * torch.exp(logp - old), mask)
    (plain,) = torch.autograd.grad(plain_loss, logp)
    differ = (kl_cov[1] != plain).nonzero().tolist()
    count = max(1, int(mask.sum() * SETTINGS["kl_cov_ratio"]))
    assert len(differ) == count  # the top-covariance tokens, and only they
    rows, cols = zip(*differ)
    expected = SETTINGS["ppo_kl_coef"] * torch.sign(logp.detach() - old)[rows, cols] / mask.sum()
    torch.testing.assert_close(kl_cov[1][rows, cols] - plain[rows, cols], expected)


def _step(policy_loss: str, update_batch_size: int | None) -> str:
    """One GRPO step of 2 prompts x 8 rollouts on the tiny model; the trained weights' sha256."""
    torch.manual_seed(0)
    policy = make_policy()
    ps = prompts()[:2]
    groups = policy.sampler().sample(ps, [SamplingParams(n=8, max_new_tokens=3, top_p=0.99, seed=11 + i)
                                          for i in range(2)])
    rollouts = [Rollout(f"p{i}/g{g.sample_index}", f"p{i}", g.prompt, g.token_ids, g.logprobs,
                        digit_reward(policy, g.token_ids) + 0.1 * g.sample_index)
                for i, gs in enumerate(groups) for g in gs]
    opt = GRPOOptimizer(policy, lr=1e-2, kl_coef=0.0, micro_batch_size=16, update_batch_size=update_batch_size,
                        seed=3, policy_loss=policy_loss, kl_cov_ratio=0.2, ppo_kl_coef=1.0)
    metrics = opt.update(rollouts).metrics
    assert metrics["actor/updates"] == (1 if update_batch_size is None else 16 // update_batch_size)
    return policy.weights_sha256()


def test_one_on_policy_update_trains_identically_a_second_update_batch_does_not():
    """The tiny recipe's shape (one update per step, recomputed old log-probs): the teacher-forced training
    forward gives the recomputed old log-probs bit for bit, so kl_cov = dual_clip. With two update batches the
    second one starts from moved weights (ratio != 1) and kl_cov's penalty changes the step."""
    assert _step("kl_cov", None) == _step("dual_clip", None)
    assert _step("kl_cov", 8) != _step("dual_clip", 8)
