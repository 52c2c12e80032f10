"""The games plugin inside the real engine: source, cold start, gold evaluation and a gold-reward reasoner set."""

from __future__ import annotations

import pytest

TINY = ["data.source=games", "iterations=1", "questioner.steps=1", "reasoner.steps=1",
        "questioner.images_per_step=2", "questioner.group_size=2", "questioner.votes=2", "reasoner.votes=2",
        "reasoner.set_images=2", "reasoner.questions_per_step=2", "reasoner.group_size=2", "data.num_images=12",
        "plugins.games.cold_start_steps=2", "plugins.games.cold_start_reasoner_steps=null",
        "plugins.games.cold_start_images=6", "plugins.games.held_out=3",
        "plugins.games.held_out_questions=1", "plugins.games.eval_votes=2", "plugins.games.gold_reward=true",
        "reward.weights={game_points: 0.5}"]


@pytest.mark.slow
def test_gold_reward_run_through_the_engine(tmp_path, capsys):
    engine = pytest.importorskip("visplay.loop.engine")
    pytest.importorskip("visplay_models.sft")
    import torch

    torch.set_num_threads(1)
    from visplay.config import load_recipe
    from visplay.log.runlog import RunLog

    db = engine.run_recipe(load_recipe("tiny", TINY), run_dir=tmp_path / "run", quiet=True)
    with RunLog(db, readonly=True) as log:
        truth = log.rows("gold_truth")
        assert {r["split"] for r in truth} == {"train", "heldout", "coldstart"}
        assert log.count("gold_eval", "iteration = 1") == 3
        names = {r["name"] for r in log.rows("metrics", "phase = 'eval' and iteration = 1")}
        assert {"gold/accuracy", "gold/sample_accuracy", "gold/answered"} <= names
        cold = {r["name"] for r in log.rows("metrics", "phase = 'cold_start'")}
        assert "cold_start/reasoner/loss_last" in cold
        assert {r["reason"] for r in log.rows("filters", "iteration = 1")} == {"gold"}
        train = {r["image_id"]: r for r in truth if r["split"] == "train"}
        for q in log.rows("questions", "phase = 'reasoner_set'"):
            assert q["question"] in train[q["image_id"]]["qa"]  # a gold QA pair of that very image
        components = {r["component"] for r in log.rows("rewards", "role = 'reasoner'")}
        assert {"gold_accuracy", "game_points", "total"} <= components
        start = log.metrics_of(0, "eval")
    # the starting models' line comes before iteration 1's, with the cold-start model's pass@1 and maj@m
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("start (questioner_v0, reasoner_v0): "))
    assert f"gold pass@1 {start['gold/sample_accuracy']:.3f}\u00b1{start['gold/sample_accuracy_se']:.3f}" in line
    assert "maj@2 " in line and "silver-label" not in line  # no silver labels before iteration 1
    assert out.index("start (questioner_v0") < out.index("iteration 1/1:")
