"""Checkpoint folders a user can hand to another tool: files 0644 (not safetensors' 0600), an adapter config that
names its base without the run folder's absolute path (and loads back through peft), and final ``<role>_v<i>``
folders without optimizer state (a run's mid-phase snapshots keep theirs)."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest
import torch
from support.models import tiny_path
from visplay_models.policy import load_policy

LORA = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0,
        "target_modules": r".*model\.language_model.*\.(q_proj|v_proj)"}


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(folder) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*")}


def _train_adapters(policy) -> None:
    with torch.no_grad():
        for _, p in policy.trainable_parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))


def test_saved_folders_are_readable_by_others(tmp_path, umask_022):
    policy = load_policy(tiny_path(), "reasoner", lora_cfg=LORA, seed=1)
    policy.save(tmp_path / "export")
    modes = _modes(tmp_path / "export")
    assert {"model.safetensors", "adapter/adapter_model.safetensors", "adapter/adapter_config.json"} <= set(modes)
    assert {name: mode for name, mode in modes.items() if mode != (0o755 if (tmp_path / "export" / name).is_dir()
                                                                      else 0o644)} == {}


def test_a_private_umask_stays_private(tmp_path):
    old = os.umask(0o077)
    try:
        load_policy(tiny_path(), "reasoner").save(tmp_path / "export")
    finally:
        os.umask(old)
    assert _modes(tmp_path / "export")["model.safetensors"] == 0o600


def test_adapter_config_names_the_runs_checkpoint_relatively_and_loads_with_peft(tmp_path):
    from peft import PeftModel
    from visplay_models.policy import load_hf_model

    run = tmp_path / "run"
    base = run / "checkpoints" / "reasoner_v1"
    shutil.copytree(tiny_path(), base)
    policy = load_policy(base, "reasoner", lora_cfg=LORA, seed=1)
    _train_adapters(policy)
    saved = run / "checkpoints" / ".tmp" / "reasoner_v2"  # where the engine writes before the rename
    policy.save(saved)
    config = json.loads((saved / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "checkpoints/reasoner_v1"
    final = run / "checkpoints" / "reasoner_v2"
    saved.rename(final)
    # what a user does with it: the base the config names (relative to the run folder), the adapter on top
    model, _ = load_hf_model(run / config["base_model_name_or_path"], dtype="float32", device="cpu")
    peft_model = PeftModel.from_pretrained(model, final / "adapter")
    assert peft_model.peft_config["default"].r == 4
    trained = dict(policy.model.named_parameters())
    for name, p in peft_model.named_parameters():
        if "lora_" in name:
            assert torch.equal(p, trained[name]), name


def test_a_base_outside_the_run_keeps_its_path(tmp_path):
    policy = load_policy(tiny_path(), "reasoner", lora_cfg=LORA, seed=1)
    policy.save(tmp_path / "run" / "checkpoints" / ".tmp" / "reasoner_v1")
    config = json.loads((tmp_path / "run" / "checkpoints" / ".tmp" / "reasoner_v1" / "adapter" /
                         "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_path())  # the recipe's model: where the base is


def test_final_folders_hold_no_optimizer_state(tmp_path, monkeypatch):
    from support import engine as engine_fixtures

    from visplay.loop import engine

    monkeypatch.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("VISPLAY_KEEP_STATES", "1")
    db = engine.run_recipe(engine_fixtures.standin_recipe(tmp_path / "run"), quiet=True,
                           extra_plugins=engine_fixtures.standin_plugins())
    root = db.parent / "checkpoints"
    finals = sorted(p.name for p in root.glob("*_v*"))
    assert finals and "questioner_v1" in finals and "reasoner_v1" in finals
    for name in finals:
        assert not (root / name / "optimizer").exists(), name
    states = sorted((root / "state").iterdir())
    assert states and all((s / "optimizer").is_dir() for s in states)  # training state kept apart, in state/
    from visplay.log.runlog import RunLog

    with RunLog(db, readonly=True) as log:
        rows = {r["name"]: json.loads(r["files"]) for r in log.checkpoint_rows()}
    assert not any(f.startswith("optimizer/") for name in finals for f in rows[name])
