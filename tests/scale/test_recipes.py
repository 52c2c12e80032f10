"""The paper recipes load, validate and dry-run against fake model folders (real config.json, no weights)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.scale import ARCHITECTURES, write_fake_model, write_image_folder

from visplay.config import RecipeError, load_recipe
from visplay.scale.placement import count_parameters, dry_run

RECIPES = Path(__file__).resolve().parent.parent.parent / "recipes"
PAPER = {"qwen-vl-3b": (20, 3754622976), "qwen-vl-7b": (10, 8292166656), "mimo-vl-7b": (10, 8301791232)}


def _paths(tmp_path, name):
    model = write_fake_model(tmp_path / "models" / name, name)
    images = write_image_folder(tmp_path / "images")
    return [f"model.path={model}", f"data.images={images}"]


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_recipe_has_paper_settings_and_dry_runs(tmp_path, name):
    steps, params = PAPER[name]
    cfg = load_recipe(name, _paths(tmp_path, name))
    assert (cfg.iterations, cfg.questioner.steps, cfg.reasoner.steps) == (3, steps, steps)
    assert (cfg.questioner.images_per_step, cfg.questioner.group_size, cfg.optimizer.update_batch_size) == (512, 8, 128)
    assert (cfg.questioner.votes, cfg.reasoner.votes, cfg.optimizer.lr) == (10, 9, 1e-6)
    assert (cfg.questioner.sampling.max_new_tokens, cfg.reasoner.sampling.max_new_tokens) == (2048, 4096)
    assert list(cfg.reasoner.filter.band) == [0.25, 0.75] and cfg.model.backend == "hf"
    text = dry_run(cfg, visible=8)
    assert f"{params / 1e9:.3f}B parameters" in text
    assert "sampling on [0, 1, 2, 3], training on [4, 5, 6, 7]" in text
    assert "sampling/reasoner" in text and "training:" in text
    assert "dry run: nothing loaded" in text


@pytest.mark.parametrize("name", sorted(PAPER))
def test_released_variant_documented_in_the_recipe_loads(tmp_path, name):
    steps, _ = PAPER[name]
    overrides = ["variant=released", f"questioner.steps={2 * steps}", f"reasoner.steps={2 * steps}",
                 "data.resize=pixels"]
    cfg = load_recipe(name, _paths(tmp_path, name) + overrides)
    assert list(cfg.reasoner.filter.band) == [0.3, 0.8] and cfg.reward.combine == "released"
    text = (RECIPES / f"{name}.yaml").read_text()
    assert f"variant=released questioner.steps={2 * steps}" in text and "variant: released" in text


def test_fake_configs_count_like_a_meta_device_model(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import AutoConfig, AutoModelForImageTextToText

    folder = write_fake_model(tmp_path / "m", "qwen-vl-3b")
    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == count_parameters(ARCHITECTURES["qwen-vl-3b"])["total"]


def test_missing_weights_message_says_what_to_download_and_how_to_pass_it():
    with pytest.raises(RecipeError) as err:
        load_recipe("qwen-vl-3b")
    text = str(err.value)
    assert "data.images, model.path" in text
    assert "huggingface-cli download Qwen/Qwen2.5-VL-3B-Instruct --local-dir /models/Qwen2.5-VL-3B-Instruct" in text
    assert "visplay reproduce qwen-vl-3b model.path=" in text


@pytest.mark.parametrize("command", ["recipe", "reproduce"])
def test_cli_without_weights_exits_2_with_the_hint(command):
    if command == "reproduce":
        pytest.importorskip("visplay.loop.engine")
    proc = subprocess.run([sys.executable, "-m", "visplay.cli", command, "qwen-vl-3b"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "huggingface-cli download Qwen/Qwen2.5-VL-3B-Instruct" in proc.stderr


def test_dry_run_names_a_path_that_is_not_a_model_folder(tmp_path):
    images = write_image_folder(tmp_path / "images")
    cfg = load_recipe("qwen-vl-7b", [f"model.path={tmp_path / 'nowhere'}", f"data.images={images}"])
    with pytest.raises(RecipeError, match=r"(?s)model.path=.*nowhere does not exist\n.*Qwen/Qwen2.5-VL-7B-Instruct"):
        dry_run(cfg, visible=8)
    (tmp_path / "empty").mkdir()
    cfg = load_recipe("qwen-vl-7b", [f"model.path={tmp_path / 'empty'}", f"data.images={tmp_path / 'none'}"])
    with pytest.raises(RecipeError, match="has no config.json"):
        dry_run(cfg, visible=8)
    model = write_fake_model(tmp_path / "m", "qwen-vl-7b")
    cfg = load_recipe("qwen-vl-7b", [f"model.path={model}", f"data.images={tmp_path / 'none'}"])
    with pytest.raises(RecipeError, match="data.images=.*none does not exist"):
        dry_run(cfg, visible=8)
