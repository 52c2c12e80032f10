"""Questioner parsing (both formats), answer extraction, the reasoner format check, and the sampling hooks."""

from __future__ import annotations

import time

import pytest
from support.algorithm import RecordingSampler, make_ctx
from visplay_algorithm import prompts
from visplay_algorithm.parsing import extract_answer, last_boxed, parse_question, reasoner_format_ok

from visplay.config import RecipeError
from visplay.types import AskedQuestion, ImageRecord

GARBAGE = ("<type>" + "<question>{\\boxed{" * 300 + "</think>" * 200 + "ÿ\x00" * 500) * 3  # ~10 KB


@pytest.mark.parametrize("text, valid, question, reason", [
    ("<question>How many cats?</question>", True, "How many cats?", "ok"),
    ("Sure! <question> What color is the car? </question> done", True, "What color is the car?", "ok"),
    ("<question>How many</question><question>second</question>", True, "How many", "ok"),
    ("<question>unclosed", False, None, "unclosed <question> tag"),
    ("<question>   </question>", False, "", "empty question"),
    ("no tags at all", False, None, "no <question> tag"),
    ("", False, None, "no <question> tag"),
])
def test_paper_format(text, valid, question, reason):
    parsed = parse_question(text, "paper")
    assert (parsed.valid, parsed.question, parsed.reason) == (valid, question, reason)


@pytest.mark.parametrize("text, valid, reason", [
    ("<type>numerical</type><question>How many?</question><answer>3</answer>", True, "ok"),
    ("  <type>multiple choice</type>\n<question>Which? A. x B. y</question>\n<answer>B</answer>\n", True, "ok"),
    ("<type>regression</type><question>Length?</question><answer>2.5</answer>", True, "ok"),
    # Released parse (bruno686/VisPlay train_examples/reward_function/cot_val.py:138-148, 188): any type text,
    # text around the blocks, first chain wins; voted only with question, answer and type (start_vllm_server.py:155).
    ("<type>open</type><question>Why?</question><answer>x</answer>", True, "ok"),
    ("Here: <type>numerical</type><question>Q</question><answer>3</answer>", True, "ok"),
    ("<type>numerical</type><question>Q</question><answer>3</answer> thanks", True, "ok"),
    ("<type>numerical</type><question>Q</question>", False, "no <type>"),
    ("<type>numerical</type><question> </question><answer>3</answer>", False, "empty question"),
    ("<type>numerical</type><question>Q</question><answer></answer>", False, "empty answer"),
    ("<type> </type><question>Q</question><answer>3</answer>", False, "empty type"),
    ("<question>Q</question>", False, "no <type>"),
])
def test_released_format(text, valid, reason):
    parsed = parse_question(text, "released")
    assert parsed.valid is valid
    assert parsed.reason.startswith(reason)


def test_released_keeps_the_stated_answer_but_it_is_no_label():
    parsed = parse_question("<type>numerical</type><question>How many?</question><answer>7</answer>", "released")
    assert (parsed.qtype, parsed.question, parsed.stated_answer) == ("numerical", "How many?", "7")


@pytest.mark.parametrize("text, answer", [
    ("so \\boxed{3}", "3"),
    ("\\boxed{1} then \\boxed{2}", "2"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\boxed{7}}", "7"),  # nested: the box that opens last
    ("\\boxed{4} and an unclosed \\boxed{5", "4"),
    ("\\boxed{}", None),
    ("\\boxed{   }", None),
    ("no answer", None),
    ("", None),
    ("\\boxed{a{b}c}", "a{b}c"),
])
def test_last_boxed(text, answer):
    assert last_boxed(text) == answer


def test_none_as_vote_extraction():
    assert extract_answer("nothing") is None
    assert extract_answer("nothing", none_as_vote=True) == "None"
    assert extract_answer("\\boxed{2}", none_as_vote=True) == "2"


