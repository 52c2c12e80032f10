"""Parsing model outputs: questioner questions (both formats), reasoner answers (last ``\\boxed{}``), format check.

Every function here is total: malformed text (unclosed tags, nested boxes, empty answers, kilobytes of garbage)
gives an invalid result or None, never an exception, and runs in time linear in the text (str.find, no
backtracking regexes over the whole text).
"""

from __future__ import annotations

import re

from visplay.types import ParsedQuestion
from visplay_algorithm.prompts import QUESTION_TYPES

_BOX = "\\boxed{"
# The released format, tags only (content is checked separately so that the match stays linear).
_RELEASED = re.compile(
    r"\s*<type>([^<>]*)</type>\s*<question>(.*?)</question>\s*<answer>(.*?)</answer>\s*", re.DOTALL
)
_TAGS = ("<type>", "</type>", "<question>", "</question>", "<answer>", "</answer>")


def parse_question(text: str, variant: str) -> ParsedQuestion:
    """Parse one questioner generation; validity follows ``variant`` (``paper`` or ``released``)."""
    if not isinstance(text, str):
        return ParsedQuestion(valid=False, reason=f"not text: {type(text).__name__}")
    if variant == "released":
        return _parse_released(text)
    return _parse_paper(text)


def _parse_paper(text: str) -> ParsedQuestion:
    # Paper: the question is whatever sits in the first complete <question>...</question> block.
    start = text.find("<question>")
    if start < 0:
        return ParsedQuestion(valid=False, reason="no <question> tag")
    end = text.find("</question>", start + len("<question>"))
    if end < 0:
        return ParsedQuestion(valid=False, reason="unclosed <question> tag")
    question = text[start + len("<question>"):end].strip()
    if not question:
        return ParsedQuestion(valid=False, question="", reason="empty question")
    if "<question>" in question:
        return ParsedQuestion(valid=False, question=question, reason="nested <question> tag")
    return ParsedQuestion(valid=True, question=question, reason="ok")


def _parse_released(text: str) -> ParsedQuestion:
    # Released: the whole output must be exactly the three blocks (whitespace between them allowed).
    if text.count("<type>") != 1 or text.count("<question>") != 1 or text.count("<answer>") != 1:
        return ParsedQuestion(valid=False, reason="not exactly one <type>, <question> and <answer> block")
    match = _RELEASED.fullmatch(text)
    if match is None:
        return ParsedQuestion(valid=False, reason="not exactly <type>T</type><question>Q</question><answer>A</answer>")
    qtype, question, answer = (g.strip() for g in match.groups())
    if any(tag in question or tag in answer for tag in _TAGS):
        return ParsedQuestion(valid=False, reason="tag inside a block")
    parsed = ParsedQuestion(valid=False, question=question, qtype=qtype, stated_answer=answer)
    if qtype not in QUESTION_TYPES:
        parsed.reason = f"type {qtype[:40]!r} not one of {', '.join(QUESTION_TYPES)}"
    elif not question:
        parsed.reason = "empty question"
    elif not answer:
        parsed.reason = "empty answer"
    else:
        parsed.valid, parsed.reason = True, "ok"
    return parsed


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` (nested braces matched); None if there is none.

    "Last" means the box that *opens* last, so ``\\boxed{\\boxed{3}}`` gives ``3``. An unclosed box is skipped
    and the one before it is tried. Empty or blank content counts as no answer (None).
    """
    if not isinstance(text, str) or _BOX not in text:
        return None
    closing = _matching_braces(text)
    pos = len(text)
    while True:
        start = text.rfind(_BOX, 0, pos)
        if start < 0:
            return None
        brace = start + len(_BOX) - 1
        end = closing.get(brace)
        if end is not None:
            return text[brace + 1:end].strip() or None
        pos = start


_BRACES = re.compile(r"[{}]")


def _matching_braces(text: str) -> dict[int, int]:
    """{index of "{": index of its "}"} for every closed brace, in one pass (linear in the text)."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for match in _BRACES.finditer(text):
        if match.group() == "{":
            stack.append(match.start())
        elif stack:
            pairs[stack.pop()] = match.start()
    return pairs


def extract_answer(text: str, *, none_as_vote: bool = False) -> str | None:
    """The final answer of a reasoner generation; None when there is none.

    With ``none_as_vote`` a missing answer becomes the string ``"None"`` (the released code's behaviour, a bug:
    it then counts as a vote).
    """
    answer = last_boxed(text)
    if answer is None and none_as_vote:
        return "None"
    return answer


def reasoner_format_ok(text: str) -> bool:
    """Released format reward: ``<think>...</think>`` first, then a ``\\boxed{...}`` (EasyR1's regex, linear).

    Equivalent to ``re.fullmatch(r"<think>.*</think>.*\\\\boxed\\{.*\\}.*", text.strip(), re.DOTALL)``.
    """
    if not isinstance(text, str):
        return False
    s = text.strip()
    if not s.startswith("<think>"):
        return False
    close = s.find("</think>", len("<think>"))
    if close < 0:
        return False
    box = s.find(_BOX, close + len("</think>"))
    return box >= 0 and s.find("}", box + len(_BOX)) >= 0
