"""Token-budget micro-batches (plugins.grpo.max_tokens_per_micro_batch, issue 22): the grouping, and an update
that equals the padded micro-batches' (loss, metrics, trained weights) for both loss aggregations."""

from __future__ import annotations

import pytest
import torch
from support.models import make_policy, prompts
from visplay_grpo.core_algos import token_budget_micro_batches
from visplay_models.forward import inner_model

from visplay.types import Rollout


def test_grouping_respects_the_budget_and_covers_every_row():
    lengths = [30, 5, 12, 29, 6, 11, 40, 7]
    batches = token_budget_micro_batches(lengths, 60)
    # longest first: 40 alone (40 + 30 would pad to 80), 30 + 29 (60), then the five short ones (5 x 12 = 60)
    assert batches == [[6], [0, 3], [1, 2, 4, 5, 7]]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[i] for i in b) <= 60 for b in batches)


def test_a_row_over_the_budget_is_alone_and_budget_is_checked():
    assert token_budget_micro_batches([100, 3, 3], 50) == [[0], [1, 2]]
    assert token_budget_micro_batches([], 10) == []
    with pytest.raises(ValueError, match="max_tokens_per_micro_batch must be >= 1"):
        token_budget_micro_batches([1], 0)


def _rollouts() -> list[Rollout]:
    """Eight rollouts of very different lengths (1 to 24 response tokens) over the three test prompts."""
    ps = prompts()
    sizes = [1, 24, 3, 17, 2, 9, 24, 5]
    return [Rollout(f"k{i}", f"g{i % 3}", ps[i % 3], [40 + (7 * i + j) % 200 for j in range(n)], [], float(i % 2))
            for i, n in enumerate(sizes)]


def _run(loss_agg: str, **kwargs):
    from visplay_grpo.optimizer import GRPOOptimizer

    policy = make_policy()
    shapes: list[tuple[int, int]] = []  # (rows, padded length) of every forward pass of the model
    inner_model(policy.model).model.register_forward_pre_hook(
        lambda mod, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    opt = GRPOOptimizer(policy, lr=1e-3, loss_agg=loss_agg, kl_coef=0.01, update_batch_size=4, **kwargs)
    grads: list[dict[str, torch.Tensor]] = []  # the accumulated (clipped) gradients each AdamW step applies
    step = opt.optim.step
    opt.optim.step = lambda: (grads.append({n: p.grad.clone() for n, p in policy.trainable_parameters()}), step())
    return opt.update(_rollouts()).metrics, grads, shapes


@pytest.mark.parametrize("loss_agg", ["token_mean", "seq_mean_token_mean"])
def test_token_budget_update_equals_the_padded_update(loss_agg):
    padded, g1, padded_shapes = _run(loss_agg, micro_batch_size=2)
    lengths = make_policy().sequence_lengths([r.prompt for r in _rollouts()], [r.token_ids for r in _rollouts()])
    budget = 2 * max(lengths)
    budgeted, g2, shapes = _run(loss_agg, micro_batch_size=2, max_tokens_per_micro_batch=budget)
    keys = ["actor/loss", "actor/pg_loss", "actor/kl", "actor/grad_norm"]
    if loss_agg == "token_mean":  # the token-mean diagnostics are weighted by rows under seq_mean_token_mean, so
        keys += ["actor/ppo_kl", "actor/entropy", "actor/pg_clipfrac_higher", "actor/pg_clipfrac_lower"]  # they
    for key in keys:  # depend on the grouping there (as with another micro_batch_size)
        assert padded[key] == pytest.approx(budgeted[key], rel=1e-5, abs=1e-7), key
    assert len(g1) == len(g2) == 2  # two update batches of 4 rollouts
    # measured: differences <= 4e-7 against gradients up to 0.1 (the second batch starts from weights one AdamW
    # step moved, which amplifies the rounding of sums taken in another order)
    for a, b in zip(g1, g2):
        for n in a:
            assert float((a[n] - b[n]).abs().max()) <= 1e-5 * float(a[n].abs().max()) + 1e-9, n
    assert all(rows * longest <= budget for rows, longest in shapes)
    # the point of it: fewer padded tokens per step than micro-batches of 2 in rollout order
    assert sum(r * n for r, n in shapes) < sum(r * n for r, n in padded_shapes)
    assert max(rows for rows, _ in shapes) > 2  # short rollouts share a forward beyond micro_batch_size


def test_token_budget_needs_a_policy_that_counts_tokens():
    from visplay_grpo.optimizer import GRPOOptimizer

    class NoCounts:  # an HFPolicy without sequence_lengths
        def __init__(self, policy):
            self._policy = policy

        def __getattr__(self, name):
            if name == "sequence_lengths":
                raise AttributeError(name)
            return getattr(self._policy, name)

    opt = GRPOOptimizer(NoCounts(make_policy()), max_tokens_per_micro_batch=64)
    with pytest.raises(ValueError, match="needs a policy that counts its prompt tokens"):
        opt.update(_rollouts())
    with pytest.raises(ValueError, match="max_tokens_per_micro_batch must be >= 1"):
        GRPOOptimizer(make_policy(), max_tokens_per_micro_batch=0)
