"""Rule-based scoring of benchmark responses: deterministic, offline, explainable.

The model is asked to put its final answer in ``\\boxed{}`` (the released solver prompt). The last boxed answer is
compared with the reference by the item's kind (visplay/eval/benchmarks.py):

- ``choice``: the boxed text names an option letter (``B``, ``(B)``, ``B. cat``, ``Option B``) or equals an option's
  text; correct when the letter is the reference letter.
- ``yesno``: the boxed text starts with yes or no; correct when it matches.
- ``open``: equal canonical keys. The key comes from the ``visplay_answer_key`` hook (the algorithm plugin's answer
  equivalence, the same rule that counts votes), else from :func:`fallback_key`. MM-Vet references may hold
  ``a<OR>b`` (either) or ``a<AND>b`` (all parts present in the answer).

A response without a boxed answer is wrong (reason ``no_boxed_answer``): the reference evaluation fell back to the
first 100 characters of the response, which then only an LLM judge could score.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from visplay.eval.benchmarks import CHOICE_LETTERS

KeyFn = Callable[[str], "str | None"]

# The released solver instruction (train_examples/format_prompt/solver.jinja in the authors' code), the prompt of
# the ``visplay`` protocol.
SOLVER_TEMPLATE = ("{question}\nPlease reason step by step based on the question and image, and put your final "
                   "answer within \\boxed{{}}.")


@dataclass(frozen=True)
class RuleVerdict:
    """The rule judge's decision for one response and why."""

    correct: bool
    extracted: str | None
    reason: str  # match, mismatch, empty_response, no_boxed_answer, no_choice_letter, not_yes_no


def extract_boxed(text: str | None) -> str | None:
    """Content of the last ``\\boxed{...}`` (nested braces allowed); None when absent or unclosed."""
    if not text:
        return None
    found = None
    for match in re.finditer(r"\\boxed\s*\{", text):
        depth, start = 1, match.end()
        for pos in range(start, len(text)):
            if text[pos] == "{":
                depth += 1
            elif text[pos] == "}":
                depth -= 1
                if depth == 0:
                    found = text[start:pos].strip()
                    break
    return found


def _strip_latex(text: str) -> str:
    text = re.sub(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}", r"\1", text)
    return text.replace("$", "").replace("\\%", "%").replace("\\,", "").replace("\\ ", " ").strip()


def fallback_key(answer: str) -> str | None:
    """A canonical key when no plugin provides ``visplay_answer_key``: case, spaces, LaTeX wrappers and number
    formatting are ignored (``3.50`` == ``3.5``, ``1,000`` == ``1000``, ``50%`` == ``50``)."""
    text = _strip_latex(answer).lower().strip().rstrip(".")
    text = re.sub(r"\s+", " ", text)
    number = text.replace(",", "").rstrip("%").strip()
    try:
        value = float(number)
    except ValueError:
        return text or None
    return repr(value) if value != int(value) else str(int(value))


def choice_letter(answer: str, options: list[str], letters: list[str]) -> str | None:
    """The option letter a boxed answer names, or None."""
    text = _strip_latex(answer).strip()
    m = re.fullmatch(r"(?:option|answer|choice)?\s*[:\s]*\(?([A-Ja-j])\)?(?:[.):]\s*.*)?", text, re.IGNORECASE)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    norm = fallback_key(text)
    for i, option in enumerate(options):
        if norm is not None and fallback_key(option) == norm:
            return CHOICE_LETTERS[i]
    return None


def yes_no(answer: str) -> str | None:
    """``yes`` or ``no`` when the answer starts with one of them."""
    m = re.match(r"\W*(yes|no)\b", _strip_latex(answer).lower())
    return m.group(1) if m else None


def _open_match(extracted: str, reference: str, key: KeyFn, alternatives: bool) -> bool:
    got = key(extracted)
    if got is None:
        return False
    if alternatives and "<AND>" in reference:
        parts = [p for p in reference.split("<AND>") if p.strip()]
        text = fallback_key(extracted) or ""
        return all((fallback_key(p) or "") in text for p in parts)
    refs = reference.split("<OR>") if alternatives else [reference]
    return any(key(r.strip()) == got for r in refs)


def rule_verdict(item: dict[str, Any], key: KeyFn | None = None) -> RuleVerdict:
    """Score one response. ``item`` has ``response``, ``answer``, ``kind``, and for choice items ``options`` and
    ``letters``; ``alternatives`` enables MM-Vet's ``<OR>``/``<AND>`` references. ``key`` maps an answer to its
    canonical key (default :func:`fallback_key`). Never raises on malformed responses."""
    key = key or fallback_key
    response = item.get("response") or ""
    if not response.strip():
        return RuleVerdict(False, None, "empty_response")
    extracted = extract_boxed(response)
    if extracted is None:
        return RuleVerdict(False, None, "no_boxed_answer")
    kind, reference = item.get("kind", "open"), str(item["answer"]).strip()
    if kind == "choice":
        letters = list(item.get("letters") or CHOICE_LETTERS[: max(len(item.get("options") or []), 4)])
        letter = choice_letter(extracted, list(item.get("options") or []), letters)
        if letter is None:
            return RuleVerdict(False, extracted, "no_choice_letter")
        ok = letter == reference.strip("()").rstrip(".").upper()
    elif kind == "yesno":
        said = yes_no(extracted)
        if said is None:
            return RuleVerdict(False, extracted, "not_yes_no")
        ok = said == reference.lower()
    else:
        ok = _open_match(extracted, reference, key, bool(item.get("alternatives")))
    return RuleVerdict(ok, extracted, "match" if ok else "mismatch")
