"""visplay grpo plugin: hook implementations (see visplay/hookspecs.py).

``visplay_make_optimizer`` answers optimizer name ``grpo`` with a :class:`visplay_grpo.optimizer.GRPOOptimizer`
configured from ``recipe.optimizer`` and the plugin's own section ``plugins.grpo`` (GrpoOptions).
``optimizer.update_batch_size`` counts prompts, as EasyR1's ``global_batch_size``: the optimizer gets it times the
role's ``group_size`` rollouts (hiyouga/EasyR1 verl/workers/fsdp_workers.py:143, bruno686/VisPlay
verl/workers/fsdp_workers.py:128-129: ``config.global_batch_size *= self.config.rollout.n``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from visplay.config import plugin_section
from visplay.hookspecs import hookimpl

OLD_LOGPROBS = ("recompute", "sampler")


@dataclass
class GrpoOptions:
    """The GRPO optimizer (``optimizer.name: grpo``); the loss settings themselves are the core's ``optimizer``."""

    old_logprobs: str = "recompute"
    """Log-probs of the sampling policy in the PPO ratio: ``recompute`` (teacher-forced before the update, as
    EasyR1) or ``sampler`` (the sampler's own, as logged)."""

    def validate(self) -> dict[str, str]:
        if self.old_logprobs not in OLD_LOGPROBS:
            return {"old_logprobs": f"must be one of {', '.join(OLD_LOGPROBS)}, got {self.old_logprobs!r}"}
        return {}


@hookimpl
def visplay_recipe_sections() -> dict[str, type]:
    return {"grpo": GrpoOptions}


@hookimpl
def visplay_make_optimizer(ctx: Any, role: str, policy: Any) -> Any:
    opt = ctx.recipe.optimizer
    if opt.name != "grpo":
        return None
    from visplay_grpo.optimizer import GRPOOptimizer

    section = ctx.recipe.get(role)
    temperature = float(section.sampling.temperature) if section is not None else 1.0
    group_size = int(section.group_size) if section is not None else 1
    return GRPOOptimizer(
        policy, lr=float(opt.lr), weight_decay=float(opt.weight_decay), grad_clip=float(opt.grad_clip),
        clip_low=float(opt.clip_low), clip_high=float(opt.clip_high), dual_clip=float(opt.dual_clip),
        kl_coef=float(opt.kl_coef), kl_type=str(opt.kl_type), adv_eps=float(opt.adv_eps),
        micro_batch_size=int(opt.micro_batch_size),
        update_batch_size=None if opt.update_batch_size is None else int(opt.update_batch_size) * group_size,
        temperature=temperature, old_logprobs=plugin_section(ctx.recipe, "grpo").old_logprobs,
        seed=ctx.seed_for("grpo", role), loss_agg=str(opt.loss_agg or "token_mean"),
    )
