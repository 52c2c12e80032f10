"""The ``lmms-eval`` protocol: lmms-eval's task prompts, image order and per-task scoring (lmms-eval 0.7.3,
``lmms_eval/tasks/<task>/``, its ``default`` ``lmms_eval_specific_kwargs``), for the rule-scored benchmarks:

| benchmark | task | prompt (doc_to_text / doc_to_messages) | images | scoring (process_results) |
|---|---|---|---|---|
| mmmu | mmmu_val | question, options as ``A. ...`` lines, blank line, the multiple-choice or open prompt | by ``<image N>`` tag, sorted and unique, interleaved at the tags | MMMU's parsing: letter (a random one when none is found) / open candidates |
| mmstar | mmstar | question (``" Please answer yes or no."`` removed) + post prompt | the image, then the text | ``extract_mcq_answer`` on A-D == answer |
| realworldqa | realworldqa | question as is (empty pre/post prompts) | the image, then the text | A-D: ``extract_mcq_answer``; else lower/strip/rstrip(".") == answer |
| hallusionbench | hallusion_bench_image | question as is | the image, then the text | the task's rule variant (``hb_aggregation_result_intern``): "yes" anywhere -> 1, else 0, == gt_answer |
| math-vision | mathvision_test(mini) | boxed-answer instruction + question, ``Choices:`` lines + mc_prompt | the image, then the text | ``mathvision_standard_eval``: lmms_eval_mathvision.py (needs latex2sympy2) |

MM-Vet (``mmvet``), MathVista (``mathvista_testmini_format``) and MathVerse (``mathverse_testmini``) are graded
by a GPT judge in lmms-eval; their prompts, judge prompts and reply parsing are lmms_eval_judged.py, supported only under a model judge.

HallusionBench's default metric asks GPT-4 (``evaluate_by_chatgpt``); the rule variant is what can be identical.
Its judge prompt is :data:`HB_JUDGE_PROMPT` for a model judge. Every response first loses its ``<think>`` /
``<analysis>`` blocks (the CLI's default ``--reasoning_tags``). Responses are scored as lmms-eval's chat models
receive them; generation settings (max_new_tokens 128 for MMMU and HallusionBench, 16 for RealWorldQA) are the
recipe's ``eval.max_new_tokens``.
"""

from __future__ import annotations

import random
import re
from typing import Any

from visplay.api import Presentation, ProtocolError
from visplay_eval.protocols import lmms_eval_judged as judged
from visplay_eval.protocols import lmms_eval_mathvision as mathvision
from visplay_eval.protocols.lmms_eval_rules import (
    mcq_letter,
    mmmu_choice,
    mmmu_open_candidates,
    mmmu_open_correct,
    strip_reasoning,
)

MMMU_CHOICE_PROMPT = "Answer with the option's letter from the given choices directly."
MMMU_OPEN_PROMPT = "Answer the question using a single word or phrase."
MMSTAR_POST_PROMPT = "\nAnswer with the option's letter from the given choices directly"
MMSTAR_REPLACED = " Please answer yes or no."
MMMU_RANDOM_SEED = 0
"""lmms-eval's default ``--seed 0,...`` (``random.seed(0)``): the draws for MMMU answers without a letter."""
HB_JUDGE_PROMPT = (
    "Imagine you are an intelligent teacher. Thoroughly read the question, reference answer and the prediction "
    "answer to ensure a clear understanding of the information provided. Assess the correctness of the predictions. "
    "If the prediction answer does not conflict with the reference answer, please generate \u201ccorrect\u201d. If the "
    "prediction answer conflict with the reference answer, please generate \u201cincorrect\u201d. If the prediction "
    "answer is unclear about the answer, please generate \"unclear\". \n\n Question:{question}\nReference answer: "
    "{answer}\nPrediction answer:{prediction}\nOutput:")
SUPPORTED = ("mmmu", "mmstar", "realworldqa", "hallusionbench", "math-vision")


