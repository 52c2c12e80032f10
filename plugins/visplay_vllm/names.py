"""Weight names a family's vLLM model loads under, where they differ from what transformers writes.

vLLM maps Hugging Face checkpoint names to its own modules per model (each model's ``hf_to_vllm_mapper``), written
against the hub checkpoints' layout. transformers 5.19 writes one family differently: Gemma 3's SigLIP tower is
saved and named ``vision_tower.embeddings...`` (in memory ``model.vision_tower.embeddings...``), where the hub
checkpoints and vLLM 0.32 (``vllm/model_executor/models/gemma3_mm.py``, ``SiglipVisionModel``) have
``vision_tower.vision_model.embeddings...``. The adapter renames for the engine only: the folder an engine starts
from (:func:`rename_folder`) and each pushed tensor inside the worker (after it was hashed under the trainer's name,
so the push hash still equals the trainer's ``weights_sha256``).

This module must import without vLLM (the worker imports it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

SIGLIP_PARTS = ("embeddings.", "encoder.", "post_layernorm.", "head.")


def _siglip_tower(name: str) -> str:
    """``[model.]vision_tower.<part>`` -> ``[model.]vision_tower.vision_model.<part>`` (other names unchanged)."""
    for prefix in ("model.vision_tower.", "vision_tower."):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            if rest.startswith(SIGLIP_PARTS):
                return f"{prefix}vision_model.{rest}"
    return name


# config.json model_type -> how its names are renamed for vLLM
ADAPTERS: dict[str, Callable[[str], str]] = {"gemma3": _siglip_tower}


def adapter_for(model_dir: str | Path) -> Callable[[str], str] | None:
    """The renaming for the model folder's family, or None when vLLM reads transformers' names as they are."""
    config = Path(model_dir) / "config.json"
    if not config.is_file():
        return None
    return ADAPTERS.get(json.loads(config.read_text()).get("model_type", ""))


def rename_folder(model_dir: str | Path) -> int:
    """Rewrite the folder's ``*.safetensors`` under the names vLLM loads (in place; a folder visplay wrote for the
    engine, never a user's). Returns how many tensors were renamed."""
    rename = adapter_for(model_dir)
    if rename is None:
        return 0
    from safetensors import safe_open
    from safetensors.torch import save_file

    renamed = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata()
            tensors = {rename(k): f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
            renamed += sum(rename(k) != k for k in f.keys())  # noqa: SIM118
        save_file(tensors, str(path), metadata=metadata)
    index = Path(model_dir) / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text())
        data["weight_map"] = {rename(k): v for k, v in data.get("weight_map", {}).items()}
        index.write_text(json.dumps(data, indent=2))
    return renamed
