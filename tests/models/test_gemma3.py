"""A tiny Gemma 3 (``plugins.models.tiny.architecture=gemma3``) through the family path: Gemma 3's chat layout and
image sequence, its bidirectional attention over image tokens (token_type_ids) in sampling and scoring alike, the
planner from its config.json, one self-play iteration, a plain save_pretrained folder as ``model.path``, and the
folders that are refused at the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from support.families import SMALL, run_cli, trained_types
from support.models import image, small_cfg

from visplay.log.runlog import RunLog
from visplay.types import Prompt, SamplingParams

GEMMA3 = dict(architecture="gemma3")
SIZES = [f"plugins.models.tiny.{k}={v}" for k, v in small_cfg(**GEMMA3).__dict__.items() if k != "cache_dir"]


def _gemma3_path() -> Path:
    from visplay_models.tiny import build_tiny_model

    return build_tiny_model(small_cfg(**GEMMA3), seed=0)


def test_tiny_gemma3_speaks_gemma3s_layout():
    from visplay_models.policy import load_policy

    path = _gemma3_path()
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model_type"] == "gemma3" and cfg["mm_tokens_per_image"] == 4
    assert cfg["text_config"]["layer_types"] == ["sliding_attention", "full_attention"]
    policy = load_policy(path, "reasoner", keep_reference=None)
    assert type(policy.model).__name__ == "Gemma3ForConditionalGeneration"
    assert type(policy.processor.processor.image_processor).__name__ == "Gemma3ImageProcessorPil"
    proc, tok = policy.processor, policy.processor.tokenizer
    soft, eot, eos = (tok.convert_tokens_to_ids(t) for t in ("<image_soft_token>", "<end_of_turn>", "<eos>"))
    # the model fills <image_soft_token> (Gemma3Processor's own image_token_id is <start_of_image>)
    assert proc.image_token_id == soft == policy.model.config.image_token_id
    assert proc.im_end_id == eot and policy.stop_ids == {eot, eos}
    prompt = Prompt(user="How many red circles are there?", image=image(1), system="Be brief.")
    assert proc.chat_text(prompt) == ("<bos><start_of_turn>user\nBe brief.\n\n<start_of_image>How many red circles are "
                                      "there?<end_of_turn>\n<start_of_turn>model\n")
    enc = proc.encode(prompt)
    text = tok.decode(enc.input_ids)
    assert "\n\n<start_of_image>" + "<image_soft_token>" * 4 + "<end_of_image>\n\nHow many" in text
    assert enc.pixel_values.shape == (1, 3, 64, 64) and enc.extras == {}
    assert enc.token_types == [int(i == soft) for i in enc.input_ids] and sum(enc.token_types) == 4
    # runs of 1-4 newlines are single tokens, as in Gemma's vocabulary (vLLM's Gemma 3 processor looks them up)
    vocab = tok.get_vocab()
    newlines = [vocab["\n" * n] for n in (1, 2, 3, 4)]
    assert tok.encode("a\n\n\nb\n\nc", add_special_tokens=False)[1:4:2] == [newlines[2], newlines[1]]
    assert len(tok) == policy.model.config.text_config.vocab_size


def test_tiny_gemma3_samples_what_it_scores_with_bidirectional_image_attention(monkeypatch):
    import visplay_models.forward as forward
    from visplay_models.policy import load_policy

    policy = load_policy(_gemma3_path(), "reasoner", keep_reference=None)
    prompts = [Prompt(user="How many red circles are there?", image=image(1), system="Be brief."),
               Prompt(user="What is 2 + 3?"), Prompt(user="Which is larger?", images=[image(2), image(3, 90)])]
    params = [SamplingParams(n=2, max_new_tokens=8, temperature=1.0, seed=3)] * 3
    gens = policy.sampler().sample(prompts, params)
    picked = [gens[0][1], gens[1][0], gens[2][0]]
    lps = policy.logprobs(prompts, [g.token_ids for g in picked], temperature=1.0)  # one padded batch, 3 images
    for lp, g in zip(lps, picked):
        assert torch.allclose(lp, torch.tensor(g.logprobs), atol=1e-4)
    again = policy.sampler().sample(prompts, params)
    assert [[g.token_ids for g in gs] for gs in again] == [[g.token_ids for g in gs] for gs in gens]
    # the token types matter: scored causally over the image tokens, the image prompts' log-probs move
    monkeypatch.setattr(forward, "_takes_token_types", lambda hf, encs: False)
    causal = policy.logprobs(prompts, [g.token_ids for g in picked], temperature=1.0)
    assert (causal[0] - lps[0]).abs().max() > 1e-3 and (causal[2] - lps[2]).abs().max() > 1e-3
    assert torch.equal(causal[1], lps[1])  # no image: nothing changes


def test_planner_counts_tiny_gemma3_from_its_config_json(tmp_path):
    from visplay_models.facts import (
        count_parameters,
        image_tokens,
        kv_bytes_per_token,
        patches_per_image,
        tiny_config,
    )

    path = _gemma3_path()
    cfg = json.loads((path / "config.json").read_text())
    counts = count_parameters(cfg)
    meta = json.loads((path / "visplay_tiny.json").read_text())
    assert counts["total"] == meta["parameters"]  # the tied head counted once, as the built model has it
    assert counts["vision"] > 0 and counts["text"] + counts["vision"] == counts["total"]
    assert count_parameters(tiny_config(small_cfg(**GEMMA3)))["total"] == meta["parameters"]  # backend tiny
    # 2 (K, V) x 2 layers x 1 kv head x head_dim 32 x 4 bytes
    assert kv_bytes_per_token(cfg, 4) == 2 * 2 * 1 * 32 * 4
    # 4 pooled tokens per image whatever the images plugin says, from (64 / 16)^2 = 16 patches
    assert image_tokens({"plugins": {"images": {"size": 448}}}, cfg)[0] == 4 and patches_per_image(cfg, 4) == 16
    done = run_cli(tmp_path, "run", "tiny", "model.backend=hf", f"model.path={path}", "--dry-run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"model: hf gemma3 {meta['parameters'] / 1e6:.2f}M parameters" in done.stdout


def _rows(run: Path) -> dict[str, int]:
    with RunLog(run / "run.db", readonly=True) as log:
        assert log.run()["status"] == "finished"
        return {kind: log.count("generations", "iteration = 1 and kind = ?", [kind]) for kind in ("question", "rollout")}


def test_one_self_play_iteration_on_tiny_gemma3_and_on_a_saved_folder(tmp_path):
    done = run_cli(tmp_path, "run", "tiny", *SMALL, *SIZES, "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "iteration 1/1:" in done.stdout
    assert trained_types(tmp_path / "runs" / "tiny") == {"questioner": "gemma3", "reasoner": "gemma3"}
    assert _rows(tmp_path / "runs" / "tiny") == {"question": 4, "rollout": 4}
    # a plain save_pretrained folder of it (no visplay files) is accepted by model.path and trained
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tmp_path / "gemma"
    AutoModelForImageTextToText.from_pretrained(str(_gemma3_path())).save_pretrained(folder)
    AutoProcessor.from_pretrained(str(_gemma3_path())).save_pretrained(folder)
    assert not (folder / "visplay_tiny.json").exists()
    done = run_cli(tmp_path, "run", "tiny", *SMALL, "model.backend=hf", f"model.path={folder}",
                    "run_dir=runs/gemma", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert trained_types(tmp_path / "runs" / "gemma") == {"questioner": "gemma3", "reasoner": "gemma3"}
    assert _rows(tmp_path / "runs" / "gemma") == {"question": 4, "rollout": 4}


@pytest.mark.parametrize("kind", ["pickled", "remote"])
def test_unusable_gemma3_folder_exits_2_naming_it_before_the_run(tmp_path, kind):
    folder = tmp_path / kind
    shutil.copytree(_gemma3_path(), folder)
    if kind == "pickled":
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
        expected = "only pickled *.bin weights"
    else:
        cfg = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**cfg, "auto_map": {"AutoConfig": "custom.MyConfig"}}))
        expected = "model.trust_remote_code=true"
    done = run_cli(tmp_path, "run", "tiny", "model.backend=hf", f"model.path={folder}")
    assert done.returncode == 2, done.stderr[-3000:]
    assert str(folder) in done.stderr and expected in done.stderr
    assert not (tmp_path / "runs").exists()


def test_the_vllm_adapter_renames_only_gemma3s_siglip_tower(tmp_path):
    """plugins/visplay_vllm/names.py: the folder an engine starts from gets the SigLIP tower's hub names
    (vision_tower.vision_model.*), every other tensor keeps its name and bytes; a Qwen folder is left alone."""
    from safetensors import safe_open
    from visplay_models.tiny import build_tiny_model
    from visplay_vllm.names import _siglip_tower, rename_folder

    def tensors(folder):
        with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118

    folder = shutil.copytree(_gemma3_path(), tmp_path / "gemma3")
    before = tensors(folder)
    tower = [k for k in before if k.startswith("vision_tower.")]
    assert tower and rename_folder(folder) == len(tower)
    after = tensors(folder)
    assert sorted(after) == sorted(_siglip_tower(k) for k in before)
    assert all(k.startswith("vision_tower.vision_model.") for k in after if k.startswith("vision_tower."))
    assert all(after[_siglip_tower(k)].equal(v) for k, v in before.items())
    assert _siglip_tower("model.vision_tower.encoder.layers.0.mlp.fc1.weight") == \
        "model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"
    assert _siglip_tower("model.language_model.layers.0.mlp.up_proj.weight").startswith("model.language_model.")
    qwen = shutil.copytree(build_tiny_model(small_cfg(), seed=0), tmp_path / "qwen")
    assert rename_folder(qwen) == 0