def mmmu_is_choice(meta: dict[str, Any], options: list[str]) -> bool:
    qtype = meta.get("question_type")
    return qtype == "multiple-choice" if qtype else bool(options)


def mmmu_text(question: str, options: list[str], choice: bool, options_in_text: bool = False) -> str:
    """``construct_prompt`` with the default prompts. Rows in the authors' layout carry their options inside the
    question (``options_in_text``); those are not listed a second time."""
    if choice and not options_in_text:
        lines = "\n".join(f"{chr(ord('A') + i)}. {option}" for i, option in enumerate(options))
        return f"{question}\n{lines}\n\n{MMMU_CHOICE_PROMPT}"
    return f"{question}\n\n{MMMU_CHOICE_PROMPT if choice else MMMU_OPEN_PROMPT}"


def mmmu_parts(text: str, numbers: list[int]) -> tuple[str | int, ...]:
    """``mmmu_doc_to_messages``: the images named by ``<image N>`` tags (sorted, unique) interleaved with the text
    split at the tags (``<image 1>`` .. ``<image 7>``); a tag without an image contributes no image."""
    tags = sorted({int(n) for n in re.findall(r"<image (\d+)>", text)}, key=lambda n: f"image_{n}")
    shown = [numbers.index(n) for n in tags if n in numbers]
    for i in range(1, 8):
        text = text.replace(f"<image {i}>", "<image>")
    pieces = text.split("<image>")
    parts: list[str | int] = []
    for i, image in enumerate(shown):
        if i < len(pieces) - 1 and pieces[i].strip():
            parts.append(pieces[i].strip())
        parts.append(image)
    parts.append(pieces[-1].strip())
    return tuple(parts)


def mmmu_missing_images(text: str, numbers: list[int]) -> list[int]:
    """Tags in the prompt whose ``image_N`` the row lacks (lmms-eval would fail on such a row)."""
    return sorted({int(n) for n in re.findall(r"<image (\d+)>", text)} - set(numbers))


