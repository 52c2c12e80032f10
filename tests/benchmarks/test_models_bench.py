"""Benchmarks (pytest-benchmark, skipped by default): hf sampling throughput and one GRPO step, two tiny sizes.

Run: ``pytest tests/benchmarks/test_models_bench.py --benchmark-enable``. Tokens/s is in each result's extra_info.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.models import SMALL, digit_reward, prompts  # noqa: E402
from visplay_models.options import TinyModelConfig  # noqa: E402

from visplay.types import Rollout, SamplingParams  # noqa: E402

SIZES = {
    "small": SMALL,  # ~0.2M parameters
    "default": {},  # the recipe default (~0.8M)
    "medium": dict(hidden_size=256, num_heads=8, num_kv_heads=2, intermediate_size=768, num_layers=4,
                   vision_hidden_size=128, vision_depth=2, vision_heads=2, vocab_size=2048),  # ~5M
}


def _policy(size: str):
    from visplay_models.policy import load_policy
    from visplay_models.tiny import build_tiny_model

    torch.set_num_threads(1)  # 2 shared cores: more threads only spin-wait
    return load_policy(build_tiny_model(TinyModelConfig(**SIZES[size]), seed=0), "reasoner")


@pytest.mark.parametrize("size", ["small", "medium"])
def test_bench_sampling_tokens_per_second(benchmark, size):
    policy = _policy(size)
    params = [SamplingParams(n=8, max_new_tokens=64, seed=i) for i in range(2)]
    ps = prompts()[:2]
    counts = []

    def run():
        groups = policy.sampler().sample(ps, params)
        counts.append(sum(len(g.token_ids) for gs in groups for g in gs))

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["tokens_per_round"] = counts[-1]
    benchmark.extra_info["tokens_per_second"] = counts[-1] / benchmark.stats.stats.mean
    benchmark.extra_info["parameters"] = sum(p.numel() for p in policy.model.parameters())


@pytest.mark.parametrize("size", ["small", "medium"])
def test_bench_grpo_step(benchmark, size):
    """One GRPO step: sample 2 prompts x 8 (64 tokens max), old + reference log-probs, loss, backward, AdamW."""
    from visplay_grpo.optimizer import GRPOOptimizer

    policy = _policy(size)
    opt = GRPOOptimizer(policy, lr=1e-4, micro_batch_size=8)
    ps = prompts()[:2]
    state = {"step": 0}

    def step():
        params = [SamplingParams(n=8, max_new_tokens=64, seed=state["step"] * 10 + i) for i in range(2)]
        groups = policy.sampler().sample(ps, params)
        rollouts = [Rollout(f"{i}/{g.sample_index}", str(i), g.prompt, g.token_ids, g.logprobs,
                            digit_reward(policy, g.token_ids)) for i, gs in enumerate(groups) for g in gs]
        opt.update(rollouts)
        state["step"] += 1

    benchmark.pedantic(step, rounds=3, iterations=1)
    benchmark.extra_info["parameters"] = sum(p.numel() for p in policy.model.parameters())
