"""Fixtures for the scale tests: fake model folders with the real config.json of each paper architecture.

The configs are written from the public config.json facts of each model (no weights, nothing downloaded); only
the keys that decide the architecture's shapes and token ids are included. ``write_fake_model`` makes a folder
that passes ``visplay.scale.placement.validate_paths`` and feeds the dry run's parameter count.
"""

from __future__ import annotations

import json
from pathlib import Path

QWEN_TOKEN_IDS = {
    "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652,
    "vision_end_token_id": 151653, "vision_token_id": 151654, "image_token_id": 151655, "video_token_id": 151656,
}

# Qwen2.5-VL vision tower, shared by the 3B, the 7B and MiMo-VL (window attention, 32 blocks of width 1280).
def _qwen25_vision(out_hidden_size: int) -> dict:
    return {
        "depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
        "in_chans": 3, "out_hidden_size": out_hidden_size, "patch_size": 14, "spatial_merge_size": 2,
        "spatial_patch_size": 14, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2, "temporal_patch_size": 2,
    }


def _qwen25_vl(**text) -> dict:
    base = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
        "attention_dropout": 0.0, "hidden_act": "silu", "initializer_range": 0.02, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "sliding_window": 32768, "use_sliding_window": False, "use_cache": True,
        "torch_dtype": "bfloat16", "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        **QWEN_TOKEN_IDS,
    }
    base.update(text)
    base["vision_config"] = _qwen25_vision(text["hidden_size"])
    return base


ARCHITECTURES = {
    # Qwen/Qwen2.5-VL-3B-Instruct: 36 layers of width 2048, GQA 16/2 heads, tied embeddings; 3.75B parameters.
    "qwen-vl-3b": _qwen25_vl(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                             num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=128000,
                             max_window_layers=70, tie_word_embeddings=True, vocab_size=151936),
    # Qwen/Qwen2.5-VL-7B-Instruct: 28 layers of width 3584, GQA 28/4 heads, untied; 8.29B parameters.
    "qwen-vl-7b": _qwen25_vl(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                             num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000,
                             max_window_layers=28, tie_word_embeddings=False, vocab_size=152064),
    # XiaomiMiMo/MiMo-VL-7B-SFT: the Qwen2.5-VL architecture around the MiMo-7B language model (36 layers of
    # width 4096, GQA 32/8 heads, untied, vocabulary 151680); 8.3B parameters.
    "mimo-vl-7b": _qwen25_vl(hidden_size=4096, intermediate_size=11008, num_hidden_layers=36,
                             num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                             max_window_layers=36, tie_word_embeddings=False, vocab_size=151680,
                             rope_theta=640000.0),
}


def write_fake_model(folder: Path, recipe_name: str) -> Path:
    """A model folder with only config.json for the paper recipe ``recipe_name``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(ARCHITECTURES[recipe_name], indent=2))
    return folder


def write_image_folder(folder: Path, count: int = 2) -> Path:
    """A folder with a few small PNG images."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (32, 32), (40 * i, 100, 200)).save(folder / f"img{i}.png")
    return folder


# --- a tiny policy and a fixed batch for the data-parallel tests ---------------------------------------------------

# head_dim 32; small enough for several processes on 2 shared cores.
SMALL_TINY = dict(hidden_size=64, num_heads=2, num_kv_heads=1, intermediate_size=128, num_layers=2,
                  vision_hidden_size=32, vision_depth=1, vision_heads=1, vocab_size=512)


def tiny_policy(cache_dir: Path, role: str = "reasoner", keep_reference: bool = False):
    from visplay_models.options import TinyModelConfig
    from visplay_models.policy import load_policy
    from visplay_models.tiny import build_tiny_model

    return load_policy(build_tiny_model(TinyModelConfig(**SMALL_TINY), seed=0, cache_dir=cache_dir), role,
                       keep_reference=keep_reference)


def fixed_batch(size: int = 8, seed: int = 3):
    """``size`` (prompt, response token ids, advantage) triples with uneven response lengths, half with images."""
    import numpy as np
    from PIL import Image

    from visplay.types import ImageRecord, Prompt

    rng = np.random.default_rng(seed)
    batch = []
    for i in range(size):
        image = None
        if i % 2 == 0:
            pixels = rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)
            image = ImageRecord(f"img{i}", Image.fromarray(pixels), "test")
        response = [int(t) for t in rng.integers(10, 500, int(rng.integers(3, 10)))]
        batch.append((Prompt(user=f"What is shown in picture {i}?", image=image), response, float(rng.normal())))
    return batch


# --- planning through a plugin session (the planner asks the installed plugins) ---------------------------------


def context(cfg):
    """A run context over ``cfg`` with the installed plugins, as the CLI makes for ``--dry-run``."""
    from visplay.session import PluginSession

    return PluginSession().context(cfg, cfg.run_dir)


def dry_run(cfg, visible=None, gpu_memory_gib=80.0, nproc=None) -> str:
    from visplay.scale.plan import dry_run as plan_dry_run

    return plan_dry_run(context(cfg), visible, gpu_memory_gib, nproc)


def load_for_dry_run(name: str, overrides: list[str]):
    """A recipe as ``--dry-run`` loads it: model.path and data.images may be left out."""
    from visplay.config import load_recipe
    from visplay.scale.plan import dry_run_overrides

    return load_recipe(name, dry_run_overrides(overrides))


def plan_placement(cfg, visible=None):
    from visplay.scale.placement import plan_placement as plan

    return plan(context(cfg), visible)


def training_device(cfg, placement=None, local_rank: int = 0) -> str:
    from visplay.scale.placement import training_device as device

    return device(context(cfg), placement, local_rank)


def training_processes(cfg, placement=None, requested=None) -> int:
    from visplay.scale.placement import training_processes as processes

    return processes(context(cfg), placement, requested)
