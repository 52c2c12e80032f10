"""The paper recipes load, validate and dry-run against fake model folders (real config.json, no weights)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.scale import ARCHITECTURES, dry_run, load_for_dry_run, write_fake_model, write_image_folder
from visplay_models.facts import count_parameters

from visplay.config import RecipeError, load_recipe

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
    grpo = cfg.plugins.grpo
    assert (cfg.questioner.images_per_step, cfg.questioner.group_size, grpo.update_batch_size) == (512, 8, 128)
    assert (cfg.questioner.votes, cfg.reasoner.votes, grpo.lr) == (10, 9, 1e-6)
    assert (cfg.questioner.sampling.max_new_tokens, cfg.reasoner.sampling.max_new_tokens) == (2048, 4096)
    assert list(cfg.plugins.algorithm.filter.band) == [0.25, 0.75] and cfg.model.backend == "hf"
    text = dry_run(cfg, visible=8)
    assert f"{params / 1e9:.3f}B parameters" in text
    assert "sampling on [0, 1, 2, 3], training on [4, 5, 6, 7]" in text
    assert "sampling/reasoner" in text and "training:" in text
    assert "dry run: nothing loaded" in text


@pytest.mark.parametrize("name", sorted(PAPER))
def test_released_variant_documented_in_the_recipe_loads(tmp_path, name):
    steps, _ = PAPER[name]
    shape = "reasoner.set_images=1000 reasoner.questions_per_image=8 reasoner.set_order=first"
    overrides = ["variant=released", f"questioner.steps={2 * steps}", f"reasoner.steps={2 * steps}",
                 *shape.split(), "plugins.images.resize=pixels"]
    cfg = load_recipe(name, _paths(tmp_path, name) + overrides)
    assert list(cfg.plugins.algorithm.filter.band) == [0.3, 0.8]
    assert cfg.plugins.algorithm.reward.combine == "released" and cfg.plugins.images.resize == "pixels"
    assert (cfg.reasoner.set_images, cfg.reasoner.questions_per_image, cfg.reasoner.set_order) == (1000, 8, "first")
    assert (cfg.plugins.algorithm.set_sampling.top_p, cfg.plugins.algorithm.set_sampling.max_new_tokens) == (0.95,
                                                                                                            4096)
    text = (RECIPES / f"{name}.yaml").read_text()
    assert f"variant=released questioner.steps={2 * steps}" in text and "variant: released" in text
    assert shape in text  # the released reasoner set's shape is on the documented command line


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
    assert "hf download Qwen/Qwen2.5-VL-3B-Instruct --local-dir /models/Qwen2.5-VL-3B-Instruct" in text
    assert "visplay reproduce qwen-vl-3b model.path=" in text


@pytest.mark.parametrize("command", ["recipe", "reproduce"])
def test_cli_without_weights_exits_2_with_the_hint(command):
    if command == "reproduce":
        pytest.importorskip("visplay.loop.engine")
    proc = subprocess.run([sys.executable, "-m", "visplay.cli", command, "qwen-vl-3b"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "hf download Qwen/Qwen2.5-VL-3B-Instruct" in proc.stderr


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


# --- issue 14: a dry run for a box you don't have ---------------------------------------------------------------


def test_dry_run_without_weights_plans_the_paper_box_from_built_in_facts():
    """`visplay reproduce qwen-vl-3b --dry-run --gpus 8`, no model.path: 4 FSDP processes on GPUs 4-7, the two
    engines on 0-1 and 2-3, the built-in 3B facts (the same count as the real config.json), exit 0."""
    proc = subprocess.run([sys.executable, "-m", "visplay.cli", "reproduce", "qwen-vl-3b", "--dry-run", "--gpus", "8"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "training: 4 process(es), fsdp" in out and "rank -> GPU 0->4, 1->5, 2->6, 3->7" in out
    assert "engine questioner: sampler vllm in its own processes on GPU(s) [0, 1]" in out
    assert "engine reasoner: sampler vllm in its own processes on GPU(s) [2, 3]" in out
    assert f"{PAPER['qwen-vl-3b'][1] / 1e9:.3f}B parameters" in out and "built-in facts of Qwen/Qwen2.5-VL-3B" in out
    assert "not given: model.path" in out and "fits: yes" in out
    # 512 images x G=8 = 4096 rollouts per step at 128 prompts x n=8 = 1024 per update (EasyR1): 4 updates
    assert "4096 rollouts / update batch 1024 rollouts = 4 AdamW updates" in out
    # one snapshot: bf16 weights + two bf16 AdamW moments of 3,754,622,976 parameters
    assert f"{3 * 2 * 3754622976 / 1024**3:.1f} GiB per snapshot" in out


@pytest.mark.parametrize("name", sorted(PAPER))
def test_built_in_facts_equal_the_real_config_json(tmp_path, name):
    """Each paper recipe plans as the hub id it names (plugins.models.plan_as), whose built-in facts count as the
    model's real config.json."""
    from visplay_models.facts import ARCHITECTURES as BUILT_IN

    plan_as = load_for_dry_run(name, []).plugins.models.plan_as
    assert count_parameters(BUILT_IN[plan_as]) == count_parameters(ARCHITECTURES[name])


