"""LoRA through peft (recipe ``plugins.models.lora.*``): adapters on the language model's projections.

With the adapter disabled the model is exactly the base model, which serves as the KL reference; only adapter
weights are trainable. Export merges the adapters (see visplay_models.checkpoint.merged_lora_state_dict).
"""

from __future__ import annotations

import re
from typing import Any

# The default of plugins.models.lora.target_modules: the language model's q/v projections, by the module path of
# the Qwen-VL, Qwen3-VL, Gemma 3 and LLaVA classes of transformers 5 (model.language_model).
DEFAULT_TARGETS = r".*model\.language_model.*\.(q_proj|v_proj)"


def setting(lora_cfg: Any, key: str, default: Any = None) -> Any:
    """A LoRA setting from the section (LoraConfig), a DictConfig or a plain dict."""
    getter = getattr(lora_cfg, "get", None)
    return getter(key, default) if callable(getter) else getattr(lora_cfg, key, default)


def add_lora(model: Any, lora_cfg: Any) -> Any:
    """Wrap ``model`` in a peft LoRA model built from ``lora_cfg`` (r, alpha, dropout, target_modules regex).

    Adapter initialisation: peft draws lora_A with torch's global generator, so the caller seeds it (the model
    loaders wrap this call in a forked, seeded RNG state); lora_B starts at zero, so the wrapped model computes
    exactly what the base model does until the first update.
    """
    from peft import LoraConfig, get_peft_model

    for key in ("r", "alpha"):
        if int(setting(lora_cfg, key, 1)) < 1:
            raise ValueError(f"plugins.models.lora.{key} must be >= 1, got {setting(lora_cfg, key)}")
    config = LoraConfig(
        r=int(setting(lora_cfg, "r", 8)), lora_alpha=int(setting(lora_cfg, "alpha", 16)),
        lora_dropout=float(setting(lora_cfg, "dropout", 0.0)),
        target_modules=family_targets(model, str(setting(lora_cfg, "target_modules"))), bias="none",
    )
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:
        raise ValueError(f"plugins.models.lora.target_modules {config.target_modules!r}: {exc}") from exc
    return peft_model


def family_targets(model: Any, targets: str) -> str:
    """``targets``, or for the default regex on a family whose text model lives elsewhere (Idefics3 / SmolVLM:
    ``model.text_model``) the same projections under that family's decoder (``get_decoder()``), so the vision
    tower's q/v projections never get adapters."""
    if targets != DEFAULT_TARGETS:
        return targets
    names = [name for name, _ in model.named_modules()]
    if any(re.fullmatch(targets, n) for n in names) or not hasattr(model, "get_decoder"):
        return targets
    decoder = model.get_decoder()
    prefix = next((n for n, m in model.named_modules() if m is decoder), None)
    return targets if not prefix else rf"{re.escape(prefix)}\..*\.(q_proj|v_proj)"
