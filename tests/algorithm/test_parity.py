"""The fast diversity clustering against the released code's reference (pairwise nltk BLEU + scikit-learn)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from support.algorithm import question_corpus
from visplay_algorithm.diversity import bleu_distances, cluster_questions, cluster_shares
from visplay_algorithm.reference import (
    reference_bleu_distances,
    reference_cluster_labels,
    reference_cluster_shares,
    same_partition,
)


def _tie_heavy(seed: int, n: int) -> list[str]:
    """Short questions over three words: many exactly equal distances, so the tie-breaking must match scipy's."""
    rng = random.Random(seed)
    return [" ".join(rng.choice("a b c".split()) for _ in range(rng.randint(1, 4))) for _ in range(n)]


CORPORA = [("mixed", seed, 2 + (seed * 37) % 70) for seed in range(16)] + [("ties", seed, 10 + seed * 6)
                                                                            for seed in range(8)]


@pytest.mark.parametrize("kind, seed, n", CORPORA)
def test_identical_distances_and_partitions(kind, seed, n):
    corpus = question_corpus(seed, n) if kind == "mixed" else _tie_heavy(seed, n)
    fast = bleu_distances(corpus)
    reference = reference_bleu_distances(corpus)
    assert np.array_equal(fast, reference)  # bit-identical, every pair
    assert same_partition(cluster_questions(corpus), reference_cluster_labels(corpus))
    assert cluster_shares(corpus) == reference_cluster_shares(corpus)


def test_corpus_covers_the_awkward_cases():
    corpus = [q for seed in range(16) for q in question_corpus(seed, 2 + (seed * 37) % 70)]
    assert "" in corpus and any(len(q.split()) == 1 for q in corpus) and any(len(q.split()) > 80 for q in corpus)
    assert any(not q.isascii() for q in corpus) and len(set(corpus)) < len(corpus)


@pytest.mark.parametrize("threshold", [0.2, 0.8])
def test_other_thresholds(threshold):
    corpus = question_corpus(99, 60)
    assert same_partition(cluster_questions(corpus, threshold), reference_cluster_labels(corpus, threshold))


def test_degenerate_sizes():
    assert cluster_shares([]) == []
    assert cluster_shares(["only one"]) == [1.0]
    assert cluster_shares(["", ""]) == [0.5, 0.5]  # empty questions: BLEU 0, distance 1, singletons
    assert cluster_shares(["same words here", "same words here"]) == [1.0, 1.0]


def test_a_batch_sized_corpus():
    corpus = question_corpus(256, 256, long_questions=False)
    assert same_partition(cluster_questions(corpus), reference_cluster_labels(corpus))
