"""Checkpoints: safetensors model folders (their sha256 per file: visplay.api.file_hashes). Nothing here unpickles
anything."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch


def merged_lora_state_dict(peft_model: Any) -> dict[str, torch.Tensor]:
    """The base model's state dict with every LoRA layer merged (W + scale * B @ A), adapters dropped.

    Computed into new tensors, so the live model (base weights and adapters) is untouched: merging in place and
    unmerging afterwards would leave rounding drift in the base weights, i.e. in the reference model.
    """
    base = peft_model.get_base_model()
    state: dict[str, torch.Tensor] = {}
    for name, module in base.named_modules():
        if hasattr(module, "lora_A") and hasattr(module, "base_layer"):
            weight = module.base_layer.weight.detach().clone()
            for adapter in module.active_adapters:
                if adapter in module.lora_A:
                    a = module.lora_A[adapter].weight.detach()
                    b = module.lora_B[adapter].weight.detach()
                    weight += (b.float() @ a.float()).to(weight.dtype) * module.scaling[adapter]
            state[f"{name}.weight"] = weight
            if module.base_layer.bias is not None:
                state[f"{name}.bias"] = module.base_layer.bias.detach().clone()
    for key, value in base.state_dict().items():
        if "lora_" in key or ".base_layer." in key:
            continue
        state.setdefault(key, value)
    return state


def save_model(model: Any, directory: Path, *, lora: bool) -> None:
    """save_pretrained with safetensors; under LoRA, the merged weights (an ordinary model folder)."""
    directory.mkdir(parents=True, exist_ok=True)
    if not lora:
        model.save_pretrained(directory, safe_serialization=True)
        return
    base = model.get_base_model()
    base.save_pretrained(directory, state_dict=merged_lora_state_dict(model), safe_serialization=True)


@contextlib.contextmanager
def every_rank_writes(model: Any) -> Any:
    """transformers' save_pretrained writes only on rank 0 once torch.distributed is initialised (its
    ``should_save_on_this_rank``); every visplay rank keeps its own (throwaway) copy of the run and reloads from it,
    and every rank builds a tiny model folder it then loads, so every rank must write its folder."""
    from visplay.api import distributed

    if distributed.world_size() == 1:
        yield
        return
    model.should_save_on_this_rank = lambda is_main_process=True: True  # instance attribute shadows the method
    try:
        yield
    finally:
        del model.should_save_on_this_rank
