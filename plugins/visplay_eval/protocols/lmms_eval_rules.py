"""lmms-eval's answer rules, re-implemented from its code (lmms-eval 0.7.3, lmms_eval/tasks/...); the identity
test (tests/eval/test_lmms_identity.py) runs both on the same responses and requires the same verdicts.

- :func:`strip_reasoning` : ``api/reasoning.py`` ``strip_reasoning_tags`` with the CLI's default
  ``--reasoning_tags`` (``<think>`` and ``<analysis>`` blocks), applied to every response before scoring.
- :func:`mcq_letter` : ``_task_utils/mcq_extract.py`` ``extract_mcq_answer`` (MMStar, RealWorldQA).
- :func:`mmmu_choice`, :func:`mmmu_open_candidates`, :func:`mmmu_open_correct` : MMMU's official parsing as
  lmms-eval carries it (``_task_utils/mmmu_mcq_utils.py``, ``mmmu/utils.py``).
"""

from __future__ import annotations

import random
import re

REASONING_TAGS = (("<think>", "</think>"), ("<analysis>", "</analysis>"))
MCQ_LETTERS = ("A", "B", "C", "D")
_ANSWER_PHRASES = (
    "the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
    "best answer is", "the correct option is", "correct option is", "the best option is", "best option is",
    "the choice is", "choice is", "the correct choice is", "correct choice is", "i choose", "i select", "i pick",
    "my answer is", "my choice is", "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは",
)
# Candidate forms of extract_mcq_answer, highest priority first in the ranking (ties: the later position).
_PRIORITY = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5, "colon": 4, "right_paren": 3,
             "space": 2, "fallback": 0}


def strip_reasoning(text: str, tags: tuple[tuple[str, str], ...] = REASONING_TAGS) -> str:
    """Remove each closed ``<think>...</think>`` block (and the others in ``tags``); a lone closing tag keeps only
    what follows its last occurrence; the result is stripped."""
    for start_tag, end_tag in tags:
        while start_tag in text and end_tag in text:
            start = text.find(start_tag)
            end = text.find(end_tag, start)
            if end == -1:
                break
            text = text[:start] + text[end + len(end_tag):]
        if end_tag in text and start_tag not in text:
            text = text.rsplit(end_tag, 1)[-1]
    return text.strip()


def _strip_each(text: str, chars: str) -> str:
    for char in chars:  # one character at a time, in order, as the reference does (not text.strip(chars))
        text = text.strip(char)
    return text


def _mcq_candidates(text: str, choices: tuple[str, ...]) -> list[tuple[str, int, str]]:
    found = []
    for form, pattern in (("parentheses", "({})"), ("period", "{}."), ("colon", "{}:"), ("right_paren", "{})"),
                          ("space", "{} ")):
        found += [(ch, text.rfind(pattern.format(ch)), form) for ch in choices if pattern.format(ch) in text]
    lower = text.lower()
    for phrase in _ANSWER_PHRASES:
        at = lower.find(phrase)
        if at != -1:
            found += [(ch, text.find(ch, at + len(phrase)), "phrase") for ch in choices
                      if text.find(ch, at + len(phrase)) != -1]
    core = text.strip()
    found += [(ch, 0, "start") for ch in choices if core.startswith(ch) and (len(core) == 1 or not core[1].isalpha())]
    found += [(ch, len(text) - 1, "end") for ch in choices
              if core.endswith(ch) and (len(core) == 1 or not core[-2].isalpha())]
    if not found:
        found = [(ch, text.rfind(ch), "fallback") for ch in choices if ch in text]
    return found


def mcq_letter(response: str, choices: tuple[str, ...] = MCQ_LETTERS) -> str:
    """The choice letter lmms-eval's shared extractor reads from a response, ``""`` when none."""
    if not response or not response.strip():
        return ""
    text = " " + _strip_each(response.strip(), ",.!?;:'\"") + " "
    found = _mcq_candidates(text, choices)
    if not found:
        return ""
    best = found[0]
    for cand in found[1:]:  # max by (priority, position); the first found wins a tie (a stable descending sort)
        if (_PRIORITY[cand[2]], cand[1]) > (_PRIORITY[best[2]], best[1]):
            best = cand
    return best[0]


# --- MMMU ----------------------------------------------------------------------------------------------------


def mmmu_choice(response: str, options: list[str], rng: random.Random) -> tuple[str, bool]:
    """(letter, guessed) for an MMMU multiple-choice response; without any candidate the reference draws a
    random letter (``random.choice``), here from ``rng``; ``guessed`` says so."""
    letters = [chr(ord("A") + i) for i in range(len(options))]
    text = " " + _strip_each(response, ",.!?;:'") + " "
    bracketed = [ch for ch in letters if f"({ch})" in text]
    candidates, by_text = bracketed, False
    if not candidates:
        candidates = [ch for ch in letters if f"{ch} " in text]
    if not candidates:
        candidates = [ch for ch in letters if f"{ch}." in text]
    if not candidates and len(text.split()) > 5:
        candidates = [ch for ch, option in zip(letters, options) if option.lower() in text.lower()]
        by_text = bool(candidates)
    if not candidates:
        return rng.choice(letters), True
    if len(candidates) == 1:
        return candidates[0], False
    if by_text:
        where = [text.lower().rfind(options[letters.index(ch)].lower()) for ch in candidates]
    elif bracketed:
        where = [text.rfind(f"({ch})") for ch in candidates]
    else:
        where = [text.rfind(f" {ch} ") for ch in candidates]
    return candidates[where.index(max(where))], False  # numpy.argmax: the first maximum


_NUM_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUM_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUM_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")
_KEY_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
_TRIVIAL = (":", ",", ".", "!", "?", ";", "'")


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def mmmu_normalize(text: str) -> list[str | float]:
    """A number rounded to 2 decimals, or the lower-cased text (a single character padded both ways)."""
    text = text.strip()
    if _is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def _key_parts(response: str) -> list[str]:
    response = response.strip().strip(".").lower()
    sentences = re.split(r"\.\s(?=[A-Z])|\n", response)
    parts = []
    for index, sentence in enumerate(sentences):
        indicators = _KEY_INDICATORS + (("=",) if index == len(sentences) - 1 else ())
        tails = [sentence.split(ind)[-1].strip() for ind in indicators if ind in sentence]
        shortest = None
        for tail in tails:  # the first non-empty tail, replaced by any strictly shorter later one
            if not shortest or len(tail) < len(shortest):
                shortest = tail
        if shortest and shortest.strip() not in _TRIVIAL:
            parts.append(shortest)
    return parts or [response]


def mmmu_open_candidates(response: str) -> list[str | float]:
    """The normalised answer candidates MMMU reads from an open response (a set: order carries no meaning)."""
    parts = _key_parts(response)
    found: list[str] = list(parts)
    for part in parts:
        found += _NUM_COMMAS.findall(part) + _NUM_SCIENTIFIC.findall(part) + _NUM_SIMPLE.findall(part)
    normalised: list[str | float] = []
    for value in found:
        normalised += mmmu_normalize(value)
    return list(dict.fromkeys(normalised))


def mmmu_open_correct(reference: str, candidates: list[str | float]) -> bool:
    """MMMU's open-answer rule: a normalised reference text inside a text candidate, or an equal number."""
    references = mmmu_normalize(reference)
    for cand in candidates:
        if isinstance(cand, str):
            if any(isinstance(ref, str) and ref in cand for ref in references):
                return True
        elif cand in references:
            return True
    return False
