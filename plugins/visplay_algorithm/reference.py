"""Reference implementations, for parity tests and benchmarks only (imported lazily).

- :func:`reference_cluster_shares`: the released code's ``cluster_share_per_problem``: pairwise nltk
  ``sentence_bleu`` distances (hyp = question i, ref = question j, for j >= i, mirrored) and scikit-learn's
  ``AgglomerativeClustering(metric="precomputed", linkage="average", distance_threshold=0.5)``.
- :func:`released_vote_reference`: the released vote loops (start_vllm_server.py, evaluate.py) step for step on the
  real ``mathruler.grader.grade_answer``: each answer joins the first group whose first answer is the same string,
  shares the "no " rule, or grades equal either way; otherwise it opens a group.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def reference_bleu_distances(sentences: Sequence[str]) -> np.ndarray:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    n = len(sentences)
    dist = np.zeros((n, n))
    smoother = SmoothingFunction().method1
    for i in range(n):
        for j in range(i, n):
            if i == j:
                score = 1.0
            else:
                score = sentence_bleu([sentences[j].split()], sentences[i].split(), smoothing_function=smoother)
            dist[i, j] = dist[j, i] = 1 - score
    return dist


def reference_cluster_labels(sentences: Sequence[str], threshold: float = 0.5) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    if len(sentences) < 2:
        return np.zeros(len(sentences), dtype=np.int64)
    clustering = AgglomerativeClustering(n_clusters=None, distance_threshold=threshold, metric="precomputed",
                                         linkage="average")
    return clustering.fit_predict(reference_bleu_distances(sentences))


def reference_cluster_shares(sentences: Sequence[str], threshold: float = 0.5) -> list[float]:
    labels = reference_cluster_labels(sentences, threshold)
    if len(labels) == 0:
        return []
    sizes = np.bincount(labels)
    return (sizes[labels] / len(labels)).tolist()


def same_partition(a: Sequence[int], b: Sequence[int]) -> bool:
    """True when two label vectors describe the same partition (label ids may differ)."""
    if len(a) != len(b):
        return False
    forward: dict[int, int] = {}
    backward: dict[int, int] = {}
    for x, y in zip(a, b):
        x, y = int(x), int(y)
        if forward.setdefault(x, y) != y or backward.setdefault(y, x) != x:
            return False
    return True


# --- the released vote loop on the real mathruler ----------------------------------------------------------------


def released_vote_reference(answers: Sequence[str], *, denominator: str = "samples", grade=None) -> dict:
    """The released vote loop, step for step, on the real ``mathruler.grader.grade_answer`` (no caches, no keys).

    bruno686/VisPlay@3aa895b vllm_service_init/start_vllm_server.py:190-240 (``denominator="samples"``: score =
    max count / all m results) and question_evaluate/evaluate.py:153-200 (``"answered"``: empty results are
    dropped first and the score divides by the rest). ``answers`` are ``extract_boxed_content`` outputs (``"None"``
    for no box, ``""`` for an empty one). Returns {"counts": {representative: count}, "groups": group index per
    answer (None: skipped), "answer": majority representative ("" when none), "score": float}. ``grade``
    replaces ``grade_answer`` (tests pass a memoised one: it is a pure function).
    """
    if grade is None:
        from mathruler.grader import grade_answer as grade

    def equal(res: str, existing: str) -> bool:
        if res == existing or ("no " in res.lower() and "no " in existing.lower()):
            return True
        for given, truth in ((res, existing), (existing, res)):
            try:
                if grade(given, truth):
                    return True
            except Exception:  # noqa: BLE001 - the released loop skips a comparison that raises
                pass
        return False

    counts: dict[str, int] = {}
    groups: list[int | None] = []
    for res in answers:
        if not res:
            groups.append(None)
            continue
        for index, existing in enumerate(list(counts)):
            if equal(res, existing):
                counts[existing] += 1
                groups.append(index)
                break
        else:
            counts[res] = 1
            groups.append(len(counts) - 1)
    answer = max(counts, key=counts.get) if counts else ""
    total = len(answers) if denominator == "samples" else sum(1 for a in answers if a)
    score = counts[answer] / total if counts and total else 0.0
    return {"counts": counts, "groups": groups, "answer": answer, "score": score}
