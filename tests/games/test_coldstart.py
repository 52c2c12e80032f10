"""Cold start: SFT pairs in both roles' formats, built with the loop's own prompts; the SFT call and its log."""

from __future__ import annotations

import pytest
from support.games import make_ctx
from visplay_games import coldstart, pools
from visplay_games.plugin import options

from visplay.log.runlog import RunLog


def _pool(ctx):
    return pools.cold_start_pool(ctx.seed, options(ctx), options(ctx).image_size)


def test_pairs_in_both_formats_with_fallback_prompts(no_autoload):
    ctx = make_ctx(overrides=["plugins.games.cold_start_images=12"])
    pool = _pool(ctx)
    pairs = coldstart.build_pairs(ctx, pool, "paper")
    assert len(pairs["questioner"]) == 12 and len(pairs["reasoner"]) == 24  # QA + description per image
    prompt, target = pairs["questioner"][0]
    assert prompt.image.image_id == pool[0][1].image_id
    assert target == f"<question>{pool[0][0].qa[0].question}</question>"
    prompt, target = pairs["reasoner"][1]
    qa = pool[1][0].qa[1]
    assert prompt.user == qa.question  # the stand-in's answer prompt is the bare question
    assert target.startswith("<think>") and target.endswith(f"\\boxed{{{qa.answer}}}")
    describe_prompt, description = pairs["reasoner"][12]
    assert describe_prompt.user == coldstart.DESCRIBE and description == pool[0][0].description
    released = coldstart.build_pairs(ctx, pool, "released", describe=False)
    assert len(released["reasoner"]) == 12
    assert "<type>" in released["questioner"][0][1] and "<answer>" in released["questioner"][0][1]


def test_pairs_use_the_algorithm_plugins_prompts(no_autoload):
    algorithm = pytest.importorskip("visplay_algorithm.plugin")

    for variant in ("paper", "released"):
        ctx = make_ctx(standin=False, plugins=(algorithm,))
        pool = _pool(ctx)[:6]
        pairs = coldstart.build_pairs(ctx, pool, variant)
        q_prompt = pairs["questioner"][0][0]
        recorder = coldstart.RecordingSampler()
        ctx.hooks.generate_questions(sampler=recorder, images=[pool[0][1]], n=1, seeds=[0])
        assert recorder.prompts[0] == q_prompt  # exactly the loop's prompt
        assert pool[0][0].qa[0].question in pairs["reasoner"][0][0].user
    # the run's own parser accepts every questioner target (paper variant in the tiny recipe)
    assert coldstart.check_questioner_targets(ctx, coldstart.build_pairs(ctx, pool, "paper")["questioner"]) == 0


class RecordingSFT:
    def __init__(self):
        self.calls = []

    def __call__(self, policy, pairs, *, steps, lr, batch_size, seed):
        self.calls.append((policy, len(pairs), steps, lr, batch_size, seed))
        return [3.0 - 0.5 * k for k in range(steps)]


def test_cold_start_calls_sft_per_role_and_logs_losses(no_autoload, tmp_path):
    with RunLog(tmp_path / "run.db", create=True) as log:
        ctx = make_ctx(tmp_path, log=log, overrides=["plugins.games.cold_start_steps=3",
                                                      "plugins.games.cold_start_images=6",
                                                      "plugins.games.cold_start_lr=0.01"])
        sft = RecordingSFT()
        metrics = coldstart.cold_start(ctx, {"questioner": "Q", "reasoner": "R"}, _pool(ctx), options(ctx), sft)
        losses = log.rows(coldstart.LOSS_TABLE)
    assert [(c[0], c[1], c[2], c[3], c[4]) for c in sft.calls] == [("Q", 6, 3, 0.01, 8), ("R", 12, 3, 0.01, 8)]
    assert sft.calls[0][5] != sft.calls[1][5]  # each role its own seed
    assert metrics["cold_start/reasoner/loss_first"] == 3.0 and metrics["cold_start/reasoner/loss_last"] == 2.0
    assert len(losses) == 6 and losses[0] == {"role": "questioner", "step": 0, "loss": 3.0}


