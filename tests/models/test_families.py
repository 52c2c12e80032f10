"""Loading by capability: a non-Qwen family (a tiny Idefics3, SmolVLM's architecture) end to end, and the folders
that are refused (a text-only model, pickled-only weights, a config that needs remote code)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from support.families import SMALL, run_cli, trained_types
from support.models import image, small_cfg

from visplay.types import Prompt, SamplingParams

# head_dim 32, like the Qwen tiny of the other tests; a 64 x 64 image gives 4 image tokens
IDEFICS3 = dict(architecture="idefics3")


def _idefics3_path() -> Path:
    from visplay_models.tiny import build_tiny_model

    return build_tiny_model(small_cfg(**IDEFICS3), seed=0)


def test_tiny_idefics3_is_loaded_through_its_own_processor():
    from visplay_models.policy import load_policy

    path = _idefics3_path()
    meta = json.loads((path / "visplay_tiny.json").read_text())
    assert json.loads((path / "config.json").read_text())["model_type"] == "idefics3"
    assert 100_000 < meta["parameters"] < 2_000_000
    policy = load_policy(path, "reasoner", keep_reference=None)
    assert type(policy.model).__name__ == "Idefics3ForConditionalGeneration"
    proc = policy.processor
    tok = proc.tokenizer
    # ids read from the processor and config, not Qwen's
    assert proc.image_token_id == tok.convert_tokens_to_ids("<image>") == policy.model.config.image_token_id
    assert policy.stop_ids == {tok.convert_tokens_to_ids("<end_of_utterance>")}
    prompt = Prompt(user="How many red circles are there?", image=image(1))
    text = proc.chat_text(prompt)
    assert text.startswith("<|im_start|>User:<image>How many") and text.endswith("<end_of_utterance>\nAssistant:")
    enc = proc.encode(prompt)
    assert enc.input_ids.count(proc.image_token_id) == proc.processor.image_seq_len == 4
    assert enc.pixel_values.shape == (1, 3, 64, 64) and set(enc.extras) == {"pixel_attention_mask"}
    prompts = [prompt, Prompt(user="What is 2 + 3?")]
    gens = policy.sampler().sample(prompts, [SamplingParams(n=2, max_new_tokens=6, temperature=1.0, seed=3)] * 2)
    responses = [gens[0][1].token_ids, gens[1][0].token_ids]
    lps = policy.logprobs(prompts, responses, temperature=1.0)  # batched, right-padded, one image in the batch
    for lp, g in zip(lps, (gens[0][1], gens[1][0])):
        assert torch.allclose(lp, torch.tensor(g.logprobs), atol=1e-4)
    again = policy.sampler().sample(prompts, [SamplingParams(n=2, max_new_tokens=6, temperature=1.0, seed=3)] * 2)
    assert [[g.token_ids for g in gs] for gs in again] == [[g.token_ids for g in gs] for gs in gens]


def test_saved_idefics3_folder_round_trips(tmp_path):
    from visplay_models.policy import load_policy

    policy = load_policy(_idefics3_path(), "reasoner", keep_reference=False)
    policy.save(tmp_path / "v1")
    again = load_policy(tmp_path / "v1", "reasoner", keep_reference=False)
    assert again.weights_sha256() == policy.weights_sha256()
    assert again.processor.chat_text(Prompt(user="hi")) == policy.processor.chat_text(Prompt(user="hi"))


def test_unsupported_folders_are_refused_naming_folder_and_reason(tmp_path):
    from visplay_models.policy import ModelLoadError, check_model_config, load_policy

    text_only = tmp_path / "llama"
    text_only.mkdir()
    (text_only / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (text_only / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"llama/config.json: unsupported architecture.*'llama'.*text-only"):
        load_policy(text_only, "reasoner")
    pickled = tmp_path / "pickled"
    shutil.copytree(_idefics3_path(), pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"pickled.*only pickled \*\.bin"):
        check_model_config(pickled)
    remote = tmp_path / "remote"
    shutil.copytree(_idefics3_path(), remote)
    cfg = json.loads((remote / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps({**cfg, "auto_map": {"AutoConfig": "custom.MyConfig"}}))
    with pytest.raises(ModelLoadError, match=r"remote/config.json.*auto_map.*model.trust_remote_code=true"):
        load_policy(remote, "reasoner")
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "no_such_family"}))
    with pytest.raises(ModelLoadError, match="unknown to the installed transformers"):
        check_model_config(unknown)


# --- the real CLI --------------------------------------------------------------------------------------------------

SIZES = [f"plugins.models.tiny.{k}={v}" for k, v in small_cfg(**IDEFICS3).__dict__.items() if k != "cache_dir"]


def test_one_self_play_iteration_on_tiny_idefics3_and_on_a_saved_folder(tmp_path):
    done = run_cli(tmp_path, "run", "tiny", *SMALL, *SIZES, "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "iteration 1/1:" in done.stdout
    assert trained_types(tmp_path / "runs" / "tiny") == {"questioner": "idefics3", "reasoner": "idefics3"}
    # a plain save_pretrained folder of that model (no visplay files) is accepted by model.path and trained
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tmp_path / "smol"
    AutoModelForImageTextToText.from_pretrained(str(_idefics3_path())).save_pretrained(folder)
    AutoProcessor.from_pretrained(str(_idefics3_path())).save_pretrained(folder)
    done = run_cli(tmp_path, "run", "tiny", *SMALL, "model.backend=hf", f"model.path={folder}",
                    "run_dir=runs/smol", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert trained_types(tmp_path / "runs" / "smol") == {"questioner": "idefics3", "reasoner": "idefics3"}


def test_text_only_model_path_exits_2_before_the_run(tmp_path):
    folder = tmp_path / "llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "model.safetensors").write_bytes(b"")
    done = run_cli(tmp_path, "run", "tiny", "model.backend=hf", f"model.path={folder}")
    assert done.returncode == 2
    assert f"{folder}/config.json" in done.stderr and "text-only" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_lora_default_targets_follow_the_family_text_model():
    from visplay_models.lora import DEFAULT_TARGETS
    from visplay_models.options import LoraConfig
    from visplay_models.policy import load_policy

    assert LoraConfig().target_modules == DEFAULT_TARGETS
    lora = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": DEFAULT_TARGETS}
    policy = load_policy(_idefics3_path(), "reasoner", lora_cfg=lora, seed=1)
    names = [n for n, _ in policy.trainable_parameters()]
    assert names and all(".model.text_model.layers." in n and ("q_proj" in n or "v_proj" in n) for n in names)
    assert len(names) == 2 * 2 * 2  # 2 layers x (q, v) x (lora_A, lora_B)


def test_planner_counts_another_family_from_its_config_json():
    from visplay_models.facts import count_parameters, kv_bytes_per_token

    path = _idefics3_path()
    cfg = json.loads((path / "config.json").read_text())
    counts = count_parameters(cfg)
    assert counts["total"] == json.loads((path / "visplay_tiny.json").read_text())["parameters"]
    assert counts["vision"] > 0 and counts["text"] + counts["vision"] == counts["total"]
    # 2 (K, V) x 2 layers x 1 kv head x head_dim 32 x 4 bytes
    assert kv_bytes_per_token(cfg, 4) == 2 * 2 * 1 * 32 * 4


def test_dry_run_plans_another_family_from_model_path(tmp_path):
    done = run_cli(tmp_path, "run", "tiny", "model.backend=hf", f"model.path={_idefics3_path()}", "--dry-run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "model: hf idefics3 0.18M parameters" in done.stdout


# --- a tiny Qwen3-VL (16-px patches, DeepStack, interleaved mrope) through the Qwen adapter ----------------------

QWEN3_VL = dict(architecture="qwen3_vl")


def test_tiny_qwen3_vl_samples_what_it_scores_and_plans_from_its_config():
    from visplay_models.facts import count_parameters, tiny_config
    from visplay_models.policy import load_policy
    from visplay_models.tiny import build_tiny_model

    path = build_tiny_model(small_cfg(**QWEN3_VL), seed=0)
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model_type"] == "qwen3_vl" and cfg["vision_config"]["patch_size"] == 16
    meta = json.loads((path / "visplay_tiny.json").read_text())
    assert 100_000 < meta["parameters"] < 2_000_000
    assert count_parameters(tiny_config(small_cfg(**QWEN3_VL)))["total"] == meta["parameters"]
    policy = load_policy(path, "reasoner", keep_reference=None)
    assert type(policy.model).__name__ == "Qwen3VLForConditionalGeneration"
    prompt = Prompt(user="How many red circles are there?", image=image(1))
    enc = policy.processor.encode(prompt)
    # a 64 x 64 image: 4 x 4 patches of 16 px (3 channels x 2 frames x 16 x 16 values each), merged 2 x 2 -> 4 tokens
    assert enc.pixel_values.shape == (16, 1536) and enc.image_grid_thw.tolist() == [[1, 4, 4]]
    assert enc.input_ids.count(policy.processor.image_token_id) == 4
    prompts = [prompt, Prompt(user="What is 2 + 3?")]
    params = [SamplingParams(n=2, max_new_tokens=6, temperature=1.0, seed=3)] * 2
    gens = policy.sampler().sample(prompts, params)
    lps = policy.logprobs(prompts, [gens[0][1].token_ids, gens[1][0].token_ids], temperature=1.0)
    for lp, g in zip(lps, (gens[0][1], gens[1][0])):
        assert torch.allclose(lp, torch.tensor(g.logprobs), atol=1e-4)
    again = policy.sampler().sample(prompts, params)
    assert [[g.token_ids for g in gs] for gs in again] == [[g.token_ids for g in gs] for gs in gens]


@pytest.mark.parametrize("architecture", ["qwen3_vl", "qwen2_vl"])
def test_one_self_play_iteration_on_tiny_qwen_families(tmp_path, architecture):
    """Qwen3-VL and Qwen2-VL (the tiny families besides the default Qwen2.5-VL), HF backend, the real CLI."""
    sizes = [f"plugins.models.tiny.{k}={v}" for k, v in small_cfg(architecture=architecture).__dict__.items()
             if k != "cache_dir"]
    done = run_cli(tmp_path, "run", "tiny", *SMALL, *sizes, "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "iteration 1/1:" in done.stdout
    assert trained_types(tmp_path / "runs" / "tiny") == {"questioner": architecture, "reasoner": architecture}
