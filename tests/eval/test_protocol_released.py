"""The ``released`` protocol against the released VisPlay code (Evaluation/eval_boxed_accuracy.py and
verl/utils/dataset.py in github.com/bruno686/VisPlay). Every expected value below was worked out by hand from
that code (its regex ``\\\\boxed\\{([^}]+)\\}``, ``text.strip()[:100]``, ``normalize_answer``, the judge prompt and
``result == '1' or 'correct' or 'yes' or 'true'``), not from ours."""

from __future__ import annotations

import pytest
import visplay_eval.plugin as eval_plugin
from support.eval import make_image
from visplay_eval.protocols.released import ReleasedProtocol, extract, normalize, parse_reply

from visplay.config import load_recipe
from visplay.context import RunContext
from visplay.eval.benchmarks import BenchmarkItem
from visplay.plugins import get_plugin_manager

LONG = "Let me think about the figure. " * 10  # 300 characters, no box


@pytest.mark.parametrize("response, expected", [
    ("so \\boxed{42}", "42"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1"),  # [^}]+ stops at the first closing brace
    ("\\boxed{\\text{B}}", "\\text{B"),
    ("\\boxed{A} then \\boxed{ B }", "B"),  # the last match, stripped
    ("\\boxed{}", "\\boxed{}"),  # [^}]+ needs a character: no match, so the fallback
    ("\\boxed {C}", "\\boxed {C}"),  # no space allowed after \boxed
    ("\\boxed{two\nlines}", "two\nlines"),
    ("  The answer is B.  ", "The answer is B."),
    (LONG, LONG.strip()[:100]),
    ("   ", ""),
    ("", ""),
    (None, ""),
])
def test_extraction_is_the_released_regex_and_fallback(response, expected):
    assert extract(response) == expected
    if response == LONG:
        assert len(expected) == 100


@pytest.mark.parametrize("answer, key", [("b.", "B"), ("1,000", "1000"), (" a b ", "AB"), ("3.5", "35"),
                                         ("\\frac{1}{2}", "\\FRAC{1}{2}"), ("", ""), (None, "")])
def test_normalisation(answer, key):
    assert normalize(answer) == key


def _item(response, answer, **extra):
    return {"benchmark": "mmmu", "question": "Which?", "answer": answer, "response": response, **extra}


@pytest.mark.parametrize("response, answer, correct", [
    ("\\boxed{B}", "B", True),
    ("\\boxed{b}", "B", True),  # upper-cased
    ("The answer is B", "B", False),  # no box: the whole text (normalised THEANSWERISB) is compared
    ("B", "B", True),  # a bare letter passes through the 100-character fallback
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", False),  # the regex truncates nested braces
    ("\\boxed{35}", "3.5", True),  # dots are removed on both sides
    ("\\boxed{1,000}", "1000", True),
    (LONG, "B", False),
    ("", "B", False),
])
def test_rule_path_verdicts(response, answer, correct):
    verdict = ReleasedProtocol().score(_item(response, answer))
    assert verdict["correct"] is correct
    assert verdict["extracted"] == extract(response)


def test_rule_path_reads_the_files_answer_not_visplays_yes_no():
    # HallusionBench stores 1/0; visplay's loader reads them as yes/no, the released code compared the raw "1"
    item = _item("\\boxed{yes}", "yes", benchmark="hallusionbench", meta={"raw_answer": "1"})
    assert ReleasedProtocol().score(item)["correct"] is False
    assert ReleasedProtocol().score({**item, "response": "\\boxed{1}"})["correct"] is True


def test_judge_prompt_is_the_released_one():
    system, user = ReleasedProtocol().judge_request(_item("so \\boxed{\\frac{1}{2}}", " 0.5 "))
    assert user == ('Please judge whether the following two answers express the same meaning. Please only answer '
                    '"correct" or "incorrect". Correct answer: 0.5. Answer to be judged: \\frac{1. Judgment result '
                    '(only answer "correct" or "incorrect"). You don\'t need to reason, if correct return 1, if '
                    'incorrect return 0. Don\'t say anything else.')
    assert system.startswith("You are an answer evaluation assistant. Your task is to judge whether two answers")
    assert system.endswith("as long as the expressed meaning is basically the same, it is considered equivalent.")
    assert ReleasedProtocol().judge_request(_item("   ", "B")) is None  # empty extraction: wrong, judge not asked


@pytest.mark.parametrize("reply, correct", [
    ("1", True), (" Correct \n", True), ("YES", True), ("true", True), ("correct.", False), ("1.", False),
    ("incorrect", False), ("0", False), ("The answer is correct", False), ("", False), (None, False),
])
def test_judge_reply_parsing(reply, correct):
    assert parse_reply(reply) is correct
    assert ReleasedProtocol().parse_judge_reply(_item("\\boxed{B}", "B"), reply)["correct"] is correct


def _bench_item(question, n_images=1):
    images = [make_image(f"r{i}") for i in range(n_images)]
    return BenchmarkItem(benchmark="mmmu", index=0, item_id="x", question=question, prompt=question, answer="B",
                         kind="choice", options=[], image=images[0] if images else None, source="t#0",
                         images=images)


RELEASED_TAIL = (" and the image. After completing your reasoning, you MUST output the final, clean, and concise "
                 "answer strictly inside " + r"\\boxed{ }." + "The final answer MUST appear inside \\boxed{}, and "
                 "nowhere else. If there is no boxed answer, your response is considered incorrect. ")


@pytest.mark.parametrize("question, content", [
    ("<image 1> What is drawn?", "What is drawn?"),  # the tag moves to the end; jinja's trim strips the start
    ("What is drawn? <image>", "What is drawn?"),
    ("  What is drawn?  ", "What is drawn?  "),  # no tag: <image> appended after the untrimmed text
])
def test_prompt_is_the_solver_format_message_then_the_image(question, content):
    shown = ReleasedProtocol().present(_bench_item(question))
    assert shown.parts == ("Please reason step by step carefully based on the question: " + content + RELEASED_TAIL,
                           0)


def test_items_the_released_code_dropped_are_marked():
    item = _item("\\boxed{B}", "B", raw_question="<image 1> or <image 2>?")
    assert ReleasedProtocol().score(item)["reason"] == "match+released_dropped"


def test_protocols_are_served_by_the_hook(tmp_path):
    pm = get_plugin_manager(autoload=False, extra=(eval_plugin,))
    ctx = RunContext(recipe=load_recipe("tiny"), pm=pm, run_dir=tmp_path, phase="eval")
    assert ctx.hooks.eval_protocol("released").name == "released"
    assert ctx.hooks.eval_protocol("lmms-eval").name == "lmms-eval"
    assert ctx.hooks.eval_protocol("visplay").name == "visplay"
    assert ctx.hooks.eval_protocol("nobody") is None
    verdicts = ctx.hooks.judge(name="rule", items=[{**_item("\\boxed{35}", "3.5"), "protocol": "released"},
                                                   {**_item("\\boxed{35}", "3.5"), "kind": "open"}])
    assert [v["correct"] for v in verdicts] == [True, False]  # released normalisation vs visplay's equivalence


def test_endpoint_judge_sends_the_released_prompt(tmp_path):
    from support.eval import JudgeServer
    from visplay_eval.protocols.released import JUDGE_SYSTEM

    pm = get_plugin_manager(autoload=False, extra=(eval_plugin,))
    items = [{**_item("so \\boxed{\\frac{1}{2}}", "0.5"), "protocol": "released", "key": "a"},
             {**_item("   ", "B"), "protocol": "released", "key": "b"}]
    with JudgeServer(mode="one") as server:
        ctx = RunContext(recipe=load_recipe("tiny", [f"plugins.eval.judge_url={server.url}"]), pm=pm,
                         run_dir=tmp_path, phase="eval")
        verdicts = ctx.hooks.judge(name="endpoint", items=items)
    assert len(server.requests) == 1  # the empty extraction is wrong without asking, as in the released code
    body = server.requests[0][2]
    assert body["messages"][0] == {"role": "system", "content": JUDGE_SYSTEM}
    assert body["messages"][1]["content"] == ReleasedProtocol().judge_request(items[0])[1]
    assert "Answer to be judged: \\frac{1." in body["messages"][1]["content"] and body["temperature"] == 0.0
    assert [(v["correct"], v["verdict"]) for v in verdicts] == [(True, "1"), (False, None)]
    assert verdicts[0]["prompt"].startswith("[system] You are an answer evaluation assistant.")
