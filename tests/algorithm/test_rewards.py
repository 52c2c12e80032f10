"""Worked examples of the questioner and reasoner rewards, computed by hand from the paper's equations."""

from __future__ import annotations

import pytest
from support.algorithm import answer_item, make_ctx, question_item, votes

from visplay.config import RecipeError
from visplay.hookspecs import hookimpl

# One image, G = 4 questions, m = 10 votes each.
Q1 = "how many red circles are in the image"
Q2 = "how many red circles are in the picture"
Q3 = "what colour is the large square"
# BLEU(hyp Q1, ref Q2): 8 tokens each, so the brevity penalty is exp(1 - 8/8) = 1. Clipped matches:
# unigrams 7/8, bigrams 6/7, trigrams 5/6, 4-grams 4/5, so BLEU = (7/8 * 6/7 * 5/6 * 4/5) ** (1/4) = 0.5 ** 0.25
# = 0.8409 and the distance 0.159 < 0.5: Q1 and Q2 share a cluster. Q3 shares only "the" with them (BLEU < 0.1,
# distance > 0.9) and the invalid question enters the clustering as "" (BLEU 0, distance 1): singletons.
# Clusters {Q1, Q2}, {Q3}, {Q4}; N = 4, lambda = 1: r_div = 2/4, 2/4, 1/4, 1/4.
VOTES_C05 = votes(**{"3": 3, "3.0": 2}, four=3, none=2)  # key num:3 x5 of m = 10 (no answer counts in m): c = 0.5
VOTES_C03 = votes(B=2, **{"(B)": 1}, A=2, C=2, D=2, none=1)  # mc:b x3: c = 0.3
VOTES_C10 = votes(yes=4, Yes=3, **{"yes.": 3})  # bool:yes x10: c = 1.0


def _paper_items(ctx):
    return [
        question_item(ctx, "q1", "img0", f"<question>{Q1}</question>", VOTES_C05),
        question_item(ctx, "q2", "img0", f"<question>{Q2}</question>", VOTES_C03),
        question_item(ctx, "q3", "img0", f"<question>{Q3}</question>", VOTES_C10),
        question_item(ctx, "q4", "img0", "How many circles? (no tags)", None),
    ]


def _released(q: str) -> str:
    return f"<type>numerical</type><question>{q}</question><answer>7</answer>"


def _released_items(ctx):
    return [
        question_item(ctx, "q1", "img0", _released(Q1), VOTES_C05),
        question_item(ctx, "q2", "img0", _released(Q2), VOTES_C03),
        question_item(ctx, "q3", "img0", _released(Q3), VOTES_C10),
        question_item(ctx, "q4", "img0", f"<question>{Q1}</question>", None),  # paper format: invalid here
    ]


def _filter(ctx, items):
    ((_, decisions),) = ctx.hooks.filter_questions(items=items)  # not firstresult: (plugin, decisions) per plugin
    return decisions


def _rewards(ctx, role, items):
    produced = ctx.hooks.reward_components(role, items)
    components = {name: values for name, (_, values) in produced.items()}
    _, total = ctx.hooks.combine_rewards(role=role, components=components, items=items)
    return components, total


def test_votes_give_the_hand_computed_confidences():
    ctx = make_ctx("paper")
    items = _paper_items(ctx)
    assert [i.vote.confidence for i in items[:3]] == [0.5, 0.3, 1.0]
    assert [i.vote.silver_label for i in items[:3]] == ["3", "B", "yes"]


def test_paper_questioner_reward_worked_example():
    ctx = make_ctx("paper")
    components, total = _rewards(ctx, "questioner", _paper_items(ctx))
    # r_unc = 1 - |2c - 1|: c = 0.5 -> 1; c = 0.3 -> 1 - 0.4 = 0.6; c = 1.0 -> 0; invalid -> 0.
    assert components["uncertainty"] == pytest.approx([1.0, 0.6, 0.0, 0.0])
    assert components["diversity"] == pytest.approx([0.5, 0.5, 0.25, 0.25])
    assert components["validity"] == [1.0, 1.0, 1.0, 0.0]
    # valid * ReLU(r_unc - r_div): 1 - 0.5 = 0.5; 0.6 - 0.5 = 0.1; ReLU(0 - 0.25) = 0; invalid = 0.
    assert total == pytest.approx([0.5, 0.1, 0.0, 0.0])


