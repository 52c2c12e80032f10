"""Checkpoints: safetensors model folders (their sha256 per file: visplay.api.file_hashes). Nothing here unpickles
anything.

A saved folder is one a user can hand to another tool as it is (lmms-eval's ``--model_args pretrained=<folder>``,
transformers' ``from_pretrained``, peft's ``PeftModel.from_pretrained``): files readable by others like any file
the user writes (:func:`share_files`; safetensors writes its files 0600), and an adapter config that names its
base without the run folder's absolute location (:func:`portable_adapter_config`).
"""

from __future__ import annotations

import contextlib
import json
import os
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


def share_files(directory: Path) -> None:
    """Give every file under ``directory`` the mode a plain ``open()`` gives under the process's umask (0644 under
    the usual 022; a private umask such as 077 stays private) and every folder the matching search mode (0755):
    safetensors writes through a 0600 temporary file, which would leave weights other users (an evaluation job,
    a colleague) cannot read."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [directory, *directory.rglob("*")]:
        if path.is_symlink():
            continue
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def portable_adapter_config(adapter_dir: Path, base: str | Path) -> None:
    """``adapter_config.json``'s ``base_model_name_or_path`` as peft wrote it (the folder the base model was loaded
    from), unless that is a checkpoint of this run (``<run>/checkpoints/<name>``, what every iteration after the
    first trains on): then ``checkpoints/<name>``, relative to the run folder, so the config holds no absolute
    path of the run's location and the same run saved in two folders writes the same bytes. A base outside the
    run (the recipe's ``model.path`` or hub id) is left as it is: that is where the base is."""
    config_file = adapter_dir / "adapter_config.json"
    base_path = Path(base)
    if not config_file.is_file() or not base_path.is_absolute() or base_path.parent.name != "checkpoints":
        return
    checkpoints = base_path.parent
    if not adapter_dir.resolve().is_relative_to(checkpoints.resolve()):  # saved elsewhere: not this run's layout
        return
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = f"checkpoints/{base_path.name}"
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
