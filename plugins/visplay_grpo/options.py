"""The grpo plugin's recipe section, ``plugins.grpo``: every setting of the GRPO optimizer (``optimizer.name: grpo``).

The names of the estimators live here without torch (visplay_grpo/core_algos.py implements them), so a recipe is
checked without importing torch. Defaults are EasyR1's (PAPER.md, "GRPO settings").
"""

from __future__ import annotations

from dataclasses import dataclass

from visplay.api import int_at_least, number_in, one_of, optional_int_at_least
from visplay_grpo.registry import known

KL_TYPES = ("low_var_kl", "kl", "mse")
"""KL estimators (EasyR1's names): k3 clamped to [-10, 10], k1, k2."""
ADVANTAGE_DTYPES = ("float64", "float32")
CLIPFRACS = ("positive", "any_sign")
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
    """How the loss averages over an update batch: ``token_mean`` (every token weighs the same; EasyR1 HEAD),
    ``seq_mean_token_mean`` (each rollout's token-mean, averaged over rollouts: the released fork's per-micro-batch
    mean at its scripts' micro-batch size 1), ``seq_mean_token_sum`` (each rollout's token-sum, averaged; verl) or
    ``seq_mean_token_sum_norm`` (token-sums / (rollouts x ``norm_length``): Dr.GRPO, TRL's ``dr_grpo``), or a name
    another package registered (visplay_grpo.api); None: the variant's (paper token_mean, released
    seq_mean_token_mean)."""
    norm_length: int | None = None
    """The constant length ``seq_mean_token_sum_norm`` divides by (Dr.GRPO's generation budget); None: the role's
    ``sampling.max_new_tokens``."""
    advantage_estimator: str = "grpo"
    """Advantages from rewards: ``grpo`` ((r - group mean) / (group std + adv_eps)), ``rloo`` (leave-one-out group
    mean as baseline), ``reinforce_plus_plus`` (returns whitened over the batch's tokens), ``grpo_passk`` (only the
    group's best rollout is pushed, by its margin over the second), or a registered name (EasyR1's
    ``adv_estimator``; visplay_grpo/core_algos.py says which source each follows)."""
    norm_adv_by_std: bool = True
    """``grpo``: divide by the group std (False: r - group mean, Dr.GRPO; verl's ``norm_adv_by_std_in_grpo``)."""
    advantage_dtype: str | None = None
    """Arithmetic of the advantages: ``float64`` (an all-equal group gets exactly 0) or ``float32`` (EasyR1's and
    the released fork's: eight rewards of 0.9 get -0.0560 each); None: the variant's (paper float64, released
    float32)."""
    policy_loss: str = "dual_clip"
    """Per-token policy loss: ``dual_clip`` (PPO clip + dual clip, EasyR1's ``default``), ``vanilla`` (PPO clip
    alone), ``gspo`` / ``gspo_token`` (sequence-level ratio), ``cispo`` (clipped weight on log-prob), ``sapo``
    (sigmoid gate), ``clip_cov`` / ``kl_cov`` (the Entropy Mechanism paper's, verl's: cut the gradient of, or
    penalise the |log-ratio| of, a few tokens of high advantage-log-prob covariance), ``geo_mean`` (GMPO, verl's:
    the geometric mean of log-space-clipped token ratios per rollout; verl's value with ``loss_agg:
    seq_mean_token_mean``), or a registered name
    (EasyR1's ``loss_type``, verl's ``policy_loss.loss_mode``)."""
    tau_positive: float = 1.0
    """``sapo``: the gate's temperature for tokens with A >= 0 (EasyR1 1.0)."""
    tau_negative: float = 1.05
    """``sapo``: the gate's temperature for tokens with A < 0 (EasyR1 1.05)."""
    clip_cov_ratio: float = 2e-4
    """``clip_cov``: the share of a micro-batch's tokens whose gradient is cut (at least one; verl 0.0002)."""
    clip_cov_lb: float = 1.0
    """``clip_cov``: only tokens with covariance above this are candidates (verl 1.0)."""
    clip_cov_ub: float = 5.0
    """``clip_cov``: only tokens with covariance below this are candidates (verl 5.0)."""
    kl_cov_ratio: float = 2e-4
    """``kl_cov``: the share of a micro-batch's tokens (the largest covariance) that get the |log-ratio| penalty
    (at least one; verl 0.0002)."""
    ppo_kl_coef: float = 0.1
    """``kl_cov``: coefficient of the |log-ratio| penalty (verl's config 0.1; its function's fallback is 1.0)."""
    clipfrac_higher: str | None = None
    """What ``actor/pg_clipfrac_higher`` counts: ``positive`` (tokens with A > 0 whose ratio was clipped at
    1 + clip_high) or ``any_sign`` (EasyR1's: every token where the clipped term won, so A < 0 with a ratio below
    1 - clip_low counts too); None: the variant's (paper positive, released any_sign)."""
    old_logprobs: str = "recompute"
    """Log-probs of the sampling policy in the PPO ratio: ``recompute`` (teacher-forced before the update, as
    EasyR1) or ``sampler`` (the sampler's own, as logged)."""

    drop_zero_variance: bool = False
    """DAPO's dynamic sampling, its filter half (Yu et al. 2025, arXiv 2503.14476; EasyR1 ``online_filtering``):
    groups whose rewards are all equal (every vote agreeing, a group of one) leave the update, their advantages are
    logged 0, each is a row of the run log's ``dropped_groups`` table, and ``dynamic_sampling/dropped_groups`` /
    ``dropped_rollouts`` count them. No further prompts are drawn to refill the batch (docs/algorithm.md says what
    refilling needs)."""
    legacy_keys = {f"optimizer.{key}": key for key in MOVED}
    variant_defaults = {
        "paper": {"loss_agg": "token_mean", "advantage_dtype": "float64", "clipfrac_higher": "positive"},
        "released": {"loss_agg": "seq_mean_token_mean", "advantage_dtype": "float32", "clipfrac_higher": "any_sign"},
    }

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
            "loss_agg": one_of(self.loss_agg, known("loss_agg")),
            "norm_length": optional_int_at_least(self.norm_length, 1),
            "advantage_estimator": one_of(self.advantage_estimator, known("advantage_estimator")),
            "norm_adv_by_std": None if isinstance(self.norm_adv_by_std, bool) else "must be true or false",
            "advantage_dtype": one_of(self.advantage_dtype, ADVANTAGE_DTYPES),
            "policy_loss": one_of(self.policy_loss, known("policy_loss")),
            "tau_positive": number_in(self.tau_positive, 0.0, low_open=True),
            "tau_negative": number_in(self.tau_negative, 0.0, low_open=True),
            "clip_cov_ratio": number_in(self.clip_cov_ratio, 0.0, 1.0, low_open=True),  # verl asserts > 0
            "clip_cov_lb": number_in(self.clip_cov_lb),
            "clip_cov_ub": number_in(self.clip_cov_ub) or (
                None if number_in(self.clip_cov_lb) or self.clip_cov_ub > self.clip_cov_lb
                else f"must be above clip_cov_lb ({self.clip_cov_lb}), got {self.clip_cov_ub!r}"),
            "kl_cov_ratio": number_in(self.kl_cov_ratio, 0.0, 1.0, low_open=True),  # verl asserts > 0
            "ppo_kl_coef": number_in(self.ppo_kl_coef, 0.0),
            "clipfrac_higher": one_of(self.clipfrac_higher, CLIPFRACS),
            "drop_zero_variance": None if isinstance(self.drop_zero_variance, bool) else "must be true or false",
            "adv_eps": number_in(self.adv_eps, 0.0, low_open=True),
            "micro_batch_size": int_at_least(self.micro_batch_size, 1),
            "max_tokens_per_micro_batch": optional_int_at_least(self.max_tokens_per_micro_batch, 1),
            "update_batch_size": optional_int_at_least(self.update_batch_size, 1),
            "old_logprobs": one_of(self.old_logprobs, OLD_LOGPROBS),
        }
        return {key: why for key, why in checks.items() if why is not None}