def test_released_questioner_reward_worked_example():
    ctx = make_ctx("released")
    components, total = _rewards(ctx, "questioner", _released_items(ctx))
    # r_unc = min(c, 1 - c): 0.5, 0.3, 0.3 -- mathruler groups "yes" with "Yes" (lower-cased) but not with "yes."
    # (three unknown letters: no sympy), so the third vote is 7 of 10; the batch is this one image, so r_div is as
    # in the paper example.
    assert components["uncertainty"] == pytest.approx([0.5, 0.3, 0.3, 0.0])
    assert components["diversity"] == pytest.approx([0.5, 0.5, 0.25, 0.25])
    # (r_unc - r_div) if valid else -1 - r_div; no ReLU: 0.0, -0.2, 0.05, -1.25.
    assert total == pytest.approx([0.0, -0.2, 0.05, -1.25])


def test_a_group_with_two_clusters():
    # Q3b extends Q3 by one word. BLEU(hyp Q3, ref Q3b): all n-grams of Q3 match (precisions 6/6, 5/5, 4/4, 3/3)
    # and the brevity penalty is exp(1 - 7/6) = 0.846, so the distance is 0.154 < 0.5. Every cross pair between
    # {Q1, Q2} and {Q3, Q3b} shares at most "the" (distance > 0.9), so average linkage stops at two clusters of 2:
    # r_div = 2/4 for all four. Paper totals ReLU(r_unc - 0.5): c = 0.5 -> 0.5, 0.3 -> 0.1, 1.0 -> 0, 0.5 -> 0.5.
    ctx = make_ctx("paper")
    texts = [Q1, Q2, Q3, Q3 + " now"]
    answer_sets = [VOTES_C05, VOTES_C03, VOTES_C10, VOTES_C05]
    items = [question_item(ctx, f"k{i}", "img0", f"<question>{q}</question>", a)
             for i, (q, a) in enumerate(zip(texts, answer_sets))]
    components, total = _rewards(ctx, "questioner", items)
    assert components["diversity"] == pytest.approx([0.5] * 4)
    assert total == pytest.approx([0.5, 0.1, 0.0, 0.5])


def test_empty_batches():
    for variant in ("paper", "released"):
        ctx = make_ctx(variant)
        for role in ("questioner", "reasoner"):
            components, total = _rewards(ctx, role, [])
            assert total == [] and all(v == [] for v in components.values())
        assert _filter(ctx, []) == []


def test_diversity_scope_image_versus_batch():
    # Two images, each with Q1 and Q3: per image the clusters are singletons (penalty 1/2 each); over the batch
    # the two copies of Q1 (BLEU 1) and of Q3 cluster: 2/4 each.
    for variant, scope, expected in (("paper", "image", 0.5), ("paper", "batch", 0.5), ("released", "batch", 0.5)):
        ctx = make_ctx(variant, [f"reward.diversity_scope={scope}"])
        wrap = (lambda q: f"<question>{q}</question>") if variant == "paper" else _released
        items = [question_item(ctx, f"k{i}", g, wrap(q), VOTES_C05)
                 for i, (g, q) in enumerate([("a", Q1), ("a", Q3), ("b", Q1), ("b", Q3)])]
        components, _ = _rewards(ctx, "questioner", items)
        assert components["diversity"] == pytest.approx([expected] * 4)
    ctx = make_ctx("paper", ["reward.diversity_lambda=0.5"])
    items = [question_item(ctx, f"k{i}", "a", f"<question>{q}</question>", VOTES_C05) for i, q in enumerate([Q1, Q2])]
    components, total = _rewards(ctx, "questioner", items)
    assert components["diversity"] == pytest.approx([0.5, 0.5])  # lambda 0.5 * 2/2
    assert total == pytest.approx([0.5, 0.5])  # ReLU(1 - 0.5)


def test_reasoner_reward_both_variants():
    texts = ["<think>count them</think> so \\boxed{3.0}", "\\boxed{3}", "<think>hmm</think> \\boxed{4}",
             "no box at all", "<think>unclosed \\boxed{3"]
    items = [answer_item(f"a{i}", t, "3") for i, t in enumerate(texts)]
    ctx = make_ctx("paper")
    components, total = _rewards(ctx, "reasoner", items)
    assert components["accuracy"] == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert components["format"] == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert total == [1.0, 1.0, 0.0, 0.0, 0.0]  # paper: binary match with the silver label
    ctx = make_ctx("released")
    components, total = _rewards(ctx, "reasoner", items)
    # Released (cot_val_solver.py:24-31, 71-87): grade_answer("3.0", "3") is True; the format regex allows only
    # whitespace between </think> and the box, so " so " fails it. 0.9 * accuracy + 0.1 * format.
    assert components["accuracy"] == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert components["format"] == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert total == pytest.approx([0.9, 0.9, 0.1, 0.0, 0.0])


