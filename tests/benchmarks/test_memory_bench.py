"""Benchmarks (pytest-benchmark, skipped by default): a GRPO update with token-budget micro-batches vs padded ones,
and with recomputation (gradient checkpointing) vs without.

Run: ``pytest tests/benchmarks/test_memory_bench.py --benchmark-enable``. The reference update is timed in the same
test (median of the same number of rounds) and the ratio is in extra_info (for the budget, with the padded tokens
each path computes; for recomputation, the forwards each path runs and its tokens/s).
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
from support.models import SMALL, count_decoder_layer_calls, prompts  # noqa: E402
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


def _optimizer(budget: int | None, recompute: bool = False):
    from visplay_grpo.optimizer import GRPOOptimizer
    from visplay_models.policy import load_policy
    from visplay_models.tiny import build_tiny_model

    torch.set_num_threads(1)
    policy = load_policy(build_tiny_model(TinyModelConfig(**SMALL), seed=0), "reasoner",
                         gradient_checkpointing=recompute)
    padded: list[int] = []  # rows x padded length of every forward of the trained model
    inner_model(policy.model).model.register_forward_pre_hook(
        lambda mod, args, kwargs: padded.append(kwargs["input_ids"].numel()), with_kwargs=True)
    return GRPOOptimizer(policy, lr=1e-4, micro_batch_size=MICRO, max_tokens_per_micro_batch=budget), padded


def _lengths_and_budget(rollouts: list[Rollout]) -> tuple[list[int], int]:
    """Each rollout's padded-forward length and the budget MICRO x the longest: the padded path's worst
    micro-batch, so both paths have the same peak-memory bound."""
    probe, _ = _optimizer(None)
    lengths = probe.policy.sequence_lengths([r.prompt for r in rollouts], [r.token_ids for r in rollouts])
    return lengths, MICRO * max(lengths)


def _alternating(benchmark, timed, reference, rollouts: list[Rollout], rounds: int) -> float:
    """One untimed warm-up update of each optimizer, then ``rounds`` rounds of a reference update (timed here)
    followed by a timed one (pytest-benchmark): neither path gets the other's warm caches or load. Returns the
    reference's median seconds."""
    reference.update(rollouts)
    timed.update(rollouts)
    times: list[float] = []

    def one_round():
        start = time.perf_counter()
        reference.update(rollouts)
        times.append(time.perf_counter() - start)

    benchmark.pedantic(lambda: timed.update(rollouts), setup=one_round, rounds=rounds, iterations=1)
    return statistics.median(times)


def test_bench_token_budget_vs_padded_update(benchmark):
    """The same update with micro-batches of MICRO padded rows vs a token budget of MICRO x the longest row."""
    rollouts = _rollouts()
    lengths, budget = _lengths_and_budget(rollouts)
    rounds = 5
    padded_opt, padded_tokens = _optimizer(None)
    budget_opt, budget_tokens = _optimizer(budget)
    padded_s = _alternating(benchmark, budget_opt, padded_opt, rollouts, rounds)
    tokens = sum(lengths)
    info = benchmark.extra_info
    info["budget_tokens"], info["real_tokens_per_update"] = budget, tokens
    info["padded_tokens_per_update"] = sum(padded_tokens) // (rounds + 1)  # the warm-up update counted too
    info["budget_padded_tokens_per_update"] = sum(budget_tokens) // (rounds + 1)
    info["padded_median_s"] = padded_s
    info["budget_median_s"] = benchmark.stats.stats.median
    info["speedup"] = info["padded_median_s"] / info["budget_median_s"]
    assert info["budget_padded_tokens_per_update"] < info["padded_tokens_per_update"]


def test_bench_recomputation_vs_plain_update(benchmark):
    """tokens/s of the same update (the same rollouts, the same token budget) with and without recomputation: each
    training-mode layer runs again in the backward pass, about one more forward of compute."""
    rollouts = _rollouts()
    lengths, budget = _lengths_and_budget(rollouts)
    rounds = 5
    plain, _ = _optimizer(budget)
    recomputed, _ = _optimizer(budget, recompute=True)
    plain_calls = count_decoder_layer_calls(plain.policy)
    recomputed_calls = count_decoder_layer_calls(recomputed.policy)
    plain_s = _alternating(benchmark, recomputed, plain, rollouts, rounds)
    per_update = (plain_calls[0] // (rounds + 1), recomputed_calls[0] // (rounds + 1))
    tokens = sum(lengths)
    info = benchmark.extra_info
    info["real_tokens_per_update"], info["budget_tokens"] = tokens, budget
    info["plain_median_s"], info["recomputed_median_s"] = plain_s, benchmark.stats.stats.median
    info["plain_tokens_per_s"] = tokens / info["plain_median_s"]
    info["recomputed_tokens_per_s"] = tokens / info["recomputed_median_s"]
    info["tokens_per_s_ratio"] = info["recomputed_tokens_per_s"] / info["plain_tokens_per_s"]
    info["decoder_layer_forwards_plain"], info["decoder_layer_forwards_recomputed"] = per_update
    # the old / reference passes (eval mode) recompute nothing; the trained forward's layers run twice
    assert per_update[1] > per_update[0]
