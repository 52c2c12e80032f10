"""Gold evaluation, silver-label accuracy, the gold reasoner set and the verifiable reward components, on a
stand-in sampler whose right and wrong answers are scripted."""

from __future__ import annotations

import pytest
from support.games import ScriptedSampler, StandInPolicy, make_ctx
from visplay_games import gold, pools, rewards
from visplay_games.core import QA
from visplay_games.generators import make_state, to_record
from visplay_games.plugin import options, train_pool

from visplay.log.runlog import RunLog
from visplay.types import AnswerItem, Generation, Prompt


def truth_lookup(ctx):
    held = pools.held_out_pool(options(ctx), 64)
    return {(rec.image_id, qa.question): qa for gs, rec in held for qa in gs.qa}


def perception_only(ctx):
    """Right on perception questions, wrong on reasoning ones; vote 0 carries the answer, others disagree."""
    truth = truth_lookup(ctx)

    def reply(prompt, j):
        qa = truth[(prompt.image.image_id, prompt.user)]
        if j == 0:
            return f"<think>x</think>\\boxed{{{qa.answer if qa.category == 'perception' else 'wrong'}}}"
        return f"\\boxed{{other{j}}}" if j % 2 else "no box"
    return reply


def test_gold_eval_scores_per_game_kind_and_category(no_autoload, tmp_path):
    with RunLog(tmp_path / "run.db", create=True) as log:
        ctx = make_ctx(tmp_path, log=log, overrides=["plugins.games.eval_votes=3"])
        sampler = ScriptedSampler(perception_only(ctx))
        merged = ctx.hooks.iteration_end(iteration=1, questioner=None, reasoner=StandInPolicy(sampler))
        rows = log.rows(gold.EVAL_TABLE)
    items = gold.eval_items(pools.held_out_pool(options(ctx), 64), 2)
    assert len(rows) == len(items) == 12
    perception = [it.qa.category == "perception" for it in items]
    assert merged["gold/accuracy"] == pytest.approx(sum(perception) / len(items))
    assert merged["gold/accuracy/category/perception"] == 1.0
    assert merged["gold/accuracy/category/reasoning"] == 0.0
    # votes: [answer, "other1", None]: a tie of two keys, the first seen wins; confidence 1/3
    assert merged["gold/confidence_mean"] == pytest.approx(1 / 3)
    assert merged["gold/sample_accuracy"] == pytest.approx(sum(perception) / len(items) / 3)
    for game in ("2048", "shisen", "swap", "shapes", "bars", "clock"):
        assert 0.0 <= merged[f"gold/accuracy/{game}"] <= 1.0
    assert {r["correct"] for r in rows} == {0, 1}
    assert all(r["key"].startswith("i1/gold/") for r in rows)


def test_gold_eval_deterministic_and_off_for_other_sources(no_autoload):
    ctx = make_ctx(overrides=["plugins.games.gold_eval=true"])
    policy = StandInPolicy(ScriptedSampler(perception_only(ctx)))
    a = ctx.hooks.iteration_end(iteration=2, questioner=None, reasoner=policy)
    b = ctx.hooks.iteration_end(iteration=2, questioner=None, reasoner=policy)
    assert a == b and a["gold/items"] == 12.0
    import visplay_images.plugin as images_plugin

    off = make_ctx(overrides=["data.source=procedural"], plugins=(images_plugin,))
    assert off.hooks.iteration_end(iteration=1, questioner=None, reasoner=policy) == {}


def test_majority_tie_and_empty():
    assert gold.majority(["a", "b", "a"], ["a", "b", "a"]) == ("a", pytest.approx(2 / 3))
    assert gold.majority(["b", "a"], ["b", "a"]) == ("b", 0.5)
    assert gold.majority([None, None], [None, None]) == (None, 0.0)


def test_silver_accuracy_against_gold(no_autoload, tmp_path):
    with RunLog(tmp_path / "run.db", create=True) as log:
        ctx = make_ctx(tmp_path, log=log, overrides=["plugins.games.held_out=1"])
        (gs0, rec0), (gs1, rec1) = train_pool(ctx, options(ctx))[:2]
        questions = [("q0", rec0, gs0.qa[0].question, gs0.qa[0].answer, 1),           # right
                     ("q1", rec1, gs1.qa[1].question, "definitely wrong", 0),       # wrong
                     ("q2", rec1, "Is this a nice picture?", "yes", 1)]             # engine cannot parse
        log.insert("questions", [{"key": k, "iteration": 1, "phase": "reasoner_set", "image_id": r.image_id,
                                  "valid": 1, "question": q} for k, r, q, _, _ in questions])
        log.insert("labels", [{"question_key": k, "iteration": 1, "phase": "reasoner_set", "m": 5,
                               "silver_label": s, "confidence": 0.6} for k, _, _, s, _ in questions])
        log.insert("filters", [{"question_key": k, "iteration": 1, "keep": keep, "reason": "kept"}
                               for k, _, _, _, keep in questions])
        metrics = ctx.hooks.iteration_end(iteration=1, questioner=None,
                                          reasoner=StandInPolicy(ScriptedSampler(lambda p, j: "\\boxed{0}")))
        rows = log.rows(gold.SILVER_TABLE)
    assert metrics["gold/silver_accuracy"] == 0.5
    assert metrics["gold/silver_checked"] == 2.0
    assert metrics["gold/silver_checked_fraction"] == pytest.approx(2 / 3)
    assert metrics["gold/silver_accuracy_kept"] == 1.0
    assert metrics["silver/kept_fraction"] == pytest.approx(2 / 3)
    assert metrics["silver/confidence_mean"] == pytest.approx(0.6)
    assert [(r["question_key"], r["correct"]) for r in rows] == [("q0", 1), ("q1", 0)]


