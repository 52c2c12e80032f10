"""Config facts of the paper's three architectures, so ``--dry-run`` can plan a box before any download.

Only the keys that decide parameter counts, KV-cache size and memory are kept, copied from each model's public
config.json (Qwen/Qwen2.5-VL-3B-Instruct, Qwen/Qwen2.5-VL-7B-Instruct, XiaomiMiMo/MiMo-VL-7B-SFT). A local
``model.path`` with a config.json always wins over these facts; ``model.path`` may also name one of the hub ids
below (``model.path=Qwen/Qwen2.5-VL-7B-Instruct --dry-run``). ``tests/test_scale_recipes.py`` checks the counts
against a meta-device instantiation of transformers' class.
"""

from __future__ import annotations

from typing import Any

# The Qwen2.5-VL vision tower, shared by all three (32 window-attention blocks of width 1280, patch 14, merge 2).
_VISION = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "in_chans": 3,
           "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}


def _qwen25_vl(**text: Any) -> dict[str, Any]:
    return {"model_type": "qwen2_5_vl", **text, "vision_config": {**_VISION, "out_hidden_size": text["hidden_size"]}}


ARCHITECTURES: dict[str, dict[str, Any]] = {
    # 36 layers of width 2048, GQA 16/2 heads, tied embeddings: 3,754,622,976 parameters.
    "Qwen/Qwen2.5-VL-3B-Instruct": _qwen25_vl(
        hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    # 28 layers of width 3584, GQA 28/4 heads, untied: 8,292,166,656 parameters.
    "Qwen/Qwen2.5-VL-7B-Instruct": _qwen25_vl(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
    # MiMo-7B's language model (36 layers of width 4096, GQA 32/8, untied) in the Qwen2.5-VL frame: 8,301,791,232.
    "XiaomiMiMo/MiMo-VL-7B-SFT": _qwen25_vl(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=151680, tie_word_embeddings=False),
}

# Which architecture each paper recipe plans for when model.path is not given (recipe name -> hub id).
RECIPE_MODELS = {
    "qwen-vl-3b": "Qwen/Qwen2.5-VL-3B-Instruct",
    "qwen-vl-7b": "Qwen/Qwen2.5-VL-7B-Instruct",
    "mimo-vl-7b": "XiaomiMiMo/MiMo-VL-7B-SFT",
}


def known_architecture(model_path: str | None, recipe_name: str) -> tuple[str, dict[str, Any]] | None:
    """(hub id, config facts) for ``model.path`` when it names a known hub id, else for the recipe's name."""
    if model_path and str(model_path) in ARCHITECTURES:
        return str(model_path), ARCHITECTURES[str(model_path)]
    hub_id = RECIPE_MODELS.get(recipe_name)
    return (hub_id, ARCHITECTURES[hub_id]) if hub_id else None
