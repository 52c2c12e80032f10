"""The engine's loop with small real stand-in plugins (tests/support/engine.py): rows, determinism, stop/resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.engine import comparable_rows, standin_plugins, standin_recipe

from visplay.hookspecs import hookimpl
from visplay.log.runlog import RunLog
from visplay.loop.engine import RunExistsError, run_recipe

PHASES = ("questioner", "reasoner_set", "reasoner", "eval")


@pytest.fixture(autouse=True)
def _no_entry_points(no_autoload):
    yield


def _run(run_dir: Path, *extra: str, **kw) -> Path:
    return run_recipe(standin_recipe(run_dir, list(extra)), extra_plugins=standin_plugins(), quiet=True, **kw)


def test_every_phase_of_every_iteration_is_logged(tmp_path):
    db = _run(tmp_path / "run")
    with RunLog(db, readonly=True) as log:
        done = log.done_steps()
        assert (0, "cold_start", 0) in done
        for i in (1, 2):
            for phase in PHASES:
                assert any(s[0] == i and s[1] == phase for s in done), (i, phase)
            assert log.count("generations", "iteration = ? and phase = 'questioner' and kind = 'question'", [i]) == 2 * 2 * 3
            assert log.count("questions", "iteration = ? and phase = 'reasoner_set'", [i]) == 4
            assert log.count("filters", "iteration = ?", [i]) == 4
        components = {r["component"] for r in log.rows("rewards")}
        assert {"valid", "uncertainty", "accuracy", "total"} <= components
        # every scored questioner generation has all its components and a total
        qkeys = {r["key"] for r in log.rows("rewards", "role = 'questioner'")}
        for key in qkeys:
            assert {r["component"] for r in log.rows("rewards", "key = ?", [key])} == {"valid", "uncertainty", "total"}
        assert log.count("advantages", "role = 'questioner'") == 2 * 2 * 2 * 3
        checkpoints = {r["name"]: r for r in log.rows("checkpoints")}
        for name in ("questioner_v0", "reasoner_v0", "questioner_v1", "reasoner_v1", "questioner_v2", "reasoner_v2"):
            files = json.loads(checkpoints[name]["files"])
            assert files["weights.safetensors"] and len(files["weights_sha256"]) == 64
            assert (db.parent / checkpoints[name]["path"] / "weights.safetensors").is_file()
        assert "state/questioner-i1-s0" in checkpoints
        run = log.run()
        assert run["status"] == "finished" and run["seed"] == 0 and run["torch"]
        assert {"standin_models", "standin_algorithm"} <= {p["name"] for p in log.rows("plugins")}
        assert log.count("images") == 12 and log.integrity_ok()
    # only final versions stay on disk; step states are pruned once a role's phase is done
    assert not list((db.parent / "checkpoints" / "state").glob("*"))


def test_same_seed_same_rows_different_seed_different_rows(tmp_path, monkeypatch):
    # relative run dirs, so the recorded recipe (run_dir) is the same for both runs
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    first = comparable_rows(_run(Path("runs/x")))
    monkeypatch.chdir(tmp_path / "b")
    second = comparable_rows(_run(Path("runs/x")))
    assert first == second
    third = comparable_rows(_run(Path("runs/x"), "seed=1", overwrite=True))
    assert third["generations"] != first["generations"]
    assert third["rewards"] != first["rewards"]


def test_refuses_existing_run_dir_and_says_how_to_resume(tmp_path):
    _run(tmp_path / "run")
    with pytest.raises(RunExistsError, match="visplay resume"):
        _run(tmp_path / "run")
    _run(tmp_path / "run", overwrite=True)
    stranger = tmp_path / "not_a_run"
    stranger.mkdir()
    (stranger / "precious.txt").write_text("keep me")
    with pytest.raises(RunExistsError, match="not a visplay run directory"):
        _run(stranger, overwrite=True)
    assert (stranger / "precious.txt").exists()


def test_stop_then_resume_equals_uninterrupted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    whole = comparable_rows(_run(Path("runs/x")))
    monkeypatch.chdir(tmp_path / "b")
    db = _run(Path("runs/x"), stop=(1, "reasoner", 0))
    with RunLog(db, readonly=True) as log:
        assert log.run()["status"] == "running"
        assert (1, "reasoner", 0) in log.done_steps() and (1, "reasoner", 1) not in log.done_steps()
    run_recipe(standin_recipe(Path("runs/x")), extra_plugins=standin_plugins(), quiet=True, resume=True)
    assert comparable_rows(db) == whole


def test_iteration_summary_line(tmp_path, capsys):
    _run(tmp_path / "run")
    out = capsys.readouterr().out
    assert "iteration 1/2: questioner reward" in out and "iteration 2/2" in out
    assert "mean confidence" in out and "kept" in out and "reasoner reward" in out


class GoldSet:
    """Supplies the reasoner's set from known answers (as the games plugin does with gold_reward on)."""

    plugin_name = "gold_set"

    def __init__(self):
        self.seen_gold: list[str | None] = []

    @hookimpl
    def visplay_reasoner_questions(self, ctx, iteration, images):
        return [(image, "how many shapes ?", str(image.meta["total"])) for image in images]

    @hookimpl
    def visplay_reward_components(self, ctx, role, items):
        if role != "reasoner":
            return None
        self.seen_gold.extend(item.gold for item in items)
        return {"gold_match": [float(item.answer_key == item.silver_key) for item in items]}


def test_gold_reasoner_set_replaces_questions_votes_and_filters(tmp_path):
    gold = GoldSet()
    db = run_recipe(standin_recipe(tmp_path / "run", ["iterations=1"]),
                    extra_plugins=(*standin_plugins(), gold), quiet=True)
    with RunLog(db, readonly=True) as log:
        rows = log.rows("questions", "phase = 'reasoner_set'")
        assert len(rows) == 4 and {r["parse_reason"] for r in rows} == {"gold"}
        assert {r["reason"] for r in log.rows("filters")} == {"gold"}
        labels = log.rows("labels", "phase = 'reasoner_set'")
        assert {r["confidence"] for r in labels} == {1.0} and all(r["silver_label"].isdigit() for r in labels)
        assert log.count("generations", "phase = 'reasoner_set'") == 0  # no questioner, no votes
        assert log.count("events", "kind = 'gold_reasoner_set'") == 2  # one per set step
        assert log.count("rewards", "component = 'gold_match'") == 2 * 2 * 3
    assert gold.seen_gold and all(g is not None and g.isdigit() for g in gold.seen_gold)


def test_start_skips_earlier_steps_and_names_a_missing_checkpoint(tmp_path):
    db = _run(tmp_path / "run", stop=(1, "questioner", 1))  # questioner_v1 now exists
    cfg = standin_recipe(tmp_path / "run")
    run_recipe(cfg, extra_plugins=standin_plugins(), quiet=True, resume=True, start=(1, "reasoner_set", 0),
               stop=(1, "reasoner_set", 1))
    with RunLog(db, readonly=True) as log:
        assert (1, "reasoner_set", 1) in log.done_steps() and (1, "reasoner", 0) not in log.done_steps()
    with pytest.raises(FileNotFoundError, match="state/reasoner-i1-s0"):
        run_recipe(cfg, extra_plugins=standin_plugins(), quiet=True, resume=True, start=(1, "reasoner", 1))
