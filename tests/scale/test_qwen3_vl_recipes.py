"""The Qwen3-VL recipes (issue 25): built-in facts that count like the checkpoints, the paper settings of the nearest
Qwen2.5-VL size, a dry run without weights, and the refusals of a box they do not fit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf
from support.scale import dry_run, load_for_dry_run
from visplay_models.facts import ARCHITECTURES as BUILT_IN
from visplay_models.facts import count_parameters

from visplay.config import RecipeError, load_recipe

# recipe -> (hub id, the paper recipe whose settings it takes, total, vision parameters of a meta instantiation)
QWEN3 = {
    "qwen3-vl-4b": ("Qwen/Qwen3-VL-4B-Instruct", "qwen-vl-3b", 4437815808, 415347712),
    "qwen3-vl-8b": ("Qwen/Qwen3-VL-8B-Instruct", "qwen-vl-7b", 8767123696, 576388336),
}
# huggingface.co/OpenExplorer/Qwen3-VL-{4B,8B}-Instruct, "calculated from the tensors stored in the upstream
# checkpoint": total, ViT and language-model parameters as they print them
CHECKPOINT_COUNTS = {"qwen3-vl-4b": ("4.438B", "415.3M", "4.022B"), "qwen3-vl-8b": ("8.767B", "576.4M", "8.191B")}


@pytest.mark.parametrize("name", sorted(QWEN3))
def test_built_in_facts_count_like_the_checkpoint(name):
    hub, _, total, vision = QWEN3[name]
    counts = count_parameters(BUILT_IN[hub])
    assert (counts["total"], counts["vision"]) == (total, vision)
    printed = (f"{counts['total'] / 1e9:.3f}B", f"{counts['vision'] / 1e6:.1f}M", f"{counts['text'] / 1e9:.3f}B")
    assert printed == CHECKPOINT_COUNTS[name]


def _settings(cfg) -> dict:
    data = OmegaConf.to_container(cfg, resolve=False)
    for key in ("name", "description", "setup", "run_dir"):
        data.pop(key)
    data["plugins"]["models"].pop("plan_as")
    return data


@pytest.mark.parametrize("name", sorted(QWEN3))
def test_recipe_takes_the_nearest_paper_recipes_settings(name):
    hub, paper, _, _ = QWEN3[name]
    cfg = load_for_dry_run(name, [])
    assert cfg.name == name and cfg.plugins.models.plan_as == hub
    assert _settings(cfg) == _settings(load_for_dry_run(paper, []))


@pytest.mark.parametrize("name", sorted(QWEN3))
def test_missing_paths_are_named_before_any_work(name):
    hub = QWEN3[name][0]
    with pytest.raises(RecipeError) as err:
        load_recipe(name)
    text = str(err.value)
    assert "data.images, model.path" in text
    assert f"hf download {hub} --local-dir /models/{hub.split('/')[1]}" in text


def test_dry_run_plans_49_image_tokens_and_fits_the_paper_box():
    text = dry_run(load_for_dry_run("qwen3-vl-4b", []), visible=8)
    assert "model: hf qwen3_vl 4.438B parameters (text 4.022B, vision 0.415B)" in text
    assert "49 image tokens (224 x 224 px = 7 x 7 merged 32-px patches)" in text
    assert "training: 4 process(es), fsdp" in text and "fits: yes" in text


def test_a_local_qwen3_vl_config_json_wins_over_the_built_in_facts(tmp_path):
    folder = tmp_path / "Qwen3-VL-4B-Instruct"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(BUILT_IN["Qwen/Qwen3-VL-4B-Instruct"]))
    text = dry_run(load_for_dry_run("qwen3-vl-8b", [f"model.path={folder}"]), visible=8)
    assert "4.438B parameters" in text and "config from model.path" in text


def test_cli_dry_run_of_the_8b_without_weights_exits_0():
    """The issue's done-check: `visplay reproduce qwen3-vl-8b --dry-run --gpus 8` plans without weights."""
    proc = subprocess.run([sys.executable, "-m", "visplay.cli", "reproduce", "qwen3-vl-8b", "--dry-run", "--gpus",
                           "8"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "8.767B parameters (text 8.191B, vision 0.576B)" in out
    assert "built-in facts of Qwen/Qwen3-VL-8B-Instruct (no weights needed)" in out
    assert "not given: model.path" in out and "fits: yes" in out
    # bf16 weights + two bf16 AdamW moments of 8,767,123,696 parameters
    assert f"{3 * 2 * 8767123696 / 1024**3:.1f} GiB per snapshot" in out


def test_cli_refuses_four_40_gib_gpus_naming_the_keys():
    proc = subprocess.run([sys.executable, "-m", "visplay.cli", "reproduce", "qwen3-vl-8b", "--dry-run", "--gpus",
                           "4", "--gpu-memory", "40"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2
    assert "plugins.vllm.tensor_parallel_size=2 needs 2 GPUs per engine" in proc.stderr
    assert "change plugins.models.lora.enabled=true" in proc.stderr


def test_gemma3_4b_facts_plan_256_image_tokens_per_image():
    """google/gemma-3-4b-it plans on top of a recipe (plugins.models.plan_as) with its fixed 256 tokens per image and
    the 4,096 patches its SigLIP tower runs on an 896 px image; the model card's 4.3B parameters."""
    from visplay_models.facts import image_tokens, patches_per_image

    facts = BUILT_IN["google/gemma-3-4b-it"]
    assert count_parameters(facts) == {"text": 3880263168, "vision": 419816304, "total": 4300079472}
    cfg = load_for_dry_run("qwen3-vl-4b", ["plugins.models.plan_as=google/gemma-3-4b-it"])
    assert image_tokens(cfg, facts)[0] == 256 and patches_per_image(facts, 256) == 4096
    text = dry_run(cfg, visible=8)
    assert "model: hf gemma3 4.300B parameters (text 3.880B, vision 0.420B)" in text
    assert "prompt allowance: 704 tokens = 448 text + 256 image tokens (mm_tokens_per_image" in text
    assert "fits: yes" in text
