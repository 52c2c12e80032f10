"""Helpers for the vLLM tests: a tiny policy, a run context that selects the vLLM sampler, fixed prompts.

Used in-process by the tests and, for the cross-process determinism check, from a fresh interpreter
(``python tests/vllm/vllm_fixtures.py CACHE_DIR`` prints the sampled token ids as JSON).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from visplay_models.options import TinyModelConfig

from visplay.config import load_recipe
from visplay.types import ImageRecord, Prompt, SamplingParams

# head_dim 32 (vLLM's CPU attention needs >= 32); small enough for 2 shared cores.
SMALL = dict(hidden_size=64, num_heads=2, num_kv_heads=1, intermediate_size=128, num_layers=2,
             vision_hidden_size=32, vision_depth=1, vision_heads=1, vocab_size=512)
# The tiny families (plugins.models.tiny.architecture) besides the default qwen2_5_vl that vLLM runs; all of
# ARCHITECTURES today (docs/models.md, "vLLM").
FAMILIES = ("qwen3_vl", "idefics3", "qwen2_vl", "gemma3")


def tiny_policy(cache_dir: Path, role: str = "reasoner", architecture: str = "qwen2_5_vl", **kwargs):
    from visplay_models.policy import load_policy
    from visplay_models.tiny import build_tiny_model

    path = build_tiny_model(TinyModelConfig(**SMALL, architecture=architecture), seed=0, cache_dir=cache_dir)
    return load_policy(path, role, **kwargs)


def vllm_context(run_dir: Path, *overrides: str):
    """A RunContext whose recipe samples both roles with vLLM (small engine settings)."""
    from visplay.context import RunContext
    from visplay.plugins import get_plugin_manager

    recipe = load_recipe("tiny", ["sampler.questioner=vllm", "sampler.reasoner=vllm", "plugins.vllm.max_model_len=512",
                                  *overrides])
    return RunContext(recipe=recipe, pm=get_plugin_manager(), run_dir=run_dir)


def image(seed: int, size: int = 56) -> ImageRecord:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return ImageRecord(f"img{seed}", Image.fromarray(pixels), "test")


def prompts() -> list[Prompt]:
    """Image + text, text only, image + system + longer text."""
    return [
        Prompt(user="How many red circles are there?", image=image(1)),
        Prompt(user="What is 2 + 3?"),
        Prompt(user="Describe the tiles in the top row, then give the answer in \\boxed{}.", image=image(2, 84),
               system="You are a careful reasoner."),
    ]


def params(n: int = 3, seed: int = 11, max_new_tokens: int = 12) -> list[SamplingParams]:
    return [SamplingParams(n=n, temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=seed + i)
            for i in range(len(prompts()))]


def main(cache_dir: str) -> None:
    import tempfile

    import torch

    torch.set_num_threads(1)
    policy = tiny_policy(Path(cache_dir))
    ctx = vllm_context(Path(tempfile.mkdtemp()))
    sampler = ctx.hooks.make_sampler(role="reasoner", policy=policy)
    out = sampler.sample(prompts(), params())
    print("TOKENS " + json.dumps([[g.token_ids for g in gens] for gens in out]))


if __name__ == "__main__":
    main(sys.argv[1])
