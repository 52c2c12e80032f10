"""variant ``released``: extraction, answer equivalence and the vote, against the installed ``mathruler``.

Expected values come from the released code (bruno686/VisPlay@3aa895b) run through the real
``mathruler.grader`` (``released_vote_reference`` re-enacts its vote loop without keys or caches).
"""

from __future__ import annotations

import functools
import itertools
import random

import pytest
from mathruler.grader import extract_boxed_content, grade_answer
from visplay_algorithm.answer_key import canonical_key
from visplay_algorithm.reference import released_vote_reference
from visplay_algorithm.released_grader import (
    clear_caches,
    released_answer,
    released_boxed,
    released_equivalent,
    released_key,
)

from visplay.loop.votes import majority_vote

# Answers a reasoner writes, by kind; every pair inside CORPUS is checked (45 answers: 990 pairs).
CORPUS = [
    # options
    "B", "B.", "(B)", "b", "B) red", "C", "option B", "A",
    # numbers, negatives, decimals, fractions
    "3", "3.0", "-3", "- 3", "{3}", "5", "0.5", "\\frac{1}{2}", "1/2", "\\dfrac{1}{2}", "2/4", "12", "12.00",
    # units and percentages
    "3 cm", "3 m", "5.7M", "5.7", "50%", "50", "0.5%", "30^\\circ", "30 degrees", "1,000", "1000",
    # LaTeX and algebra
    "x^2+1", "1+x^2", "\\sqrt{8}", "2\\sqrt{2}", "\\pi",
    # sets and tuples
    "(1, 2)", "(2, 1)", "[1, 2]", "\\{1, 2\\}",
    # words, yes/no and the "no " rule
    "the cat", "cat", "Yes", "no one is there",
]
ISSUE_PAIRS = [  # issue 13, item 3: (a, b, mathruler's verdict)
    ("B.", "B", False), ("(B)", "B.", False), ("B) red", "B", False), ("5.7M", "5.7", False),
    ("3 cm", "3 m", False), ("the cat", "cat", False),
    ("-3", "- 3", True), ("{3}", "3", True), ("x^2+1", "1+x^2", True),
]


def released_pair(a: str, b: str) -> bool:
    """start_vllm_server.py:197-219: exact, the "no " rule, then grade_answer both ways (no caches)."""
    return a == b or ("no " in a.lower() and "no " in b.lower()) or grade_answer(a, b) or grade_answer(b, a)


def test_corpus_has_at_least_200_pairs():
    assert len(CORPUS) == len(set(CORPUS))
    assert len(list(itertools.combinations(CORPUS, 2))) >= 200


def test_equivalence_matches_mathruler_on_every_corpus_pair():
    """released_equivalent (keys, the integer shortcut, caches) == the released pairwise test, for 990 pairs."""
    clear_caches()
    disagree = [(a, b) for a, b in itertools.combinations(CORPUS, 2)
                if released_equivalent(a, b) != released_pair(a, b)]
    assert disagree == []


def test_equal_keys_imply_equivalence_and_identical_behaviour():
    """grade_answer sees its arguments only through the key, so one key = one group against every other answer."""
    by_key: dict[str, list[str]] = {}
    for answer in CORPUS:
        by_key.setdefault(released_key(answer), []).append(answer)
    shared = [group for group in by_key.values() if len(group) > 1]
    assert shared, "the corpus should contain answers with one key (e.g. 3 / 3.0)"
    for group in shared:
        for a, b in itertools.combinations(group, 2):
            assert released_pair(a, b)
            assert all(released_pair(a, c) == released_pair(b, c) for c in CORPUS)


@pytest.mark.parametrize(("a", "b", "verdict"), ISSUE_PAIRS)
def test_issue_pairs_follow_mathruler_in_released_and_keys_in_paper(a, b, verdict):
    """The issue's pairs: released follows mathruler; the paper variant's canonical keys stay as documented."""
    assert released_pair(a, b) is verdict
    assert released_equivalent(a, b) is verdict
    assert (canonical_key(a) == canonical_key(b)) is (not verdict)  # docs/algorithm.md lists each one


