"""Parsing model outputs: questioner questions (both formats), reasoner answers (last ``\\boxed{}``), format check.

Every function here is total: malformed text (unclosed tags, nested boxes, empty answers, kilobytes of garbage)
gives an invalid result or None, never an exception, and runs in time linear in the text (str.find, no
backtracking regexes over the whole text).
"""

from __future__ import annotations

import re

from visplay.api import ParsedQuestion

_BOX = "\\boxed{"
_WS_RUN = re.compile(r"\s+")
_SPACED = frozenset("<>/")
_CHAIN = (("<type>", "</type>"), ("<question>", "</question>"), ("<answer>", "</answer>"))


def spacing_edit(text: str) -> str:
    """The released reward functions' first step: delete whitespace around every ``<``, ``>`` and ``/``.

    ``re.sub(r"\\s*(<|>|/)\\s*", r"\\1", predict)`` (bruno686/VisPlay train_examples/reward_function/cot_val.py:188,
    cot_val_solver.py:81); it also edits question and answer text (``3 / 4`` -> ``3/4``, ``x < 5`` -> ``x<5``).
    """
    # Linear: a whitespace run goes when it touches one of the three characters (the regex itself backtracks
    # quadratically over long runs that touch none).
    out, pos, n = [], 0, len(text)
    for run in _WS_RUN.finditer(text):
        start, end = run.span()
        touches = (start > 0 and text[start - 1] in _SPACED) or (end < n and text[end] in _SPACED)
        out.append(text[pos:start] if touches else text[pos:end])
        pos = end
    out.append(text[pos:])
    return "".join(out)


def parse_question(text: str, variant: str, phase: str = "questioner") -> ParsedQuestion:
    """Parse one questioner generation; validity follows ``variant`` (``paper`` or ``released``).

    The released code parses differently in questioner training (its reward function) and when it builds the
    reasoner's set (``phase == "reasoner_set"``, its question_generate.py); both are reproduced.
    """
    if not isinstance(text, str):
        return ParsedQuestion(valid=False, reason=f"not text: {type(text).__name__}")
    if variant == "released":
        return _parse_released_set(text) if phase == "reasoner_set" else _parse_released(text)
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


def _block_chain(text: str) -> list[str] | None:
    """``re.search(r"<type>(.*?)</type>.*?<question>(.*?)</question>.*?<answer>(.*?)</answer>", text, re.S)``.

    With str.find: the earliest tag positions are the regex's leftmost, shortest match (a later start or a longer
    group only moves every later tag further right), so this is the same match in linear time.
    """
    groups, pos = [], 0
    for open_tag, close_tag in _CHAIN:
        start = text.find(open_tag, pos)
        if start < 0:
            return None
        end = text.find(close_tag, start + len(open_tag))
        if end < 0:
            return None
        groups.append(text[start + len(open_tag):end])
        pos = end + len(close_tag)
    return groups


def _parse_released(text: str) -> ParsedQuestion:
    """The released questioner reward's parse (cot_val.py:138-148, 188-193) and vote gate (start_vllm_server.py:155).

    Tags are found after deleting whitespace around ``<``, ``>`` and ``/`` (which also edits the question), text
    around and between the blocks is allowed, any type text is accepted, the first block chain wins. A question
    is voted on (valid) when question, answer and type are all non-empty: the released server votes only then
    (an empty type there shifts the answers of every later question, a defect not reproduced: no vote).
    """
    chain = _block_chain(spacing_edit(text))
    if chain is None:
        return ParsedQuestion(valid=False, question="", reason="no <type>..</type> .. <question>..</question> .. "
                                                               "<answer>..</answer> chain")
    qtype, question, answer = (part.strip() for part in chain)
    parsed = ParsedQuestion(valid=False, question=question, qtype=qtype, stated_answer=answer)
    if not question:
        parsed.reason = "empty question"
    elif not answer:
        parsed.reason = "empty answer"
    elif not qtype:
        parsed.reason = "empty type"
    else:
        parsed.valid, parsed.reason = True, "ok"
    return parsed


def _find_all(text: str, open_tag: str, close_tag: str) -> list[str]:
    """``re.findall(open_tag + "(.*?)" + close_tag, text, re.S)`` for literal tags, in linear time."""
    found, pos = [], 0
    while True:
        start = text.find(open_tag, pos)
        if start < 0:
            return found
        end = text.find(close_tag, start + len(open_tag))
        if end < 0:
            return found
        found.append(text[start + len(open_tag):end])
        pos = end + len(close_tag)


def _parse_released_set(text: str) -> ParsedQuestion:
    """The released reasoner-set builder (question_generate.py:230-250) and evaluate.py's gate (evaluate.py:79).

    The *last* block of each kind (no spacing edit); without a question or an answer block the whole response is
    the question. Voted on (valid) whenever the question is non-empty.
    """
    types = _find_all(text, "<type>", "</type>")
    questions = _find_all(text, "<question>", "</question>")
    answers = _find_all(text, "<answer>", "</answer>")
    if questions and answers:
        qtype = types[-1].strip() if types else "unknown"
        parsed = ParsedQuestion(valid=False, question=questions[-1].strip(), qtype=qtype,
                                stated_answer=answers[-1].strip())
    else:
        parsed = ParsedQuestion(valid=False, question=text, qtype="unknown", stated_answer="")
    if parsed.question:
        parsed.valid, parsed.reason = True, "ok"
    else:
        parsed.reason = "empty question"
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
