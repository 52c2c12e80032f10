"""visplay vllm plugin: hook implementations (see visplay/hookspecs.py).

``visplay_make_sampler`` answers sampler name ``vllm`` (``recipe.sampler.<role>: vllm``) with a
:class:`visplay_vllm.sampler.VllmSampler`. Engines are expensive to start, so there is one per role per process,
kept in this module and reused while the model architecture and engine settings stay the same: a new sampler for
the same role only pushes its policy's weights into the running engine. Engine settings come from the plugin's
own recipe section ``plugins.vllm`` (options.py) and ``recipe.model.dtype``; the GPUs from the placement
(visplay.scale.placement).
"""

from __future__ import annotations

import atexit
import hashlib
from typing import Any

from visplay.config import plugin_section
from visplay.hookspecs import hookimpl
from visplay_vllm.options import VllmOptions

SAMPLER = "vllm"
_ENGINES: dict[str, tuple[tuple, Any]] = {}


def policy_signature(policy: Any) -> str:
    """What must match for two policies to share an engine: the model config and the tokenizer."""
    model = policy.model.get_base_model() if hasattr(policy.model, "get_base_model") else policy.model
    tok = policy.processor.tokenizer
    text = model.config.to_json_string(use_diff=False) + str(len(tok)) + str(getattr(tok, "chat_template", ""))
    return hashlib.sha256(text.encode()).hexdigest()


def engine_for(ctx: Any, role: str, policy: Any) -> Any:
    """The running engine of ``role``, started (or restarted, when the model or settings changed) as needed."""
    from visplay_vllm.engine import VllmEngine

    v = plugin_section(ctx.recipe, "vllm")
    settings = dict(executor=v.executor, pipeline_parallel_size=int(v.pipeline_parallel_size),
                    dtype=str(ctx.recipe.model.dtype), max_model_len=int(v.max_model_len),
                    enforce_eager=bool(v.enforce_eager), seed=int(ctx.seed_for("vllm", role)) % 2**32,
                    gpu_memory_utilization=float(v.gpu_memory_utilization),
                    tensor_parallel_size=int(v.tensor_parallel_size), cpu_kvcache_gb=int(v.cpu_kvcache_gb))
    key = (policy_signature(policy), tuple(sorted(settings.items())))
    current = _ENGINES.get(role)
    if current is not None and current[0] == key:
        return current[1]
    if current is not None:
        current[1].shutdown()
    from visplay.scale.placement import plan_placement

    gpus = plan_placement(ctx.recipe).engine_gpus.get(role)
    engine = VllmEngine(role, policy, gpus=gpus, **settings)
    engine.loaded_tag = policy.weights_sha256()  # it was started from exactly these weights
    _ENGINES[role] = (key, engine)
    return engine


@hookimpl
def visplay_recipe_sections() -> dict[str, type]:
    return {"vllm": VllmOptions}


def shutdown_engines() -> None:
    """Stop every engine this process started (also runs at interpreter exit)."""
    while _ENGINES:
        _, (_, engine) = _ENGINES.popitem()
        engine.shutdown()


atexit.register(shutdown_engines)


@hookimpl
def visplay_make_sampler(ctx: Any, role: str, policy: Any) -> Any:
    if ctx.recipe.sampler.get(role) != SAMPLER:
        return None
    if not hasattr(policy, "processor") or not hasattr(policy, "model"):
        raise TypeError(f"sampler 'vllm' needs an HFPolicy (model + processor), got {type(policy).__name__}")
    try:
        from vllm import LLM  # noqa: F401  (not just `import vllm`: a stray folder named vllm would pass that)
    except ImportError as exc:
        raise RuntimeError(f"sampler.{role}=vllm needs vLLM: pip install 'visplay[vllm]' ({exc})") from exc
    from visplay.scale import distributed
    from visplay_vllm.sampler import VllmSampler

    if distributed.world_size() == 1:
        return VllmSampler(engine_for(ctx, role, policy), policy)
    # Data-parallel training: one engine, in rank 0, on the sampling GPUs; the other ranks receive its samples.
    from visplay_vllm.engine import _is_cpu_platform

    if _is_cpu_platform():
        raise RuntimeError(f"sampler.{role}=vllm inside a multi-process (torchrun) run is not supported on CPU: the "
                           "in-process engine hangs next to the trainer's process group; use sampler hf or one process")
    if ctx.recipe.distributed.strategy == "fsdp":
        raise RuntimeError(f"sampler.{role}=vllm with distributed.strategy=fsdp and several processes is not "
                           "supported yet (rank 0 would need the gathered weights to push); use strategy ddp, "
                           "one process, or sampler hf")
    inner = VllmSampler(engine_for(ctx, role, policy), policy) if distributed.is_rank0() else None
    return distributed.Rank0Sampler(inner)