class LmmsEvalProtocol:
    """lmms-eval's prompts and rule scoring for MMMU, MMStar, RealWorldQA, HallusionBench and MathVision; its
    judge prompts and reply parsing for MM-Vet, MathVista and MathVerse."""

    name = "lmms-eval"

    def __init__(self) -> None:
        self._rngs: dict[str, random.Random] = {}

    def supports(self, benchmark: str, judge: str | None = None) -> bool:
        """The rule-scored benchmarks; MM-Vet and MathVista too when ``judge`` is a model judge (lmms-eval grades
        them with GPT: lmms_eval_judged.py)."""
        return self.refusal(benchmark, judge) is None

    def refusal(self, benchmark: str, judge: str | None = None) -> str | None:
        """Why ``benchmark`` is not supported under ``judge`` (visplay.eval.protocol.protocol_supports)."""
        if benchmark in judged.JUDGED:
            return judged.judge_needed(benchmark, judge)
        if benchmark == "math-vision":
            return mathvision.missing_dependency()
        return None if benchmark in SUPPORTED else (
            f"lmms-eval's protocol is implemented for {', '.join((*SUPPORTED, *judged.JUDGED))}")

    def present(self, item: Any) -> Presentation:
        if item.benchmark == "mmmu":
            text = mmmu_text(item.question, item.options, mmmu_is_choice(item.meta, item.options),
                             bool(item.meta.get("options_in_text")))
            numbers = list(item.meta.get("image_numbers") or range(1, len(item.images) + 1))
            missing = mmmu_missing_images(text, numbers)
            if missing:
                raise ProtocolError(f"protocol lmms-eval: {item.source}: the question names <image N> for N in "
                                    f"{missing} but the row has no image_N for them")
            return Presentation(mmmu_parts(text, numbers))
        shown_image = (0,) if item.images else ()
        if item.benchmark == "mm-vet":
            return Presentation(shown_image + (judged.mmvet_text(item.question),))
        if item.benchmark == "mathvista":
            problem = judged.mathvista_problem(item.meta, item.question, item.options, item.answer)
            return Presentation(shown_image + (judged.mathvista_text(problem),))
        if item.benchmark == "mathverse":
            return Presentation(shown_image + (judged.mathverse_text(judged.mathverse_fields(item.meta)[0]),))
        if item.benchmark == "math-vision":
            return Presentation(shown_image + (mathvision.mathvision_text(item.question, _mv_options(item)),))
        question = item.question.strip() if item.benchmark in ("mmstar", "realworldqa") else item.question
        if item.benchmark == "mmstar":
            question = question.replace(MMSTAR_REPLACED, "") + MMSTAR_POST_PROMPT
        return Presentation(((0,) if item.images else ()) + (question,))

    def rng(self, benchmark: str) -> random.Random:
        """One generator per benchmark, seeded as lmms-eval seeds ``random``, drawn from in scoring order."""
        return self._rngs.setdefault(benchmark, random.Random(MMMU_RANDOM_SEED))

    def score(self, item: dict[str, Any]) -> dict[str, Any]:
        response = strip_reasoning(item.get("response") or "")
        benchmark = item["benchmark"]
        meta = item.get("meta") or {}
        reference = str(meta.get("raw_answer", item["answer"]))
        if benchmark == "mmmu":
            return self._mmmu(item, response, reference, meta)
        if benchmark in judged.JUDGED:
            return self._judged_rule(item, response, reference)
        if benchmark == "math-vision":
            return _mathvision(item, response, reference)
        if benchmark == "mmstar" or (benchmark == "realworldqa" and reference.strip().upper() in "ABCD"
                                     and len(reference.strip()) == 1):
            got = mcq_letter(response)
            return _verdict(got == reference.strip().upper(), got)
        if benchmark == "realworldqa":
            got = response.lower().strip().rstrip(".")
            return _verdict(got == reference.strip().lower(), got)
        if benchmark == "hallusionbench":
            said = "1" if "yes" in response.lower() else "0"
            return _verdict(said == _hb_gold(reference), said)
        raise ValueError(f"protocol lmms-eval: no scoring for benchmark {benchmark!r} (supported: {SUPPORTED})")

    def _mmmu(self, item: dict[str, Any], response: str, reference: str, meta: dict[str, Any]) -> dict[str, Any]:
        options = list(item.get("options") or [])
        if mmmu_is_choice(meta, options):
            letter, guessed = mmmu_choice(response, options, self.rng("mmmu"))
            verdict = _verdict(letter == reference, letter)
            if guessed:
                verdict["reason"] += "+random_letter"
            return verdict
        candidates = mmmu_open_candidates(response)
        return _verdict(mmmu_open_correct(reference, candidates), repr(sorted(map(str, candidates))))

    def _judged_rule(self, item: dict[str, Any], response: str, reference: str) -> dict[str, Any]:
        """MathVista's answers found without the judge (empty, a choice, a bare number); anything else, and every
        MM-Vet response, has no rule score in lmms-eval."""
        if item["benchmark"] == "mathvista":
            problem = _mathvista_problem(item, reference)
            extraction = judged.mathvista_quick(response, problem)
            if extraction is not None:
                return _mathvista_verdict(extraction, problem, reference)
        raise ProtocolError(judged.judge_needed(item["benchmark"], "rule"))

    def judge_request(self, item: dict[str, Any]) -> tuple[str | None, str] | None:
        benchmark = item["benchmark"]
        response = strip_reasoning(item.get("response") or "")
        reference = str((item.get("meta") or {}).get("raw_answer", item["answer"]))
        if benchmark == "mm-vet":
            question = str(item.get("raw_question") or item["question"])
            return None, judged.mmvet_judge_prompt(question, reference, response)
        if benchmark == "mathvista":
            problem = _mathvista_problem(item, reference)
            if judged.mathvista_quick(response, problem) is not None:
                return None  # lmms-eval asks no judge for this one: score() holds the verdict
            return None, judged.mathvista_extract_prompt(problem["query"], response)
        if benchmark == "mathverse":
            _, question = judged.mathverse_fields(item.get("meta") or {})
            return None, judged.mathverse_judge_prompt(question, reference, response)
        if benchmark != "hallusionbench":
            return None
        return None, HB_JUDGE_PROMPT.format(question=item["question"], answer=item["answer"],
                                            prediction=strip_reasoning(item.get("response") or ""))

    def parse_judge_reply(self, item: dict[str, Any], reply: str | None) -> dict[str, Any]:
        """HallusionBench's reading: "incorrect" anywhere -> wrong, else "correct" anywhere -> right, else unclear
        (counted wrong)."""
        if item["benchmark"] == "mm-vet":
            score = judged.mmvet_score(reply)
            return {"correct": score == 1.0, "extracted": strip_reasoning(item.get("response") or ""),
                    "score": score or 0.0,
                    "reason": "unparsed_verdict" if score is None else f"judged_score={score:g}"}
        if item["benchmark"] == "mathvista":
            reference = str((item.get("meta") or {}).get("raw_answer", item["answer"]))
            return _mathvista_verdict((reply or "").strip(), _mathvista_problem(item, reference), reference,
                                      "judged_")
        if item["benchmark"] == "mathverse":
            ok = judged.mathverse_correct(reply)
            return {"correct": ok, "extracted": strip_reasoning(item.get("response") or ""),
                    "reason": "judged_correct" if ok else "judged_wrong"}
        text = (reply or "").lower()
        ok = "incorrect" not in text and "correct" in text
        reason = "judged_wrong" if "incorrect" in text else "judged_correct" if ok else "unparsed_verdict"
        return {"correct": ok, "extracted": strip_reasoning(item.get("response") or ""), "reason": reason}


