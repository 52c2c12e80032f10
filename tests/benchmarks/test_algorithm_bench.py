"""Benchmarks of the reward math against the released code's reference (pytest-benchmark, skipped by default).

Run: ``pytest tests/benchmarks/test_algorithm_bench.py --benchmark-enable``. Each test times the reference once
and the fast path with pytest-benchmark in the same run, stores ``reference_s`` and ``speedup`` (reference
time / fast median) in extra_info, checks the results are identical, and asserts the issue's targets. The
reference runs take ~10-60 s each on the 2-core machine.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.algorithm import (
    EQUIVALENT,  # noqa: E402
    question_corpus,  # noqa: E402
)
from visplay_algorithm.answer_key import canonical_key  # noqa: E402
from visplay_algorithm.diversity import cluster_questions, cluster_shares  # noqa: E402
from visplay_algorithm.reference import (  # noqa: E402
    reference_cluster_labels,
    reference_vote_groups,
    same_partition,
)

from visplay.loop.votes import majority_vote  # noqa: E402


def _timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def test_bench_diversity_512_vs_reference(benchmark):
    corpus = question_corpus(512, 512, long_questions=False)
    reference, reference_s = _timed(reference_cluster_labels, corpus)
    labels = benchmark.pedantic(cluster_questions, args=(corpus,), rounds=7, warmup_rounds=1)
    speedup = reference_s / benchmark.stats.stats.median
    benchmark.extra_info.update(reference_s=reference_s, speedup=speedup, n=512)
    assert same_partition(labels, reference)
    assert speedup >= 100, f"diversity clustering only {speedup:.0f}x faster than the reference at n = 512"


def test_bench_diversity_4096(benchmark):
    corpus = question_corpus(4096, 4096, long_questions=False)
    shares = benchmark.pedantic(cluster_shares, args=(corpus,), rounds=3)
    benchmark.extra_info.update(n=4096, clusters=len(set(shares)))
    assert len(shares) == 4096
    assert benchmark.stats.stats.median < 5.0


def _vote_corpus(questions: int, m: int, seed: int = 0) -> list[list[str | None]]:
    """Each question's m answers come from 1-3 groups of equivalent forms, with some unanswered samples."""
    rng = random.Random(seed)
    corpus = []
    for _ in range(questions):
        groups = rng.sample(EQUIVALENT, rng.randint(1, 3))
        corpus.append([rng.choice(rng.choice(groups)) if rng.random() > 0.1 else None for _ in range(m)])
    return corpus


def _fast_votes(corpus):
    return [majority_vote(answers, [canonical_key(a) for a in answers]) for answers in corpus]


def _reference_votes(corpus):
    return [reference_vote_groups(answers) for answers in corpus]


def test_bench_majority_vote_1000x10_vs_pairwise_symbolic(benchmark):
    corpus = _vote_corpus(1000, 10)
    reference, reference_s = _timed(_reference_votes, corpus)
    votes = benchmark.pedantic(_fast_votes, args=(corpus,), rounds=5, warmup_rounds=1)
    speedup = reference_s / benchmark.stats.stats.median
    benchmark.extra_info.update(reference_s=reference_s, speedup=speedup, questions=1000, m=10)
    for answers, vote, groups in zip(corpus, votes, reference):
        answered = [i for i, a in enumerate(answers) if a]
        assert same_partition([hash(vote.keys[i]) for i in answered], [groups[i] for i in answered])
    assert speedup >= 50, f"majority vote only {speedup:.0f}x faster than pairwise symbolic grading"
