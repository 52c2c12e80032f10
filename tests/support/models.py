"""Fixtures for the models/GRPO tests: the tiny model built in-process, policies and prompts."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from visplay_models.options import TinyModelConfig

from visplay.types import ImageRecord, Prompt

# Smaller than the recipe default so the tests stay fast on 2 shared cores (head_dim 32 as vLLM needs).
SMALL = dict(hidden_size=64, num_heads=2, num_kv_heads=1, intermediate_size=128, num_layers=2,
             vision_hidden_size=32, vision_depth=1, vision_heads=1, vocab_size=512)


def small_cfg(**overrides) -> TinyModelConfig:
    return TinyModelConfig(**{**SMALL, **overrides})


def tiny_path(**overrides):
    from visplay_models.tiny import build_tiny_model

    return build_tiny_model(small_cfg(**overrides), seed=0)


def make_policy(role: str = "reasoner", lora: dict | None = None, **overrides):
    from visplay_models.policy import load_policy

    lora_cfg = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0,
                "target_modules": r".*model\.language_model.*\.(q_proj|v_proj)", **lora} if lora is not None else None
    return load_policy(tiny_path(**overrides), role, lora_cfg=lora_cfg, seed=1)


def image(seed: int, size: int = 56) -> ImageRecord:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return ImageRecord(f"img{seed}", Image.fromarray(pixels), "test")


def prompts() -> list[Prompt]:
    """Three prompts of different lengths: image + text, text only, image + system + longer text."""
    return [
        Prompt(user="How many red circles are there?", image=image(1)),
        Prompt(user="What is 2 + 3?"),
        Prompt(user="Describe the tiles in the top row, then give the answer in \\boxed{}.", image=image(2, 84),
               system="You are a careful reasoner."),
    ]


def digit_reward(policy, token_ids: list[int]) -> float:
    """A verifiable reward: 1 when the response's first token starts with a digit."""
    return float(policy.processor.tokenizer.decode(token_ids[:1]).strip()[:1].isdigit())


def grpo_run(steps: int, seed: int, lr: float = 1e-2, n: int = 16, max_new_tokens: int = 2, lora: dict | None = None):
    """GRPO with the digit reward on two prompts; returns (mean reward per step, token ids per step, policy, opt)."""
    from visplay_grpo.optimizer import GRPOOptimizer

    from visplay.seeding import derive_seed
    from visplay.types import Rollout, SamplingParams

    torch.set_num_threads(1)
    policy = make_policy(lora=lora)
    opt = GRPOOptimizer(policy, lr=lr, kl_coef=1e-2, micro_batch_size=16, update_batch_size=16,
                        seed=derive_seed(seed, "grpo"))
    ps = prompts()[:2]
    rewards, tokens = [], []
    for step in range(steps):
        params = [SamplingParams(n=n, max_new_tokens=max_new_tokens, top_p=0.99, seed=derive_seed(seed, step, i))
                  for i in range(len(ps))]
        groups = policy.sampler().sample(ps, params)
        rollouts = [Rollout(f"s{step}/p{i}/g{g.sample_index}", f"p{i}", g.prompt, g.token_ids, g.logprobs,
                            digit_reward(policy, g.token_ids)) for i, gs in enumerate(groups) for g in gs]
        result = opt.update(rollouts)
        rewards.append(result.metrics["reward/mean"])
        tokens.append([r.token_ids for r in rollouts])
    return rewards, tokens, policy, opt


def count_decoder_layer_calls(policy) -> list[int]:
    """A one-element counter of forward calls of the policy's decoder layers (a recomputed layer counts twice)."""
    calls = [0]
    for module in policy.model.modules():
        if type(module).__name__.endswith("DecoderLayer"):
            module.register_forward_pre_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    return calls
