"""Prompt encoders: a Qwen-VL processor adapter that needs no torchvision, and :class:`FamilyProcessor` for any
other image-text-to-text family (its own processor, through ``AutoProcessor``).

transformers' Qwen2-VL / Qwen2.5-VL processor classes require torchvision (their video processor is mandatory), which
has no CPU build for our torch. This adapter pairs the tokenizer with the PIL image processor
(``Qwen2VLImageProcessorPil``) and expands the image placeholder by hand: one ``<|image_pad|>`` becomes
``grid_thw.prod() // merge_size**2`` copies, exactly what the transformers processor does.

Each prompt is encoded on its own, so a prompt's tokens and pixels never depend on which batch it is in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

IMAGE_PAD = "<|image_pad|>"
# What the tiny model's folder declares; the torchvision-backed class of the same family reads it too (vLLM).
SAVED_IMAGE_PROCESSOR_TYPE = "Qwen2VLImageProcessor"


def default_image_processor(min_pixels: int = 56 * 56, max_pixels: int = 256 * 28 * 28, **kwargs: Any) -> Any:
    """The PIL Qwen2-VL image processor with patch 14, merge 2, temporal patch 2 (Qwen's), bounded pixels;
    ``kwargs`` override its settings (Qwen3-VL: patch_size 16, mean and std 0.5)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    proc = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels, **kwargs)
    proc.image_processor_type = SAVED_IMAGE_PROCESSOR_TYPE
    return proc


@dataclass
class Encoded:
    """One prompt, encoded: token ids with the image placeholder expanded, and the image tensors (or None)."""

    input_ids: list[int]
    pixel_values: torch.Tensor | None  # (patches of all images, channels * temporal_patch * patch * patch)
    image_grid_thw: torch.Tensor | None  # (images, 3) long, in the prompt's image order
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # other image tensors of the family's processor
    token_types: list[int] | None = None  # per prompt token, where the processor gives them (Gemma 3: 1 = image)


class VLProcessor:
    """Tokenizer + PIL image processor for Qwen2-VL-family models (see the module docstring)."""

    mrope = True  # prompts' positions come from the model's get_rope_index (visplay_models.forward)

    def __init__(self, tokenizer: Any, image_processor: Any):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.merge_size = int(getattr(image_processor, "merge_size", 2))
        self.image_token_id = self._token_id(IMAGE_PAD)
        self.im_end_id = self._token_id("<|im_end|>")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self._token_id(
            "<|endoftext|>")
        self.special_ids = sorted(set(tokenizer.all_special_ids) | set(self._added_special_ids()))

    @classmethod
    def from_pretrained(cls, path: str | Path, trust_remote_code: bool = False) -> VLProcessor:
        """Load the tokenizer and image processor of a local model folder (offline)."""
        from transformers import AutoTokenizer
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True,
                                                  trust_remote_code=trust_remote_code)
        if (Path(path) / "preprocessor_config.json").is_file():
            image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(path), local_files_only=True)
        else:
            image_processor = default_image_processor()
        return cls(tokenizer, image_processor)

    def save_pretrained(self, directory: str | Path) -> None:
        self.tokenizer.save_pretrained(str(directory))
        self.image_processor.save_pretrained(str(directory))

    def _token_id(self, text: str) -> int:
        idx = self.tokenizer.convert_tokens_to_ids(text)
        if idx is None or idx == self.tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no token {text!r}: not a Qwen2-VL-family tokenizer")
        return int(idx)

    def _added_special_ids(self) -> list[int]:
        decoder = getattr(self.tokenizer, "added_tokens_decoder", {}) or {}
        return [int(i) for i, tok in decoder.items() if getattr(tok, "special", False)]

    # --- prompts -------------------------------------------------------------------------------------------------

    def chat_text(self, prompt: Any) -> str:
        """The chat text of a visplay Prompt: optional system turn, the user turn (its images and text in the
        prompt's order, :meth:`visplay.types.Prompt.parts`), the assistant prompt."""
        messages: list[dict[str, Any]] = []
        if prompt.system is not None:
            messages.append({"role": "system", "content": prompt.system})
        messages.append({"role": "user", "content": user_content(prompt)})
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return _qwen_chat(messages)

    def encode(self, prompt: Any) -> Encoded:
        """Encode one Prompt (see :class:`Encoded`): all its images processed together, as transformers'
        processor does, and the k-th ``<|image_pad|>`` expanded to image k's ``grid_thw.prod() // merge**2``."""
        text = self.chat_text(prompt)
        pixel_values = grid = None
        images = prompt_images(prompt)
        if images:
            out = self.image_processor(images=images, return_tensors="pt")
            pixel_values, grid = out["pixel_values"], out["image_grid_thw"].long()
            if text.count(IMAGE_PAD) != len(images):
                raise ValueError(f"chat template produced {text.count(IMAGE_PAD)} image placeholders for "
                                 f"{len(images)} image(s)")
            pieces = text.split(IMAGE_PAD)
            copies = [int(g.prod().item()) // self.merge_size**2 for g in grid]
            text = pieces[0] + "".join(IMAGE_PAD * n + rest for n, rest in zip(copies, pieces[1:]))
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return Encoded(list(ids), pixel_values, grid)

    def decode(self, token_ids: list[int]) -> str:
        """Response text: special tokens (the closing <|im_end|>) removed."""
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)


