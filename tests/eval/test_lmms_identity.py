"""Identity with lmms-eval: the same crafted responses scored by lmms-eval's own task functions (lmms-eval 0.7.3,
installed by ``bash .ci/lmms_eval_env.sh``) and by visplay's ``lmms-eval`` protocol give the same verdict for every
item, and the same prompts and image order. Skipped where lmms_eval is not importable (the main environment).

Run: ``.lmms-eval-venv/bin/python -m pytest -m lmms_eval tests/eval/test_lmms_identity.py``.
lmms-eval's pipeline is mirrored as its evaluator runs it: ``random.seed(0)`` (its default ``--seed``), then per
response ``strip_reasoning_tags`` with the CLI's default tags before ``process_results``. HallusionBench's default
metric asks GPT-4; the rule variant it ships (``hb_aggregation_result_intern``) is what is compared.
MM-Vet and MathVista are graded by a GPT judge there: the judge prompt lmms-eval builds is compared with ours
(string equality), and the reading of crafted judge replies (lmms-eval's own code behind a stand-in judge server)
with ours, down to the verdict; the GPT verdict itself cannot be identical.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

lmms_eval = pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (bash .ci/lmms_eval_env.sh)")

import yaml  # noqa: E402

os.environ.setdefault("OPENAI_API_KEY", "unused")  # lmms-eval's judged tasks build their API client at import
from lmms_eval.api.reasoning import strip_reasoning_tags  # noqa: E402
from lmms_eval.tasks.hallusion_bench import evaluate_hb  # noqa: E402
from lmms_eval.tasks.mathverse import utils as mathverse  # noqa: E402
from lmms_eval.tasks.mathvista import utils as mathvista  # noqa: E402
from lmms_eval.tasks.mmmu import utils as mmmu  # noqa: E402
from lmms_eval.tasks.mmstar import utils as mmstar  # noqa: E402
from lmms_eval.tasks.mmvet import utils as mmvet  # noqa: E402
from lmms_eval.tasks.realworldqa import utils as realworldqa  # noqa: E402
from support.eval import make_image  # noqa: E402
from visplay_eval.protocols import lmms_eval_judged  # noqa: E402
from visplay_eval.protocols.lmms_eval import LmmsEvalProtocol  # noqa: E402

from visplay.eval.benchmarks import BenchmarkItem  # noqa: E402

pytestmark = pytest.mark.lmms_eval
N = 240  # crafted responses per benchmark (the issue asks for at least 200)
TAGS = [["<think>", "</think>"], ["<analysis>", "</analysis>"]]  # lmms-eval's default --reasoning_tags
TASKS = Path(lmms_eval.__file__).parent / "tasks"


def default_kwargs(yaml_file: str) -> dict:
    """A task's ``lmms_eval_specific_kwargs.default`` read from the installed task YAML (its !function lines
    dropped, as lmms-eval's own utils do)."""
    text = "".join(line for line in (TASKS / yaml_file).read_text().splitlines(True) if "!function" not in line)
    return yaml.safe_load(text)["lmms_eval_specific_kwargs"]["default"]


# --- crafted responses ---------------------------------------------------------------------------------------

LETTER_FORMS = ["{L}", "({L})", "{L}.", "{L}:", "{L})", "The answer is {L}.", "answer: {L}", "I choose {L}",
                "Option {L}", "\\boxed{{{L}}}", "**{L}**", "{L}. {T}", "{T}", "It is {T}, I think.",
                "The correct answer is ({L}) {T}", "my answer is {L}", "答案是{L}", "{l}", "Answer: {L}, because {T}",
                "<think>Maybe {M}? No.</think>{L}", "<think>unclosed {M}", "reasoning {M}</think> {L}",
                "<analysis>{M} looks right</analysis>\nFinal: {L}", "Between {M} and {L}, it is {L}."]
