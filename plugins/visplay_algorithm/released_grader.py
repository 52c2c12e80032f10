"""The released code's answer handling, on the real ``mathruler`` package (variant ``released``).

Read from bruno686/VisPlay at 3aa895b (file:line):

- extraction: ``mathruler.grader.extract_boxed_content``: the box that starts at the *last* ``\\boxed{`` (nested
  boxes: the inner one), braces matched; unclosed or missing: the string ``"None"``, which then counts as a vote
  (vllm_service_init/start_vllm_server.py:187, question_evaluate/evaluate.py:152); an empty box gives ``""``,
  which both vote loops skip (start_vllm_server.py:192, evaluate.py:153).
- equivalence of two answers r (new) and e (a group's first answer): ``r == e``, or both contain ``"no "`` (lower
  case), or ``grade_answer(r, e)``, or ``grade_answer(e, r)`` (start_vllm_server.py:197-219, evaluate.py:164-189).
- the reasoner's accuracy: ``grade_answer(extract_boxed_content(edited), silver_label)``, one direction, on the
  response after the tag-spacing edit (train_examples/reward_function/cot_val_solver.py:71-74, 81).

Fast and still exact: ``grade_answer(a, b)`` reads its arguments only through ``normalize_answer`` and
``_normalize``, and the ``"no "`` rule only through ``"no " in a.lower()``; :func:`released_key` is that triple,
so two answers with one key behave identically against every other answer and are equivalent to each other. A
question's vote therefore needs ``grade_answer`` only between its distinct keys, and pair results are cached.
Not reproduced: the released 10 s ``stopit`` timeout per call (timing-dependent); a grading exception counts as
"not equal" (the released loops skip the pair or, in evaluate.py, the whole question).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

from visplay_algorithm.parsing import spacing_edit

_BOX = "\\boxed{"
_INT = re.compile(r"-?\d+")
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:/\d+)?")
_LETTERS = re.compile(r"[a-z]+")
_WS = re.compile(r"\s*")
CACHE_SIZE = 1 << 16
"""Pair results and keys kept per process (answers repeat across questions: "3" vs "4", "A" vs "B")."""


def released_boxed(text: str) -> str | None:
    """``extract_boxed_content`` with "no closed box" as None instead of the string ``"None"`` (linear time)."""
    if not isinstance(text, str):
        return None
    start = text.rfind(_BOX)
    if start < 0:
        return None
    depth = 0
    for i in range(start + len(_BOX), len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == -1:
                return text[start + len(_BOX):i].strip()
    return None


def released_answer(text: str, *, none_as_vote: bool = True) -> str | None:
    """A vote answer as the released loops see it: ``"None"`` without a closed box, None for an empty box.

    None is "skipped" (not counted); ``none_as_vote=False`` also skips the missing-box ``"None"``.
    """
    answer = released_boxed(text)
    if answer is None:
        return "None" if none_as_vote else None
    return answer or None


@lru_cache(maxsize=1)
def _mathruler():
    """mathruler's grader functions, imported on first use (it imports sympy: about 0.5 s)."""
    from mathruler.grader import _normalize, grade_answer
    from mathruler.math_normalize import normalize_answer

    return normalize_answer, _normalize, grade_answer


@lru_cache(maxsize=CACHE_SIZE)
def _parts(answer: str) -> tuple[str | None, str | None, bool]:
    normalize_answer, normalize, _ = _mathruler()
    try:
        return normalize_answer(answer), normalize(answer), "no " in answer.lower()
    except Exception:  # noqa: BLE001 - the key must exist for any text; fall back to the text itself
        return answer, None, "no " in answer.lower()


def released_key(answer: str) -> str:
    """The vote key: ``mathruler:`` + JSON of (normalize_answer, _normalize, contains "no ")."""
    return "mathruler:" + json.dumps(_parts(answer), ensure_ascii=False)


def _safe_grade(given: str, truth: str) -> bool:
    try:
        return bool(_mathruler()[2](given, truth))
    except Exception:  # noqa: BLE001 - the released loops treat a failing comparison as "no match"
        return False


def _certainly_unequal(pa: tuple, pb: tuple) -> bool:
    """True when grade_answer is False both ways without running sympy (distinct keys only).

    - two different plain integers: both ``_normalize`` results are canonical (``str(int(...))``), so
      grade_answer reaches ``are_equal_under_sympy`` with two distinct integers, whose difference is not 0;
    - a plain number (``3``, ``-0.5``, ``.5``, ``1/2``) against letters only (``b``, ``no``, ``pi``): sympy reads
      the letters as symbols, their product or a constant (pi, oo, nan, zoo), never equal to the number.
    (mathruler/grader.py, grade_answer: after the two string tests only ``are_equal_under_sympy`` can say True.)
    Both rules are checked against grade_answer itself (tests/test_algorithm_released_answers.py).
    """
    a, b = pa[1], pb[1]
    if a is None or b is None or a == b:
        return False
    if _INT.fullmatch(a) and _INT.fullmatch(b):
        return True
    return bool((_NUMBER.fullmatch(a) and _LETTERS.fullmatch(b)) or (_LETTERS.fullmatch(a) and _NUMBER.fullmatch(b)))


_PAIRS: dict[tuple, bool] = {}


def released_equivalent(a: str, b: str) -> bool:
    """The released vote loop's test between a new answer ``a`` and a group's first answer ``b``.

    ``a == b``, both contain "no ", or grade_answer either way; decided from the two keys' parts (cached per
    pair of parts, so "3.0" reuses what "3" found).
    """
    pa, pb = _parts(a), _parts(b)
    if pa[0] == pb[0] or (pa[2] and pb[2]):
        return True  # a == b implies equal normalize_answer results: grade_answer's first test
    pair = (pa, pb)
    found = _PAIRS.get(pair)
    if found is None:
        found = not _certainly_unequal(pa, pb) and (_safe_grade(a, b) or _safe_grade(b, a))
        if len(_PAIRS) >= CACHE_SIZE:
            _PAIRS.clear()
        _PAIRS[pair] = _PAIRS[(pb, pa)] = found
    return found


@lru_cache(maxsize=CACHE_SIZE)
def released_accuracy(answer: str, silver_label: str) -> float:
    """The released reasoner accuracy: 1.0 if ``grade_answer(answer, silver_label)`` (one direction)."""
    return 1.0 if _safe_grade(answer, silver_label) else 0.0


def clear_caches() -> None:
    """Forget cached keys and pair results (benchmarks time a cold cache)."""
    for fn in (_parts, released_accuracy):
        fn.cache_clear()
    _PAIRS.clear()


def released_format_ok(text: str) -> bool:
    """The released reasoner format reward after the spacing edit, in linear time.

    ``re.fullmatch(r"<think>.*?</think>\\s*\\\\boxed\\{.*?\\}\\s*$", edited, re.DOTALL)`` (cot_val_solver.py:24-31):
    the text starts with ``<think>``; some ``</think>`` is followed (after whitespace) by ``\\boxed{``; the text
    ends with a ``}`` (then only whitespace) that comes after that ``\\boxed{``.
    """
    if not isinstance(text, str):
        return False
    s = spacing_edit(text)
    if not s.startswith("<think>"):
        return False
    end = len(s.rstrip())  # the trailing `\s*$`
    if s[end - 1] != "}":
        return False
    close = s.find("</think>", len("<think>"))
    while close >= 0:
        box = _WS.match(s, close + len("</think>")).end()
        if s.startswith(_BOX, box):
            return box + len(_BOX) <= end - 1
        close = s.find("</think>", close + 1)
    return False