def test_sympy_free_shortcuts_agree_with_grade_answer():
    """Distinct plain integers, and plain numbers against letters-only answers, never grade equal; the released
    grader decides them without sympy (mathruler/grader.py grade_answer -> are_equal_under_sympy)."""
    numbers = ["0", "1", "-1", "7", "12", "100", "1,000", "1e3", "2.0", "-0", "65536", "0.5", ".5", "-2.25", "1/2"]
    words = [*"abcdefghijklmnopqrstuvwxyz", "no", "pi", "oo", "nan", "zoo", "re", "ln", "ab", "yes", "Yes", "B"]
    pairs = list(itertools.combinations(numbers, 2)) + [(n, w) for n in numbers for w in words]
    clear_caches()
    assert [(a, b) for a, b in pairs if released_equivalent(a, b) != released_pair(a, b)] == []
    assert [(b, a) for a, b in pairs if released_equivalent(b, a) != released_pair(b, a)] == []


TEXTS = [
    "<think>x</think> \\boxed{3}", "\\boxed{1} then \\boxed{2}", "\\boxed{\\boxed{7}}", "\\boxed{}", "\\boxed{ }",
    "no box", "", "\\boxed{\\frac{1}{2}}", "\\boxed{2} \\boxed{3", "\\boxed{a}}", "\\boxed{{x}", "\\boxed{None}",
    "\\boxed{ 4 } trailing", "\\boxed", "\\boxed{x^{2}}", "{\\boxed{5}}",
]


@pytest.mark.parametrize("text", TEXTS)
def test_extraction_is_mathruler_extract_boxed_content(text):
    """extract_boxed_content: the last "\\boxed{" only; unclosed -> "None" (no fallback to an earlier box)."""
    expected = extract_boxed_content(text)
    got = released_boxed(text)
    assert ("None" if got is None else got) == expected
    vote_answer = released_answer(text)
    assert vote_answer == (expected or None)  # "" (empty box) is skipped by both released loops


def test_none_and_empty_boxes_count_as_released():
    """start_vllm_server.py:187-192: "None" (no box) is a vote, an empty box is skipped but stays in m."""
    texts = ["\\boxed{}", "nothing", "nothing", "\\boxed{3} \\boxed{4", "\\boxed{3}"]
    answers = [released_answer(t) for t in texts]
    assert answers == [None, "None", "None", "None", "3"]
    vote = majority_vote(answers, [None if a is None else released_key(a) for a in answers],
                         equivalent=released_equivalent)
    reference = released_vote_reference([extract_boxed_content(t) for t in texts])
    assert (vote.silver_label, vote.confidence) == ("None", 3 / 5) == (reference["answer"], reference["score"])
    answered = majority_vote(answers, [None if a is None else released_key(a) for a in answers],
                             equivalent=released_equivalent, denominator="answered")
    assert answered.confidence == 3 / 4  # evaluate.py:153, 200: divided by the non-empty answers


_memo_grade = functools.lru_cache(maxsize=None)(grade_answer)  # pure: memoising changes no result


def _questions(count: int, m: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    pool = CORPUS + ["None", ""]
    return [[rng.choice(rng.sample(pool, rng.randint(1, 4))) for _ in range(m)] for _ in range(count)]


@pytest.mark.parametrize("denominator", ["samples", "answered"])
def test_vote_matches_the_released_loop(denominator):
    """200 questions x m = 10 drawn from the corpus: groups, silver label and score equal the released loop's."""
    for answers in _questions(200, 10, seed=13):
        reference = released_vote_reference(answers, denominator=denominator, grade=_memo_grade)
        extracted = [a or None for a in answers]
        keys = [None if a is None else released_key(a) for a in extracted]
        vote = majority_vote(extracted, keys, equivalent=released_equivalent, denominator=denominator)
        assert (vote.silver_label or "") == reference["answer"], answers
        assert vote.confidence == pytest.approx(reference["score"], abs=0), answers
        group_ids = {k: i for i, k in enumerate(dict.fromkeys(k for k in vote.keys if k is not None))}
        assert [None if k is None else group_ids[k] for k in vote.keys] == reference["groups"], answers
