"""GRPO math as pure tensor functions (after EasyR1's verl/trainer/core_algos.py, the released VisPlay trainer).

Shapes: ``N`` rollouts (responses), ``T`` response tokens (padded), masks are 1 for real tokens and 0 for padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from visplay_grpo.options import KL_TYPES  # the names live without torch, for recipe checks


def group_advantages(rewards: torch.Tensor, groups: Sequence[str], eps: float = 1e-6, *, norm_by_std: bool = True,
                     dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """GRPO outcome advantages: ``(r - mean_g) / (std_g + eps)`` within each group g (same prompt); without
    ``norm_by_std`` ``r - mean_g`` (Dr.GRPO; verl's ``norm_adv_by_std_in_grpo=False``).

    ``std`` is the unbiased (Bessel) standard deviation, as in EasyR1 (``compute_grpo_outcome_advantage``,
    hiyouga/EasyR1 verl/trainer/core_algos.py). ``dtype`` is the arithmetic's: float64 gives an all-equal group
    exactly 0; float32 is EasyR1's and the released fork's (their rewards are a float32 tensor), where the float32
    mean of eight 0.9 is not 0.9 and the group gets -0.0560 each. A group of one rollout uses mean 0 and std 1 here
    (its advantage is its reward); EasyR1 and the released fork refuse it instead (``assert len(id2score[idx]) > 1,
    "GRPO needs rollout.n > 1."``, hiyouga/EasyR1 verl/trainer/core_algos.py:208, bruno686/VisPlay
    verl/trainer/core_algos.py:167).

    :param rewards: (N,) float.
    :param groups: N group labels.
    :return: (N,) float32 advantages.
    """
    if rewards.ndim != 1 or rewards.shape[0] != len(groups):
        raise ValueError(f"group_advantages: rewards {tuple(rewards.shape)} vs {len(groups)} group labels")
    rewards = rewards.to(dtype)
    out = torch.empty_like(rewards)
    for idx in _members(groups):
        r = rewards[idx]
        mean, std = (r.mean(), r.std()) if len(idx) > 1 else (torch.tensor(0.0, dtype=r.dtype), torch.tensor(
            1.0, dtype=r.dtype))
        out[idx] = (r - mean) / (std + eps) if norm_by_std else r - mean
    return out.float()


def _members(groups: Sequence[str]) -> list[list[int]]:
    """Positions of each group, groups in order of first appearance."""
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    return list(members.values())


# --- advantage estimators: (rewards (N,), groups, lengths (N,), eps, norm_by_std, dtype) -> (N,) float32 ----------


def grpo_estimator(rewards: torch.Tensor, groups: Sequence[str], lengths: torch.Tensor, *, eps: float = 1e-6,
                   norm_by_std: bool = True, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``grpo``: :func:`group_advantages` (EasyR1 ``compute_grpo_outcome_advantage``; verl's
    ``norm_adv_by_std_in_grpo``). ``lengths`` is unused."""
    return group_advantages(rewards, groups, eps, norm_by_std=norm_by_std, dtype=dtype)


def rloo_estimator(rewards: torch.Tensor, groups: Sequence[str], lengths: torch.Tensor, *, eps: float = 1e-6,
                   norm_by_std: bool = True, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``rloo`` (Ahmadian et al. 2024, arXiv 2402.14740): ``r_i - (sum_g - r_i) / (n_g - 1)``, the leave-one-out
    mean of the rest of the group as baseline (EasyR1 ``compute_rloo_outcome_advantage``). A group of one keeps its
    reward (EasyR1 asserts ``rollout.n > 1``). ``lengths``, ``eps``, ``norm_by_std`` unused.

    :param rewards: (N,); :param groups: N labels; :return: (N,) float32.
    """
    r_all = rewards.to(dtype)
    out = r_all.clone()
    for idx in _members(groups):
        if len(idx) > 1:
            r = r_all[idx]
            out[idx] = r - (r.sum() - r) / (len(idx) - 1)
    return out.float()


def grpo_passk_estimator(rewards: torch.Tensor, groups: Sequence[str], lengths: torch.Tensor, *, eps: float = 1e-6,
                         norm_by_std: bool = True, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``grpo_passk`` (Pass@k training, arXiv 2503.19595): only each group's best rollout gets a non-zero advantage,
    ``(r_max - r_second) / (std_g + eps)`` (EasyR1 ``compute_grpo_passk_outcome_advantage``; ties go to the rollout
    ``torch.topk`` ranks first, as there). A group of one gets 0. ``lengths``, ``norm_by_std`` unused.

    :param rewards: (N,); :param groups: N labels; :return: (N,) float32.
    """
    r_all = rewards.to(dtype)
    out = torch.zeros_like(r_all)
    for idx in _members(groups):
        if len(idx) > 1:
            r = r_all[idx]
            top, where = torch.topk(r, k=2)
            out[idx[int(where[0])]] = (top[0] - top[1]) / (r.std() + eps)
    return out.float()


def reinforce_plus_plus_estimator(rewards: torch.Tensor, groups: Sequence[str], lengths: torch.Tensor, *,
                                  eps: float = 1e-6, norm_by_std: bool = True,
                                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``reinforce_plus_plus`` (Hu 2025, arXiv 2501.03262) for an outcome reward at gamma 1: every token of rollout
    i returns r_i, and the returns are whitened over all the batch's tokens, ``(r_i - mean) / sqrt(var + 1e-8)``
    with the token-weighted mean and unbiased variance (EasyR1 ``compute_reinforce_plus_plus_outcome_advantage``
    with ``VF.masked_whiten``): a long rollout weighs more in the baseline. Groups are ignored (a batch baseline).
    gamma < 1 (a per-token discount) is not offered: the optimizer takes one advantage per rollout.

    :param rewards: (N,); :param lengths: (N,) response tokens per rollout; :return: (N,) float32.
    """
    r = rewards.to(dtype)
    w = lengths.to(dtype)
    tokens = w.sum()
    mean = (r * w).sum() / (tokens + 1e-8)
    var = ((r - mean).square() * w).sum() / (tokens + 1e-8)
    if tokens > 1:
        var = var * (tokens / (tokens - 1))
    return ((r - mean) * torch.rsqrt(var + 1e-8)).float()


ADVANTAGE_ESTIMATORS = {"grpo": grpo_estimator, "rloo": rloo_estimator,
                        "reinforce_plus_plus": reinforce_plus_plus_estimator, "grpo_passk": grpo_passk_estimator}


# --- loss aggregations: (values (N, T), mask (N, T), norm_length) -> scalar over the micro-batch ------------------


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


def seq_mean_token_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each row's token-sum, then the mean over rows (verl ``agg_loss`` ``seq-mean-token-sum``; TRL's ``grpo``
    before normalisation). (N, T), (N, T) -> scalar."""
    return (values * mask).sum(-1).mean()


def seq_mean_token_sum_norm(values: torch.Tensor, mask: torch.Tensor, norm_length: float) -> torch.Tensor:
    """Dr.GRPO (Liu et al. 2025, arXiv 2503.20783): token-sums over rows divided by rows x a constant length,
    ``sum(values * mask) / (N * norm_length)``, so a rollout's weight does not shrink with its length. verl's
    ``seq-mean-token-sum-norm`` divides the token sums by ``loss_scale_factor`` (default the padded length, which it
    notes should be a constant); TRL's ``dr_grpo`` by ``N * max_completion_length``, which this is.
    (N, T), (N, T) -> scalar."""
    return (values * mask).sum() / (values.shape[0] * norm_length)


def _token_mean(values: torch.Tensor, mask: torch.Tensor, norm_length: float) -> torch.Tensor:
    return masked_mean(values, mask)


def _seq_mean_token_mean(values: torch.Tensor, mask: torch.Tensor, norm_length: float) -> torch.Tensor:
    return seq_mean_token_mean(values, mask)


def _seq_mean_token_sum(values: torch.Tensor, mask: torch.Tensor, norm_length: float) -> torch.Tensor:
    return seq_mean_token_sum(values, mask)


LOSS_AGGREGATIONS = {
    "token_mean": (_token_mean, "tokens"),
    "seq_mean_token_mean": (_seq_mean_token_mean, "rollouts"),
    "seq_mean_token_sum": (_seq_mean_token_sum, "rollouts"),
    "seq_mean_token_sum_norm": (seq_mean_token_sum_norm, "rollouts"),
}
"""name -> (reduce(values, mask, norm_length) over one micro-batch, how the micro-batch weighs in its update batch:
by its share of the tokens or of the rollouts), so the accumulated loss is the aggregation over the update batch."""


# --- policy losses: (old_logp, logp, advantages, mask (N, T) each, settings) -> dict of (N, T) ----------------------


def policy_loss_terms(old_logp: torch.Tensor, logp: torch.Tensor, advantages: torch.Tensor, clip_low: float,
                      clip_high: float, dual_clip: float, log_ratio: torch.Tensor | None = None
                      ) -> dict[str, torch.Tensor]:
    """Per-token PPO clipped surrogate with dual clip (Ye et al. 2020), EasyR1's ``compute_policy_loss``
    (``loss_type: default``).

    With ``ratio = exp(logp - old_logp)`` (log-ratio clamped to [-20, 20]):
    - A > 0: loss = max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high))  (clipped above 1 + clip_high);
    - A < 0: the same, then min(., -A * dual_clip)  (the loss is capped at -A * dual_clip for huge ratios);
    - A = 0: loss 0.

    :param old_logp: (N, T) log-probs under the sampling policy.
    :param logp: (N, T) log-probs under the current policy (with grad).
    :param advantages: (N, T) (a rollout's advantage repeated over its tokens) or (N, 1).
    :param log_ratio: (N, T) the log importance ratio to clip instead of ``logp - old_logp`` (GSPO's).
    :return: dict of (N, T) tensors: ``loss``; float indicators ``clipped_higher`` (A > 0, ratio clipped),
        ``clipped_higher_any`` (EasyR1's ``pg_clipfrac_higher``: ``-A * ratio < -A * clipped ratio`` whatever A's
        sign, so A < 0 with a ratio below 1 - clip_low counts too), ``clipped_lower`` (A < 0, dual clip active),
        ``clipped_low`` (A < 0, ratio below 1 - clip_low); ``neg_log_ratio`` = old_logp - logp (ppo_kl's).
    """
    if dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    log_ratio = torch.clamp(logp - old_logp if log_ratio is None else log_ratio, -20.0, 20.0)
    ratio = torch.exp(log_ratio)
    clipped_ratio = torch.exp(torch.clamp(log_ratio, math.log(1.0 - clip_low), math.log(1.0 + clip_high)))
    loss1 = -advantages * ratio
    loss2 = -advantages * clipped_ratio
    # no dual clip (vanilla): an infinite cap, never -A * inf (NaN at A = 0)
    loss3 = -advantages * dual_clip if math.isfinite(dual_clip) else torch.full_like(loss1, math.inf)
    higher = torch.max(loss1, loss2)
    lower = torch.min(higher, loss3)
    loss = torch.where(advantages < 0, lower, higher)
    return {
        "loss": loss,
        "clipped_higher": ((loss1 < loss2) & (advantages > 0)).float(),
        "clipped_higher_any": (loss1 < loss2).float(),
        "clipped_lower": ((higher > loss3) & (advantages < 0)).float(),
        "clipped_low": ((loss1 < loss2) & (advantages < 0)).float(),
        "neg_log_ratio": (old_logp - logp).detach(),
    }


def dual_clip_loss(old_logp: torch.Tensor, logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                   **settings: float) -> dict[str, torch.Tensor]:
    """``dual_clip`` (today's default): :func:`policy_loss_terms`, EasyR1 ``loss_type: default``."""
    return policy_loss_terms(old_logp, logp, advantages, settings["clip_low"], settings["clip_high"],
                             settings["dual_clip"])


def vanilla_loss(old_logp: torch.Tensor, logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                 **settings: float) -> dict[str, torch.Tensor]:
    """``vanilla``: the PPO clipped surrogate alone (Schulman et al. 2017), ``max(-A r, -A clip(r))`` for either
    sign of A, i.e. :func:`policy_loss_terms` with no dual clip (EasyR1's ``default`` as clip_ratio_dual -> inf)."""
    return policy_loss_terms(old_logp, logp, advantages, settings["clip_low"], settings["clip_high"], math.inf)


def _seq_log_ratio(old_logp: torch.Tensor, logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) each rollout's token-mean of ``logp - old_logp`` (EasyR1 ``VF.masked_mean`` with eps 1e-8)."""
    return ((logp - old_logp) * mask).sum(-1) / (mask.sum(-1) + 1e-8)


def gspo_loss(old_logp: torch.Tensor, logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              **settings: float) -> dict[str, torch.Tensor]:
    """``gspo`` (Zheng et al. 2025, arXiv 2507.18071): the clipped surrogate on the sequence-level ratio
    ``exp(mean_t(logp - old_logp))`` shared by a rollout's tokens (the gradient flows through the mean), EasyR1
    ``loss_type: gspo``; clip bounds and dual clip as ``dual_clip``. Shapes (N, T); returns its dict."""
    seq = _seq_log_ratio(old_logp, logp, mask)
    return policy_loss_terms(old_logp, logp, advantages, settings["clip_low"], settings["clip_high"],
                             settings["dual_clip"], log_ratio=seq[:, None] * mask)


def gspo_token_loss(old_logp: torch.Tensor, logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                    **settings: float) -> dict[str, torch.Tensor]:
    """``gspo_token`` (GSPO-token, arXiv 2507.18071): the ratio's value is the sequence-level one, its gradient
    each token's own, ``sg[s_i] + logp - sg[logp]`` (EasyR1 ``loss_type: gspo_token``). Shapes (N, T)."""
    seq = _seq_log_ratio(old_logp, logp, mask).detach()
    return policy_loss_terms(old_logp, logp, advantages, settings["clip_low"], settings["clip_high"],
                             settings["dual_clip"], log_ratio=seq[:, None] + logp - logp.detach())


def _unclipped_terms(old_logp: torch.Tensor, logp: torch.Tensor, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    zero = torch.zeros_like(loss).detach()
    return {"loss": loss, "clipped_higher": zero, "clipped_higher_any": zero, "clipped_lower": zero,
            "clipped_low": zero, "neg_log_ratio": (old_logp - logp).detach()}


def cispo_loss(old_logp: torch.Tensor, logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
               **settings: float) -> dict[str, torch.Tensor]:
    """``cispo`` (MiniMax-M1, arXiv 2506.13585): ``-A * sg[clip(ratio, 1 - clip_low, 1 + clip_high)] * logp``: the
    clip only weighs a token, never drops its gradient (EasyR1 ``loss_type: cispo``). The clip-fraction indicators
    are 0 (EasyR1 logs none for it). Shapes (N, T)."""
    log_ratio = logp - old_logp
    clipped = torch.exp(torch.clamp(log_ratio, math.log(1.0 - settings["clip_low"]),
                                    math.log(1.0 + settings["clip_high"])))
    return _unclipped_terms(old_logp, logp, -advantages * logp * clipped.detach())


def sapo_loss(old_logp: torch.Tensor, logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              **settings: float) -> dict[str, torch.Tensor]:
    """``sapo`` (soft adaptive policy optimisation, arXiv 2511.20347): a smooth gate instead of a hard clip,
    ``-A * 4 / tau * sigmoid(tau * (ratio - 1))`` with ``tau = tau_positive`` for A >= 0 and ``tau_negative`` for
    A < 0 (EasyR1 ``loss_type: sapo``; log-ratio clamped to [-20, 20]). Indicators 0. Shapes (N, T)."""
    ratio = torch.exp(torch.clamp(logp - old_logp, -20.0, 20.0))
    tau_pos, tau_neg = settings["tau_positive"], settings["tau_negative"]
    gate_pos = 4.0 / tau_pos * torch.sigmoid(tau_pos * (ratio - 1.0))
    gate_neg = 4.0 / tau_neg * torch.sigmoid(tau_neg * (ratio - 1.0))
    gate = (advantages >= 0).float() * gate_pos + (advantages < 0).float() * gate_neg
    return _unclipped_terms(old_logp, logp, -advantages * gate)


def clip_cov_loss(old_logp: torch.Tensor, logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                  **settings: float) -> dict[str, torch.Tensor]:
    """``clip_cov`` (Clip-Cov, Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning
    Language Models", arXiv 2505.22617; verl ``compute_policy_loss_clip_cov``): the PPO clipped surrogate
    ``max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))`` (no dual clip, no log-ratio clamp, as verl), whose
    gradient is cut (the token's loss times 0) on a few tokens of high covariance between advantage and log-prob.

    Per token ``cov = (A - mean(A)) * (logp - mean(logp))`` (token means over the micro-batch's mask); the
    candidates are the real tokens the PPO clip left alone with ``clip_cov_lb < cov < clip_cov_ub``, and
    ``max(int(clip_cov_ratio x tokens), 1)`` of them are drawn at random (``torch.randperm`` on torch's global
    generator, as verl; the optimizer seeds it per update, so a run is reproducible). Indicators: ``clipped_higher``
    / ``clipped_higher_any`` mark the cut tokens (verl's ``pg_clipfrac``), ``clipped_lower`` / ``clipped_low`` 0.
    Shapes (N, T); returns its dict.
    """
    ratio = torch.exp(logp - old_logp)
    loss1 = -advantages * ratio
    loss2 = -advantages * torch.clamp(ratio, 1.0 - settings["clip_low"], 1.0 + settings["clip_high"])
    real = mask > 0
    with torch.no_grad():
        tokens = mask.sum() + 1e-8
        cov = ((advantages - (advantages * mask).sum() / tokens) * (logp - (logp * mask).sum() / tokens))
        candidate = real & ~(loss2 > loss1) & (cov > settings["clip_cov_lb"]) & (cov < settings["clip_cov_ub"])
        where = torch.nonzero(candidate)
        count = max(int(settings["clip_cov_ratio"] * mask.sum().item()), 1)
        if len(where) > 0:
            where = where[torch.randperm(len(where))[:min(count, len(where))].to(where.device)]
        keep = torch.ones_like(loss1)
        keep[where[:, 0], where[:, 1]] = 0.0
    cut = (keep == 0).float() * mask
    zero = torch.zeros_like(loss1)
    return {"loss": torch.maximum(loss1, loss2) * keep, "clipped_higher": cut, "clipped_higher_any": cut,
            "clipped_lower": zero, "clipped_low": zero, "neg_log_ratio": (old_logp - logp).detach()}


def kl_cov_loss(old_logp: torch.Tensor, logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                **settings: float) -> dict[str, torch.Tensor]:
    """``kl_cov`` (KL-Cov, arXiv 2505.22617; verl ``compute_policy_loss_kl_cov``): the unclipped surrogate
    ``-A r``, plus ``ppo_kl_coef x |logp - old_logp|`` on the ``max(int(kl_cov_ratio x tokens), 1)`` real tokens
    of the largest covariance ``(A - mean(A)) * (logp - mean(logp))`` (means over the micro-batch's real tokens;
    ``torch.topk``, so ties go to the token it ranks first). No token is clipped: the indicators are 0, and
    ``neg_log_ratio`` is ``|logp - old_logp|`` (verl logs that as this loss's ``ppo_kl``). Shapes (N, T).
    """
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    real = mask > 0
    with torch.no_grad():
        flat = torch.nonzero(real.reshape(-1), as_tuple=True)[0]
        adv, lp = advantages.detach().reshape(-1)[flat], logp.detach().reshape(-1)[flat]
        penalised = torch.zeros_like(mask, dtype=torch.bool)
        if len(flat) > 0:
            cov = (adv - adv.mean()) * (lp - lp.mean())
            count = max(1, int(len(cov) * settings["kl_cov_ratio"]))
            penalised.view(-1)[flat[torch.topk(cov, count, largest=True).indices]] = True
    loss = -advantages * ratio + settings["ppo_kl_coef"] * log_ratio.abs() * penalised
    zero = torch.zeros_like(loss).detach()
    return {"loss": loss, "clipped_higher": zero, "clipped_higher_any": zero, "clipped_lower": zero,
            "clipped_low": zero, "neg_log_ratio": log_ratio.abs().detach()}


def geo_mean_loss(old_logp: torch.Tensor, logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                  **settings: float) -> dict[str, torch.Tensor]:
    """``geo_mean`` (GMPO, Zhao et al. 2025, "Geometric-Mean Policy Optimization", arXiv 2507.20673; verl
    ``compute_policy_loss_geo_mean``): the sequence's ratio is the geometric mean of its tokens' ratios, each
    token's log-ratio first clipped to [-clip_low, clip_high] *in log space* on the side the advantage's sign makes
    pessimistic (``sgn(A) * min(sgn(A) d, sgn(A) clip(d))``), and the rollout's loss is ``-mean_t(A) * exp(mean_t
    d')`` (no dual clip, no clamp before exp, as verl).

    verl averages that loss over the micro-batch's rollouts whatever its ``loss_agg_mode``; here each rollout's loss
    is repeated over its tokens, so ``loss_agg: seq_mean_token_mean`` (the released variant's) gives verl's value
    and gradient exactly, and ``token_mean`` weighs each rollout by its length instead. Indicators (verl's): a
    token counts as clipped when its log-ratio lies outside the range, in ``clipped_higher`` /
    ``clipped_higher_any`` with A > 0 and in ``clipped_lower`` with A < 0. Shapes (N, T); returns its dict.
    """
    log_ratio = logp - old_logp
    sign = torch.sign(advantages)
    clamped = torch.clamp(log_ratio, -settings["clip_low"], settings["clip_high"])
    pessimistic = sign * torch.min(sign * log_ratio, sign * clamped)
    length = mask.sum(-1) + 1e-8
    seq_loss = -((advantages * mask).sum(-1) / length) * torch.exp((pessimistic * mask).sum(-1) / length)
    clipped = (log_ratio != clamped).float().detach()
    zero = torch.zeros_like(clipped)
    higher = clipped * (advantages > 0)
    return {"loss": seq_loss[:, None].expand_as(logp), "clipped_higher": higher, "clipped_higher_any": higher,
            "clipped_lower": clipped * (advantages < 0), "clipped_low": zero,
            "neg_log_ratio": (old_logp - logp).detach()}


POLICY_LOSSES = {"dual_clip": dual_clip_loss, "vanilla": vanilla_loss, "gspo": gspo_loss,
                 "gspo_token": gspo_token_loss, "cispo": cispo_loss, "sapo": sapo_loss, "clip_cov": clip_cov_loss,
                 "kl_cov": kl_cov_loss, "geo_mean": geo_mean_loss}


# --- KL, padding, micro-batches ----------------------------------------------------------------------------------


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "low_var_kl") -> torch.Tensor:
    """Per-token KL estimate between the current policy and the reference, from sampled tokens.

    - ``low_var_kl`` (k3, Schulman 2020): ``exp(d) - d - 1`` with ``d = ref - logp`` clamped to [-20, 20]
      first (EasyR1 HEAD ``compute_kl``; finite gradient at d = 100), the result clamped to [-10, 10];
    - ``kl`` (k1): ``logp - ref``;  ``mse`` (k2): ``0.5 * (logp - ref)**2``.

    :param logp: (N, T); :param ref_logp: (N, T). :return: (N, T).
    """
    if kind == "low_var_kl":  # the log-ratio clamped before exp (EasyR1 HEAD): exp(100) is inf, its gradient NaN
        kl = torch.clamp(ref_logp - logp, -20.0, 20.0)
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