def user_content(prompt: Any) -> list[dict[str, str]]:
    """The user turn's chat content: ``{"type": "image"}`` and ``{"type": "text"}`` parts in the prompt's order."""
    return [{"type": "text", "text": p} if isinstance(p, str) else {"type": "image"} for p in prompt.parts()]


def prompt_images(prompt: Any) -> list[Any]:
    """The prompt's images as RGB PIL images, in order (an ImageRecord's picture, or a PIL image as given)."""
    return [(r.image if hasattr(r, "image") else r).convert("RGB") for r in prompt.images]


def _qwen_chat(messages: list[dict[str, Any]]) -> str:
    """Qwen's chat format, for tokenizers that ship without a template."""
    parts = []
    for m in messages:
        body = m["content"] if isinstance(m["content"], str) else "".join(
            "<|vision_start|><|image_pad|><|vision_end|>" if p["type"] == "image" else p["text"] for p in m["content"])
        parts.append(f"<|im_start|>{m['role']}\n{body}<|im_end|>\n")
    return "".join(parts) + "<|im_start|>assistant\n"


# --- any other image-text-to-text family -------------------------------------------------------------------------


class FamilyProcessor:
    """A family's own processor (``AutoProcessor``) behind the interface the policy, sampler and forward use.

    The prompt goes through the processor's chat template (images where the family puts them), then through the
    processor itself, which expands the image placeholder into as many image tokens as the family's vision tower
    makes; the image-token id, end-of-turn id and special tokens are read from the processor and the model config,
    never assumed. Image tensors besides ``pixel_values`` (Idefics3's ``pixel_attention_mask``, ...) travel in
    :attr:`Encoded.extras`. Per-token types (Gemma 3's ``token_type_ids``: 1 on image tokens, which attend to their
    whole image bidirectionally) travel in :attr:`Encoded.token_types`; the forward passes them where the model
    takes them (visplay_models.forward)."""

    mrope = False
    images_batched = False  # the model takes pixel_values as (1, images, ...) (set by the first encoded image)

    def __init__(self, processor: Any, config: Any):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_token_id = _image_token_id(processor, config)
        decoder = getattr(self.tokenizer, "added_tokens_decoder", {}) or {}
        self.special_ids = sorted(set(self.tokenizer.all_special_ids)
                                  | {int(i) for i, tok in decoder.items() if getattr(tok, "special", False)})
        self.im_end_id = _end_of_turn_id(processor, config, set(self.special_ids))
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.im_end_id

    @classmethod
    def from_pretrained(cls, path: str | Path, config: Any, trust_remote_code: bool = False) -> FamilyProcessor:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
        if not hasattr(processor, "tokenizer") or not hasattr(processor, "image_processor"):
            raise ValueError(f"{path}: AutoProcessor gave {type(processor).__name__}, which has no tokenizer and "
                             "image processor (not a vision-language processor)")
        return cls(processor, config)

    def save_pretrained(self, directory: str | Path) -> None:
        self.processor.save_pretrained(str(directory))

    def chat_text(self, prompt: Any) -> str:
        messages: list[dict[str, Any]] = []
        if prompt.system is not None:
            messages.append({"role": "system", "content": [{"type": "text", "text": prompt.system}]})
        messages.append({"role": "user", "content": user_content(prompt)})
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode(self, prompt: Any) -> Encoded:
        """The processor on the chat text and all the prompt's images (one sample holding them, in order)."""
        text = self.chat_text(prompt)
        images = prompt_images(prompt)
        kwargs: dict[str, Any] = {"images": [images]} if images else {}
        out = self.processor(text=[text], return_tensors="pt", add_special_tokens=False, **kwargs)
        ids = [int(i) for i in out["input_ids"][0]]
        types = out.get("token_type_ids")
        if images and self.image_token_id not in ids:
            raise ValueError(f"{type(self.processor).__name__}: the chat template put no image token in the prompt")
        extras = {k: v for k, v in out.items() if k not in ("input_ids", "attention_mask", "pixel_values",
                                                             "image_grid_thw", "token_type_ids", "mm_token_type_ids")}
        pixels = out.get("pixel_values")
        if pixels is not None and pixels.dim() == 5:  # (1, images, C, H, W): keep images first, like the others
            self.images_batched = True
            pixels = pixels[0]
            extras = {k: v[0] for k, v in extras.items()}
        token_types = [int(i) for i in types[0]] if types is not None else None
        return Encoded(ids, pixels, out.get("image_grid_thw"), extras, token_types)

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)


