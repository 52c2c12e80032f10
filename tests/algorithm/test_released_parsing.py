"""variant ``released``: question parsing (per phase), the tag-spacing edit and the reasoner format reward.

Each linear-time function is checked against the released regular expression it replaces, on random tag soup,
and on constructed cases read from bruno686/VisPlay@3aa895b.
"""

from __future__ import annotations

import random
import re

import pytest
from support.algorithm import make_ctx, question_item
from visplay_algorithm.parsing import _block_chain, _find_all, parse_question, spacing_edit
from visplay_algorithm.released_grader import released_format_ok

RELEASED_CHAIN = re.compile(r"<type>(.*?)</type>.*?<question>(.*?)</question>.*?<answer>(.*?)</answer>", re.DOTALL)
RELEASED_FORMAT = re.compile(r"<think>.*?</think>\s*\\boxed\{.*?\}\s*$", re.DOTALL)  # cot_val_solver.py:25-30
PIECES = ["<type>", "</type>", "<question>", "</question>", "<answer>", "</answer>", "<think>", "</think>",
          "\\boxed{", "{", "}", " ", "\n", "x", "/", "<", ">", "3 / 4"]


def _soup(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 14)))


def test_linear_helpers_equal_the_released_regexes_on_random_text():
    """spacing edit (cot_val.py:188), the block search (cot_val.py:139-140), findall (question_generate.py:230-232),
    the format regex (cot_val_solver.py:24-31): 20,000 random strings each."""
    rng = random.Random(13)
    for _ in range(20000):
        text = _soup(rng)
        assert spacing_edit(text) == re.sub(r"\s*(<|>|/)\s*", r"\1", text), repr(text)
        match = RELEASED_CHAIN.search(text)
        assert _block_chain(text) == (list(match.groups()) if match else None), repr(text)
        assert _find_all(text, "<question>", "</question>") == re.findall(r"<question>(.*?)</question>", text,
                                                                          re.DOTALL), repr(text)
        expected = RELEASED_FORMAT.fullmatch(re.sub(r"\s*(<|>|/)\s*", r"\1", text)) is not None
        assert released_format_ok(text) is expected, repr(text)


@pytest.mark.parametrize("text, ok", [
    ("<think>a</think>\\boxed{3}", True),
    ("<think>a</think>  \\boxed{3}  \n", True),
    ("<think>a</think> so \\boxed{3}", False),  # only whitespace between </think> and the box
    ("<think>a</think>\\boxed{3} done", False),  # nothing after the box
    ("  <think>a</think>\\boxed{3}", True),  # the spacing edit removes the leading spaces before "<"
    ("< think >a</ think >\\boxed{}", True),
    ("\\boxed{3}", False),
    ("<think>a</think>\\boxed{3", False),
])
def test_released_reasoner_format(text, ok):
    assert released_format_ok(text) is ok
    assert (RELEASED_FORMAT.fullmatch(re.sub(r"\s*(<|>|/)\s*", r"\1", text)) is not None) is ok


def test_questioner_parse_edits_text_and_takes_the_first_chain():
    """cot_val.py:188-193: spaced tags accepted, question text edited (3 / 4 -> 3/4, x < 5 -> x<5), first match."""
    text = ("Sure. < type > numerical </type>\n< question >Is x < 5 when x = 3 / 4?</ question >"
            "<answer> yes </answer> and <type>b</type><question>second</question><answer>2</answer>")
    parsed = parse_question(text, "released")
    assert (parsed.valid, parsed.qtype, parsed.question, parsed.stated_answer) == (
        True, "numerical", "Is x<5 when x = 3/4?", "yes")


def test_reasoner_set_parse_takes_the_last_block_and_falls_back_to_the_response():
    """question_generate.py:230-250: last blocks, no spacing edit; no question or answer block: whole response,
    and evaluate.py:79 votes on any non-empty question."""
    text = "<type>a</type><question>first</question><answer>1</answer><question> x / 2 </question><answer>2</answer>"
    parsed = parse_question(text, "released", "reasoner_set")
    assert (parsed.valid, parsed.qtype, parsed.question, parsed.stated_answer) == (True, "a", "x / 2", "2")
    parsed = parse_question("What is shown? <question>Q</question>", "released", "reasoner_set")
    assert (parsed.valid, parsed.question, parsed.qtype) == (True, "What is shown? <question>Q</question>", "unknown")
    parsed = parse_question("<question></question><answer>3</answer>", "released", "reasoner_set")
    assert (parsed.valid, parsed.reason) == (False, "empty question")


def test_reasoner_set_vote_divides_by_answered_samples_and_skip_rules_apply():
    """evaluate.py:153, 200: score over non-empty answers; evaluate.py:203 and upload.py:47 drop "box" questions
    and "None" labels; band 0.3-0.8 (solver_train.sh:17)."""
    ctx = make_ctx("released")
    ctx.phase = "reasoner_set"
    answers = ["3", "3.0", "4", "4", None, None, None, None, "5"]  # 2 of 5 answered vote 3 / 4 -> c = 0.4
    item = question_item(ctx, "k", "g", "<question>How many?</question><answer>3</answer>", answers)
    assert (item.vote.silver_label, item.vote.confidence) == ("3", 0.4)
    ctx.phase = "questioner"
    item_q = question_item(ctx, "k", "g", "<type>n</type><question>How many?</question><answer>3</answer>", answers)
    assert item_q.vote.confidence == pytest.approx(2 / 9)  # start_vllm_server.py:240: over all m samples
    ctx.phase = "reasoner_set"
    none_label = question_item(ctx, "n", "g", "<question>How many?</question><answer>1</answer>",
                               ["None"] * 4 + ["2"] * 3 + [None] * 2)
    in_box = question_item(ctx, "b", "g", "<question>What is in the box?</question><answer>1</answer>", answers)
    ((_, decisions),) = ctx.hooks.filter_questions(items=[item, none_label, in_box])
    assert [d.keep for d in decisions] == [True, False, False]
    assert "'None'" in decisions[1].reason and "box" in decisions[2].reason