def test_malformed_answers_score_zero_in_both_variants():
    garbage = "<think>" + "\\boxed{{" * 2000 + "x" * 4000  # ~10 KB, no closed box
    texts = ["", "\\boxed{}", "<think></think>\\boxed{ }", garbage, "\\boxed{\\boxed{}"]
    items = [answer_item(f"a{i}", t, "3") for i, t in enumerate(texts)]
    assert all(item.extracted is None for item in items)
    for variant in ("paper", "released"):
        components, total = _rewards(make_ctx(variant), "reasoner", items)
        assert components["accuracy"] == [0.0] * 5
        # released format: only "<think></think>\boxed{ }" has think-then-box; its 0.1 is the whole reward.
        assert total == pytest.approx([0.0, 0.0, 0.1 if variant == "released" else 0.0, 0.0, 0.0])


def test_weighted_rule_and_extra_components():
    ctx = make_ctx("paper", ["plugins.algorithm.reward.combine=weighted",
                             "plugins.algorithm.reward.weights={uncertainty: 2.0, validity: 0.5}"])
    items = _paper_items(ctx)
    components, total = _rewards(ctx, "questioner", items)
    # 2 * r_unc - 1 * r_div + 0.5 * valid: 2 - 0.5 + 0.5 = 2.0; 1.2 - 0.5 + 0.5 = 1.2; -0.25 + 0.5; -0.25.
    assert total == pytest.approx([2.0, 1.2, 0.25, -0.25])
    with pytest.raises(RecipeError, match=r"plugins\.algorithm\.reward\.weights\.uncertainty': built-in components "
                                          r"are weighted only under plugins\.algorithm\.reward\.combine=weighted"):
        make_ctx("paper", ["plugins.algorithm.reward.weights={uncertainty: 2.0}"])  # refused at load


class _Novelty:
    """A third-party component: 1 for questions ending with '?'."""

    @hookimpl
    def visplay_names(self):
        return {"reward_component": ["novelty"]}

    @hookimpl
    def visplay_reward_components(self, ctx, role, items):
        if role != "questioner":
            return None
        return {"novelty": [1.0 if (i.parsed.question or "").endswith("?") else 0.0 for i in items]}


class _ReplaceRule:
    @hookimpl(tryfirst=True)
    def visplay_combine_rewards(self, ctx, role, components, items):
        return [components["validity"][i] * 10.0 for i in range(len(items))]


def test_third_party_component_is_weighted_in_and_rule_can_be_replaced():
    ctx = make_ctx("paper", ["plugins.algorithm.reward.weights={novelty: 0.25}"], extra=[_Novelty()])
    items = [question_item(ctx, "k0", "a", f"<question>{Q1}?</question>", VOTES_C05),
             question_item(ctx, "k1", "a", f"<question>{Q3}</question>", VOTES_C05)]
    components, total = _rewards(ctx, "questioner", items)
    assert components["novelty"] == [1.0, 0.0]
    # paper rule ReLU(1 - 1/2) = 0.5 for both (two singletons of N = 2), plus 0.25 * novelty.
    assert total == pytest.approx([0.75, 0.5])
    ctx = make_ctx("paper", [], extra=[_Novelty(), _ReplaceRule()])
    _, total = _rewards(ctx, "questioner", items)
    assert total == [10.0, 10.0]


def test_malformed_questions_never_crash_and_score_as_the_variant_says():
    garbage = "<question>" + "\\boxed{{{" * 1000 + "x" * 1000
    texts = ["<question>unclosed", "<question></question>", "<type>numerical</type><question>q", garbage,
             "<question><question>nested</question></question>", "\x00\udcff"]
    for variant, invalid_total in (("paper", 0.0), ("released", None)):
        ctx = make_ctx(variant)
        items = [question_item(ctx, f"k{i}", "a", t, None) for i, t in enumerate(texts)]
        assert not any(i.parsed.valid for i in items)
        components, total = _rewards(ctx, "questioner", items)
        if invalid_total is not None:
            assert total == [invalid_total] * len(texts)
        else:
            # released: -1 - r_div, every "" a singleton of N = 6.
            assert total == pytest.approx([-1 - 1 / 6] * len(texts))


