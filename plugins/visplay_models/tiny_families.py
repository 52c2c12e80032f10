"""Tiny in-process builds of the non-Qwen families (``plugins.models.tiny.architecture``), for tests.

Each is the family's own transformers classes at a few hundred thousand parameters: a byte-level BPE trained on the
same corpus as the Qwen tiny (tiny.py) with the family's special tokens, the family's processor (PIL image
processor, no torchvision) with a chat template in the family's layout, and a model initialised from the seed.
The folder is what ``save_pretrained`` writes, so it loads like any downloaded model of that family.

- ``idefics3`` (SmolVLM's architecture): a SigLIP vision tower on 64 x 64 images in 16-px patches, pixel shuffle
  by 2 (4 image tokens per image), a Llama text model; SmolVLM's chat layout (``<|im_start|>User:<image>...
  <end_of_utterance>\\nAssistant:``), no image splitting.
- ``gemma3``: a SigLIP vision tower on 64 x 64 images in 16-px patches (4 x 4), average-pooled 2 x 2 by the
  projector to ``mm_tokens_per_image`` = 4 image tokens, a Gemma 3 text model (sliding-window layers, the last one
  global), embeddings tied to the head as in Gemma 3's checkpoints; Gemma 3's chat layout (``<bos><start_of_turn>user
  \\n...<end_of_turn>\\n<start_of_turn>model\\n``, a system prompt folded into the first user turn), the processor
  expanding ``<start_of_image>`` into ``\\n\\n<start_of_image>`` + 4 ``<image_soft_token>`` + ``<end_of_image>\\n\\n``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

IDEFICS3_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
                     "<global-img>")
IDEFICS3_IMAGE = 64  # px, one tile per image
IDEFICS3_PATCH = 16
IDEFICS3_SCALE = 2
# SmolVLM's layout: role names capitalised, an image part as <image> (the processor expands it), the turn closed by
# <end_of_utterance>; no default system prompt.
IDEFICS3_TEMPLATE = (
    "<|im_start|>"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<end_of_utterance>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def idefics3_config(t: dict[str, Any]) -> Any:
    from transformers import Idefics3Config

    ids = {tok: i for i, tok in enumerate(IDEFICS3_SPECIALS)}
    text = dict(
        model_type="llama", vocab_size=t["vocab_size"], hidden_size=t["hidden_size"],
        intermediate_size=t["intermediate_size"], num_hidden_layers=t["num_layers"],
        num_attention_heads=t["num_heads"], num_key_value_heads=t["num_kv_heads"], max_position_embeddings=4096,
        rms_norm_eps=1e-6, bos_token_id=ids["<|im_start|>"], eos_token_id=ids["<end_of_utterance>"],
        pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=False,
    )
    vision = dict(
        hidden_size=t["vision_hidden_size"], intermediate_size=2 * t["vision_hidden_size"],
        num_hidden_layers=t["vision_depth"], num_attention_heads=t["vision_heads"], image_size=IDEFICS3_IMAGE,
        patch_size=IDEFICS3_PATCH,
    )
    return Idefics3Config(text_config=text, vision_config=vision, scale_factor=IDEFICS3_SCALE,
                          image_token_id=ids["<image>"], pad_token_id=ids["<|endoftext|>"],
                          tie_word_embeddings=False)


def idefics3_processor(vocab_size: int) -> Any:
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    from visplay_models.tiny import train_tokenizer

    tokenizer = train_tokenizer(vocab_size, IDEFICS3_SPECIALS, eos="<end_of_utterance>", pad="<|endoftext|>",
                                chat_template=IDEFICS3_TEMPLATE)
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": IDEFICS3_IMAGE},
        max_image_size={"longest_edge": IDEFICS3_IMAGE})
    seq_len = (IDEFICS3_IMAGE // IDEFICS3_PATCH) ** 2 // IDEFICS3_SCALE**2
    return Idefics3Processor(image_processor, tokenizer, image_seq_len=seq_len, chat_template=IDEFICS3_TEMPLATE)


GEMMA3_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>",
                   "<start_of_image>", "<end_of_image>", "<image_soft_token>")  # pad 0, eos 1, bos 2 as Gemma's
GEMMA3_IMAGE = 64  # px: Gemma 3 resizes every image to its tower's size (896 there)
GEMMA3_PATCH = 16
GEMMA3_TOKENS = 4  # mm_tokens_per_image: (64 / 16)^2 = 16 patches average-pooled 2 x 2 (256 of 4,096 in Gemma 3)
GEMMA3_NEWLINES = ("\n", "\n\n", "\n\n\n", "\n\n\n\n")  # single tokens in Gemma's vocabulary (gemma3_processor)
GEMMA3_WINDOW = 16  # sliding window of the local layers: shorter than a prompt, so the local mask is exercised
# Gemma 3's layout (google/gemma-3-4b-it's chat template, as transformers' Gemma3Processor expects it): <bos>, a
# system prompt folded into the first user turn followed by a blank line, the assistant's role named "model", text
# parts trimmed, an image part as <start_of_image> (the processor expands it into the full image sequence).
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% if messages[0]['content'] is string %}{% set prefix = messages[0]['content'] + '\n\n' %}"
    "{% else %}{% set prefix = messages[0]['content'][0]['text'] + '\n\n' %}{% endif %}"
    "{% set turns = messages[1:] %}"
    "{% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}"
    "{% for message in turns %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n' }}"
    "{% if loop.first %}{{ prefix }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def gemma3_config(t: dict[str, Any]) -> Any:
    from transformers import Gemma3Config

    ids = {tok: i for i, tok in enumerate(GEMMA3_SPECIALS)}
    head_dim = t["hidden_size"] // t["num_heads"]
    layers = t["num_layers"]
    text = dict(
        model_type="gemma3_text", vocab_size=t["vocab_size"], hidden_size=t["hidden_size"],
        intermediate_size=t["intermediate_size"], num_hidden_layers=layers, num_attention_heads=t["num_heads"],
        num_key_value_heads=t["num_kv_heads"], head_dim=head_dim, query_pre_attn_scalar=head_dim,
        sliding_window=GEMMA3_WINDOW, max_position_embeddings=4096, rms_norm_eps=1e-6,
        # Gemma 3's 5 local : 1 global pattern, with the last layer global so a 2-layer model has one of each
        layer_types=["full_attention" if (i + 1) % 6 == 0 or i == layers - 1 else "sliding_attention"
                     for i in range(layers)],
        bos_token_id=ids["<bos>"], eos_token_id=ids["<eos>"], pad_token_id=ids["<pad>"], tie_word_embeddings=True,
    )
    vision = dict(
        model_type="siglip_vision_model", hidden_size=t["vision_hidden_size"],
        intermediate_size=2 * t["vision_hidden_size"], num_hidden_layers=t["vision_depth"],
        num_attention_heads=t["vision_heads"], image_size=GEMMA3_IMAGE, patch_size=GEMMA3_PATCH,
        vision_use_head=False,
    )
    return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=GEMMA3_TOKENS,
                        boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
                        image_token_index=ids["<image_soft_token>"], tie_word_embeddings=True)


def gemma3_processor(vocab_size: int) -> Any:
    from tokenizers import AddedToken
    from transformers import Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    from visplay_models.tiny import train_tokenizer

    # eos <eos> as in Gemma 3's tokenizer; the turn ends with <end_of_turn>, which the generation config lists too.
    # Gemma's SentencePiece vocabulary has runs of 1-4 newlines as single tokens, and vLLM's Gemma 3 processor looks
    # them up by text (vllm/model_executor/models/gemma3_mm.py, _apply_token_matches): the byte-level BPE gets
    # them as added (not special) tokens, within the same vocab_size.
    tokenizer = train_tokenizer(
        vocab_size - len(GEMMA3_NEWLINES), GEMMA3_SPECIALS, eos="<eos>", pad="<pad>", bos="<bos>", chat_template=GEMMA3_TEMPLATE,
        extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                              "image_token": "<image_soft_token>"})
    tokenizer.add_tokens([AddedToken(text, normalized=False, special=False) for text in GEMMA3_NEWLINES])
    # Gemma 3's normalisation (mean = std = 0.5), no pan-and-scan crops: one fixed-size view per image
    image_processor = Gemma3ImageProcessorPil(
        size={"height": GEMMA3_IMAGE, "width": GEMMA3_IMAGE}, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        do_pan_and_scan=False)
    return Gemma3Processor(image_processor, tokenizer, chat_template=GEMMA3_TEMPLATE, image_seq_length=GEMMA3_TOKENS)


def _gemma3_projector(model: Any) -> None:
    """transformers zero-initialises Gemma 3's image projection (a checkpoint overwrites it); a tiny model built
    from scratch with it would ignore its images, so it is drawn like the other weights (normal, initializer_range)."""
    import torch

    weight = model.model.multi_modal_projector.mm_input_projection_weight
    with torch.no_grad():
        weight.normal_(0.0, model.config.text_config.initializer_range)


_PROCESSORS = {"idefics3": (idefics3_processor, "<end_of_utterance>"), "gemma3": (gemma3_processor, "<end_of_turn>")}


def write_family_model(t: dict[str, Any], seed: int, folder: Path) -> None:
    """Build the tiny model of a non-Qwen family and write it with ``save_pretrained`` (see the module docstring)."""
    import torch
    from transformers import AutoModelForImageTextToText
    from transformers.utils import logging as hf_logging

    from visplay_models.checkpoint import every_rank_writes
    from visplay_models.tiny import FORMAT_VERSION, model_config

    hf_logging.disable_progress_bar()
    cfg = model_config(t)  # validates the section first (an unknown architecture names the key)
    make_processor, end_of_turn = _PROCESSORS[t["architecture"]]
    processor = make_processor(t["vocab_size"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(cfg)
        if t["architecture"] == "gemma3":
            _gemma3_projector(model)
    eos = processor.tokenizer.convert_tokens_to_ids(end_of_turn)
    if t["architecture"] == "gemma3":  # Gemma 3's generation config stops on <eos> and <end_of_turn>
        eos = [processor.tokenizer.eos_token_id, eos]
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    with every_rank_writes(model):
        model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    meta = {"format": FORMAT_VERSION, "seed": seed, "tiny": t,
            "parameters": sum(p.numel() for p in model.parameters())}
    (folder / "visplay_tiny.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