# --- gold training ---------------------------------------------------------------------------------------------


def test_reasoner_questions_only_with_gold_reward(no_autoload):
    ctx = make_ctx()
    images = [rec for _, rec in train_pool(ctx, options(ctx))]
    assert ctx.hooks.reasoner_questions(iteration=1, images=images) is None
    gold_ctx = make_ctx(overrides=["plugins.games.gold_reward=true", "plugins.games.gold_questions_per_image=2"])
    producer, triples = gold_ctx.hooks.reasoner_questions(iteration=1, images=images)
    assert producer == "visplay_games.plugin" and len(triples) == 2 * len(images)
    truth = {(rec.image_id, qa.question): qa.answer for gs, rec in train_pool(ctx, options(ctx)) for qa in gs.qa}
    assert all(truth[(rec.image_id, q)] == a for rec, q, a in triples)
    assert triples == gold_ctx.hooks.reasoner_questions(iteration=1, images=images)[1]
    assert triples != gold_ctx.hooks.reasoner_questions(iteration=2, images=images)[1]


def _item(record, question, text, extracted, gold_answer):
    gen = Generation(prompt=Prompt(user=f"Question: {question}\nAnswer in \\boxed{{}}.", image=record), text=text,
                     token_ids=[], logprobs=[], seed=0)
    return AnswerItem(key="k", question_key="q", group="g", generation=gen, extracted=extracted,
                      answer_key=extracted, silver_label=None, silver_key=None, gold=gold_answer)


def _state_with(game, kind):
    for seed in range(500):
        gs = make_state(game, 2, seed, 64)
        qa = next((q for q in gs.qa if q.kind == kind), None)
        if qa is not None:
            return gs, to_record(gs, "games:test"), qa
    raise AssertionError(f"no {game} state with a {kind} question")


def test_gold_accuracy_and_game_points_components():
    gs, rec, qa = _state_with("2048", "best_move")
    board = gs.state["board"]
    from visplay_games.g2048 import MOVES, apply_move

    points = {m: apply_move(board, m)[2] for m in MOVES}
    worst = next(m for m in MOVES if m in qa.question and m != qa.answer)
    sw, srec, sqa = _state_with("swap", "which_swap")
    r1c1, r2c2 = sqa.answer.split("-")
    flipped = f"{r2c2}-{r1c1}"
    items = [_item(rec, qa.question, "", qa.answer.upper(), qa.answer),
             _item(rec, qa.question, "", worst, qa.answer),
             _item(rec, qa.question, "", None, qa.answer),
             _item(srec, sqa.question, "", flipped, sqa.answer)]
    out = rewards.reasoner_components(items, {rec.image_id: gs, srec.image_id: sw}, lambda a: a.lower())
    assert out["gold_accuracy"] == [1.0, 0.0, 0.0, 1.0]
    assert out["game_points"] == [1.0, pytest.approx(points[worst] / points[qa.answer]), 0.0, 1.0]


def test_reward_components_only_for_reasoner_with_gold_reward(no_autoload):
    ctx = make_ctx()
    assert ctx.hooks.reward_components(role="reasoner", items=[]) == {}
    gold_ctx = make_ctx(overrides=["plugins.games.gold_reward=true"])
    assert gold_ctx.hooks.reward_components(role="questioner", items=[]) == {}
    gs, rec = train_pool(gold_ctx, options(gold_ctx))[0]
    qa: QA = gs.qa[0]
    out = gold_ctx.hooks.reward_components(role="reasoner", items=[_item(rec, qa.question, "", qa.answer, None)])
    plugin = out["gold_accuracy"][0]
    assert out == {"gold_accuracy": (plugin, [1.0]), "game_points": (plugin, [0.0])}


