"""Fault suite, recipes (issue 17, items 7 and 8): bad values are refused at load time, naming file and key.

Every case was accepted by the loader before and failed later (after the run directory, often the cold start,
existed), crashed with a traceback, or was silently accepted. Each now raises RecipeError (exit 2) naming the key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from visplay.config import RecipeError, load_recipe

LATE = [  # (override, key named in the error, words of the reason)
    ("plugins.grpo.lr=-1", "plugins.grpo.lr", "must be in"),
    ("plugins.grpo.lr=nan", "plugins.grpo.lr", "finite"),
    ("plugins.grpo.lr=inf", "plugins.grpo.lr", "finite"),
    ("plugins.grpo.kl_type=k9", "plugins.grpo.kl_type", "low_var_kl"),
    ("plugins.grpo.micro_batch_size=0", "plugins.grpo.micro_batch_size", ">= 1"),
    ("plugins.grpo.update_batch_size=0", "plugins.grpo.update_batch_size", ">= 1"),
    ("plugins.grpo.grad_clip=0", "plugins.grpo.grad_clip", "must be in"),
    ("plugins.grpo.dual_clip=0.5", "plugins.grpo.dual_clip", "must be in"),
    ("plugins.algorithm.reward.combine=sum", "plugins.algorithm.reward.combine", "paper, released, weighted"),
    ("plugins.algorithm.reward.weights.extra=nan", "plugins.algorithm.reward.weights.extra", "finite"),
    ("questioner.sampling.max_new_tokens=0", "questioner.sampling.max_new_tokens", ">= 1"),
    ("questioner.group_size=0", "questioner.group_size", ">= 2"),
    ("questioner.group_size=1", "questioner.group_size", ">= 2"),
    ("reasoner.group_size=1", "reasoner.group_size", ">= 2"),
    ("questioner.images_per_step=0", "questioner.images_per_step", ">= 1"),
    ("reasoner.questions_per_step=0", "reasoner.questions_per_step", ">= 1"),
    ("reasoner.set_images=0", "reasoner.set_images", ">= 1"),
    ("reasoner.sampling.top_k=-5", "reasoner.sampling.top_k", ">= 0"),
    ("reasoner.sampling.temperature=nan", "reasoner.sampling.temperature", "finite"),
    ("model.device=gpu", "model.device", "cpu, cuda or cuda:N"),
    ("plugins.models.lora.dropout=1.5", "plugins.models.lora.dropout", "must be in"),
    ("plugins.models.tiny.num_layers=0", "plugins.models.tiny.num_layers", ">= 1"),
    ("plugins.games.cold_start_lr=nan", "plugins.games.cold_start_lr", "> 0"),
    ("data.num_images=0", "data.num_images", ">= 1"),
    ("plugins.images.size=0", "plugins.images.size", ">= 1"),
    ("plugins.images.max_file_mb=-1", "plugins.images.max_file_mb", "must be in"),
    ("plugins.images.min_pixels=100", None, None),  # fine alone: the control case
    ("plugins.images.max_pixels=10", "plugins.images.max_pixels", "plugins.images.min_pixels"),
    ("plugins.vllm.gpu_memory_utilization=nan", "plugins.vllm.gpu_memory_utilization", "must be in"),
    ("distributed.nproc=-1", "distributed.nproc", ">= 0"),  # 0 means one process per training GPU
    ("distributed.backend=mpi", "distributed.backend", "gloo"),
    ("eval.batch_size=0", "eval.batch_size", ">= 1"),
    ("seed=-1", "seed", ">= 0"),
    ("seed=100000000000000000000", "seed", "64-bit"),
    ("plugins=[1,2]", "plugins", "PluginsConfig"),
    ("plugins.games=3", "plugins.games", "GamesOptions"),
    ("name=../../x", "name", "not a path"),
    ("name=" + "a" * 300, "name", "300 characters"),
    ("run_dir=/dev/null", "run_dir", "not a folder"),
    ("run_dir=${nonexistent.key}", "run_dir", "nonexistent.key"),
    ("name=${oc.env:VISPLAY_FAULTS_UNSET}", "run_dir", "VISPLAY_FAULTS_UNSET"),
]


@pytest.mark.parametrize("override,key,reason", LATE, ids=[c[0][:40] for c in LATE])
def test_bad_value_is_refused_at_load_naming_file_and_key(override, key, reason, monkeypatch):
    monkeypatch.delenv("VISPLAY_FAULTS_UNSET", raising=False)
    if key is None:
        assert load_recipe("tiny", [override]).plugins.images.min_pixels == 100
        return
    with pytest.raises(RecipeError) as info:
        load_recipe("tiny", [override])
    message = str(info.value)
    assert f"'{key}'" in message, message
    assert reason in message, message
    assert "tiny.yaml" in message or f"override {override!r}" in message  # the file or the override is named


def test_every_problem_is_reported_at_once(monkeypatch):
    """The core's rules and the served names in one message (found before any plugin is imported, when the plugin
    index is fresh); every plugin section's own checks in one message; all of them at once without the index."""
    def keys(overrides):
        with pytest.raises(RecipeError) as info:
            load_recipe("tiny", overrides)
        return [line.split("key ")[1].split(":")[0] for line in str(info.value).splitlines()]

    assert keys(["seed=-1", "model.backend=tinyy"]) == ["'seed'", "'model.backend'"]
    assert keys(["plugins.grpo.lr=-1", "plugins.images.size=0"]) == ["'plugins.grpo.lr'", "'plugins.images.size'"]
    monkeypatch.setenv("VISPLAY_PLUGIN_INDEX", "0")
    assert keys(["plugins.grpo.lr=-1", "plugins.images.size=0", "seed=-1", "model.backend=tinyy"]) == [
        "'seed'", "'model.backend'", "'plugins.grpo.lr'", "'plugins.images.size'"]


def test_tilde_is_expanded_once_in_every_path_key(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_recipe("tiny", ["run_dir=~/runs/x", "data.images=~/imgs", "plugins.models.tiny.cache_dir=~/cache"])
    assert cfg.run_dir == f"{tmp_path}/runs/x"
    assert cfg.data.images == f"{tmp_path}/imgs"
    assert cfg.plugins.models.tiny.cache_dir == f"{tmp_path}/cache"


def test_missing_gpu_is_refused_before_the_run_directory(tmp_path):
    """A GPU recipe still loads on a CPU machine (dry runs, `visplay recipe`); running it is refused up front."""
    if any(Path("/dev").glob("nvidia[0-9]*")):
        pytest.skip("this machine has an NVIDIA device; the case is about a CPU box")
    from visplay.loop.runsetup import preflight

    cfg = load_recipe("tiny", ["model.device=cuda:7", f"run_dir={tmp_path / 'run'}"])
    with pytest.raises(RecipeError, match=r"model.device.*cuda:7 does not exist"):
        preflight(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override", ["plugins.grpo.lr=-1", "questioner.group_size=1", "name=../../x",
                                      "run_dir=~/x"])
def test_cli_exits_2_and_creates_nothing(override, tmp_path):
    """The real command: exit 2 with the key named, and no run directory (nor a literal ``~``) anywhere."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "OMP_NUM_THREADS": "1", "VISPLAY_DISABLE_PLUGIN_AUTOLOAD": "1"}
    extra = ["questioner.group_size=1"] if override == "run_dir=~/x" else []  # stop it after the ~ is expanded
    done = subprocess.run([sys.executable, "-m", "visplay.cli", "run", "tiny", override, *extra], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "recipe error" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
    assert list(home.iterdir()) == []