FILLERS = ["", "Let me look at the image. ", "Looking at A and B first. ", "The picture shows a DOG. ",
           "Hmm, hard to say; ", "Considering every option carefully, and the colours too, ", "I see it! "]
ENDINGS = ["", ".", "!", " ", "\n", " Thus this is it.", " (not D)"]
ODD = ["", "   ", "none of these", "I cannot tell.", "A B C D", "Both (A) and (B)", "XYZ", "a", "CAD", "DATA!",
       "The answer is ", "?", "E", "ABCD."]


def choice_response(rng: random.Random, letters: list[str], options: list[str]) -> str:
    if rng.random() < 0.12:
        return rng.choice(ODD)
    i = rng.randrange(len(letters))
    form = rng.choice(LETTER_FORMS)
    core = form.format(L=letters[i], l=letters[i].lower(), T=options[i], M=rng.choice(letters))
    return rng.choice(FILLERS) + core + rng.choice(ENDINGS)


OPEN_FORMS = ["{a}", "The answer is {a}.", "so x = {a}", "Therefore, the result is {a}", "{a} units",
              "It could be {a} or {b}.", "final answer: {a}\nDone", "{b}", "= {a}", "Thus {b}. So {a}",
              "<think>{b}</think>{a}", "The value is approximately {a}!", "{a}.", "I think it is {b}, not {a}"]


def number_text(rng: random.Random) -> str:
    return rng.choice(["4.5", "4.50", "1,000", "1000", "3e2", "-2", "0.333", "12", "7", "0", "2.005", ".5"])


def open_response(rng: random.Random, answer: str) -> str:
    if rng.random() < 0.1:
        return rng.choice(ODD)
    a = answer if rng.random() < 0.6 else rng.choice([number_text(rng), answer.upper(), "blue", "x"])
    return rng.choice(FILLERS) + rng.choice(OPEN_FORMS).format(a=a, b=number_text(rng)) + rng.choice(ENDINGS)


# --- verdicts per benchmark ----------------------------------------------------------------------------------

def lmms_response(resp: str) -> str:
    return strip_reasoning_tags(resp, TAGS)


def ours(protocol: LmmsEvalProtocol, benchmark: str, answer: str, response: str, **extra) -> bool:
    item = {"benchmark": benchmark, "question": extra.pop("question", "q"), "answer": answer,
            "response": response, "options": extra.pop("options", []), "meta": extra.pop("meta", {})}
    return protocol.score(item)["correct"]


MMMU_OPTIONS = [["circle", "square", "triangle", "star"], ["red", "green", "blue", "yellow", "black"],
                ["1", "2", "3", "4"], ["<image 2>", "<image 3>", "a tree", "a DOG"]]


def mmmu_docs(rng: random.Random) -> list[dict]:
    docs = []
    for i in range(N):
        if i % 3 == 2:
            answer = rng.choice(["4.5", "1000", "red", "x", "12", "0.33"])
            docs.append({"id": f"validation_Math_{i}", "question": f"<image 1> Q{i}: what is it?", "options": "[]",
                         "question_type": "open", "answer": answer})
        else:
            options = MMMU_OPTIONS[i % len(MMMU_OPTIONS)]
            docs.append({"id": f"validation_Art_{i}", "question": f"Q{i}: which one? <image 1>",
                         "options": repr(options), "question_type": "multiple-choice",
                         "answer": "ABCDE"[rng.randrange(len(options))]})
    return docs


