"""LoRA through peft (recipe ``plugins.models.lora.*``): adapters on the language model's projections.

With the adapter disabled the model is exactly the base model, which serves as the KL reference; only adapter
weights are trainable. Export merges the adapters (see visplay_models.checkpoint.merged_lora_state_dict).
"""

from __future__ import annotations

from typing import Any


def add_lora(model: Any, lora_cfg: Any) -> Any:
    """Wrap ``model`` in a peft LoRA model built from ``lora_cfg`` (r, alpha, dropout, target_modules regex).

    Adapter initialisation: peft draws lora_A with torch's global generator, so the caller seeds it (the model
    loaders wrap this call in a forked, seeded RNG state); lora_B starts at zero, so the wrapped model computes
    exactly what the base model does until the first update.
    """
    from peft import LoraConfig, get_peft_model

    for key in ("r", "alpha"):
        if int(lora_cfg.get(key, 1)) < 1:
            raise ValueError(f"plugins.models.lora.{key} must be >= 1, got {lora_cfg.get(key)}")
    config = LoraConfig(
        r=int(lora_cfg.get("r", 8)), lora_alpha=int(lora_cfg.get("alpha", 16)),
        lora_dropout=float(lora_cfg.get("dropout", 0.0)), target_modules=str(lora_cfg.get("target_modules")),
        bias="none",
    )
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:
        raise ValueError(f"plugins.models.lora.target_modules {config.target_modules!r}: {exc}") from exc
    return peft_model
