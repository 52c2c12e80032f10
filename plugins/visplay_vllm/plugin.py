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
    """The running engine of ``role``, started (or restarted, when the model or settings changed) as needed.

    Under torchrun every training rank calls this with the same arguments (the decision and the policy save are
    the same on every rank); rank 0 gets the engine, the other ranks a stub (visplay_vllm.engine.start_engine).
    """
    from visplay.scale import distributed
    from visplay_vllm.engine import start_engine

    v = plugin_section(ctx.recipe, "vllm")
    multi = distributed.world_size() > 1
    settings = dict(executor=v.executor, pipeline_parallel_size=int(v.pipeline_parallel_size),
                    dtype=str(ctx.recipe.model.dtype), max_model_len=int(v.max_model_len),
                    enforce_eager=bool(v.enforce_eager), seed=int(ctx.seed_for("vllm", role)) % 2**32,
                    gpu_memory_utilization=float(v.gpu_memory_utilization),
                    tensor_parallel_size=int(v.tensor_parallel_size), cpu_kvcache_gb=int(v.cpu_kvcache_gb),
                    own_process=True if multi or v.in_process is False else None)
    key = (policy_signature(policy), tuple(sorted(settings.items())))
    current = _ENGINES.get(role)
    if current is not None and current[0] == key:
        return current[1]
    if current is not None:
        current[1].shutdown()
    from visplay.scale.placement import plan_placement

    gpus = plan_placement(ctx.recipe).engine_gpus.get(role)
    engine = start_engine(role, policy, leader=distributed.is_rank0(), gpus=gpus,
                          forbidden=forbidden_token_ids(policy), **settings)
    engine.loaded_tag = policy.weights_sha256()  # it was started from exactly these weights
    _ENGINES[role] = (key, engine)
    return engine


@hookimpl
def visplay_recipe_sections() -> dict[str, type]:
    return {"vllm": VllmOptions}


def forbidden_token_ids(policy: Any) -> list[int]:
    """Ids never sampled: special tokens other than the stop ids (<|im_end|>, EOS), and the embedding's rows beyond
    the tokenizer (Qwen's 151,936 rows hold 151,665 tokens)."""
    processor = policy.processor
    stop = set(getattr(policy, "stop_ids", {processor.im_end_id}))
    model = policy.model.get_base_model() if hasattr(policy.model, "get_base_model") else policy.model
    config = model.config
    rows = int(getattr(getattr(config, "text_config", config), "vocab_size", 0) or getattr(config, "vocab_size", 0))
    special = {i for i in processor.special_ids if i not in stop}
    return sorted(special | set(range(len(processor.tokenizer), rows)))




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
    from visplay_vllm.sampler import VllmSampler

    # One training process: the engine is this process's. Several (torchrun): every rank builds the sampler (the
    # FSDP gathers of a push are collectives), rank 0's engine runs in its own processes and samples for all.
    return VllmSampler(engine_for(ctx, role, policy), policy)
