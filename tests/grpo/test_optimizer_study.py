"""reproduce/optimizer_study.py: its arms are valid recipes with the sources' settings; its table comes from JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from support.studies import fake_study_run

from visplay.config import load_recipe

ROOT = Path(__file__).resolve().parents[2]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "reproduce" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arm, expected", [
    ("grpo", {"policy_loss": "dual_clip", "norm_adv_by_std": True, "drop_zero_variance": False, "clip_high": 0.3}),
    ("dr_grpo", {"norm_adv_by_std": False, "loss_agg": "seq_mean_token_sum_norm", "policy_loss": "dual_clip"}),
    ("gspo", {"policy_loss": "gspo", "clip_low": 3e-4, "clip_high": 4e-4, "norm_adv_by_std": True}),
    ("dapo", {"drop_zero_variance": True, "clip_high": 0.28, "policy_loss": "dual_clip"}),
])
def test_each_arm_is_the_tiny_recipe_with_its_optimizer_settings(arm, expected):
    study, games = load("optimizer_study"), load("games_study")
    assert arm in study.ARMS
    cfg = load_recipe("tiny", games.ARMS[arm])  # refused at load if a key or a name were wrong
    grpo = cfg.plugins.grpo
    assert cfg.variant == "paper" and cfg.optimizer.name == "grpo"
    assert {k: grpo[k] for k in expected} == expected


def test_the_table_lists_the_arms_in_the_study_order_between_its_own_markers(tmp_path):
    study = load("optimizer_study")
    out = tmp_path / "runs"
    fake_study_run(out / "dapo-s0", "dapo", 0, [0.0, 0.5], [0.5, 0.5], [0.9] * 3)
    fake_study_run(out / "grpo-s0", "grpo", 0, [0.0, 0.5], [0.0, 1.0], [0.9] * 3)
    page = tmp_path / "algorithm.md"
    page.write_text(f"a\n{study.BEGIN}\nold\n{study.END}\nb\n<!-- collapse-study:begin -->\nkeep\n")
    assert study.main(["--out", str(out), "--table-only", "--docs", str(page)]) == 0
    text = page.read_text()
    assert text.index("| grpo | 1 | +25.0 |") < text.index("| dapo | 1 | +25.0 |")  # study order, not by name
    assert "| seed | start pass@1 | grpo | dapo |" in text and "old" not in text and "keep" in text
    kept = json.loads((out / "optimizer.json").read_text())["runs"]
    assert sorted(r["arm"] for r in kept) == ["dapo", "grpo"]