def _image_token_id(processor: Any, config: Any) -> int:
    """The token the model replaces with image features: the config's first (Gemma3Processor's ``image_token_id``
    is its ``<start_of_image>``, which the processor expands; the model fills ``<image_soft_token>``)."""
    for owner, name in ((config, "image_token_id"), (config, "image_token_index"), (processor, "image_token_id")):
        value = getattr(owner, name, None)
        if isinstance(value, int):
            return value
    token = getattr(processor, "image_token", None)
    if token is not None:
        return int(processor.tokenizer.convert_tokens_to_ids(str(token)))
    raise ValueError(f"{type(processor).__name__}: no image token id in the processor or config")


_PROBE = "visplay end-of-turn probe"


def _end_of_turn_id(processor: Any, config: Any, special: set[int]) -> int:
    """The token that ends the assistant's turn: the tokenizer's eos where the chat template closes a turn with it
    (SmolVLM's <end_of_utterance>), else the first special token the template puts after an assistant's text
    (Gemma 3: eos is <eos>, a turn ends with <end_of_turn>)."""
    tokenizer = processor.tokenizer
    eos = tokenizer.eos_token_id
    if eos is None:
        eos = getattr(getattr(config, "text_config", config), "eos_token_id", None)
        eos = eos[0] if isinstance(eos, list) else eos
    if eos is None:
        raise ValueError("the tokenizer and config name no end-of-sequence token")
    if not getattr(processor, "chat_template", None):
        return int(eos)
    turn = [{"role": role, "content": [{"type": "text", "text": text}]}
            for role, text in (("user", "hi"), ("assistant", _PROBE))]
    text = processor.apply_chat_template(turn, tokenize=False)
    after = tokenizer(text.split(_PROBE, 1)[-1], add_special_tokens=False)["input_ids"]
    if eos in after:
        return int(eos)
    return int(next((i for i in after if i in special), eos))
