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
    released_vote_reference,
    same_partition,
)
from visplay_algorithm.released_grader import clear_caches, released_equivalent, released_key  # noqa: E402

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


def _released_votes(corpus):
    """variant released: mathruler keys once per answer, grade_answer only between a question's distinct keys."""
    return [majority_vote(answers, [None if a is None else released_key(a) for a in answers],
                          equivalent=released_equivalent) for answers in corpus]


def _reference_votes(corpus):
    """The released loop (start_vllm_server.py:190-240) with the real mathruler: pairwise, no keys, no caches."""
    return [released_vote_reference([a or "" for a in answers]) for answers in corpus]


def test_bench_majority_vote_4096x10_vs_pairwise_mathruler(benchmark):
    """One released questioner step's votes: 512 prompts x 8 questions, m = 10 answers each (cot_config.yaml,
    questioner_train.sh rollout.n=8, start_vllm_server.py n=10). Caches are cleared before every timed round."""
    corpus = _vote_corpus(4096, 10)
    released_vote_reference(["3", "4"])  # import sympy/mathruler outside the timing
    reference, reference_s = _timed(_reference_votes, corpus)
    votes = benchmark.pedantic(_released_votes, args=(corpus,), setup=clear_caches, rounds=3)
    speedup = reference_s / benchmark.stats.stats.median
    benchmark.extra_info.update(reference_s=reference_s, speedup=speedup, questions=4096, m=10)
    for vote, ref in zip(votes, reference):
        assert (vote.silver_label or "", vote.confidence) == (ref["answer"], ref["score"])
        group_ids = {k: i for i, k in enumerate(dict.fromkeys(k for k in vote.keys if k is not None))}
        assert [None if k is None else group_ids[k] for k in vote.keys] == ref["groups"]
    assert speedup >= 20, f"released vote only {speedup:.0f}x faster than pairwise mathruler grading"


def test_bench_majority_vote_paper_keys_1000x10(benchmark):
    """variant paper: canonical keys only (a count), for scale beside the released path."""
    corpus = _vote_corpus(1000, 10)
    votes = benchmark.pedantic(lambda c: [majority_vote(a, [canonical_key(x) for x in a]) for a in c],
                               args=(corpus,), rounds=5, warmup_rounds=1)
    benchmark.extra_info.update(questions=1000, m=10)
    assert len(votes) == 1000 and all(0.0 <= v.confidence <= 1.0 for v in votes)
