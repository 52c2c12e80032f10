"""GRPO math as pure tensor functions (after EasyR1's verl/trainer/core_algos.py, the released VisPlay trainer).

Shapes: ``N`` rollouts (responses), ``T`` response tokens (padded), masks are 1 for real tokens and 0 for padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from visplay_grpo.options import KL_TYPES  # the names live without torch, for recipe checks


def group_advantages(rewards: torch.Tensor, groups: Sequence[str], eps: float = 1e-6) -> torch.Tensor:
    """GRPO outcome advantages: ``(r - mean_g) / (std_g + eps)`` within each group g (same prompt).

    ``std`` is the unbiased (Bessel) standard deviation, as in EasyR1. A group of one rollout uses mean 0 and std 1
    here (its advantage is its reward); EasyR1 and the released fork refuse it instead (``assert
    len(id2score[idx]) > 1, "GRPO needs rollout.n > 1."``, hiyouga/EasyR1 verl/trainer/core_algos.py:208,
    bruno686/VisPlay verl/trainer/core_algos.py:167).

    :param rewards: (N,) float.
    :param groups: N group labels.
    :return: (N,) float advantages.
    """
    if rewards.ndim != 1 or rewards.shape[0] != len(groups):
        raise ValueError(f"group_advantages: rewards {tuple(rewards.shape)} vs {len(groups)} group labels")
    rewards = rewards.double()
    out = torch.empty_like(rewards)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    for idx in members.values():
        r = rewards[idx]
        mean, std = (r.mean(), r.std()) if len(idx) > 1 else (torch.tensor(0.0, dtype=r.dtype), torch.tensor(
            1.0, dtype=r.dtype))
        out[idx] = (r - mean) / (std + eps)
    return out.float()


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token-mean: sum(values * mask) / sum(mask). (N, T), (N, T) -> scalar (0 when the mask is empty)."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def seq_mean_token_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each row's token-mean, then the mean over rows. (N, T), (N, T) -> scalar.

    The released VisPlay fork's loss at its scripts' micro-batch size 1: ``masked_mean`` over one rollout's
    tokens, divided by the gradient-accumulation count (bruno686/VisPlay verl/workers/actor/dp_actor.py:231-274,
    ``micro_batch_size_per_device_for_update=1`` in train_examples/cot_config.yaml:30 and solver_train.sh:27).
    """
    rows = (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return rows.mean()




def policy_loss_terms(old_logp: torch.Tensor, logp: torch.Tensor, advantages: torch.Tensor, clip_low: float,
                      clip_high: float, dual_clip: float) -> dict[str, torch.Tensor]:
    """Per-token PPO clipped surrogate with dual clip (Ye et al. 2020), EasyR1's ``compute_policy_loss``.

    With ``ratio = exp(logp - old_logp)`` (log-ratio clamped to [-20, 20]):
    - A > 0: loss = max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high))  (clipped above 1 + clip_high);
    - A < 0: the same, then min(., -A * dual_clip)  (the loss is capped at -A * dual_clip for huge ratios);
    - A = 0: loss 0.

    :param old_logp: (N, T) log-probs under the sampling policy.
    :param logp: (N, T) log-probs under the current policy (with grad).
    :param advantages: (N, T) (a rollout's advantage repeated over its tokens) or (N, 1).
    :return: dict of (N, T) tensors: ``loss``; float indicators ``clipped_higher`` (A > 0, ratio clipped),
        ``clipped_lower`` (A < 0, dual clip active), ``clipped_low`` (A < 0, ratio below 1 - clip_low);
        ``neg_log_ratio`` = old_logp - logp (the ppo_kl metric's per-token value).
    """
    if dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    log_ratio = torch.clamp(logp - old_logp, -20.0, 20.0)
    ratio = torch.exp(log_ratio)
    clipped_ratio = torch.exp(torch.clamp(log_ratio, math.log(1.0 - clip_low), math.log(1.0 + clip_high)))
    loss1 = -advantages * ratio
    loss2 = -advantages * clipped_ratio
    loss3 = -advantages * dual_clip
    higher = torch.max(loss1, loss2)
    lower = torch.min(higher, loss3)
    loss = torch.where(advantages < 0, lower, higher)
    return {
        "loss": loss,
        "clipped_higher": ((loss1 < loss2) & (advantages > 0)).float(),
        "clipped_lower": ((higher > loss3) & (advantages < 0)).float(),
        "clipped_low": ((loss1 < loss2) & (advantages < 0)).float(),
        "neg_log_ratio": (old_logp - logp).detach(),
    }


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "low_var_kl") -> torch.Tensor:
    """Per-token KL estimate between the current policy and the reference, from sampled tokens.

    - ``low_var_kl`` (k3, Schulman 2020): ``exp(ref - logp) - (ref - logp) - 1``, clamped to [-10, 10];
    - ``kl`` (k1): ``logp - ref``;  ``mse`` (k2): ``0.5 * (logp - ref)**2``.

    :param logp: (N, T); :param ref_logp: (N, T). :return: (N, T).
    """
    if kind == "low_var_kl":
        kl = ref_logp - logp
        return torch.clamp(torch.exp(kl) - kl - 1.0, min=-10.0, max=10.0)
    if kind == "kl":
        return logp - ref_logp
    if kind == "mse":
        return 0.5 * (logp - ref_logp).square()
    raise ValueError(f"plugins.grpo.kl_type must be one of {', '.join(KL_TYPES)}, got {kind!r}")


def pad_rows(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack 1-D tensors into (N, T) right-padded with zeros (differentiable), and the (N, T) float mask."""
    out = torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True, padding_value=0.0)
    mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(r), device=r.device) for r in rows], batch_first=True)
    return out, mask


def token_budget_micro_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Positions ``0..n-1`` grouped into micro-batches whose right-padded forward holds at most ``budget`` tokens.

    A padded forward of ``k`` rows costs ``k x longest`` tokens, so rows of similar length go together: longest
    first (ties by position), each micro-batch takes the next row while ``(rows + 1) x its longest <= budget``.
    A row longer than the budget forms a micro-batch of its own (verl refuses that case instead). This is verl's
    dynamic batch size (``use_dynamic_bsz`` with ``ppo_max_token_len_per_gpu``; verl/utils/seqlen_balancing.py
    ``rearrange_micro_batches``) for a padded forward: verl packs sequences without padding, so it balances sums of
    lengths; here padding is what the budget has to bound.

    :param lengths: n token counts (prompt + response) per row.
    :return: micro-batches of positions, ascending within each; every position exactly once.
    """
    if budget < 1:
        raise ValueError(f"plugins.grpo.max_tokens_per_micro_batch must be >= 1, got {budget}")
    batches: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: (-lengths[j], j)):
        if current and (len(current) + 1) * lengths[current[0]] > budget:
            batches.append(sorted(current))
            current = []
        current.append(i)
    if current:
        batches.append(sorted(current))
    return batches
