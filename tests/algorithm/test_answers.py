"""Canonical answer keys (variant paper), the majority vote, and where the keys differ from mathruler."""

from __future__ import annotations

import random

import pytest
from mathruler.grader import grade_answer
from support.algorithm import EQUIVALENT, make_ctx
from visplay_algorithm.answer_key import canonical_key

from visplay.hookspecs import hookimpl
from visplay.loop.votes import majority_vote

# Deliberate differences: (a, b, canonical says equal, symbolic grading says equal). See docs/algorithm.md.
DIFFERENCES = [  # (a, b, canonical keys equal, the installed mathruler equal either way); docs/algorithm.md
    ("5 apples", "5", True, False),  # unit words dropped (looser); mathruler drops only its own unit list
    ("B. red", "B", True, False),  # option letter with its text (looser)
    ("(B)", "B.", True, False),  # option letter forms (looser)
    ("yes.", "yes", True, False),  # end punctuation (looser)
    ("the cat", "cat", True, False),  # leading article (looser)
    ("5.7M", "5.7", True, False),  # "M" read as a unit (looser)
    ("3 cm", "3 m", True, False),  # any unit (looser)
    ("x^2+1", "1+x^2", False, True),  # algebraic rearrangement (stricter)
    ("2\\sqrt{2}", "\\sqrt{8}", False, True),  # simplification (stricter)
    ("-3", "- 3", False, True),  # a spaced minus sign (stricter)
    ("{3}", "3", False, True),  # braces around a number (stricter)
]


@pytest.mark.parametrize("group", EQUIVALENT, ids=lambda g: g[0])
def test_equivalent_forms_share_a_key(group):
    assert len({canonical_key(a) for a in group}) == 1


def test_distinct_answers_have_distinct_keys():
    keys = [canonical_key(group[0]) for group in EQUIVALENT] + [canonical_key(a) for a in ("4", "C", "blue", "0.51")]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("answer, key", [
    ("3", "num:3"), ("\\frac{1}{2}", "num:1/2"), ("-\\frac{3}{4}", "num:-3/4"), ("(C) 42", "mc:c"),
    ("option D", "mc:d"), ("Yes", "bool:yes"), ("(1, 2)", "tuple:(num:1,num:2)"), ("  ", None), ("$$", None),
    ("x^{2} + 1", "text:x^2+1"), ("1e999999", "text:1e999999"), (None, None),
])
def test_key_values(answer, key):
    assert canonical_key(answer) == key


@pytest.mark.parametrize("a, b, canonical, mathruler", DIFFERENCES)
def test_deliberate_differences_from_mathruler(a, b, canonical, mathruler):
    assert (canonical_key(a) == canonical_key(b)) is canonical
    assert (grade_answer(a, b) or grade_answer(b, a)) is mathruler


def test_majority_vote_counts_unanswered_samples_in_m_and_breaks_ties_by_first_occurrence():
    answers = ["4", "3", "3.0", "4.0", None, None]
    vote = majority_vote(answers, [canonical_key(a) for a in answers])
    # num:4 and num:3 both have 2 votes; num:4 appears first (index 0): it wins. c = 2 / 6.
    assert (vote.silver_label, vote.silver_key, vote.confidence) == ("4", "num:4", 2 / 6)
    vote = majority_vote([None, None], [None, None])
    assert (vote.silver_label, vote.silver_key, vote.confidence) == (None, None, 0.0)
    vote = majority_vote([None, None, "3"], [None, None, "num:3"], none_as_vote=True)
    assert (vote.silver_label, vote.confidence) == ("None", 2 / 3)
    with pytest.raises(ValueError, match="3 answers but 2 keys"):
        majority_vote(["a", "b", "c"], ["a", "b"])


class _Roman:
    @hookimpl(tryfirst=True)
    def visplay_answer_key(self, ctx, answer):
        return {"iv": "num:4", "iii": "num:3"}.get(answer.strip().lower())


def test_a_tryfirst_plugin_adds_key_rules():
    ctx = make_ctx("paper", extra=[_Roman()])
    assert ctx.hooks.answer_key(answer="IV") == "num:4"
    assert ctx.hooks.answer_key(answer="4.0") == "num:4"  # falls through to the built-in rules


def test_keys_of_garbage_never_raise_and_stay_fast():
    import time

    rng = random.Random(1)
    alphabet = "0123456789.,/-+eE ${}()[]\\fracboxedtxt%°^_=ABCyesno\x00ÿ"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(2000)]
    texts += ["9" * 10_000 + "x", "\\frac{" * 3000, "(" * 5000 + ")" * 5000, "1" + "0" * 600]
    start = time.perf_counter()
    keys = [canonical_key(t) for t in texts]
    assert time.perf_counter() - start < 5.0
    assert all(k is None or (isinstance(k, str) and k) for k in keys)