def test_mmmu_verdicts_identical():
    rng = random.Random(23)
    docs = mmmu_docs(rng)
    responses = []
    for doc in docs:
        options = eval(doc["options"])  # noqa: S307 (our own literal)
        letters = [chr(65 + k) for k in range(len(options))]
        responses.append(choice_response(rng, letters, options) if options else open_response(rng, doc["answer"]))
    random.seed(0)  # lmms-eval's evaluator: random.seed(args.seed[0]), default 0
    theirs = []
    for doc, resp in zip(docs, responses):
        sample = mmmu.mmmu_process_results(doc, [lmms_response(resp)])["mmmu_acc"]
        judged, _ = mmmu.evaluate_mmmu([sample])
        theirs.append(judged[doc["id"]] == "Correct")
    protocol = LmmsEvalProtocol()
    mine = [ours(protocol, "mmmu", doc["answer"], resp, options=eval(doc["options"]),  # noqa: S307
                 meta={"question_type": doc["question_type"]}) for doc, resp in zip(docs, responses)]
    assert len(docs) >= 200
    assert [i for i, (a, b) in enumerate(zip(theirs, mine)) if a != b] == []
    assert 0 < sum(mine) < len(mine)  # both outcomes occur


def test_mmstar_verdicts_identical():
    rng = random.Random(24)
    options = ["dog", "cat", "bird", "fish"]
    docs = [{"question": f"What is shown {i}?\nOptions: A: dog, B: cat, C: bird, D: fish", "answer": "ABCD"[i % 4],
             "category": "math", "l2_category": "geometry", "index": i} for i in range(N)]
    responses = [choice_response(rng, list("ABCD"), options) for _ in docs]
    theirs = [mmstar.mmstar_process_results(d, [lmms_response(r)])["average"]["score"] == 1.0
              for d, r in zip(docs, responses)]
    protocol = LmmsEvalProtocol()
    mine = [ours(protocol, "mmstar", d["answer"], r) for d, r in zip(docs, responses)]
    assert [i for i, (a, b) in enumerate(zip(theirs, mine)) if a != b] == []
    assert 0 < sum(mine) < len(mine)


def test_realworldqa_verdicts_identical():
    rng = random.Random(25)
    answers = ["A", "B", "C", "D", "Downhill", "3", "0", "left"]
    docs = [{"question": f"Q{i}? Please answer directly with only the letter of the correct option and nothing "
                         f"else.", "answer": answers[i % len(answers)]} for i in range(N)]
    responses = [choice_response(rng, list("ABCD"), ["left", "right", "up", "down"]) if d["answer"] in "ABCD"
                 else open_response(rng, d["answer"]) for d in docs]
    theirs = [realworldqa.realworldqa_process_results(d, [lmms_response(r)])["exact_match"] == 1.0
              for d, r in zip(docs, responses)]
    protocol = LmmsEvalProtocol()
    mine = [ours(protocol, "realworldqa", d["answer"], r) for d, r in zip(docs, responses)]
    assert [i for i, (a, b) in enumerate(zip(theirs, mine)) if a != b] == []
    assert 0 < sum(mine) < len(mine)


HB_FORMS = ["Yes", "No", "yes, it is.", "No, there is no cat.", "I don't know", "The eyes are closed", "NO",
            "<think>yes?</think>No", "Yes</think>", "Definitely not.", "", "YES!", "no... wait, yes", "nope"]