def test_filter_band_is_inclusive_and_reasons_are_given():
    ctx = make_ctx("paper")
    items = _paper_items(ctx)
    edge = question_item(ctx, "e", "a", "<question>q</question>", votes(a=1, b=1, c=1, d=1))  # c = 0.25
    empty = question_item(ctx, "z", "a", "<question>q</question>", votes(none=5))
    decisions = _filter(ctx, items + [edge, empty])
    assert [d.keep for d in decisions] == [True, True, False, False, True, False]
    assert decisions[2].reason == "confidence 1.0000 above band [0.25, 0.75]"
    assert decisions[3].reason.startswith("invalid question: no <question> tag")
    assert decisions[5].reason == "empty silver label"
    ctx = make_ctx("released")
    c08 = question_item(ctx, "x", "a", _released("q"), votes(a=8, b=2))
    c025 = question_item(ctx, "y", "a", _released("q"), votes(a=1, b=1, c=1, d=1))
    assert [d.keep for d in _filter(ctx, [c08, c025])] == [True, False]


def test_released_skip_rules_are_on_in_released_and_an_option():
    ctx = make_ctx("released")
    items = [question_item(ctx, "a", "g", _released("what is in the box"), votes(a=5, b=5)),
             question_item(ctx, "b", "g", _released("证明 this"), votes(a=5, b=5)),
             question_item(ctx, "c", "g", _released("name it"), votes(**{"\\text{red}": 5}, b=5)),
             question_item(ctx, "d", "g", _released("count it"), votes(a=5, b=5))]
    decisions = _filter(ctx, items)
    assert [d.keep for d in decisions] == [False, False, False, True]
    assert "box" in decisions[0].reason and "证明" in decisions[1].reason and "text" in decisions[2].reason
    ctx = make_ctx("released", ["plugins.algorithm.filter.released_skip_rules=false"])
    assert all(d.keep for d in _filter(ctx, items))
    assert all(d.keep for d in _filter(make_ctx("paper"), items))


def test_none_as_vote_is_the_released_default_and_an_option():
    answers_text = ["\\boxed{3}", "\\boxed{3}", "nothing", "nothing", "nothing"]
    ctx = make_ctx("released", ["reward.none_as_vote=false"])
    extracted = ctx.hooks.extract_answers(texts=answers_text)
    assert extracted == ["3", "3", None, None, None]
    item = question_item(ctx, "k", "g", _released("q"), extracted)
    assert (item.vote.silver_label, item.vote.confidence) == ("3", 0.4)
    ctx = make_ctx("released")
    extracted = ctx.hooks.extract_answers(texts=answers_text)
    assert extracted == ["3", "3", "None", "None", "None"]
    item = question_item(ctx, "k", "g", _released("q"), extracted)
    assert (item.vote.silver_label, item.vote.confidence) == ("None", 0.6)


def test_the_example_third_party_package_adds_and_replaces():
    length_reward = pytest.importorskip("visplay_length_reward")
    overrides = ["plugins.algorithm.reward.weights={brevity: 0.1}", "plugins.length_reward.max_tokens=6"]
    ctx = make_ctx("paper", overrides, extra=[length_reward])
    items = [question_item(ctx, "k0", "a", f"<question>{Q1}</question>", VOTES_C05),
             question_item(ctx, "k1", "a", f"<question>{Q3}</question>", VOTES_C03)]
    components, total = _rewards(ctx, "questioner", items)
    # brevity = 1 - 3 tokens / 6 = 0.5; paper: ReLU(1 - 1/2) = 0.5 and ReLU(0.6 - 1/2) = 0.1, plus 0.1 * 0.5.
    assert components["brevity"] == [0.5, 0.5]
    assert total == pytest.approx([0.55, 0.15])
    ctx = make_ctx("paper", [*overrides, "plugins.length_reward.replace_combine=true"], extra=[length_reward])
    _, total = _rewards(ctx, "questioner", items)
    # its rule: the plain mean of brevity, diversity, uncertainty, validity: (0.5 + 0.5 + 1 + 1) / 4, ...
    assert total == pytest.approx([0.75, (0.5 + 0.5 + 0.6 + 1) / 4])


def test_an_unknown_weight_name_is_an_error_naming_the_known_components():
    """A misspelled name in the weights used to be ignored silently; now the recipe is refused when it loads (every
    reward plugin declares its components through ``visplay_names``)."""
    with pytest.raises(RecipeError, match=r"plugins\.algorithm\.reward\.weights\.novelt': no reward component of "
                                          r"that name \(did you mean 'novelty'\?\); known components: accuracy, "
                                          r"diversity, format, novelty, uncertainty, validity"):
        make_ctx("paper", ["plugins.algorithm.reward.weights={novelt: 0.25}"], extra=[_Novelty()])
