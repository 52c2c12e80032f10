"""The embedded tiny model: deterministic build, cache, tokenizer, config constraints, both architectures."""

from __future__ import annotations

import json

import pytest
from support.models import small_cfg
from visplay_models.tiny import SPECIAL_IDS, SPECIAL_TOKENS, build_tiny_model, cache_key, model_config

from visplay.files import file_hashes
from visplay.types import Prompt, SamplingParams


def test_build_is_deterministic_and_cached(tmp_path):
    a = build_tiny_model(small_cfg(), seed=3, cache_dir=tmp_path / "a")
    b = build_tiny_model(small_cfg(), seed=3, cache_dir=tmp_path / "b")
    assert file_hashes(a) == file_hashes(b)
    assert build_tiny_model(small_cfg(), seed=3, cache_dir=tmp_path / "a") == a  # cache hit
    c = build_tiny_model(small_cfg(), seed=4, cache_dir=tmp_path / "a")
    assert file_hashes(c)["model.safetensors"] != file_hashes(a)["model.safetensors"]
    assert cache_key(small_cfg(), 3) != cache_key(small_cfg(num_layers=1), 3)
    assert cache_key(small_cfg(cache_dir="/x"), 3) == cache_key(small_cfg(), 3)  # where it lives is not a key


def test_folder_is_a_plain_hf_model_with_matching_ids(tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    path = build_tiny_model(small_cfg(), seed=0, cache_dir=tmp_path)
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    cfg = AutoConfig.from_pretrained(path, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    for text, idx in SPECIAL_IDS.items():
        assert tok.convert_tokens_to_ids(text) == idx
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    head_dim = cfg.text_config.hidden_size // cfg.text_config.num_attention_heads
    assert head_dim >= 32 and sum(cfg.text_config.rope_parameters["mrope_section"]) == head_dim // 2
    meta = json.loads((path / "visplay_tiny.json").read_text())
    assert meta["parameters"] < 1_000_000
    # special tokens are atomic and the template renders Qwen's chat format
    assert tok.tokenize("<|im_start|>") == ["<|im_start|>"]
    text = tok.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}],
                                   tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n<|im_start|>assistant\n"
    assert len(SPECIAL_TOKENS) == 7


def test_default_size_is_a_few_hundred_thousand_to_millions():
    from visplay_models.options import TinyModelConfig

    cfg = model_config(TinyModelConfig())
    assert cfg.model_type == "qwen2_5_vl"


@pytest.mark.parametrize("bad,match", [
    (dict(hidden_size=64, num_heads=4), ">= 32"),
    (dict(architecture="llama"), "architecture"),
    (dict(num_heads=2, num_kv_heads=3), "num_kv_heads"),
    (dict(vocab_size=100), "vocab_size"),
])
def test_bad_tiny_config_names_the_key(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        build_tiny_model(small_cfg(**bad), seed=0, cache_dir=tmp_path)


def test_qwen2_vl_architecture_samples(tmp_path):
    from support.models import image
    from visplay_models.policy import load_policy

    path = build_tiny_model(small_cfg(architecture="qwen2_vl"), seed=0, cache_dir=tmp_path)
    assert json.loads((path / "config.json").read_text())["model_type"] == "qwen2_vl"
    policy = load_policy(path, "questioner")
    prompt = Prompt(user="What is shown?", image=image(5))
    [gens] = policy.sampler().sample([prompt], [SamplingParams(n=2, max_new_tokens=6, seed=1)])
    assert len(gens) == 2 and all(1 <= len(g.token_ids) <= 6 for g in gens)
    [lp] = policy.logprobs([prompt], [gens[0].token_ids])
    assert lp.tolist() == pytest.approx(gens[0].logprobs, abs=1e-5)