@pytest.mark.parametrize("text, ok", [
    ("<think>a</think> \\boxed{3}", True),
    ("  <think>a</think>\nThe answer is \\boxed{3}.", True),
    ("\\boxed{3}", False),
    ("<think>a \\boxed{3}", False),
    ("<think>a</think> 3", False),
    ("<think>a</think> \\boxed{3", False),
    ("x <think>a</think> \\boxed{3}", False),
])
def test_reasoner_format(text, ok):
    assert reasoner_format_ok(text) is ok


def test_ten_kilobytes_of_garbage_is_fast_and_harmless():
    assert len(GARBAGE) > 10_000
    start = time.perf_counter()
    for variant in ("paper", "released"):
        assert parse_question(GARBAGE, variant).valid is False
    assert extract_answer(GARBAGE) is None
    assert reasoner_format_ok(GARBAGE) is False
    assert time.perf_counter() - start < 0.5


def test_non_text_input_is_invalid_not_an_error():
    assert parse_question(None, "paper").valid is False  # type: ignore[arg-type]
    assert last_boxed(None) is None  # type: ignore[arg-type]


def _image(i: int) -> ImageRecord:
    return ImageRecord(image_id=f"id{i}", image=None, source="test")  # type: ignore[arg-type]


@pytest.mark.parametrize("variant", ["paper", "released"])
def test_generate_questions_uses_the_variant_prompt_and_recipe_sampling(variant):
    ctx = make_ctx(variant, ["questioner.sampling.temperature=0.7", "questioner.sampling.max_new_tokens=33"])
    sampler = RecordingSampler()
    out = ctx.hooks.generate_questions(sampler=sampler, images=[_image(0), _image(1)], n=3, seeds=[11, 12])
    assert [[g.text for g in gens] for gens in out] == [["p0/g0", "p0/g1", "p0/g2"], ["p1/g0", "p1/g1", "p1/g2"]]
    sent, params = sampler.calls[0]
    system, user = prompts.questioner_texts(variant)
    assert [(p.system, p.user, p.image.image_id) for p in sent] == [(system, user, "id0"), (system, user, "id1")]
    assert [(sp.n, sp.seed, sp.temperature, sp.max_new_tokens) for sp in params] == [(3, 11, 0.7, 33), (3, 12, 0.7, 33)]
    assert out[0][0].prompt is sent[0]


def test_sample_answers_prompt_and_prompt_overrides():
    ctx = make_ctx("paper", ["reasoner.sampling.top_p=0.5", "plugins.algorithm.reasoner_suffix=' Box it.'"])
    sampler = RecordingSampler()
    ctx.hooks.sample_answers(sampler=sampler, questions=[AskedQuestion(_image(0), "How many?")], n=2, seeds=[5],
             purpose="vote")
    sent, params = sampler.calls[0]
    assert sent[0].user == "How many? Box it." and sent[0].system == prompts.REASONER_SYSTEM
    assert (params[0].n, params[0].seed, params[0].top_p) == (2, 5, 0.5)
    ctx = make_ctx("paper")
    ctx.hooks.sample_answers(sampler=sampler, questions=[AskedQuestion(_image(0), "How many?")], n=1, seeds=[5],
             purpose="rollout")
    assert sampler.calls[-1][0][0].user == prompts.reasoner_user_text("How many?")


def test_bad_inputs_name_the_problem():
    ctx = make_ctx("paper")
    with pytest.raises(Exception, match="2 inputs but 1 seeds"):
        ctx.hooks.generate_questions(sampler=RecordingSampler(), images=[_image(0), _image(1)], n=1,
                 seeds=[1])
    with pytest.raises(RecipeError, match=r"plugins\.algorithm\.bogus..*plugins\.algorithm has: reward, filter, questioner_system"):
        make_ctx("paper", ["plugins.algorithm.bogus=1"])  # refused when the recipe loads, before any hook runs


def test_format_question_round_trips_through_the_parser():
    for variant in ("paper", "released"):
        text = prompts.format_question(variant, "How many dots?", "numerical", "4")
        parsed = parse_question(text, variant)
        assert parsed.valid and parsed.question == "How many dots?"
    with pytest.raises(ValueError, match="qtype"):
        prompts.format_question("released", "q", "essay", "a")
