"""The grpo plugin's public API: what another package may use of it.

- ``register_advantage_estimator(name, fn)``: ``fn(rewards (N,), groups (N labels), lengths (N,), *, eps,
  norm_by_std, dtype) -> (N,)`` advantages, then ``plugins.grpo.advantage_estimator: name`` selects it;
- ``register_policy_loss(name, fn)``: ``fn(old_logp, logp, advantages, mask (N, T) each, *, clip_low, clip_high,
  dual_clip, tau_positive, tau_negative) -> {"loss": (N, T), ...}`` (optional (N, T) indicators
  ``clipped_higher``, ``clipped_higher_any``, ``clipped_lower`` and ``neg_log_ratio`` feed the metrics; absent
  ones log 0), selected by ``plugins.grpo.policy_loss: name``;
- ``register_loss_aggregation(name, fn, weigh_by)``: ``fn(values, mask (N, T), norm_length) -> scalar`` over one
  micro-batch, ``weigh_by`` "tokens" or "rollouts" (its weight in the update batch), for ``plugins.grpo.loss_agg``.

Register at import time of the package's plugin module (its entry point), so the names exist when the recipe is
validated; a name already taken is an error. The built-ins are in visplay_grpo/core_algos.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from visplay_grpo.registry import known, register, unregister

__all__ = ["known", "register_advantage_estimator", "register_loss_aggregation", "register_policy_loss",
           "unregister"]


def register_advantage_estimator(name: str, fn: Callable[..., Any]) -> None:
    register("advantage_estimator", name, fn)


def register_policy_loss(name: str, fn: Callable[..., Any]) -> None:
    register("policy_loss", name, fn)


def register_loss_aggregation(name: str, fn: Callable[..., Any], weigh_by: str) -> None:
    register("loss_agg", name, fn, weigh_by)
