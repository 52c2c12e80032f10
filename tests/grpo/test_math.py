"""GRPO math against hand-computed values (advantages, the three clip regimes, k3 KL, token-mean)."""

from __future__ import annotations

import math

import pytest
import torch
from visplay_grpo.core_algos import group_advantages, kl_penalty, masked_mean, pad_rows, policy_loss_terms


def test_group_advantages_hand_computed():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 2.0])
    groups = ["a", "a", "a", "a", "b", "b", "c"]
    adv = group_advantages(rewards, groups, eps=1e-6)
    # group a: mean 0.25, unbiased std sqrt(((0.75)^2 + 3 * 0.25^2) / 3) = 0.5
    assert adv[:4].tolist() == pytest.approx([0.75 / (0.5 + 1e-6), -0.25 / (0.5 + 1e-6)] + [-0.25 / 0.500001] * 2)
    assert adv[4:6].tolist() == [0.0, 0.0]  # equal rewards: no signal
    assert adv[6].item() == pytest.approx(2.0 / (1 + 1e-6))  # a singleton group: mean 0, std 1 (EasyR1)


def test_group_advantages_rejects_mismatch():
    with pytest.raises(ValueError, match="group labels"):
        group_advantages(torch.zeros(3), ["a", "b"])


def _terms(log_ratio: float, adv: float):
    old = torch.zeros(1, 1)
    return policy_loss_terms(old, old + log_ratio, torch.full((1, 1), adv), 0.2, 0.3, 3.0)


def test_clip_regime_positive_advantage_clipped_high():
    t = _terms(math.log(1.5), 2.0)  # ratio 1.5 > 1.3: loss uses the clipped ratio
    assert t["loss"].item() == pytest.approx(-2.0 * 1.3, rel=1e-6)
    assert t["clipped_higher"].item() == 1.0 and t["clipped_lower"].item() == 0.0
    t = _terms(math.log(1.1), 2.0)  # inside the band: unclipped
    assert t["loss"].item() == pytest.approx(-2.2, rel=1e-6) and t["clipped_higher"].item() == 0.0


def test_clip_regime_negative_advantage_low_ratio():
    t = _terms(math.log(0.5), -1.0)  # ratio 0.5 < 0.8: max(0.5, 0.8) -> 0.8
    assert t["loss"].item() == pytest.approx(0.8, rel=1e-6)
    assert t["clipped_low"].item() == 1.0 and t["clipped_lower"].item() == 0.0


def test_clip_regime_dual_clip():
    t = _terms(math.log(5.0), -1.0)  # ratio 5: max(5, 1.3) = 5 > dual 3 -> capped at 3
    assert t["loss"].item() == pytest.approx(3.0, rel=1e-6)
    assert t["clipped_lower"].item() == 1.0
    t = _terms(math.log(2.0), -1.0)  # ratio 2 < 3: unclipped
    assert t["loss"].item() == pytest.approx(2.0, rel=1e-6) and t["clipped_lower"].item() == 0.0


def test_clip_gradients_vanish_when_clipped():
    logp = torch.tensor([[math.log(1.5)]], requires_grad=True)
    policy_loss_terms(torch.zeros(1, 1), logp, torch.full((1, 1), 2.0), 0.2, 0.3, 3.0)["loss"].sum().backward()
    assert logp.grad.item() == 0.0


def test_k3_kl_hand_computed_and_clamped():
    logp = torch.tensor([[-1.0, -2.0, -1.0, 0.0]])
    ref = torch.tensor([[-1.0, -1.0, -3.0, 20.0]])
    kl = kl_penalty(logp, ref, "low_var_kl")[0].tolist()
    assert kl[0] == 0.0
    assert kl[1] == pytest.approx(math.e - 1 - 1, rel=1e-6)  # d = ref - logp = 1: e^1 - 1 - 1
    assert kl[2] == pytest.approx(math.exp(-2) + 2 - 1, rel=1e-6)  # d = -2
    assert kl[3] == 10.0  # clamped
    assert kl_penalty(logp, ref, "kl")[0, 1].item() == -1.0
    assert kl_penalty(logp, ref, "mse")[0, 1].item() == 0.5
    with pytest.raises(ValueError, match="kl_type"):
        kl_penalty(logp, ref, "k9")


def test_token_mean_and_padding():
    values, mask = pad_rows([torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0])])
    assert values.tolist() == [[1.0, 2.0, 3.0], [10.0, 0.0, 0.0]]
    assert masked_mean(values, mask).item() == pytest.approx(16.0 / 4)
