"""Reference implementations, for parity tests and benchmarks only (dev dependencies, imported lazily).

- :func:`reference_cluster_shares`: the released code's ``cluster_share_per_problem``: pairwise nltk
  ``sentence_bleu`` distances (hyp = question i, ref = question j, for j >= i, mirrored) and scikit-learn's
  ``AgglomerativeClustering(metric="precomputed", linkage="average", distance_threshold=0.5)``.
- :func:`reference_vote_groups`: the released ``evaluate.py`` grouping: each answer joins the first existing group
  whose representative is the same string or is symbolically equal (either direction); otherwise it opens a
  new group. :func:`symbolic_equal` is a small stand-in for ``mathruler.grader.grade_answer`` built on sympy.
"""

from __future__ import annotations

import re
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


# --- symbolic answer grading ------------------------------------------------------------------------------------

_TEXT_RE = re.compile(r"\\text\{([^{}]*)\}")
_FRAC_RE = re.compile(r"\\frac\{([^{}]*)\}\{([^{}]*)\}")


def _normalize(answer: str) -> str:
    s = answer.strip().replace("$", "").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _TEXT_RE.sub(r"\1", s).replace("\\left", "").replace("\\right", "").replace("\\!", "")
    s = s.replace("\\%", "").replace("%", "").replace("^\\circ", "").replace("^{\\circ}", "")
    return s.strip().rstrip(".").strip().lower()


def _to_sympy(s: str):
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    for _ in range(3):
        s = _FRAC_RE.sub(r"((\1)/(\2))", s)
    s = s.replace("\\cdot", "*").replace("\\times", "*").replace("\\pi", "pi").replace("{", "(").replace("}", ")")
    s = s.replace("\\sqrt", "sqrt").replace(",", "")
    transformations = standard_transformations + (implicit_multiplication_application, convert_xor)
    return parse_expr(s, transformations=transformations, evaluate=True)


def symbolic_equal(given: str, truth: str) -> bool:
    """String equality after light normalisation, else sympy: simplify(given - truth) == 0."""
    a, b = _normalize(given), _normalize(truth)
    if a == b:
        return True
    if not a or not b or len(a) > 200 or len(b) > 200:
        return False
    import sympy

    try:
        ea, eb = _to_sympy(a), _to_sympy(b)
        return bool(sympy.simplify(ea - eb) == 0)
    except Exception:  # noqa: BLE001 - any parse/simplify failure means "not equal", as in mathruler
        return False


def reference_vote_groups(answers: Sequence[str | None], *, no_heuristic: bool = False) -> list[int | None]:
    """Group index per answer (None: no answer) with the released pairwise loop; groups numbered by creation."""
    representatives: list[str] = []
    groups: list[int | None] = []
    for answer in answers:
        if not answer:
            groups.append(None)
            continue
        for index, existing in enumerate(representatives):
            if answer == existing or (no_heuristic and "no " in answer.lower() and "no " in existing.lower()):
                groups.append(index)
                break
            if symbolic_equal(answer, existing) or symbolic_equal(existing, answer):
                groups.append(index)
                break
        else:
            representatives.append(answer)
            groups.append(len(representatives) - 1)
    return groups


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
