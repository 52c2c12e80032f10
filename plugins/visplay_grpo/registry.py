"""Registries of the GRPO optimizer: advantage estimators, policy losses and loss aggregations, looked up by the
names a recipe gives under ``plugins.grpo`` (as verl's ``register_adv_est`` / ``register_policy_loss`` and EasyR1's
``register_adv_estimator``, verl/trainer/core_algos.py).

The built-in names live here without torch, so a recipe is checked without importing it; their functions are in
visplay_grpo/core_algos.py. Another package adds its own with the ``register_*`` functions of visplay_grpo/api.py,
at import time of its plugin module (before the recipe is validated).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

KINDS = {"advantage_estimator": "advantage estimator", "policy_loss": "policy loss", "loss_agg": "loss aggregation"}

BUILTIN: dict[str, tuple[str, ...]] = {
    "advantage_estimator": ("grpo", "rloo", "reinforce_plus_plus", "grpo_passk"),
    "policy_loss": ("dual_clip", "vanilla", "gspo", "gspo_token", "cispo", "sapo", "clip_cov", "kl_cov",
                    "geo_mean"),
    "loss_agg": ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm"),
}
WEIGHTS = ("tokens", "rollouts")
"""How a loss aggregation weighs a micro-batch in its update batch: by its share of the tokens or of the rollouts."""

_EXTRA: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}


def register(kind: str, name: str, fn: Callable[..., Any], weigh_by: str | None = None) -> None:
    """Add ``fn`` under ``name`` to the registry ``kind`` (a key of :data:`KINDS`); a name taken is an error."""
    if kind not in KINDS:
        raise ValueError(f"visplay_grpo registry: unknown kind {kind!r} (known: {', '.join(KINDS)})")
    if not name or not isinstance(name, str) or not callable(fn):
        raise ValueError(f"visplay_grpo registry: a {KINDS[kind]} needs a name and a callable, got {name!r}, {fn!r}")
    if name in BUILTIN[kind] or name in _EXTRA[kind]:
        raise ValueError(f"visplay_grpo registry: the {KINDS[kind]} {name!r} is already registered")
    if kind == "loss_agg" and weigh_by not in WEIGHTS:
        raise ValueError(f"visplay_grpo registry: loss aggregation {name!r} needs weigh_by in {WEIGHTS}, "
                         f"got {weigh_by!r}")
    _EXTRA[kind][name] = (fn, weigh_by) if kind == "loss_agg" else fn


def unregister(kind: str, name: str) -> None:
    """Remove a name :func:`register` added (tests use it to leave the registry as they found it)."""
    _EXTRA[kind].pop(name, None)


def known(kind: str) -> tuple[str, ...]:
    """Every name of ``kind``: the built-ins, then the registered ones in registration order."""
    return BUILTIN[kind] + tuple(_EXTRA[kind])


def lookup(kind: str, name: str) -> Any:
    """The function registered as ``name`` (for ``loss_agg``: a ``(reduce, weigh_by)`` pair); an unknown name is an
    error naming the recipe key and the known names."""
    if name in _EXTRA[kind]:
        return _EXTRA[kind][name]
    if name not in BUILTIN[kind]:
        raise ValueError(f"plugins.grpo.{kind} must be one of {', '.join(known(kind))}, got {name!r}")
    from visplay_grpo import core_algos

    return getattr(core_algos, {"advantage_estimator": "ADVANTAGE_ESTIMATORS", "policy_loss": "POLICY_LOSSES",
                                "loss_agg": "LOSS_AGGREGATIONS"}[kind])[name]