def _mathvista_problem(item: dict[str, Any], reference: str) -> dict[str, Any]:
    question = str(item.get("raw_question") or item["question"])
    return judged.mathvista_problem(item.get("meta") or {}, question, list(item.get("options") or []), reference)


def _mathvista_verdict(extraction: str, problem: dict[str, Any], reference: str, how: str = "") -> dict[str, Any]:
    prediction = judged.mathvista_normalize(extraction, problem)
    ok = judged.mathvista_equal(prediction, reference)
    return {"correct": ok, "extracted": None if prediction is None else str(prediction),
            "reason": f"{how}{'match' if ok else 'mismatch'}"}


def _mv_options(item: Any) -> list[str]:
    """The options lmms-eval's MathVision reads (its ``options`` column); options the loader found written in
    the question (``options_in_text``) are no such column: there the doc has none."""
    meta = item.get("meta") if isinstance(item, dict) else item.meta
    options = item.get("options") if isinstance(item, dict) else item.options
    return [] if (meta or {}).get("options_in_text") else [str(o) for o in options or []]


def _mathvision(item: dict[str, Any], response: str, reference: str) -> dict[str, Any]:
    options = _mv_options(item)
    if options and not (len(reference) == 1 and 0 <= ord(reference) - ord("A") < len(options)):
        raise ProtocolError(f"protocol lmms-eval: math-vision item {item.get('item_id', item.get('idx'))}: the "
                            f"answer {reference!r} is not one of the {len(options)} option letters (lmms-eval reads "
                            f"the option text at ord(answer) - ord('A'))")
    ok, extracted = mathvision.mathvision_correct(reference, options, response)
    return _verdict(ok, extracted)


def _hb_gold(reference: str) -> str:
    ref = reference.strip().lower()
    return {"yes": "1", "no": "0"}.get(ref, ref)


def _verdict(ok: bool, extracted: str | None) -> dict[str, Any]:
    return {"correct": bool(ok), "extracted": extracted, "reason": "match" if ok else "mismatch"}
