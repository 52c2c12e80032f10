"""LoRA through peft (recipe ``plugins.models.lora.*``): adapters on the language model's projections.

With the adapter disabled the model is exactly the base model, which serves as the KL reference; only adapter
weights are trainable. Export merges the adapters (see visplay_models.checkpoint.merged_lora_state_dict).
"""

from __future__ import annotations

from typing import Any


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
        lora_dropout=float(setting(lora_cfg, "dropout", 0.0)), target_modules=str(setting(lora_cfg, "target_modules")),
        bias="none",
    )
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:
        raise ValueError(f"plugins.models.lora.target_modules {config.target_modules!r}: {exc}") from exc
    return peft_model
