"""The ``games`` image source: a deterministic pool whose truth goes to the run log, never to the loop."""

from __future__ import annotations

import hashlib
import json

import pytest
from support.games import make_ctx
from visplay_games import pools
from visplay_games.options import GamesConfigError, parse_options

from visplay.config import RecipeError
from visplay.log.runlog import RunLog


def open_source(ctx):
    return ctx.hooks.image_source(name="games", options=dict(ctx.recipe.data))


def test_source_is_deterministic_and_balanced(no_autoload):
    ctx = make_ctx()
    first = [r.image_id for r in open_source(ctx)]
    again = [r.image_id for r in open_source(make_ctx())]
    assert first == again and len(first) == 12
    other = [r.image_id for r in open_source(make_ctx(overrides=["seed=1"]))]
    assert not set(first) & set(other)
    games = [r.meta["game"] for r in open_source(ctx)]
    assert games[:6] == ["2048", "shisen", "swap", "shapes", "bars", "clock"]
    for record in open_source(ctx):
        assert record.png and hashlib.sha256(record.png).hexdigest() == record.image_id
        assert record.image.size == (64, 64)
        assert set(record.meta) == {"game", "difficulty", "seed"}


def test_other_names_are_not_ours(no_autoload):
    import visplay_games.plugin as games_plugin

    ctx = make_ctx()
    assert games_plugin.visplay_image_source(ctx, "folder", dict(ctx.recipe.data)) is None


def test_truth_goes_to_the_gold_truth_table(no_autoload, tmp_path):
    with RunLog(tmp_path / "run.db", create=True) as log:
        ctx = make_ctx(tmp_path, log=log)
        source = open_source(ctx)
        open_source(ctx)  # a resumed run opens the source again: no duplicate-key error
        rows = log.rows(pools.TRUTH_TABLE, "split = ?", ["train"])
        assert [r["image_id"] for r in rows] == [r.image_id for r in source]
        qa = json.loads(rows[0]["qa"])
        assert qa and {"question", "answer", "kind", "category"} <= set(qa[0])
        held = log.rows(pools.TRUTH_TABLE, "split = ?", ["heldout"])
        assert len(held) == 6
        assert not {r["image_id"] for r in held} & {r["image_id"] for r in rows}


def test_held_out_set_is_fixed_and_disjoint(no_autoload, tmp_path):
    ids = []
    for seed in (0, 5):
        with RunLog(tmp_path / f"run{seed}.db", create=True) as log:
            open_source(make_ctx(tmp_path, overrides=[f"seed={seed}"], log=log))
            ids.append([r["image_id"] for r in log.rows(pools.TRUTH_TABLE, "split = ?", ["heldout"])])
    assert ids[0] == ids[1] and len(ids[0]) == 6


def test_training_and_cold_start_pools_skip_held_out_pictures():
    # Clocks on the hour have only 12 pictures, so an 8-image training pool would likely repeat held-out ones.
    opts = parse_options({"games": ["clock"], "difficulties": [1], "held_out": 3, "cold_start_images": 6})
    held = {r.image_id for _, r in pools.held_out_pool(opts, 64)}
    train = pools.train_pool(0, opts, 8, 64)
    cold = pools.cold_start_pool(0, opts, 64)
    assert len(held) == 3 and len(train) == 8 and len(cold) == 6
    assert not held & {r.image_id for _, r in train + cold}
    assert len({r.image_id for _, r in train}) == 8  # distinct within a pool
    with pytest.raises(RuntimeError, match="distinct"):
        pools.train_pool(0, opts, 13, 64)


def test_an_exhausted_game_cell_yields_its_slots_to_the_next_cell():
    """Clocks on the hour have 12 pictures: a 40-image pool of clocks and shapes takes the clocks there are
    (minus the held-out ones) and fills the rest with shapes, instead of failing."""
    opts = parse_options({"games": ["clock", "shapes"], "difficulties": [1], "held_out": 4})
    held = {r.image_id for _, r in pools.held_out_pool(opts, 64)}
    pool = pools.train_pool(0, opts, 40, 64)
    games = [gs.game for gs, _ in pool]
    assert len(pool) == 40 and len({r.image_id for _, r in pool}) == 40 and not held & {r.image_id for _, r in pool}
    assert 0 < games.count("clock") <= 12 - sum(1 for gs, _ in pools.held_out_pool(opts, 64) if gs.game == "clock")
    assert games[:6] == ["clock", "shapes"] * 3  # balanced while both cells still have pictures
    assert pools.train_pool(0, opts, 40, 64) == pool  # deterministic


@pytest.mark.parametrize("raw, key", [
    ({"gamez": ["2048"]}, "plugins.games.gamez"),
    ({"games": ["chess"]}, "plugins.games.games"),
    ({"difficulties": [0]}, "plugins.games.difficulties"),
    ({"held_out": -1}, "plugins.games.held_out"),
    ({"eval_votes": 0}, "plugins.games.eval_votes"),
    ({"cold_start_lr": 0}, "plugins.games.cold_start_lr"),
    ({"cold_start_roles": ["judge"]}, "plugins.games.cold_start_roles"),
])
def test_bad_options_name_the_key(raw, key):
    with pytest.raises(GamesConfigError, match=key.replace(".", r"\.")):
        parse_options(raw)


def test_yaml_integer_game_name_and_bad_size(no_autoload):
    assert parse_options({"games": [2048]}).games == ["2048"]
    with pytest.raises(RecipeError, match=r"plugins\.games\.image_size': must be an integer >= 48, got 16"):
        make_ctx(overrides=["plugins.games.image_size=16"])