def test_hallusionbench_verdicts_identical():
    rng = random.Random(26)
    docs = [{"question": f"Is there a cat {i}?", "gt_answer": "10"[i % 2], "category": "VD", "subcategory": "s",
             "set_id": i // 4, "figure_id": i % 3, "question_id": i} for i in range(N)]
    responses = [rng.choice(FILLERS) + rng.choice(HB_FORMS) for _ in docs]
    samples = [evaluate_hb.hb_process_results(d, [lmms_response(r)])["aAcc"] for d, r in zip(docs, responses)]
    evaluate_hb.hb_aggregation_result_intern(samples, "aAcc")  # writes each sample's "answer"
    theirs = [s["answer"] == s["gt_answer"] for s in samples]
    protocol = LmmsEvalProtocol()
    mine = [ours(protocol, "hallusionbench", "yes" if d["gt_answer"] == "1" else "no", r,
                 meta={"raw_answer": d["gt_answer"]}) for d, r in zip(docs, responses)]
    assert [i for i, (a, b) in enumerate(zip(theirs, mine)) if a != b] == []
    assert 0 < sum(mine) < len(mine)


# --- prompts and image order ---------------------------------------------------------------------------------

def _item(benchmark: str, question: str, options: list[str], images: list, numbers: list[int], meta: dict):
    return BenchmarkItem(benchmark=benchmark, index=0, item_id="i", question=question, prompt=question, answer="A",
                         kind="choice", options=options, image=images[0] if images else None, source="t#0",
                         meta={**meta, "image_numbers": numbers}, images=images)


@pytest.mark.parametrize("question, options, numbers", [
    ("<image 1> Which shape?", ["circle", "square"], [1]),
    ("Compare <image 1> with <image 2> and <image 3>: which is larger?", ["left", "middle", "right"], [1, 2, 3]),
    ("Look at <image 3> then <image 1>.", ["<image 2>", "<image 4>", "none"], [1, 2, 3, 4]),
    ("Seven: <image 1><image 2><image 3><image 4><image 5><image 6><image 7>", ["a", "b"], [1, 2, 3, 4, 5, 6, 7]),
    ("<image 1> How many sides?", [], [1]),
])
def test_mmmu_messages_identical(question, options, numbers):
    images = [make_image(f"mmmu-{n}") for n in numbers]
    qtype = "multiple-choice" if options else "open"
    doc = {"id": "validation_Art_1", "question": question, "options": repr(options), "question_type": qtype,
           "answer": "A", **{f"image_{n}": img for n, img in zip(numbers, images)}}
    messages = mmmu.mmmu_doc_to_messages(doc, default_kwargs("mmmu/mmmu_val.yaml"))
    theirs = [c["text"] if c["type"] == "text" else c["url"].tobytes() for c in messages[0]["content"]]
    shown = LmmsEvalProtocol().present(_item("mmmu", question, options, images, numbers,
                                             {"question_type": qtype}))
    mine = [p if isinstance(p, str) else images[p].convert("RGB").tobytes() for p in shown.parts]
    assert mine == theirs
    assert len(shown.images) == len({n for n in numbers if f"<image {n}>" in question + repr(options)})


def test_single_image_prompts_identical():
    image = make_image("single")
    question = "  Which animal? Please answer yes or no.\nA. dog\nB. cat  "
    mm_kwargs = default_kwargs("mmstar/_default_template_yaml")
    protocol = LmmsEvalProtocol()
    for benchmark, theirs in (
        ("mmstar", mmstar.mmstar_doc_to_text({"question": question}, mm_kwargs)),
        ("realworldqa", realworldqa.realworldqa_doc_to_text({"question": question},
                                                            default_kwargs("realworldqa/realworldqa.yaml"))),
        ("hallusionbench", evaluate_hb.hb_doc_to_text(
            {"question": question}, default_kwargs("hallusion_bench/hallusion_bench_image.yaml"))),
    ):
        shown = protocol.present(_item(benchmark, question, [], [image], [1], {}))
        assert shown.parts == (0, theirs), benchmark


# --- judged benchmarks: judge prompts and reply parsing --------------------------------------------------------

class StubServer:
    """lmms-eval's judge server, answering each prompt's first request with a crafted reply and any later one
    (lmms-eval asks again after a reply it cannot use) with nothing, so its own loop ends as it does on a judge
    that keeps failing. Every prompt is recorded."""

    def __init__(self, replies: list[str]):
        self.replies, self.prompts = replies, []

    def evaluate(self, request):
        prompt = request.messages[0]["content"]
        first = not self.prompts or self.prompts[-1] != prompt
        self.prompts.append(prompt)
        content = self.replies[len({*self.prompts}) - 1] if first else ""
        return SimpleNamespace(content=content, success=True, model_used="stub", error=None)


MMVET_REPLIES = ["0.5", "1.0", "0.0", "1", "0", " 0.7\n", "0.3 because half is right", "1.0.", "0.5,", "1.5", "-0.1",
                 "nan", "abc", "", "   ", "Correctness: 0.6", "1e-1", "0.9 | extra", "0.25", ".8", "0.4\n0.5",
                 "\t0.6 ok", "inf", "0.10"]
MMVET_ANSWERS = ["-1<AND>-5", "Iceland<OR>Greenland", "yes", "3.5 km", "a<AND>b<OR>c", "The sign says STOP."]


def test_mmvet_judge_prompt_and_parsing_identical(monkeypatch):
    rng = random.Random(27)
    monkeypatch.setattr(mmvet.time, "sleep", lambda s: None)
    docs, responses, replies = [], [], []
    for i in range(N):
        answer = MMVET_ANSWERS[i % len(MMVET_ANSWERS)]
        docs.append({"question_id": f"v1_{i}", "question": f"What is shown in {i}?", "answer": answer,
                     "capability": "rec,ocr"})
        responses.append(rng.choice(FILLERS) + open_response(rng, answer.split("<")[0]) + f" #{i}")
        replies.append(rng.choice(MMVET_REPLIES))
    server = StubServer(replies)
    monkeypatch.setattr(mmvet, "server", server)
    theirs = [mmvet.mmvet_process_results(d, [lmms_response(r)])["gpt_eval_score"] for d, r in zip(docs, responses)]
    protocol = LmmsEvalProtocol()
    items = [{"benchmark": "mm-vet", "question": d["question"], "raw_question": d["question"], "answer": d["answer"],
              "response": r, "options": [], "meta": {"raw_answer": d["answer"]}} for d, r in zip(docs, responses)]
    prompts = [protocol.judge_request(item) for item in items]
    assert [p[1] for p in prompts] == list(dict.fromkeys(server.prompts))  # lmms-eval asked these, in this order
    assert all(p[0] is None for p in prompts)  # a user message only, as lmms-eval sends
    mine = [protocol.parse_judge_reply(item, reply) for item, reply in zip(items, replies)]
    assert [v["score"] for v in mine] == [t["score"] for t in theirs]
    assert {v["score"] for v in mine} >= {0.0, 0.5, 1.0} and any(v["reason"] == "unparsed_verdict" for v in mine)
    assert mmvet.mmvet_aggregate_results(theirs) == lmms_eval_judged.mmvet_overall([v["score"] for v in mine])


def test_mmvet_prompt_identical():
    image = make_image("mmvet")
    question = "What is the total price?  "
    theirs = mmvet.doc_to_text({"question": question}, default_kwargs("mmvet/mmvet.yaml"))
    item = _item("mm-vet", question, [], [image], [1], {})
    assert LmmsEvalProtocol().present(item).parts == (0, theirs)


def mathvista_docs(rng: random.Random) -> list[dict]:
    kinds = [("multi_choice", "text", 0, ["3/11", "8/11", "6/11", "3/5"]), ("free_form", "integer", 0, None),
             ("free_form", "float", 1, None), ("free_form", "float", 2, None), ("free_form", "list", 0, None),
             ("free_form", "float", 1.0, None), ("multi_choice", "text", 0, ["Yes", "No"])]
    answers = {"integer": ["14", "0", "-3"], "float": ["0.6", "1.45", "2.0"], "list": ["[2007, 2008]"]}
    docs = []
    for i in range(N):
        qtype, atype, precision, choices = kinds[i % len(kinds)]
        answer = rng.choice(choices) if choices else rng.choice(answers[atype])
        docs.append({"pid": str(i), "question": f"Question {i}: what is it?", "query": f"Hint: ...\nQuestion: {i}?",
                     "question_type": qtype, "answer_type": atype, "precision": precision, "choices": choices,
                     "unit": rng.choice(["", "cm"]), "answer": answer, "metadata": {"split": "testmini"}})
    return docs


def mathvista_response(rng: random.Random, doc: dict) -> str:
    choices = doc["choices"] or []
    bare = [doc["answer"], *(choices or ["12", "12.0", " 7 ", "1.456", "3e2", "x"])]
    return rng.choice([rng.choice(bare), open_response(rng, doc["answer"]), "", "The answer is (B).",
                       f"<think>{doc['answer']}</think>{rng.choice(bare)}"])


MATHVISTA_REPLIES = ["B", "(A) 3/11", "8/11", "14", "14.0", " 1.45 ", "0.6", "[2007, 2008]", "", "none", "(c)",
                     "1.4499", "2", "Extracted answer: 14", "inf", "nan", "No", "yes", "E", "-3"]


def test_mathvista_extraction_prompt_and_verdicts_identical(monkeypatch):
    rng = random.Random(28)
    docs = mathvista_docs(rng)
    responses = [mathvista_response(rng, d) for d in docs]
    replies = [rng.choice(MATHVISTA_REPLIES) for _ in docs]
    protocol = LmmsEvalProtocol()
    asked, theirs, mine = [], [], []
    for doc, response, reply in zip(docs, responses, replies):
        server = StubServer([reply])
        monkeypatch.setattr(mathvista.mathvista_evaluator, "server", server)
        result = mathvista.mathvista_process_results(doc, [lmms_response(response)])["llm_as_judge_eval"]
        theirs.append((result["true_false"], None if result["prediction"] is None else str(result["prediction"])))
        meta = {k: doc[k] for k in ("question_type", "answer_type", "precision", "unit", "query")}
        item = {"benchmark": "mathvista", "question": doc["question"], "raw_question": doc["question"],
                "answer": doc["answer"], "response": response, "options": doc["choices"] or [],
                "meta": {**meta, "raw_answer": doc["answer"]}}
        request = protocol.judge_request(item)
        assert (request[1] if request else None) == (server.prompts[0] if server.prompts else None)
        asked.append(request is not None)
        verdict = protocol.parse_judge_reply(item, reply) if request else protocol.score(item)
        mine.append((verdict["correct"], verdict["extracted"]))
    assert [i for i, (a, b) in enumerate(zip(theirs, mine)) if a != b] == []
    assert 0 < sum(asked) < len(asked) and 0 < sum(ok for ok, _ in mine) < len(mine)


@pytest.mark.parametrize("doc", [
    {"question": "What fraction is blue?", "question_type": "multi_choice", "answer_type": "text", "precision": 0,
     "unit": "", "choices": ["3/11", "8/11"]},
    {"question": "How long is it?", "question_type": "free_form", "answer_type": "integer", "unit": "cm",
     "choices": None},
    {"question": "Ratio?", "question_type": "free_form", "answer_type": "float", "precision": 2, "choices": None},
    {"question": "Ratio?", "question_type": "free_form", "answer_type": "float", "precision": 1.0, "choices": None},
    {"question": "Which years?", "question_type": "free_form", "answer_type": "list", "choices": None},
])
def test_mathvista_prompt_identical(doc):
    theirs = mathvista.mathvista_doc_to_text(doc, default_kwargs("mathvista/mathvista_testmini_format.yaml"))
    meta = {k: doc[k] for k in ("question_type", "answer_type", "precision", "unit") if k in doc}
    item = _item("mathvista", doc["question"], doc["choices"] or [], [make_image("mv")], [1], {**meta, "query": "q"})
    assert LmmsEvalProtocol().present(item).parts == (0, theirs)


MATHVERSE_REPLIES = ["1", "0", " 1\n", "[1]", "Score: 1", "answer: 0", "10", "0.1", "", "yes", "No", "The answer is 1",
                     "0\n(the unit is missing)", "I", "one"]


def test_mathverse_judge_prompt_and_verdicts_identical(monkeypatch):
    rng = random.Random(29)
    protocol = LmmsEvalProtocol()
    answers = ["A", "B", "5", "\\frac{1}{2}", "30°", "y=2x+1"]
    theirs, mine = [], []
    for i in range(N):
        answer = answers[i % len(answers)]
        doc = {"sample_index": str(i), "problem_index": str(i // 5), "problem_version": "Text Dominant",
               "question": f"Q{i}", "answer": answer, "question_type": "multi-choice" if answer in "AB" else "free-form",
               "metadata": {"split": "testmini"}, "query_wo": f"  Please answer. Question {i}: ...\n",
               "query_cot": "cot", "question_for_eval": f"As shown in the figure, find x ({i})."}
        response = rng.choice(FILLERS) + open_response(rng, answer) + rng.choice(ENDINGS)
        reply = rng.choice(MATHVERSE_REPLIES)
        server = StubServer([reply])
        monkeypatch.setattr(mathverse.mathverse_evaluator.server, "evaluate", server.evaluate)
        result = mathverse.mathverse_process_results(doc, [lmms_response(response)])
        theirs.append(result["gpt_eval_score"] == 1)
        meta = {k: doc[k] for k in ("query_wo", "question_for_eval")}
        item = {"benchmark": "mathverse", "question": doc["question"], "answer": answer, "response": response,
                "options": [], "meta": {**meta, "raw_answer": answer}}
        request = protocol.judge_request(item)
        assert request == (None, server.prompts[0])
        mine.append(protocol.parse_judge_reply(item, reply)["correct"])
        if i == 0:
            shown = protocol.present(_item("mathverse", doc["question"], [], [make_image("mv")], [1], meta))
            assert shown.parts == (0, mathverse.mathverse_doc_to_text(doc, default_kwargs(
                "mathverse/mathverse_testmini.yaml")))
    assert [i for i, (a, b) in enumerate(zip(theirs, mine)) if a != b] == []
    assert 0 < sum(mine) < len(mine)


# --- MathVision: prompt and rule metric (mathvision_standard_eval) ------------------------------------------------

MV_OPTIONS = [["3", "4", "\\frac{1}{2}", "6 cm", "$\\pi$"], ["A", "B", "C", "D", "E"], ["left", "right", "(1,2)"]]
MV_ANSWERS = ["12", "3.5", "\\frac{3}{4}", "\\frac{1}{3}", "2\\sqrt{3}", "60", "(1,2)", "0.5", "1/2", "-3",
              "45^\\circ", "x+1", "7", "1000", "[2,5]", "\\infty"]
MV_ALTERNATIVES = ["0.75", "3/4", "12.04", "0.33", "0.3", "\\dfrac{3}{4}", "12.0", "12.001", "3.50", "\\frac12",
                   "2\\sqrt3", "60^\\circ", "-3.0", "(1, 2)", "1,000", "x + 1", "7 cm", "7\\text{ cm}", "\\sqrt{12}",
                   "+\\infty", "∞", "$7$"]
MV_FORMS = ["\\boxed{{{a}}}", "The answer is {a}.", "the final answer is {a}\nChecking again.", "So it is {a}",
            "{L}\nbecause {a}", "({L})\n", "Hence the choice is ({L}).", "Thus the area is {a}. Done", "$x = {a}$",
            "{a} units", "\\boxed{{\\text{{{a}}}}}", "\\boxed{{{b}}} no wait, \\boxed{{{a}}}", "{a}",
            "The answer should be {a}. Because the figure is symmetric, ...", "<think>\\boxed{{{b}}}</think>{a}",
            "We get x \\approx {a}", "{a} km", "Answer: {a}", "The correct answer is {L}. {T}", "({L}) {L}\nok",
            "It is {T}.", "{a}\\%", "So {b} = {a}", "\\boxed{{{L}}}", "\\boxed{{({l})}}", "I pick option {L}."]
MV_ODD = ["", "   ", "I cannot tell.", "The answer is", "\\boxed{}", "no answer", "A B C", "ABCDE",
          "Let me think step by step. " * 12 + "The final answer is \\boxed{4}", "=", "."]


def mathvision_docs(rng: random.Random) -> list[dict]:
    docs = []
    for i in range(N):
        options = MV_OPTIONS[i % len(MV_OPTIONS)] if i % 2 else []
        answer = "ABCDE"[rng.randrange(len(options))] if options else rng.choice(MV_ANSWERS)
        docs.append({"question": f"<image1> Q{i}: what is it?", "options": options, "answer": answer})
    return docs


def mathvision_response(rng: random.Random, doc: dict) -> str:
    if rng.random() < 0.1:
        return rng.choice(MV_ODD)
    options, letter = doc["options"], rng.choice("ABCDE"[:len(doc["options"])] or "ABCDE")
    if options and rng.random() < 0.5:
        letter = doc["answer"]
    text = options["ABCDE".index(letter)] if options else rng.choice([doc["answer"], *MV_ANSWERS[:3]])
    a = rng.choice([doc["answer"], doc["answer"], text, rng.choice(MV_ALTERNATIVES), rng.choice(MV_ANSWERS)])
    core = rng.choice(MV_FORMS).format(a=a, b=rng.choice(MV_ANSWERS), L=letter, l=letter.lower(), T=text)
    return rng.choice(FILLERS) + core + rng.choice(["", ".", " ", "\n"])


def test_mathvision_verdicts_identical():
    from lmms_eval.tasks.mathvision import utils as mathvision

    rng, protocol = random.Random(23), LmmsEvalProtocol()
    docs = mathvision_docs(rng)
    responses = [mathvision_response(rng, doc) for doc in docs]
    theirs = [mathvision.mathvision_process_results(doc, [lmms_response(r)])["mathvision_standard_eval"]["scores"][0]
              for doc, r in zip(docs, responses)]
    mine = [ours(protocol, "math-vision", doc["answer"], r, options=doc["options"]) for doc, r in zip(docs, responses)]
    assert [i for i, (a, b) in enumerate(zip(theirs, mine)) if a != b] == []
    assert 0.15 < sum(theirs) / N < 0.85  # both verdicts are exercised
    assert len({*responses}) > 200


def test_mathvision_equivalences_identical():
    """Every free-form answer against every alternative spelling, boxed: is_equal's tuple and latex2sympy steps."""
    from lmms_eval.tasks.mathvision import utils as mathvision

    protocol, pairs = LmmsEvalProtocol(), [(a, b) for a in MV_ANSWERS for b in MV_ALTERNATIVES + MV_ANSWERS]
    docs = [{"question": "q", "options": [], "answer": a} for a, _ in pairs]
    theirs = [mathvision.mathvision_process_results(d, [f"So \\boxed{{{b}}}"])["mathvision_standard_eval"]["scores"][0]
              for d, (_, b) in zip(docs, pairs)]
    mine = [ours(protocol, "math-vision", a, f"So \\boxed{{{b}}}") for a, b in pairs]
    assert [pairs[i] for i, (x, y) in enumerate(zip(theirs, mine)) if x != y] == []
    assert sum(theirs) > len(MV_ANSWERS) + 10  # more than the exact matches: the numeric step decides some


@pytest.mark.parametrize("options", [[], ["3", "4", "\\frac{1}{2}"], ["A", "B", "C", "D", "E"]])
def test_mathvision_prompt_identical(options):
    from lmms_eval.tasks.mathvision import utils as mathvision

    image = make_image("mathvision")
    question = "<image1> A square has side 3. What is its area?"
    doc = {"question": question, "options": options, "answer": "A", "decoded_image": image}
    theirs = mathvision.mathvision_doc_to_text(doc, default_kwargs("mathvision/mathvision_testmini.yaml"))
    shown = LmmsEvalProtocol().present(_item("math-vision", question, options, [image], [1], {}))
    assert shown.parts == (0, theirs)
    (visual,) = mathvision.mathvision_doc_to_visual(doc)
    assert visual.tobytes() == image.convert("RGB").tobytes()
