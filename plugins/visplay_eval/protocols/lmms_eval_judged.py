"""lmms-eval's protocol for the benchmarks it grades with a GPT judge (lmms-eval 0.7.3, ``lmms_eval/tasks/``):
the prompt the model sees, the judge prompt built from a response, and the reading of the judge's reply, with the
judge being visplay's (``--judge local|endpoint``; its verdicts are kept per (judge identity, exact prompt)).

- MM-Vet (task ``mmvet``, ``mmvet/utils.py``): the model sees the image, then ``pre_prompt + question`` (the
  task's default pre_prompt, :data:`MMVET_PRE_PROMPT`). The judge gets :data:`MMVET_JUDGE_PROMPT` (the grading
  instructions and few-shot table), a newline, ``question | answer | response |`` with `` <AND> ``/`` <OR> ``
  spaced out (``mmvet_process_results``). The reply's first space-separated word, stripped, read as a float in
  0..1, is the score; lmms-eval asks again (higher temperature) for any other reply and gives 0.0 when no usable
  reply comes, so a reply that does not parse scores 0.0 here (visplay's judges sample one fixed way). The task's
  number is the mean score x 100 (``mmvet_aggregate_results``, :func:`mmvet_overall`); visplay's per-item
  ``correct`` is ``score == 1.0`` ("totally right"), the score itself is in the verdict (``score``, ``reason``).
- MathVista (task ``mathvista_testmini_format``: ``shot_type`` ``format-prompt``, no shots, no caption/OCR): the
  prompt is ``create_one_query`` (question, `` (Unit: u)``, ``A. choice`` lines, the answer-type hint). The answer
  is extracted as ``extract_answer`` does (``quick_extract`` false, the group's setting): an empty response gives
  ``""``; a response equal to a choice, or that parses as the integer / float asked for, is the extraction; any
  other goes to the judge as :data:`MATHVISTA_DEMO_PROMPT` + the row's ``query`` + the response + ``Extracted
  answer: `` (``create_test_prompt``), whose reply, stripped, is the extraction. Then ``normalize_extracted_answer``
  (a ``(X)`` letter, a letter to its choice, else the choice nearest by edit distance; integers through
  ``int(float())``; floats rounded to ``precision``) and ``safe_equal`` (string equality after strip).
  MathVista needs the row's ``question_type``, ``answer_type``, ``precision``, ``unit`` and ``query`` columns.
- MathVerse (task ``mathverse_testmini``: ``format-prompt``, ``query_wo``): the prompt is the row's ``query_wo``.
  The judge gets lmms-eval's binary prompt (:data:`MATHVERSE_JUDGE_TEMPLATE`, positive ``1``, negative ``0``) with
  the row's ``question_for_eval``, the answer and the whole response (``score_answer``, ``quick_match`` false);
  a reply containing ``1`` is right (``parse_binary_response``). It needs the columns ``query_wo`` and
  ``question_for_eval``.

The three prompt texts below are quoted verbatim from lmms-eval 0.7.3 (EvolvingLMMs-Lab/lmms-eval; identity needs
the exact strings); the logic around them is re-implemented from its code, not copied.

Responses lose their ``<think>``/``<analysis>`` blocks first, as lmms-eval's CLI does. Under the rule judge these
benchmarks are refused (:func:`judge_needed`): lmms-eval has no rule score for them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from visplay.api import ProtocolError

MMVET_JUDGE_PROMPT = """Compare the ground truth and prediction from AI models, to give a correctness score for the prediction. <AND> in the ground truth means it is totally right only when all elements in the ground truth are present in the prediction, and <OR> means it is totally right when any one element in the ground truth is present in the prediction. The correctness score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, or 1.0 (totally right). Just complete the last space of the correctness score.
gpt_query_prompt | Ground truth | Prediction | Correctness
--- | --- | --- | ---
What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0
What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 or 5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme talks about Iceland and Greenland. It's pointing out that despite their names, Iceland is not very icy and Greenland isn't very green. | 0.4
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme is using humor to point out the misleading nature of Iceland's and Greenland's names. Iceland, despite its name, has lush green landscapes while Greenland is mostly covered in ice and snow. The text 'This is why I have trust issues' is a playful way to suggest that these contradictions can lead to distrust or confusion. The humor in this meme is derived from the unexpected contrast between the names of the countries and their actual physical characteristics. | 1.0
"""
"""MM-Vet's grading prompt with its few-shot table (``mmvet/utils.py`` ``MM_VET_PROMPT``)."""
MATHVISTA_DEMO_PROMPT = """
Please read the following example. Then extract the answer from the model response and type it at the end of the prompt.

Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end.
Question: Which number is missing?

Model response: The number missing in the sequence is 14.

Extracted answer: 14

Hint: Please answer the question requiring a floating-point number with one decimal place and provide the final value, e.g., 1.2, 1.3, 1.4, at the end.
Question: What is the fraction of females facing the camera?

Model response: The fraction of females facing the camera is 0.6, which means that six out of ten females in the group are facing the camera.

Extracted answer: 0.6

Hint: Please answer the question requiring a floating-point number with two decimal places and provide the final value, e.g., 1.23, 1.34, 1.45, at the end.
Question: How much money does Luca need to buy a sour apple candy and a butterscotch candy? (Unit: $)

Model response: Luca needs $1.45 to buy a sour apple candy and a butterscotch candy.

Extracted answer: 1.45

Hint: Please answer the question requiring a Python list as an answer and provide the final list, e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.
Question: Between which two years does the line  graph saw its maximum peak?

Model response: The line graph saw its maximum peak between 2007 and 2008.

Extracted answer: [2007, 2008]

Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.
Question: What fraction of the shape is blue?\nChoices:\n(A) 3/11\n(B) 8/11\n(C) 6/11\n(D) 3/5

Model response: The correct answer is (B) 8/11.

Extracted answer: B
"""
"""MathVista's answer-extraction examples (``mathvista/mathvista_evals.py`` ``DEMO_PROMPT``)."""
MATHVERSE_JUDGE_TEMPLATE = """You are a strict evaluator assessing answer correctness. You must output {positive} for fully correct answers and {negative} for any other case.

# Input
Question:
```
{question}
```
Ground Truth Answer:
```
{answer}
```
Model Prediction:
```
{prediction}
```

# Evaluation Rules
- The model prediction may contain the reasoning process, you should spot the final answer from it.
- For multiple-choice questions: Score {positive} if the predicted answer matches the ground truth answer, it can be directly in option letters or the content of the options.
- For open-ended questions:
  * Score {positive} if the prediction matches the answer semantically, it can be in different format.
  * Score {negative} for partially correct answers or answers with extra incorrect information, even if the reasoning process is correct.
- Ignore minor differences in formatting, capitalization, or spacing since the model may explain in a different way.
- Treat numerical answers as correct if they match within reasonable precision
- For questions requiring units, both value and unit must be correct

# Strict Output format
{positive} or {negative}"""
"""lmms-eval's binary judge prompt (``llm_judge/prompt.py`` ``BINARY_JUDGE_PROMPT``), which MathVerse's
``score_answer`` fills through ``evaluate_binary(..., output_format="0/1")``: positive ``1``, negative ``0``."""
MMVET_PRE_PROMPT = ("First please perform reasoning, and think step by step to provide best answer to the "
                    "following question: \n\n")