def test_no_cold_start_by_default(no_autoload):
    ctx = make_ctx()
    assert ctx.hooks.run_start(questioner=None, reasoner=None) == {}


@pytest.mark.slow
def test_cold_start_makes_the_tiny_reasoner_box_answers(tmp_path):
    """The real tiny model: after a short SFT the reasoner writes parseable boxed answers far more often."""
    pytest.importorskip("visplay_models.sft")
    import torch

    torch.set_num_threads(1)
    from visplay_games.plugin import gold_eval

    from visplay.session import PluginSession

    session = PluginSession()  # every installed plugin: the real model backend and SFT
    ctx = session.context(session.load_recipe("tiny", [
        "plugins.games.cold_start_steps=60", "plugins.games.cold_start_lr=0.002",
        "plugins.games.cold_start_roles=[reasoner]", "plugins.games.cold_start_images=24",
        "plugins.games.eval_votes=2"]), tmp_path)
    reasoner = ctx.hooks.load_policy(role="reasoner", init_from=None)
    before = gold_eval(ctx, 0, reasoner.sampler(), options(ctx))
    metrics = ctx.hooks.run_start(questioner=None, reasoner=reasoner)
    after = gold_eval(ctx, 1, reasoner.sampler(), options(ctx))
    assert metrics["cold_start/reasoner/loss_last"] < metrics["cold_start/reasoner/loss_first"]
    assert after["gold/answered"] > before["gold/answered"]


def test_reasoner_may_get_more_steps_and_a_role_with_zero_steps_is_skipped(no_autoload):
    ctx = make_ctx(overrides=["plugins.games.cold_start_steps=0", "plugins.games.cold_start_reasoner_steps=5",
                              "plugins.games.cold_start_images=4", "plugins.games.cold_start_describe=false",
                              "plugins.games.cold_start_think_chars=0"])
    sft = RecordingSFT()
    metrics = coldstart.cold_start(ctx, {"questioner": "Q", "reasoner": "R"}, _pool(ctx), options(ctx), sft)
    assert [(c[0], c[1], c[2]) for c in sft.calls] == [("R", 4, 5)]
    assert "cold_start/questioner/pairs" not in metrics
    pairs = coldstart.build_pairs(ctx, _pool(ctx), "paper", describe=False, think_chars=0)
    assert pairs["reasoner"][0][1].startswith("<think></think>")


def test_cold_start_cache_gives_bit_identical_weights_and_losses(tmp_path):
    """The real tiny model: a cached SFT result loads the very weights and losses a fresh SFT produces, and any
    change of setting (here the step count) is a different entry."""
    sft = pytest.importorskip("visplay_models.sft")
    import torch

    torch.set_num_threads(1)
    ctx = make_ctx(tmp_path, overrides=["plugins.games.cold_start_images=6"], standin=False, autoload=True)
    pairs = coldstart.build_pairs(ctx, _pool(ctx), "paper")["reasoner"]
    settings = {"steps": 3, "lr": 1e-3, "batch_size": 4, "seed": 7}

    def fresh():
        return ctx.hooks.load_policy(role="reasoner", init_from=None)

    first, second, plain = fresh(), fresh(), fresh()
    start = first.weights_sha256()
    losses_a, hit_a = sft.cached_sft_train(first, pairs, cache_dir=tmp_path / "c", **settings)
    losses_b, hit_b = sft.cached_sft_train(second, pairs, cache_dir=tmp_path / "c", **settings)
    assert (hit_a, hit_b) == (False, True)
    assert losses_a == losses_b == sft.sft_train(plain, pairs, **settings)
    assert first.weights_sha256() == second.weights_sha256() == plain.weights_sha256() != start
    _, hit_c = sft.cached_sft_train(fresh(), pairs, cache_dir=tmp_path / "c", **{**settings, "steps": 2})
    assert not hit_c and len([p for p in (tmp_path / "c").iterdir() if not p.name.startswith(".")]) == 2
