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


def test_bench_token_budget_vs_padded_update(benchmark):
    """The same update with micro-batches of MICRO padded rows vs a token budget of MICRO x the longest row (the
    same worst-case memory). One untimed warm-up update each, rounds alternating."""
    rollouts = _rollouts()
    probe, _ = _optimizer(None)
    lengths = probe.policy.sequence_lengths([r.prompt for r in rollouts], [r.token_ids for r in rollouts])
    budget = MICRO * max(lengths)  # the padded path's worst micro-batch: the same peak memory bound
    rounds = 5
    padded_opt, padded_tokens = _optimizer(None)
    budget_opt, budget_tokens = _optimizer(budget)
    padded_opt.update(rollouts)
    budget_opt.update(rollouts)
    padded_tokens.clear()
    budget_tokens.clear()
    times: list[float] = []

    def one_round():  # a padded update (timed here), then the budget's (timed by pytest-benchmark)
        start = time.perf_counter()
        padded_opt.update(rollouts)
        times.append(time.perf_counter() - start)

    benchmark.pedantic(lambda: budget_opt.update(rollouts), setup=one_round, rounds=rounds, iterations=1)
    tokens = sum(lengths)
    info = benchmark.extra_info
    info["budget_tokens"], info["real_tokens_per_update"] = budget, tokens
    info["padded_tokens_per_update"] = sum(padded_tokens) // rounds
    info["budget_padded_tokens_per_update"] = sum(budget_tokens) // rounds
    info["padded_median_s"] = statistics.median(times)
    info["budget_median_s"] = benchmark.stats.stats.median
    info["speedup"] = info["padded_median_s"] / info["budget_median_s"]
    assert info["budget_padded_tokens_per_update"] < info["padded_tokens_per_update"]


def _median_update_s(opt, rollouts, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        opt.update(rollouts)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _layer_calls(policy) -> list[int]:
    calls = [0]
    for module in policy.model.modules():
        if type(module).__name__.endswith("DecoderLayer"):
            module.register_forward_pre_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_bench_recomputation_vs_plain_update(benchmark):
    """tokens/s of the same update (the same rollouts, the same token budget) with and without recomputation: each
    training-mode layer runs again in the backward pass, about one more forward of compute. Each path has one
    untimed warm-up update first, and their rounds alternate, so neither gets the other's warm caches or load."""
    rollouts = _rollouts()
    probe, _ = _optimizer(None)
    lengths = probe.policy.sequence_lengths([r.prompt for r in rollouts], [r.token_ids for r in rollouts])
    budget, rounds = MICRO * max(lengths), 5
    plain, _ = _optimizer(budget)
    recomputed, _ = _optimizer(budget, recompute=True)
    plain_calls, recomputed_calls = _layer_calls(plain.policy), _layer_calls(recomputed.policy)
    plain.update(rollouts)
    recomputed.update(rollouts)
    per_update = (plain_calls[0], recomputed_calls[0])
    plain_times: list[float] = []

    def one_round():  # a plain update (timed here), then the recomputed one (timed by pytest-benchmark)
        start = time.perf_counter()
        plain.update(rollouts)
        plain_times.append(time.perf_counter() - start)

    benchmark.pedantic(lambda: recomputed.update(rollouts), setup=one_round, rounds=rounds, iterations=1)
    tokens = sum(lengths)
    info = benchmark.extra_info
    info["real_tokens_per_update"], info["budget_tokens"] = tokens, budget
    info["plain_median_s"], info["recomputed_median_s"] = statistics.median(plain_times), benchmark.stats.stats.median
    info["plain_tokens_per_s"] = tokens / info["plain_median_s"]
    info["recomputed_tokens_per_s"] = tokens / info["recomputed_median_s"]
    info["tokens_per_s_ratio"] = info["recomputed_tokens_per_s"] / info["plain_tokens_per_s"]
    info["decoder_layer_forwards_plain"], info["decoder_layer_forwards_recomputed"] = per_update
    # the old / reference passes (eval mode) recompute nothing; the trained forward's layers run twice
    assert per_update[1] > per_update[0]