"""``mmvet.yaml`` ``lmms_eval_specific_kwargs.default.pre_prompt`` (its post_prompt is empty)."""
JUDGED = ("mm-vet", "mathvista", "mathverse")
"""Benchmarks whose lmms-eval score needs a model judge (a grade, or an answer extraction)."""
MATHVISTA_HINTS = {
    ("multi_choice", "text", None): "Answer with the option's letter from the given choices directly.",
    ("free_form", "integer", None): "Answer the question using a single integer number.",
    ("free_form", "float", 1): "Answer the question using a single floating-point number with one decimal place.",
    ("free_form", "float", 2): "Answer the question using a single floating-point number with two decimal places.",
    ("free_form", "list", None): "Answer the question using a Python list.",
}
"""``create_one_query``'s ``format-prompt`` hints by (question_type, answer_type, precision for floats)."""
MATHVISTA_COLUMNS = ("question_type", "answer_type", "query")
MATHVERSE_COLUMNS = ("query_wo", "question_for_eval")


def judge_needed(benchmark: str, judge: str | None) -> str | None:
    """Why ``benchmark`` cannot be scored under ``judge`` (None when it can): the message names ``--judge``."""
    if benchmark in JUDGED and (judge is None or judge == "rule"):
        return (f"protocol lmms-eval: {benchmark} is graded by a model judge in lmms-eval (a GPT grade or answer "
                f"extraction), not by a rule; pass --judge local or --judge endpoint")
    return None


# --- MM-Vet ---------------------------------------------------------------------------------------------------


def mmvet_text(question: str) -> str:
    return f"{MMVET_PRE_PROMPT}{question}"


def mmvet_judge_prompt(question: str, answer: str, response: str) -> str:
    spaced = answer.replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
    return f"{MMVET_JUDGE_PROMPT}\n{question} | {spaced} | {response} |"


def mmvet_score(reply: str | None) -> float | None:
    """The score in a judge reply: the first space-separated word of the stripped reply as a float in 0..1;
    None when lmms-eval would not accept the reply (empty, not a number, out of range)."""
    content = (reply or "").strip()
    if not content:
        return None
    try:
        score = float(content.split(" ")[0].strip())
    except ValueError:
        return None
    return score if 0.0 <= score <= 1.0 else None


def mmvet_overall(scores: Sequence[float]) -> float:
    """MM-Vet's task number: the mean score x 100."""
    return sum(scores) / len(scores) * 100


# --- MathVista -------------------------------------------------------------------------------------------------


