"""Benchmark (pytest-benchmark, skipped by default): a GRPO update with token-budget micro-batches vs padded ones.

Run: ``pytest tests/benchmarks/test_memory_bench.py --benchmark-enable``. The padded update is timed in the same test
(median of the same number of rounds) and the ratio is in extra_info, with the padded tokens each path computes.
Response lengths: every generation of the logged tiny run in tests/replay/data/runlog_v1 (questions, votes,
rollouts), in key order, times 4 (a real run's spread, scaled to longer responses).
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.models import SMALL, prompts  # noqa: E402
from visplay_models.forward import inner_model  # noqa: E402
from visplay_models.options import TinyModelConfig  # noqa: E402

from visplay.types import Rollout  # noqa: E402

RUN_LOG = Path(__file__).resolve().parents[1] / "replay" / "data" / "runlog_v1" / "run.db"
SCALE, ROLLOUTS, MICRO = 4, 32, 8


def _lengths() -> list[int]:
    with sqlite3.connect(RUN_LOG) as conn:
        rows = conn.execute("SELECT token_ids FROM generations ORDER BY key").fetchall()
    return [SCALE * len(ids.strip("[]").split(",")) for (ids,) in rows][:ROLLOUTS]


def _rollouts() -> list[Rollout]:
    ps = prompts()
    return [Rollout(f"k{i}", f"g{i // 8}", ps[i % 3], [40 + (7 * i + j) % 400 for j in range(n)], [], float(i % 3))
            for i, n in enumerate(_lengths())]


def _optimizer(budget: int | None):
    from visplay_grpo.optimizer import GRPOOptimizer
    from visplay_models.policy import load_policy
    from visplay_models.tiny import build_tiny_model

    torch.set_num_threads(1)
    policy = load_policy(build_tiny_model(TinyModelConfig(**SMALL), seed=0), "reasoner")
    padded: list[int] = []  # rows x padded length of every forward of the trained model
    inner_model(policy.model).model.register_forward_pre_hook(
        lambda mod, args, kwargs: padded.append(kwargs["input_ids"].numel()), with_kwargs=True)
    return GRPOOptimizer(policy, lr=1e-4, micro_batch_size=MICRO, max_tokens_per_micro_batch=budget), padded


def test_bench_token_budget_vs_padded_update(benchmark):
    rollouts = _rollouts()
    opt, _ = _optimizer(None)
    lengths = opt.policy.sequence_lengths([r.prompt for r in rollouts], [r.token_ids for r in rollouts])
    budget = MICRO * max(lengths)  # the padded path's worst micro-batch: the same peak memory bound
    rounds = 3
    padded_opt, padded_tokens = _optimizer(None)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        padded_opt.update(rollouts)
        times.append(time.perf_counter() - start)
    budget_opt, budget_tokens = _optimizer(budget)
    benchmark.pedantic(lambda: budget_opt.update(rollouts), rounds=rounds, iterations=1)
    tokens = sum(lengths)
    info = benchmark.extra_info
    info["budget_tokens"], info["real_tokens_per_update"] = budget, tokens
    info["padded_tokens_per_update"] = sum(padded_tokens) // rounds
    info["budget_padded_tokens_per_update"] = sum(budget_tokens) // rounds
    info["padded_median_s"] = statistics.median(times)
    info["budget_median_s"] = benchmark.stats.stats.median
    info["speedup"] = info["padded_median_s"] / info["budget_median_s"]
    assert info["budget_padded_tokens_per_update"] < info["padded_tokens_per_update"]
