"""The ``released`` protocol: the released VisPlay evaluation's decisions (github.com/bruno686/VisPlay).

Read from its code, not copied:

- prompt (``verl/utils/dataset.py`` ``_build_messages`` with ``train_examples/format_prompt/solver.jinja``, the
  format ``validation_examples/eval_gen_questions.sh`` passes): ``<image N>`` tags become ``<image>``, a single tag
  moves to the end of the question, the template renders ``<question><image> solver_format, ...``; because the
  template names ``solver_format``, the text before the image is rewrapped as :data:`PROMPT` and everything after
  the image tag (the template's own instruction) is dropped. The message is that text, then the image.
- items with more than one image tag were filtered out there (``_filter_multiple_images``); we keep them, show the
  first image and mark them (verdict reason suffix ``released_dropped``), so nothing is lost silently.
- generation: ``eval_config.yaml`` ``val_override_config``: temperature 0, n=1 (greedy), as visplay's eval does.
- extraction (``Evaluation/eval_boxed_accuracy.py`` ``extract_boxed_content``): the last match of
  ``\\\\boxed\\{([^}]+)\\}``, stripped; no nested braces (``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1``); without a
  match, the first 100 characters of the stripped response.
- rule path (``normalize_answer``, ``use_llm_judge=False``): upper case, runs of commas, dots and whitespace removed,
  then equality with the reference normalised the same way.
- judge path (``judge_answer_with_llm``): :data:`JUDGE_SYSTEM` and :data:`JUDGE_TEMPLATE` (the question is not
  shown), an empty extraction is wrong without asking; the reply, stripped and lower-cased, is correct only when it
  is exactly ``1``, ``correct``, ``yes`` or ``true``. The released judge ran GLM-4-Flash at temperature 0.6; here it
  is whatever judge the recipe names, greedy.
"""

from __future__ import annotations

import re
from typing import Any

from visplay.api import Presentation

PROMPT = ("Please reason step by step carefully based on the question: {content} and the image. After completing "
          "your reasoning, you MUST output the final, clean, and concise answer strictly inside \\\\boxed{{ }}.The "
          "final answer MUST appear inside \\boxed{{}}, and nowhere else. If there is no boxed answer, your response "
          "is considered incorrect. ")
"""The released ``solver_format`` message text (its ``r"\\\\boxed{ }."`` keeps two backslashes)."""
JUDGE_SYSTEM = (
    "You are an answer evaluation assistant. Your task is to judge whether two answers are substantially "
    "equivalent. When evaluating, you should ignore superficial differences such as format, spaces, punctuation, "
    "case, etc., and focus on whether they are consistent in core content, logical meaning and information "
    "expression. The judgment criteria should be lenient and inclusive, as long as the expressed meaning is "
    "basically the same, it is considered equivalent.")
JUDGE_TEMPLATE = (
    "Please judge whether the following two answers express the same meaning. Please only answer \"correct\" or "
    "\"incorrect\". Correct answer: {answer}. Answer to be judged: {predicted}. Judgment result (only answer "
    "\"correct\" or \"incorrect\"). You don't need to reason, if correct return 1, if incorrect return 0. Don't say "
    "anything else.")
FALLBACK_CHARS = 100
BOXED = re.compile(r"\\boxed\{([^}]+)\}")
ACCEPTED_REPLIES = ("1", "correct", "yes", "true")
_TAG = "<image>"


def extract(text: str | None) -> str:
    """The released extraction: the last ``\\boxed{...}`` without nested braces, else the first 100 characters."""
    if not text:
        return ""
    found = BOXED.findall(text)
    return found[-1].strip() if found else text.strip()[:FALLBACK_CHARS]


def normalize(answer: str | None) -> str:
    """The released rule path's normalisation: upper case, commas, dots and whitespace removed."""
    if not answer:
        return ""
    return re.sub(r"[,.\s]+", "", str(answer).strip().upper())


def parse_reply(reply: str | None) -> bool:
    """The released judge's reading of a reply: exactly 1/correct/yes/true after strip + lower, else wrong."""
    return (reply or "").strip().lower() in ACCEPTED_REPLIES


def question_text(question: str) -> tuple[str, int]:
    """The question the released pipeline rendered (``_prefix_image_token``) and how many image tags it had."""
    prompt = re.sub(r"<image\s+\d+>", _TAG, question)
    tags = prompt.count(_TAG)
    if tags == 1:
        prompt = prompt.replace(_TAG, "").rstrip() + _TAG
    elif tags == 0:
        prompt = prompt + _TAG
    return prompt, tags


class ReleasedProtocol:
    """The released evaluation's prompt, extraction, normalisation and judge prompt, for every benchmark."""

    name = "released"

    def supports(self, benchmark: str) -> bool:
        return True

    def present(self, item: Any) -> Presentation:
        prompt, _ = question_text(item.question)
        rendered = prompt.strip()  # jinja's {{ content | trim }} on the template's first line
        content = rendered.split(_TAG)[0]
        parts: list[str | int] = [PROMPT.format(content=content)] if content else []
        if item.images:
            parts.append(0)
        return Presentation(tuple(parts))

    def _dropped(self, item: dict[str, Any]) -> bool:
        return question_text(str(item.get("raw_question") or item.get("question") or ""))[1] > 1

    def score(self, item: dict[str, Any]) -> dict[str, Any]:
        predicted = extract(item.get("response"))
        ok = normalize(predicted) == normalize(_reference(item))
        reason = "match" if ok else ("no_answer" if not predicted else "mismatch")
        return {"correct": ok, "extracted": predicted, "reason": self._mark(item, reason)}

    def _mark(self, item: dict[str, Any], reason: str) -> str:
        return f"{reason}+released_dropped" if self._dropped(item) else reason

    def judge_request(self, item: dict[str, Any]) -> tuple[str | None, str] | None:
        predicted = extract(item.get("response"))
        if not predicted:
            return None
        return JUDGE_SYSTEM, JUDGE_TEMPLATE.format(answer=_reference(item), predicted=predicted)

    def parse_judge_reply(self, item: dict[str, Any], reply: str | None) -> dict[str, Any]:
        ok = parse_reply(reply)
        return {"correct": ok, "extracted": extract(item.get("response")),
                "reason": self._mark(item, "judged_correct" if ok else "judged_wrong")}


def _reference(item: dict[str, Any]) -> str:
    """The reference as the released code read it: the file's ``answer``, stripped (HallusionBench's 0/1 kept)."""
    return str((item.get("meta") or {}).get("raw_answer", item["answer"])).strip()