def mathvista_problem(meta: dict[str, Any], question: str, options: list[str], answer: str) -> dict[str, Any]:
    """The row's fields lmms-eval reads (``mathvista_doc_to_text`` / ``mathvista_process_results``)."""
    missing = [c for c in MATHVISTA_COLUMNS if meta.get(c) in (None, "")]
    if missing:
        raise ProtocolError(f"protocol lmms-eval: mathvista needs the row's columns {', '.join(missing)} (as in "
                            f"AI4Math/MathVista); the item has none")
    # precision as the row holds it, 0 when absent (a float 1.0 makes round() fail there, so it does here)
    return {"question_type": meta["question_type"], "answer_type": meta["answer_type"], "question": question,
            "unit": meta.get("unit") or "", "choices": list(options) or list(meta.get("choices") or []),
            "query": meta["query"], "answer": answer,
            "precision": meta["precision"] if "precision" in meta else 0}


def mathvista_text(problem: dict[str, Any]) -> str:
    """``create_one_query`` with the ``format-prompt`` shot type, no examples, no caption, no OCR."""
    qtype, atype = problem["question_type"], problem["answer_type"]
    key = (qtype, atype, problem["precision"] if atype == "float" else None)
    if qtype == "multi_choice":
        key = ("multi_choice", "text", None) if atype == "text" else key
    else:
        key = ("free_form", *key[1:])
    hint = MATHVISTA_HINTS.get(key)
    if hint is None:  # lmms-eval itself fails on such a row (no hint is defined for it)
        raise ProtocolError(f"protocol lmms-eval: mathvista has no prompt for question_type={qtype}, "
                            f"answer_type={atype}, precision={problem['precision']}")
    question = problem["question"] + (f" (Unit: {problem['unit']})" if problem["unit"] else "")
    choices = "\n".join(f"{chr(ord('A') + i)}. {c}" for i, c in enumerate(problem["choices"] or []))
    return "\n".join(e for e in (question, choices, hint) if e).strip()


def mathvista_quick(response: str, problem: dict[str, Any]) -> str | None:
    """``extract_answer`` before it asks the judge: the extraction, or None when the judge must extract."""
    if not response:
        return ""
    if problem["question_type"] == "multi_choice" and response in (problem["choices"] or []):
        return response
    if problem["answer_type"] == "integer":
        try:
            return str(int(response))
        except ValueError:
            pass
    if problem["answer_type"] == "float":
        try:
            return str(float(response))
        except ValueError:
            pass
    return None


def mathvista_extract_prompt(query: str, response: str) -> str:
    """``create_test_prompt(DEMO_PROMPT, query, response)``."""
    return f"{MATHVISTA_DEMO_PROMPT.strip()}\n\n{query}\n\n{response}\n\nExtracted answer: "


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute: cost 1), as ``Levenshtein.distance``."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def mathvista_normalize(extraction: Any, problem: dict[str, Any]) -> str | None:
    """``normalize_extracted_answer``: the extraction in the answer's form (None when it does not convert)."""
    choices = problem["choices"] or []
    if problem["question_type"] == "multi_choice":
        text = extraction.strip() if isinstance(extraction, str) else str(extraction)
        letters = re.findall(r"\(([a-zA-Z])\)", text)
        if letters:
            text = letters[0].upper()
        options = [chr(ord("A") + i) for i in range(len(choices))]
        if text in options:
            return choices[options.index(text)]
        distances = [edit_distance(text, c) for c in choices]
        return choices[distances.index(min(distances))]
    converters = {"integer": lambda x: str(int(float(x))),
                  "float": lambda x: str(round(float(x), problem["precision"])), "list": str}
    convert = converters.get(problem["answer_type"])
    if convert is None:
        return extraction
    try:
        return convert(extraction)
    except Exception:  # the reference maps every failed conversion to None
        return None


def mathvista_equal(prediction: Any, answer: Any) -> bool:
    """``safe_equal``: equality of the two as stripped strings."""
    return str(prediction).strip() == str(answer).strip()


# --- MathVerse ------------------------------------------------------------------------------------------------


def mathverse_fields(meta: dict[str, Any]) -> tuple[str, str]:
    """The row's ``query_wo`` (the prompt of ``format-prompt`` / ``query_wo``) and ``question_for_eval``."""
    missing = [c for c in MATHVERSE_COLUMNS if meta.get(c) in (None, "")]
    if missing:
        raise ProtocolError(f"protocol lmms-eval: mathverse needs the row's columns {', '.join(missing)} (as in "
                            f"AI4Math/MathVerse); the item has none")
    return str(meta["query_wo"]), str(meta["question_for_eval"])


def mathverse_text(query_wo: str) -> str:
    """``create_one_query`` with ``format-prompt`` and ``query_wo``, no shots: the row's query, stripped."""
    return query_wo.strip()


def mathverse_judge_prompt(question_for_eval: str, answer: str, response: str) -> str:
    """``build_binary_prompt`` with ``output_format="0/1"``; the prediction is the whole stripped response."""
    return MATHVERSE_JUDGE_TEMPLATE.format(question=question_for_eval, answer=answer, prediction=response.strip(),
                                           positive="1", negative="0")


def mathverse_correct(reply: str | None) -> bool:
    """``parse_binary_response`` for ``0/1``: right when the stripped, lower-cased reply contains ``1`` anywhere
    (its other patterns, ``[1]``, ``score: 1``, ``answer: 1``, all contain it), so ``10`` or ``0.1`` count too."""
    return "1" in (reply or "").strip().lower()
