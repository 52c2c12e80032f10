"""Fault suite, GRPO (issue 17, item 6): a non-finite loss, gradient or weight stops the update with a clear error.

Before: a NaN reward gave a NaN loss whose update was skipped in silence (its metrics NaN), and ``lr=inf`` (or an lr
that overflows float32) stepped the weights to inf/NaN, which the engine then checkpointed. Now the optimizer
raises before returning, so the engine never reaches the step's commit.
"""

from __future__ import annotations

import math

import pytest
import torch
from support.models import make_policy, prompts

from visplay.plugins import PluginError
from visplay.types import Rollout


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _rollouts(rewards: list[float]) -> list[Rollout]:
    ps = prompts()
    return [Rollout(f"k{i}", f"g{i % 2}", ps[i % 3], [40 + i, 41], [], r) for i, r in enumerate(rewards)]


def test_an_infinite_learning_rate_never_leaves_non_finite_weights_unreported():
    """The recipe loader refuses optimizer.lr=inf; the optimizer itself must not trust its caller either."""
    from visplay_grpo.optimizer import GRPOOptimizer

    opt = GRPOOptimizer(make_policy(), lr=math.inf, kl_coef=0.0, micro_batch_size=4)
    with pytest.raises(PluginError, match=r"weight .* is non-finite after the AdamW step .*not committed"):
        opt.update(_rollouts([0.0, 1.0, 1.0, 0.0]))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_reward_stops_the_update_naming_the_loss(bad):
    from visplay_grpo.optimizer import GRPOOptimizer

    policy = make_policy()
    before = policy.weights_sha256()
    opt = GRPOOptimizer(policy, lr=1e-3, kl_coef=0.0, micro_batch_size=4)
    with pytest.raises(PluginError, match=r"the loss is nan .*not committed.*visplay resume"):
        opt.update(_rollouts([0.0, bad, 1.0, 0.0]))
    assert policy.weights_sha256() == before  # raised before any step


def test_finite_updates_still_step():
    from visplay_grpo.optimizer import GRPOOptimizer

    policy = make_policy()
    before = policy.weights_sha256()
    result = GRPOOptimizer(policy, lr=1e-3, kl_coef=0.0, micro_batch_size=4).update(_rollouts([0.0, 1.0, 1.0, 0.0]))
    assert math.isfinite(result.metrics["actor/grad_norm"]) and policy.weights_sha256() != before
