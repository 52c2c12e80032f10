"""The grpo plugin's recipe section, ``plugins.grpo``: every setting of the GRPO optimizer (``optimizer.name: grpo``).

The names of the estimators live here without torch (visplay_grpo/core_algos.py implements them), so a recipe is
checked without importing torch. Defaults are EasyR1's (PAPER.md, "GRPO settings").
"""

from __future__ import annotations

from dataclasses import dataclass

from visplay.api import int_at_least, number_in, one_of, optional_int_at_least

KL_TYPES = ("low_var_kl", "kl", "mse")
"""KL estimators (EasyR1's names): k3 clamped to [-10, 10], k1, k2."""
LOSS_AGGS = ("token_mean", "seq_mean_token_mean")
"""Loss aggregations over an update batch."""
OLD_LOGPROBS = ("recompute", "sampler")

MOVED = ("lr", "weight_decay", "grad_clip", "clip_low", "clip_high", "dual_clip", "kl_coef", "kl_type", "adv_eps",
         "micro_batch_size", "update_batch_size", "loss_agg")
"""Settings that were the core's ``optimizer.*`` before they moved here."""


@dataclass
class GrpoOptions:
    """The GRPO optimizer (``optimizer.name: grpo``): AdamW on the PPO clipped loss with a KL term, EasyR1's
    defaults."""

    lr: float = 1e-6
    """AdamW learning rate (released: 1e-6)."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    clip_low: float = 0.2
    """PPO ratio clip below 1."""
    clip_high: float = 0.3
    """PPO ratio clip above 1."""
    dual_clip: float = 3.0
    """Dual-clip constant for negative advantages."""
    kl_coef: float = 1e-2
    """Coefficient of the KL term in the loss (0 disables the reference model)."""
    kl_type: str = "low_var_kl"
    """KL estimator: ``low_var_kl`` (k3, clamped to [-10, 10]), ``kl`` (k1) or ``mse`` (k2)."""
    adv_eps: float = 1e-6
    """epsilon in (r - mean) / (std + epsilon)."""
    micro_batch_size: int = 8
    """Rollouts per forward/backward (gradient accumulation over the update batch)."""
    max_tokens_per_micro_batch: int | None = None
    """Form micro-batches by a token budget instead of ``micro_batch_size``: rollouts of similar length go together
    so each padded forward (rows x longest prompt + response) holds at most this many tokens, in the update and in
    the old/reference log-prob passes (verl's dynamic batch size, ``ppo_max_token_len_per_gpu``). The loss
    aggregation is unchanged; null: ``micro_batch_size`` rollouts per forward."""
    update_batch_size: int | None = None
    """Prompts per optimizer update, as EasyR1's ``global_batch_size``: one update takes update_batch_size x
    group_size rollouts (released: 128 prompts = 1,024 rollouts, 4 updates per 512-prompt step); None: the whole
    rollout batch."""
    loss_agg: str | None = None
    """How the loss averages over an update batch: ``token_mean`` (every token weighs the same; EasyR1 HEAD) or
    ``seq_mean_token_mean`` (each rollout's token-mean, averaged over rollouts: the released fork's per-micro-batch
    mean at its scripts' micro-batch size 1); None: the variant's (paper token_mean, released
    seq_mean_token_mean)."""
    old_logprobs: str = "recompute"
    """Log-probs of the sampling policy in the PPO ratio: ``recompute`` (teacher-forced before the update, as
    EasyR1) or ``sampler`` (the sampler's own, as logged)."""

    legacy_keys = {f"optimizer.{key}": key for key in MOVED}
    variant_defaults = {"paper": {"loss_agg": "token_mean"}, "released": {"loss_agg": "seq_mean_token_mean"}}

    def validate(self) -> dict[str, str]:
        checks = {
            "lr": number_in(self.lr, 0.0),
            "weight_decay": number_in(self.weight_decay, 0.0),
            "grad_clip": number_in(self.grad_clip, 0.0, low_open=True),
            "clip_low": number_in(self.clip_low, 0.0, 1.0, high_open=True),
            "clip_high": number_in(self.clip_high, 0.0),
            "dual_clip": number_in(self.dual_clip, 1.0, low_open=True),  # EasyR1: clip_ratio_dual > 1
            "kl_coef": number_in(self.kl_coef, 0.0),
            "kl_type": one_of(self.kl_type, KL_TYPES),
            "loss_agg": one_of(self.loss_agg, LOSS_AGGS),
            "adv_eps": number_in(self.adv_eps, 0.0, low_open=True),
            "micro_batch_size": int_at_least(self.micro_batch_size, 1),
            "max_tokens_per_micro_batch": optional_int_at_least(self.max_tokens_per_micro_batch, 1),
            "update_batch_size": optional_int_at_least(self.update_batch_size, 1),
            "old_logprobs": one_of(self.old_logprobs, OLD_LOGPROBS),
        }
        return {key: why for key, why in checks.items() if why is not None}
