"""Rule-based scoring on hand-made responses, malformed ones included."""

from __future__ import annotations

import pytest

from visplay.eval.scoring import choice_letter, extract_boxed, fallback_key, rule_verdict, yes_no


@pytest.mark.parametrize("text, expected", [
    ("so \\boxed{42}", "42"),
    ("\\boxed{1} then \\boxed{2}", "2"),  # the last box counts
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # nested braces
    ("\\boxed {  B }", "B"),
    ("\\boxed{unclosed", None),
    ("no box here", None),
    ("", None),
    (None, None),
])
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize("answer, key", [
    ("3.50", "3.5"), ("1,000", "1000"), ("50%", "50"), ("$4$", "4"), ("\\text{Red}.", "red"), ("7.0", "7"),
    ("  Two   words ", "two words"),
])
def test_fallback_key(answer, key):
    assert fallback_key(answer) == key


@pytest.mark.parametrize("answer, letter", [
    ("B", "B"), ("(C)", "C"), ("d. fish", "D"), ("Option A", "A"), ("answer: b", "B"), ("fish", "D"),
    ("E", None), ("the dog or the cat", None),
])
def test_choice_letter(answer, letter):
    assert choice_letter(answer, ["dog", "cat", "bird", "fish"], list("ABCD")) == letter


@pytest.mark.parametrize("answer, said", [("Yes", "yes"), ("no, it is not", "no"), ("  NO.", "no"),
                                          ("nope", None), ("maybe yes", None)])
def test_yes_no(answer, said):
    assert yes_no(answer) == said


def _item(response, answer, kind, **extra):
    return {"response": response, "answer": answer, "kind": kind, **extra}


@pytest.mark.parametrize("item, correct, reason", [
    (_item("\\boxed{B}", "B", "choice", letters=list("ABCD")), True, "match"),
    (_item("\\boxed{A}", "B", "choice", letters=list("ABCD")), False, "mismatch"),
    (_item("\\boxed{purple}", "B", "choice", letters=list("ABCD")), False, "no_choice_letter"),
    (_item("B", "B", "choice", letters=list("ABCD")), False, "no_boxed_answer"),
    (_item("   ", "B", "choice"), False, "empty_response"),
    (_item(None, "B", "choice"), False, "empty_response"),
    (_item("\\boxed{yes}", "yes", "yesno"), True, "match"),
    (_item("\\boxed{Yes}", "no", "yesno"), False, "mismatch"),
    (_item("\\boxed{I think so}", "yes", "yesno"), False, "not_yes_no"),
    (_item("\\boxed{3.50}", "3.5", "open"), True, "match"),
    (_item("\\boxed{4}", "3.5", "open"), False, "mismatch"),
    (_item("\\boxed{}", "3.5", "open"), False, "mismatch"),
    (_item("\\boxed{crimson}", "red<OR>crimson", "open", alternatives=True), True, "match"),
    (_item("\\boxed{pear and apple}", "apple<AND>pear", "open", alternatives=True), True, "match"),
    (_item("\\boxed{apple}", "apple<AND>pear", "open", alternatives=True), False, "mismatch"),
    (_item("\\boxed{\\boxed{2}}", "2", "open"), True, "match"),  # the last box opened is the inner one
])
def test_rule_verdict_hand_made(item, correct, reason):
    verdict = rule_verdict(item)
    assert (verdict.correct, verdict.reason) == (correct, reason)


def test_rule_verdict_uses_given_answer_key():
    """The key function (the visplay_answer_key hook in real use) decides open-answer equivalence."""
    item = _item("\\boxed{four}", "4", "open")
    assert not rule_verdict(item).correct
    words = {"four": "4"}
    assert rule_verdict(item, key=lambda a: words.get(a, a)).correct
