"""visplay models plugin: hook implementations (see visplay/hookspecs.py).

- ``visplay_load_policy``: backends ``tiny`` (the embedded model, built in-process) and ``hf`` (a local folder).
- ``visplay_make_sampler``: sampler ``hf`` (transformers, in-process, over the policy's live weights).
- ``visplay_model_facts``, ``visplay_footprint``, ``visplay_check_inputs``: the model's side of a plan
  (visplay_models/facts.py) and the check that ``model.path`` is a model folder.
Settings: the plugin's own section ``plugins.models`` (options.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visplay.api import RecipeError, distributed, hookimpl, plugin_section, training_device
from visplay_models.options import ModelsOptions

BACKENDS = ("tiny", "hf")
SAMPLER = "hf"


@hookimpl
def visplay_recipe_sections() -> dict[str, type]:
    return {"models": ModelsOptions}


@hookimpl
def visplay_names() -> dict[str, list[str]]:
    return {"backend": list(BACKENDS), "sampler": [SAMPLER]}


def options(ctx: Any) -> ModelsOptions:
    return plugin_section(ctx.recipe, "models")


def base_model_path(ctx: Any) -> str:
    """The folder of the recipe's base model: the built tiny model, or ``recipe.model.path``."""
    model = ctx.recipe.model
    if model.backend == "tiny":
        from visplay_models.tiny import build_tiny_model

        return str(build_tiny_model(options(ctx).tiny, seed=ctx.seed_for("model", "tiny")))
    if not model.get("path"):
        raise ValueError("model.path is required for model.backend 'hf' (a local model folder)")
    return str(model.path)


@hookimpl
def visplay_load_policy(ctx: Any, role: str, init_from: str | None) -> Any:
    model = ctx.recipe.model
    if model.backend not in BACKENDS:
        return None
    from visplay_models.policy import load_policy

    path = init_from if init_from is not None else base_model_path(ctx)
    # plain "cuda" on a multi-GPU box means this rank's training GPU, never one that serves sampling
    device = training_device(ctx, local_rank=distributed.local_rank())
    opts = options(ctx)
    # the frozen reference is loaded again from `path` only if an optimizer asks for reference log-probs
    return load_policy(
        path, role, dtype=model.dtype, device=device, trust_remote_code=bool(model.trust_remote_code),
        lora_cfg=opts.lora, keep_reference=None, seed=ctx.seed_for("model", role, "lora"),
        fsdp=ctx.recipe.distributed.get("strategy") == "fsdp", gradient_checkpointing=bool(opts.gradient_checkpointing),
        logprob_chunk_tokens=None if opts.logprob_chunk_tokens is None else int(opts.logprob_chunk_tokens),
        state_format=str(opts.fsdp.state_format), offload=bool(opts.fsdp.offload),
    )


@hookimpl
def visplay_make_sampler(ctx: Any, role: str, policy: Any) -> Any:
    if ctx.recipe.sampler.get(role) != SAMPLER:
        return None
    from visplay_models.sampler import HFSampler

    if not hasattr(policy, "processor") or not hasattr(policy, "model"):
        raise TypeError(f"sampler 'hf' needs an HFPolicy (model + processor), got {type(policy).__name__}")
    if getattr(policy, "sharded", False):  # each rank would generate its own slice: different forward counts
        raise ValueError(f"sampler.{role}=hf with distributed.strategy=fsdp under several processes would hang (FSDP "
                         "needs the same forward passes on every rank); use sampler vllm or distributed.strategy=ddp")
    return HFSampler(policy)


# --- planning ------------------------------------------------------------------------------------------------


@hookimpl
def visplay_model_facts(ctx: Any) -> Any:
    if ctx.recipe.model.backend not in BACKENDS:
        return None
    from visplay_models.facts import model_facts

    return model_facts(ctx.recipe, options(ctx))


@hookimpl
def visplay_footprint(ctx: Any, facts: Any, placement: Any, nproc: int, gpu_memory_gib: float) -> Any:
    if ctx.recipe.model.backend not in BACKENDS:
        return None
    from visplay_models.facts import footprint

    return footprint(ctx.recipe, facts, nproc, options(ctx))


@hookimpl
def visplay_check_inputs(ctx: Any, skip: frozenset[str]) -> list[str] | None:
    """``model.path`` (backend hf) is a folder with a config.json of an image-text-to-text architecture (no remote
    code unless ``model.trust_remote_code``, no pickled-only weights); the weights are read when loaded."""
    recipe = ctx.recipe
    if recipe.model.backend != "hf" or "model.path" in skip:
        return None
    from visplay_models.facts import built_in

    hint = f"\n{recipe.setup.strip()}" if recipe.get("setup") else ""
    path = recipe.model.path
    if not path:
        raise RecipeError(f"model.path is required for model.backend=hf{hint}")
    if built_in(path) is not None:
        return [f"model.path {path} (built-in facts; weights needed to run)"]
    folder = Path(str(path)).expanduser()
    if not (folder / "config.json").is_file():
        what = "does not exist" if not folder.exists() else "has no config.json (not a model folder)"
        raise RecipeError(f"model.path={folder} {what}{hint}")
    from visplay_models.policy import ModelLoadError, check_model_config

    try:  # a text-only model, a config needing remote code or pickled-only weights: refused before the run starts
        model_type = check_model_config(folder, trust_remote_code=bool(recipe.model.get("trust_remote_code")))
    except ModelLoadError as exc:
        raise RecipeError(f"model.path: {exc}") from exc
    return [f"model.path {folder} (config.json found: {model_type})"]
