"""Per family (issue 25): which modules FSDP shards as blocks, which get LoRA adapters by default, and which are
recomputed under gradient checkpointing, on tiny models of each family built in-process from a config."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _qwen3_vl():
    from transformers import Qwen3VLConfig

    text = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, head_dim=32, max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 4, 4],
                                 "mrope_interleaved": True})
    vision = dict(depth=3, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16, out_hidden_size=64,
                  num_position_embeddings=16, deepstack_visual_indexes=[1])
    return Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=250, video_token_id=251,
                         vision_start_token_id=252, vision_end_token_id=253)


def _gemma3():
    from transformers import Gemma3Config

    text = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, head_dim=32, sliding_window=16, max_position_embeddings=512)
    vision = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                  num_attention_heads=2, image_size=32, patch_size=8, vision_use_head=False)
    return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4, image_token_index=299,
                        boi_token_index=297, eoi_token_index=298)


def _tiny(architecture):
    def build():
        from support.models import small_cfg
        from visplay_models.tiny import model_config

        return model_config(small_cfg(architecture=architecture))
    return build


# family -> (config builder, {block class: count}: 2 text layers, and the vision tower's blocks)
FAMILIES = {
    "qwen3_vl": (_qwen3_vl, {"Qwen3VLTextDecoderLayer": 2, "Qwen3VLVisionBlock": 3}),
    "gemma3": (_gemma3, {"Gemma3DecoderLayer": 2, "SiglipEncoderLayer": 3}),
    "idefics3": (_tiny("idefics3"), {"LlamaDecoderLayer": 2, "Idefics3EncoderLayer": 1}),  # support.models.SMALL
    "qwen2_5_vl": (_tiny("qwen2_5_vl"), {"Qwen2_5_VLDecoderLayer": 2, "Qwen2_5_VLVisionBlock": 1}),
}


def _model(family):
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    return AutoModelForImageTextToText.from_config(FAMILIES[family][0]())


def _counts(modules):
    out: dict[str, int] = {}
    for m in modules:
        out[type(m).__name__] = out.get(type(m).__name__, 0) + 1
    return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fsdp_shards_each_decoder_layer_and_vision_block_as_one_unit(family):
    from visplay_models.policy import is_transformer_block

    from visplay.scale.distributed import fsdp_units

    model = _model(family)
    units, tied = fsdp_units(model, is_transformer_block)
    blocks = [u for u in units if is_transformer_block(u)]
    assert _counts(blocks) == FAMILIES[family][1]
    # nothing inside a block is a unit of its own: a block's parameters are gathered in one all-gather
    inside = {id(m) for b in blocks for m in b.modules() if m is not b}
    assert not [type(u).__name__ for u in units if id(u) in inside]
    sharded = {id(p) for u in units for p in u.parameters()} | {id(p) for p in tied}  # tied: replicated
    assert all(id(p) in sharded for p in model.parameters())


def test_the_name_rule_missed_the_siglip_tower_blocks():
    """Before the models plugin named its blocks, FSDP took blocks by class name (...DecoderLayer/...VisionBlock):
    Gemma 3's SigLIP encoder layers were split into one unit per linear layer and norm."""
    from visplay_models.policy import is_transformer_block

    from visplay.scale.distributed import fsdp_units, named_like_a_block

    model = _model("gemma3")
    old, _ = fsdp_units(model, named_like_a_block)
    assert "SiglipEncoderLayer" not in _counts(old) and _counts(old)["Linear"] >= 3 * 6
    new, _ = fsdp_units(model, is_transformer_block)
    assert len(new) < len(old)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_default_lora_targets_are_the_text_decoders_q_and_v(family):
    from visplay_models.lora import DEFAULT_TARGETS, add_lora

    wrapped = add_lora(_model(family), {"r": 2, "alpha": 4, "target_modules": DEFAULT_TARGETS})
    text = {id(m) for m in wrapped.get_base_model().get_decoder().modules()}
    adapted = [(n, m) for n, m in wrapped.named_modules() if hasattr(m, "lora_A")]
    assert sorted({n.rsplit(".", 1)[1] for n, _ in adapted}) == ["q_proj", "v_proj"]
    assert len(adapted) == 2 * 2  # q and v of each of the 2 text layers, none in the vision tower
    assert all(id(m) in text for _, m in adapted)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_gradient_checkpointing_recomputes_every_block(family):
    from visplay_models.policy import is_transformer_block, recompute_activations

    model = _model(family)
    recompute_activations(model, lora=False)
    blocks = [m for m in model.modules() if is_transformer_block(m)]
    assert _counts(blocks) == FAMILIES[family][1] and all(b.gradient_checkpointing for b in blocks)
    calls = []
    for layer in model.get_decoder().layers:
        layer.register_forward_pre_hook(lambda *_: calls.append(1))
    model.train()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    model(input_ids=ids, labels=ids).loss.backward()
    assert len(calls) == 2 * 2  # each text layer runs once forward and once more in the backward pass
