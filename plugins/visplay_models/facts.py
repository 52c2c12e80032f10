"""What the planner knows of a model without loading it: config facts, parameter counts, KV and activation bytes.

Facts come from ``model.path``'s config.json (backend ``hf``), the tiny section (backend ``tiny``), or, for a dry
run without weights, the built-in facts below: the keys that decide parameter counts, KV-cache size and memory,
copied from each model's public config.json (Qwen/Qwen2.5-VL-3B-Instruct, Qwen/Qwen2.5-VL-7B-Instruct,
XiaomiMiMo/MiMo-VL-7B-SFT, Qwen/Qwen3-VL-4B-Instruct, Qwen/Qwen3-VL-8B-Instruct; the sources of the Qwen3-VL
numbers are named beside them). A local ``model.path`` with a config.json always wins; ``model.path`` may also name one of
the hub ids below, and a recipe names the one it plans as with ``plugins.models.plan_as``.
tests/scale/test_recipes.py checks the Qwen2.5-VL counts against a meta-device instantiation of transformers' class
(other families are counted on one), tests/scale/test_qwen3_vl_recipes.py the Qwen3-VL counts against the
checkpoints'.

Memory model (bytes; P parameters, T trainable, b bytes per weight, h hidden, L layers, V vocabulary): weights P*b
and gradients T*b per training process (sharded under FSDP). Activations per token of a training forward: 34*h per
layer (Korthikanti et al. 2022, "Reducing Activation Recomputation", flash attention), or with
``plugins.models.gradient_checkpointing`` each layer's 2*h-byte input plus one layer recomputed at a time (2*h*L +
34*h); the logits: 10*V per token (bf16 logits, float32 copy, float32 log-softmax), or with
``plugins.models.logprob_chunk_tokens`` C a fixed 16*V*C per forward (a chunk's logits, their float32 copies and
their gradient in the backward pass). Per sequence, its image's vision tower: merge^2 (4) patches per image token
(Gemma 3: all (896 / 14)^2 = 4,096 patches of its fixed-size input), 34*w per block and patch (w the vision width),
or 2*w per block + one block with recomputation. Image tokens follow the images plugin's resize
(``plugins.images``): ``fixed`` size S -> (S / u)^2 rounded, u = patch x merge px per token (Qwen2.5-VL 14 x 2 = 28:
64 tokens at 224 px; Qwen3-VL 16 x 2 = 32: 49); ``pixels`` -> at most max_pixels / u^2 (released 4,194,304 px at
28 px: 5,349 tokens; min_pixels 262,144: 334). Gemma 3 resizes every image itself: ``mm_tokens_per_image`` (256).
These figures are for 16-bit activations (the GPU recipes' bfloat16): with ``model.dtype`` of b bytes a layer keeps
17*b*h. On ``model.device: cpu`` a Qwen2.5-VL is counted tensor by tensor instead (cpu_activations.py), which
reproduce/memory_check.py --device cpu measures within 25% (docs/scale.md "Planner vs measured, CPU").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from visplay.api import DTYPE_BYTES, GIB, NOT_GIVEN, Footprint, MemoryItem, ModelFacts, RecipeError

TEXT_TOKENS = 448  # prompt allowance per sequence beside its image tokens: chat template + question

# The Qwen2.5-VL vision tower, shared by all three (32 window-attention blocks of width 1280, patch 14, merge 2).
_VISION = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "in_chans": 3,
           "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}


def _qwen25_vl(**text: Any) -> dict[str, Any]:
    return {"model_type": "qwen2_5_vl", **text, "vision_config": {**_VISION, "out_hidden_size": text["hidden_size"]}}


def _qwen3_vl(text: dict[str, Any], vision: dict[str, Any], tie: bool) -> dict[str, Any]:
    # keys both checkpoints share: patch 16, merge 2, 2 frames per temporal patch, 2304 position embeddings
    v = {"patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3,
         "num_position_embeddings": 2304, "out_hidden_size": text["hidden_size"], **vision}
    return {"model_type": "qwen3_vl", "tie_word_embeddings": tie,
            "text_config": {**text, "tie_word_embeddings": tie}, "vision_config": v}


ARCHITECTURES: dict[str, dict[str, Any]] = {
    # 36 layers of width 2048, GQA 16/2 heads, tied embeddings: 3,754,622,976 parameters.
    "Qwen/Qwen2.5-VL-3B-Instruct": _qwen25_vl(
        hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    # 28 layers of width 3584, GQA 28/4 heads, untied: 8,292,166,656 parameters.
    "Qwen/Qwen2.5-VL-7B-Instruct": _qwen25_vl(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
    # MiMo-7B's language model (36 layers of width 4096, GQA 32/8, untied) in the Qwen2.5-VL frame: 8,301,791,232.
    "XiaomiMiMo/MiMo-VL-7B-SFT": _qwen25_vl(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=151680, tie_word_embeddings=False),
    # Qwen3-VL (transformers model_type qwen3_vl): counted on a meta-device instantiation of
    # Qwen3VLForConditionalGeneration (meta_parameters). Text: Qwen3 layers (q/k norms, no q/k/v biases, head_dim
    # 128); vision: 16-px patches merged 2 x 2 (32 px per image token), DeepStack mergers at three blocks.
    # Source: Qwen/Qwen3-VL-4B-Instruct's config.json (as copied into public code, e.g. a DiffSynth Qwen3-VL encoder
    # and a LoRA export of unsloth/Qwen3-VL-4B-Instruct on the hub). 36 layers of width 2560, GQA 32/8, tied:
    # 4,437,815,808 parameters (vision 415,347,712), the 4.438B / 415.3M / 4.022B that
    # huggingface.co/OpenExplorer/Qwen3-VL-4B-Instruct counts from the checkpoint's tensors.
    "Qwen/Qwen3-VL-4B-Instruct": _qwen3_vl(
        text=dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                  num_key_value_heads=8, head_dim=128, vocab_size=151936),
        vision=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16,
                    deepstack_visual_indexes=[5, 11, 17]), tie=True),
    # Source: the GGUF metadata of Qwen3-VL-8B-Instruct (ollama.com qwen3-vl:8b-instruct-bf16: 36 blocks, width
    # 4096, feed-forward 12288, 32/8 heads of 128, vision 27 blocks of width 1152, patch 16, merge 2, DeepStack
    # [8, 16, 24]); the vocabulary (151936), untied head, vision MLP 4304 and output width 4096 from the config.json
    # of nvidia/Cosmos-Reason2-8B (a Qwen3-VL-8B fine-tune, the same shapes). 8,767,123,696 parameters (vision
    # 576,388,336): huggingface.co/OpenExplorer/Qwen3-VL-8B-Instruct counts 8.767B / 576.4M / 8.191B.
    "Qwen/Qwen3-VL-8B-Instruct": _qwen3_vl(
        text=dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                  num_key_value_heads=8, head_dim=128, vocab_size=151936),
        vision=dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16,
                    deepstack_visual_indexes=[8, 16, 24]), tie=False),
    # Gemma 3 (model_type gemma3): google/gemma-3-4b-it's config.json names the keys below except the heads, head_dim,
    # vocabulary and query scale, which it leaves to transformers' Gemma3TextConfig defaults (8 / 4 heads of 256,
    # 262,208 tokens, scale 256; transformers 5.19 configuration_gemma3.py). A SigLIP tower (27 layers of width 1152,
    # 896 px in 14-px patches) pooled to 256 tokens per image. 4,300,079,472 parameters on a meta instantiation
    # (the model card's 4.3B); vision 419,816,304 with the projector. 29 of the 34 layers attend to a 1,024-token
    # window, which the planner's KV bytes (every layer holds every token) do not model: an upper bound.
    "google/gemma-3-4b-it": {
        "model_type": "gemma3", "mm_tokens_per_image": 256, "tie_word_embeddings": True,
        "text_config": {"model_type": "gemma3_text", "hidden_size": 2560, "intermediate_size": 10240,
                        "num_hidden_layers": 34, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
                        "vocab_size": 262208, "sliding_window": 1024, "query_pre_attn_scalar": 256,
                        "rope_scaling": {"factor": 8.0, "rope_type": "linear"}},
        "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304,
                          "num_attention_heads": 16, "num_hidden_layers": 27, "image_size": 896, "patch_size": 14,
                          "vision_use_head": False},
    },
}



def built_in(name: str | None) -> dict[str, Any] | None:
    return ARCHITECTURES.get(str(name)) if name else None


def given(value: Any) -> bool:
    return bool(value) and str(value) != NOT_GIVEN


def read_config(recipe: Any, options: Any) -> tuple[dict[str, Any], str]:
    """(config facts, where they came from): a local model folder, else the built-in facts of a hub id
    (``model.path`` naming one, or ``plugins.models.plan_as``), else the tiny section."""
    model = recipe.model
    if model.backend == "tiny":
        return tiny_config(options.tiny), "plugins.models.tiny"
    path = model.get("path")
    if given(path) and built_in(path) is None:
        file = Path(str(path)).expanduser() / "config.json"
        try:
            return json.loads(file.read_text()), "model.path"
        except (OSError, ValueError) as exc:
            raise RecipeError(f"model.path: cannot read {file}: {exc}") from exc
    name = str(path) if given(path) else options.plan_as
    facts = built_in(name)
    if facts is None:
        raise RecipeError(f"model.path is required for a dry run of recipe {recipe.name!r}: no local config.json and "
                          f"no built-in facts to plan as (plugins.models.plan_as; built in: {', '.join(ARCHITECTURES)})")
    return dict(facts), f"built-in facts of {name} (no weights needed)"


def tiny_config(tiny: Any) -> dict[str, Any]:
    """The tiny model's config facts: for the Qwen2/2.5-VL tiny the keys below, for another family its real
    transformers config (the flat keys would build that family's default-sized text model)."""
    if tiny.architecture not in ("qwen2_5_vl", "qwen2_vl"):
        from visplay_models.tiny import model_config

        return model_config(tiny).to_dict()
    return {
        "model_type": tiny.architecture, "vocab_size": tiny.vocab_size, "hidden_size": tiny.hidden_size,
        "num_hidden_layers": tiny.num_layers, "num_attention_heads": tiny.num_heads,
        "num_key_value_heads": tiny.num_kv_heads, "intermediate_size": tiny.intermediate_size,
        "tie_word_embeddings": True,
        "vision_config": {"hidden_size": tiny.vision_hidden_size, "embed_dim": tiny.vision_hidden_size,
                          "depth": tiny.vision_depth, "num_heads": tiny.vision_heads,
                          "intermediate_size": 2 * tiny.vision_hidden_size, "mlp_ratio": 2,
                          "out_hidden_size": tiny.hidden_size, "patch_size": 14, "temporal_patch_size": 2,
                          "spatial_merge_size": 2, "in_chans": 3},
    }


def _text(cfg: dict[str, Any]) -> dict[str, Any]:
    # transformers 5 writes the language model's keys under text_config; hub config.json files have them flat.
    return {**cfg, **cfg.get("text_config", {})}


def count_parameters(cfg: dict[str, Any]) -> dict[str, int]:
    """{"text": n, "vision": n, "total": n} for a Qwen2-VL / Qwen2.5-VL config (MiMo-VL uses Qwen2.5-VL).

    Counted from the layer shapes of transformers' implementation (q/k/v biases, untied or tied lm_head, the
    vision patch embedding, blocks and patch merger); tests check it against a meta-device instantiation.
    """
    if cfg.get("model_type", "qwen2_5_vl") not in ("qwen2_vl", "qwen2_5_vl"):
        return meta_parameters(cfg)
    t = _text(cfg)
    h, layers, inter, vocab = t["hidden_size"], t["num_hidden_layers"], t["intermediate_size"], t["vocab_size"]
    heads, kv = t["num_attention_heads"], t.get("num_key_value_heads", t["num_attention_heads"])
    head_dim = t.get("head_dim") or h // heads
    attn = h * heads * head_dim + heads * head_dim + 2 * (h * kv * head_dim + kv * head_dim) + heads * head_dim * h
    per_layer = attn + 3 * h * inter + 2 * h
    text = vocab * h + layers * per_layer + h + (0 if t.get("tie_word_embeddings", False) else vocab * h)
    vision = _vision_parameters(cfg.get("model_type", "qwen2_5_vl"), cfg.get("vision_config", {}), h)
    return {"text": text, "vision": vision, "total": text + vision}


def meta_parameters(cfg: dict[str, Any]) -> dict[str, int]:
    """{"text", "vision", "total"} of any other image-text-to-text family, counted on an instantiation of
    transformers' class on the meta device (no memory, no weights): text = the decoder (``get_decoder()``) plus an
    untied head, vision = the rest (vision tower and connector)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    data = {k: v for k, v in cfg.items() if k not in ("model_type", "architectures", "transformers_version")}
    try:
        config = AutoConfig.for_model(str(cfg.get("model_type")), **data)
        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(config)
    except (ValueError, KeyError, TypeError) as exc:
        raise RecipeError(f"model facts: cannot build model_type={cfg.get('model_type')!r} from its config "
                          f"to count parameters: {exc}") from exc
    total = sum(p.numel() for p in model.parameters())
    text_params = {id(p): p.numel() for p in model.get_decoder().parameters()}
    text_params.update({id(p): p.numel() for p in model.get_output_embeddings().parameters()})
    text = sum(text_params.values())
    return {"text": text, "vision": total - text, "total": total}


def _vision_parameters(model_type: str, v: dict[str, Any], text_hidden: int) -> int:
    if not v:
        return 0
    patch = v.get("in_chans", v.get("in_channels", 3)) * v.get("temporal_patch_size", 2) * v.get("patch_size", 14) ** 2
    merge = v.get("spatial_merge_size", 2) ** 2
    if model_type == "qwen2_vl":
        dim = v.get("embed_dim", 1280)
        mlp = int(dim * v.get("mlp_ratio", 4))
        block = 2 * 2 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + (dim * mlp + mlp) + (mlp * dim + dim)
        merger = 2 * dim + (dim * merge) ** 2 + dim * merge + dim * merge * v.get("hidden_size", text_hidden) \
            + v.get("hidden_size", text_hidden)
        return patch * dim + v["depth"] * block + merger
    dim, mlp = v.get("hidden_size", 1280), v.get("intermediate_size", 3420)
    out = v.get("out_hidden_size", text_hidden)
    block = 2 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + 2 * (dim * mlp + mlp) + (mlp * dim + dim)
    merger = dim + (dim * merge) ** 2 + dim * merge + dim * merge * out + out
    return patch * dim + v["depth"] * block + merger


def kv_bytes_per_token(cfg: dict[str, Any], dtype_bytes: int) -> int:
    """KV-cache bytes per token: 2 (K and V) x layers x kv heads x head_dim x dtype bytes."""
    t = _text(cfg)
    head_dim = t.get("head_dim") or t["hidden_size"] // t["num_attention_heads"]
    return 2 * t["num_hidden_layers"] * t.get("num_key_value_heads", t["num_attention_heads"]) * head_dim * dtype_bytes


def lora_parameters(cfg: dict[str, Any], lora: Any) -> int:
    """Adapter parameters r x (in + out) for each text-layer projection named in ``lora.target_modules``."""
    t = _text(cfg)
    h, inter = t["hidden_size"], t["intermediate_size"]
    heads, kv = t["num_attention_heads"], t.get("num_key_value_heads", t["num_attention_heads"])
    head_dim = t.get("head_dim") or h // heads
    shapes = {"q_proj": (h, heads * head_dim), "k_proj": (h, kv * head_dim), "v_proj": (h, kv * head_dim),
              "o_proj": (heads * head_dim, h), "gate_proj": (h, inter), "up_proj": (h, inter),
              "down_proj": (inter, h)}
    per_layer = sum(int(lora.r) * (i + o) for name, (i, o) in shapes.items() if name in str(lora.target_modules))
    return per_layer * t["num_hidden_layers"]



def image_tokens(recipe: Any, cfg: dict[str, Any]) -> tuple[int, str]:
    """(merged image tokens per image, how they were counted) from the images plugin's resize settings and the
    vision tower's patch and merge sizes (Qwen2-VL / Qwen2.5-VL: 14 x 2 = 28 px per token)."""
    v = cfg.get("vision_config", {})
    if cfg.get("mm_tokens_per_image"):  # Gemma 3: every image resized to the tower's size, pooled to a fixed count
        n = int(cfg["mm_tokens_per_image"])
        return n, f"mm_tokens_per_image: each image resized to {v.get('image_size', '?')} px"
    unit = int(v.get("patch_size", 14)) * int(v.get("spatial_merge_size", 2))
    images = recipe.get("plugins", {}).get("images") if "plugins" in recipe else None
    resize = str(images.get("resize", "fixed")) if images is not None else "fixed"
    if resize == "fixed":
        size = int(images.get("size", 224)) if images is not None else 224
        side = max(1, round(size / unit))
        return side * side, f"{size} x {size} px = {side} x {side} merged {unit}-px patches"
    max_pixels = int(images.get("max_pixels", 4194304))
    note = "" if resize == "pixels" else f" (resize {resize}: planned at plugins.images.max_pixels)"
    return max_pixels // (unit * unit), f"<= {max_pixels:,} px (plugins.images.max_pixels) / {unit}^2{note}"


def patches_per_image(cfg: dict[str, Any], image_tokens_: int) -> int:
    """Patches the vision tower runs per image: merge^2 per image token (Qwen-VL), or for a tower of fixed input size
    pooled to ``mm_tokens_per_image`` (Gemma 3) all (image_size / patch_size)^2 of them."""
    v = cfg.get("vision_config", {})
    if cfg.get("mm_tokens_per_image") and v.get("image_size"):
        return (int(v["image_size"]) // int(v.get("patch_size", 14))) ** 2
    return image_tokens_ * int(v.get("spatial_merge_size", 2)) ** 2


def activation_bytes(cfg: dict[str, Any], options: Any, image_tokens_: int, dtype_bytes: int = 2,
                     device: str = "cuda") -> dict[str, float]:
    """Bytes held for the backward pass: per token, per sequence (its image) and per forward (a logits chunk).

    ``dtype_bytes`` b is the activations' dtype (the model's: ``model.dtype``): Korthikanti et al.'s 34*h per layer
    counts 17*h values of 16-bit activations, so a layer keeps 17*b*h bytes and a checkpointed layer's input b*h
    (b = 2: the figures of the GPU recipes); the unchunked logits are b*V in the model's dtype plus two float32
    (V) tensors (its float32 copy, free when b = 4, being replaced by the temperature-scaled logits); a chunk's 16*V
    per token are float32 whatever b. On ``device`` cpu a Qwen2.5-VL's layers are counted instead, tensor by
    tensor, as torch's CPU kernels keep them (visplay_models/cpu_activations.py)."""
    from visplay_models import cpu_activations

    t, v = _text(cfg), cfg.get("vision_config", {})
    h, layers, vocab = t["hidden_size"], t["num_hidden_layers"], t["vocab_size"]
    recompute = bool(options.gradient_checkpointing)
    chunk = options.logprob_chunk_tokens
    logits = 0 if chunk else (dtype_bytes + 8) * vocab
    per_image = patches_per_image(cfg, image_tokens_)
    if counted_on_cpu(cfg, device):
        kept, layer = cpu_activations.text_bytes_per_token(t, dtype_bytes, recompute)
        kept_patch, block = cpu_activations.vision_bytes_per_patch(v, dtype_bytes, recompute)
        return {"per_token": float(kept + logits), "per_sequence": float(per_image * kept_patch),
                "fixed": float(cpu_activations.CHUNK_BYTES_PER_VOCAB * vocab * int(chunk)) if chunk else 0.0,
                "recomputed_per_token": float(layer), "recomputed_per_sequence": float(per_image * block)}
    layer = 17 * dtype_bytes  # bytes per unit of width a layer keeps for the backward pass (34 at 16 bits)
    per_token = (dtype_bytes * h * layers + layer * h) if recompute else layer * h * layers
    # Qwen2-VL's vision width is embed_dim (its hidden_size is the merger's output); Qwen2.5-VL's is hidden_size
    width = int(v.get("embed_dim", 0) if cfg.get("model_type") == "qwen2_vl" else v.get("hidden_size", 0))
    width = width or int(v.get("hidden_size", 0))
    depth = int(v.get("depth", v.get("num_hidden_layers", 0)))
    per_patch = (dtype_bytes * width * depth + layer * width) if recompute else layer * width * depth
    return {"per_token": float(per_token + logits), "per_sequence": float(per_image * per_patch),
            "fixed": float(16 * vocab * int(chunk)) if chunk else 0.0}


def counted_on_cpu(cfg: dict[str, Any], device: str) -> bool:
    """The training forward runs on the CPU (``model.device``) on layers cpu_activations has counted."""
    from visplay_models import cpu_activations

    return str(device).startswith("cpu") and cpu_activations.counts(cfg)


def model_facts(recipe: Any, options: Any) -> ModelFacts:
    cfg, source = read_config(recipe, options)
    b = DTYPE_BYTES[str(recipe.model.dtype)]
    counts = count_parameters(cfg)
    lora = options.lora
    trainable = lora_parameters(cfg, lora) if lora.enabled else counts["total"]
    images, _ = image_tokens(recipe, cfg)
    act = activation_bytes(cfg, options, images, b, str(recipe.model.get("device", "cuda")))
    return ModelFacts(
        model_type=str(cfg.get("model_type", "?")), source=source, parameters=counts["total"],
        text_parameters=counts["text"], vision_parameters=counts["vision"], trainable_parameters=trainable,
        dtype_bytes=b, kv_bytes_per_token=kv_bytes_per_token(cfg, b), activation_bytes_per_token=act["per_token"],
        prompt_tokens=TEXT_TOKENS + images, reference_bytes=0 if lora.enabled else counts["total"] * b,
        activation_bytes_per_sequence=act["per_sequence"], activation_bytes_fixed=act["fixed"], config=cfg,
        activation_bytes_recomputed_per_token=act.get("recomputed_per_token", 0.0),
        activation_bytes_recomputed_per_sequence=act.get("recomputed_per_sequence", 0.0),
        offloaded=bool(options.fsdp.offload) and recipe.distributed.get("strategy") == "fsdp")


def footprint(recipe: Any, facts: ModelFacts, nproc: int, options: Any) -> Footprint:
    """The weights and gradients of one training process, and the weights of one saved role."""
    shards = nproc if recipe.distributed.strategy == "fsdp" else 1
    b = facts.dtype_bytes
    fix = "" if options.lora.enabled else "plugins.models.lora.enabled=true"
    images, how = image_tokens(recipe, facts.config)
    chunk = options.logprob_chunk_tokens
    lines = [f"prompt allowance: {facts.prompt_tokens} tokens = {TEXT_TOKENS} text + {images} image tokens ({how})",
             "training forward: " + ("recomputation on (each layer keeps its input)" if options.gradient_checkpointing
                                     else "no recomputation (plugins.models.gradient_checkpointing=true recomputes)")
             + "; log-probs " + (f"in chunks of {chunk} tokens" if chunk else
                                 "over the whole micro-batch at once (plugins.models.logprob_chunk_tokens chunks them)")
             + ("; activations counted for the CPU (visplay_models/cpu_activations.py)"
                if counted_on_cpu(facts.config, str(recipe.model.get("device", "cuda"))) else "")]
    offload = facts.offloaded and shards > 1  # FSDP2 offloads only what it shards (2+ processes)
    state = "host/training" if offload else "training"
    items = [MemoryItem(state, "weights", facts.parameters * b / shards / GIB, "distributed.strategy=fsdp"),
             MemoryItem(state, "grads", facts.trainable_parameters * b / shards / GIB, fix)]
    if offload:  # on the GPU only the unit being computed, gathered whole, and the next one (prefetched)
        items.append(MemoryItem("training", "gathered_units", 2 * largest_unit(facts) * b / GIB))
    lines.append("fsdp: " + ("CPU offload: weights, grads, optimizer state and reference in host memory, two "
                             "gathered units on the GPU" if offload else "no offload" + (
                                 " (plugins.models.fsdp.offload needs distributed.strategy=fsdp with 2+ processes)"
                                 if facts.offloaded else " (plugins.models.fsdp.offload=true moves the sharded state "
                                 "to host memory)"))
                 + f"; step snapshots {options.fsdp.state_format}" + (
                     " (each rank writes its shards)" if options.fsdp.state_format == "sharded" and shards > 1 else ""))
    return Footprint(lines=lines, items=[
        *items,
        MemoryItem("disk/snapshot", "weights", facts.parameters * b / GIB),
        MemoryItem("disk/weights", "weights", facts.parameters * b / GIB),
    ])


def largest_unit(facts: ModelFacts) -> float:
    """Parameters of the largest FSDP unit: a text decoder layer or the embedding matrix (the head is its own unit
    when untied), whichever is larger; an estimate from the config's sizes."""
    t = _text(facts.config)
    h, layers, vocab = int(t["hidden_size"]), int(t["num_hidden_layers"]), int(t["vocab_size"])
    tied = bool(facts.config.get("tie_word_embeddings", t.get("tie_word_embeddings", False)))
    per_layer = max(facts.text_parameters - vocab * h * (1 if tied else 2), 0) / max(layers, 1)
    return float(max(per_layer, vocab * h))