def test_gold_eval_reports_pass1_maj_greedy_margin_and_standard_errors(no_autoload):
    """pass@1 sampled = mean per-question sample accuracy, maj@m = majority accuracy, greedy = the one
    temperature-0 answer (the stand-in's sample 0); standard errors over questions, worked out by hand here."""
    ctx = make_ctx(overrides=["plugins.games.eval_votes=3"])
    merged = ctx.hooks.iteration_end(iteration=1, questioner=None,
                                     reasoner=StandInPolicy(ScriptedSampler(perception_only(ctx))))
    items = gold.eval_items(pools.held_out_pool(options(ctx), 64), 2)
    right = [float(it.qa.category == "perception") for it in items]  # the majority (a tie, first seen) is vote 0
    n, p = len(right), sum(right) / len(right)
    assert 0 < p < 1
    assert merged["gold/greedy_accuracy"] == pytest.approx(p)
    assert merged["gold/accuracy_se"] == pytest.approx((p * (1 - p) / (n - 1)) ** 0.5)
    per_question = [r / 3 for r in right]
    mean = sum(per_question) / n
    assert merged["gold/sample_accuracy_se"] == pytest.approx(
        (sum((x - mean) ** 2 for x in per_question) / (n - 1) / n) ** 0.5)
    assert merged["gold/vote_margin"] == pytest.approx(p - p / 3)
    assert merged["gold/votes"] == 3.0
    off = make_ctx(overrides=["plugins.games.eval_votes=3", "plugins.games.eval_greedy=false"])
    metrics = off.hooks.iteration_end(iteration=1, questioner=None,
                                      reasoner=StandInPolicy(ScriptedSampler(perception_only(off))))
    assert "gold/greedy_accuracy" not in metrics and metrics["gold/accuracy"] == merged["gold/accuracy"]


def test_standard_error_values():
    assert gold.standard_error([0.0, 1.0, 0.0, 1.0]) == pytest.approx((1 / 3 / 4) ** 0.5)
    assert gold.standard_error([0.5, 0.5, 0.5]) == 0.0
    assert gold.standard_error([1.0]) == 0.0


def test_held_out_questions_rotate_through_every_kind_of_each_game():
    """Six games cycle in the pool and bars have six QA pairs: rotating by pool position would ask every bar
    chart the same two kinds; rotating per game covers them all."""
    opts = options(make_ctx(overrides=["plugins.games.held_out=36"]))
    items = gold.eval_items(pools.held_out_pool(opts, 64), 2)
    kinds = {game: {it.qa.kind for it in items if it.state.game == game}
             for game in ("2048", "shisen", "swap", "shapes", "bars", "clock")}
    assert kinds["bars"] == {"bar_value", "extreme", "sum", "difference", "count_above"}
    assert kinds["clock"] == {"time", "hour", "minute", "later", "earlier"}
    assert all(len(k) >= 4 for k in kinds.values()), kinds


def test_summary_fields_show_pass1_maj_and_silver_with_standard_errors(tmp_path):
    """The console line's games fields: pass@1, maj@m (m from the eval) and silver-label accuracy, each with
    the standard error logged beside it."""
    import visplay_games.plugin as games_plugin

    with RunLog(tmp_path / "run.db", create=True) as log:
        ctx = make_ctx(tmp_path, log=log)
        with log.step(1, "eval", 0):
            log.metrics(1, "eval", 0, {"gold/sample_accuracy": 0.3071, "gold/sample_accuracy_se": 0.0194,
                                       "gold/accuracy": 0.3467, "gold/accuracy_se": 0.0275, "gold/votes": 8.0,
                                       "gold/silver_accuracy": 0.125})
        fields = games_plugin.visplay_summary_fields(ctx, 1)
        assert games_plugin.visplay_summary_fields(ctx, 2) is None
    assert fields == {"gold pass@1": (0.3071, 0.0194), "maj@8": (0.3467, 0.0275), "silver-label accuracy": 0.125}
    from visplay.loop.progress import summary_line

    line = summary_line(1, 3, {}, fields)
    assert "gold pass@1 0.307\u00b10.019 | maj@8 0.347\u00b10.028 | silver-label accuracy 0.125" in line
    from visplay.loop.progress import start_line

    assert start_line(fields) == ("start (questioner_v0, reasoner_v0): gold pass@1 0.307\u00b10.019 | "
                                  "maj@8 0.347\u00b10.028 | silver-label accuracy 0.125")
    assert start_line({}) is None and start_line(None) is None


def test_gold_eval_in_chunks_gives_the_numbers_of_one_call_with_the_real_tiny_model(tmp_path, monkeypatch):
    """Issue 27: the evaluation asks in chunks so its bar moves; with the real tiny model and sampler the rows and
    metrics equal those of one call with every question."""
    pytest.importorskip("visplay_models")
    import torch
    from visplay_games import plugin as games_plugin

    torch.set_num_threads(1)
    ctx = make_ctx(tmp_path, overrides=["plugins.games.held_out_questions=3", "plugins.games.eval_votes=4"],
                   standin=False, autoload=True)
    reasoner = ctx.hooks.load_policy(role="reasoner", init_from=None)
    chunked = ctx.hooks.iteration_end(iteration=1, questioner=None, reasoner=reasoner)
    monkeypatch.setattr(games_plugin, "EVAL_PROGRESS_UPDATES", 1)
    whole = ctx.hooks.iteration_end(iteration=1, questioner=None, reasoner=reasoner)
    assert chunked["gold/items"] == 18.0 and chunked == whole