def test_seven_b_plans_fit_80_gib_and_a_local_config_wins(tmp_path):
    plan_dry_run = dry_run
    for name in ("qwen-vl-7b", "mimo-vl-7b"):
        text = plan_dry_run(load_for_dry_run(name, []), visible=8)
        assert "training: 4 process(es), fsdp" in text and "fits: yes" in text
    # a local model folder overrides the built-in facts: the 3B's config under the 7B recipe counts as the 3B
    model = write_fake_model(tmp_path / "m", "qwen-vl-3b")
    text = plan_dry_run(load_for_dry_run("qwen-vl-7b", [f"model.path={model}"]), visible=8)
    assert f"{PAPER['qwen-vl-3b'][1] / 1e9:.3f}B parameters" in text and "config from model.path" in text
    assert f"checked: model.path {model}" in text


@pytest.mark.parametrize("overrides, gpus, key", [
    (["distributed.nproc=1"], 8, "distributed.nproc=0"),                       # one 7B process: ~77 GiB + activations
    (["distributed.strategy=ddp", "distributed.nproc=4"], 8, "distributed.strategy=fsdp"),
    (["plugins.vllm.tensor_parallel_size=1", "plugins.vllm.gpu_memory_utilization=0.05"], 8,
     "plugins.vllm.tensor_parallel_size"),
    (["plugins.vllm.gpu_memory_utilization=0.2", "plugins.vllm.max_model_len=2000000"], 8, "plugins.vllm.max_model_len"),
])
def test_a_plan_that_cannot_fit_is_refused_naming_the_key(overrides, gpus, key):
    plan_dry_run = dry_run

    with pytest.raises(RecipeError, match="the plan does not fit") as err:
        plan_dry_run(load_for_dry_run("qwen-vl-7b", overrides), visible=gpus)
    assert key in str(err.value)


def test_one_gpu_shares_training_and_engines_and_cli_exit_code_is_2_when_it_cannot_fit():
    plan_dry_run = dry_run

    text = plan_dry_run(load_for_dry_run("qwen-vl-3b", ["plugins.vllm.tensor_parallel_size=1",
                                                        "plugins.vllm.gpu_memory_utilization=0.2",
                                                        "optimizer.micro_batch_size=1"]), visible=1,
                        gpu_memory_gib=141)
    assert "shared over 1 visible GPU(s)" in text and "training: 1 process(es), single process" in text
    proc = subprocess.run([sys.executable, "-m", "visplay.cli", "reproduce", "qwen-vl-7b", "distributed.nproc=1",
                           "--dry-run", "--gpus", "8"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "distributed.nproc=0" in proc.stderr


def test_nproc_zero_means_one_process_per_training_gpu():
    from support.scale import plan_placement, training_processes

    cfg = load_for_dry_run("qwen-vl-3b", [])
    assert training_processes(cfg, plan_placement(cfg, 8)) == 4
    assert training_processes(cfg, plan_placement(cfg, 0)) == 1      # no GPU: one process on CPU
    assert training_processes(cfg, plan_placement(cfg, 8), requested=2) == 2
