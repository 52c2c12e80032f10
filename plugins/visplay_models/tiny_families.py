"""Tiny in-process builds of the non-Qwen families (``plugins.models.tiny.architecture``), for tests.

Each is the family's own transformers classes at a few hundred thousand parameters: a byte-level BPE trained on the
same corpus as the Qwen tiny (tiny.py) with the family's special tokens, the family's processor (PIL image
processor, no torchvision) with a chat template in the family's layout, and a model initialised from the seed.
The folder is what ``save_pretrained`` writes, so it loads like any downloaded model of that family.

- ``idefics3`` (SmolVLM's architecture): a SigLIP vision tower on 64 x 64 images in 16-px patches, pixel shuffle
  by 2 (4 image tokens per image), a Llama text model; SmolVLM's chat layout (``<|im_start|>User:<image>...
  <end_of_utterance>\\nAssistant:``), no image splitting.
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


def write_family_model(t: dict[str, Any], seed: int, folder: Path) -> None:
    """Build the tiny model of a non-Qwen family and write it with ``save_pretrained`` (see the module docstring)."""
    import torch
    from transformers import AutoModelForImageTextToText
    from transformers.utils import logging as hf_logging

    from visplay_models.checkpoint import every_rank_writes
    from visplay_models.tiny import FORMAT_VERSION, model_config

    hf_logging.disable_progress_bar()
    processor = idefics3_processor(t["vocab_size"])
    cfg = model_config(t)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(cfg)
    eos = processor.tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    with every_rank_writes(model):
        model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    meta = {"format": FORMAT_VERSION, "seed": seed, "tiny": t,
            "parameters": sum(p.numel() for p in model.parameters())}
    (folder / "visplay_tiny.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
