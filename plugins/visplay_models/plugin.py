"""visplay models plugin: hook implementations (see visplay/hookspecs.py).

- ``visplay_load_policy``: backends ``tiny`` (the embedded model, built in-process) and ``hf`` (a local folder).
- ``visplay_make_sampler``: sampler ``hf`` (transformers, in-process, over the policy's live weights).
"""

from __future__ import annotations

from typing import Any

from visplay.config import plugin_section
from visplay.hookspecs import hookimpl
from visplay_models.options import ModelsOptions

BACKENDS = ("tiny", "hf")
SAMPLER = "hf"


@hookimpl
def visplay_recipe_sections() -> dict[str, type]:
    return {"models": ModelsOptions}


def base_model_path(ctx: Any) -> str:
    """The folder of the recipe's base model: the built tiny model, or ``recipe.model.path``."""
    model = ctx.recipe.model
    if model.backend == "tiny":
        from visplay_models.tiny import build_tiny_model

        return str(build_tiny_model(plugin_section(ctx.recipe, "models").tiny, seed=ctx.seed_for("model", "tiny")))
    if not model.get("path"):
        raise ValueError("model.path is required for model.backend 'hf' (a local model folder)")
    return str(model.path)


@hookimpl
def visplay_load_policy(ctx: Any, role: str, init_from: str | None) -> Any:
    model = ctx.recipe.model
    if model.backend not in BACKENDS:
        return None
    from visplay.scale.distributed import local_rank
    from visplay.scale.placement import training_device
    from visplay_models.policy import load_policy

    path = init_from if init_from is not None else base_model_path(ctx)
    kl_coef = float(ctx.recipe.optimizer.get("kl_coef", 0.0)) if ctx.recipe.get("optimizer") else 0.0
    # plain "cuda" on a multi-GPU box means this rank's training GPU, never one that serves sampling
    device = training_device(ctx.recipe, local_rank=local_rank())
    return load_policy(
        path, role, dtype=model.dtype, device=device, trust_remote_code=bool(model.trust_remote_code),
        lora_cfg=ctx.recipe.plugins.models.lora, keep_reference=kl_coef > 0, seed=ctx.seed_for("model", role, "lora"),
    )


@hookimpl
def visplay_make_sampler(ctx: Any, role: str, policy: Any) -> Any:
    if ctx.recipe.sampler.get(role) != SAMPLER:
        return None
    from visplay_models.sampler import HFSampler

    if not hasattr(policy, "processor") or not hasattr(policy, "model"):
        raise TypeError(f"sampler 'hf' needs an HFPolicy (model + processor), got {type(policy).__name__}")
    return HFSampler(policy)
