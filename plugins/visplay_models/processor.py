"""A Qwen-VL processor adapter that needs no torchvision.

transformers' Qwen2-VL / Qwen2.5-VL processor classes require torchvision (their video processor is mandatory), which
has no CPU build for our torch. This adapter pairs the tokenizer with the PIL image processor
(``Qwen2VLImageProcessorPil``) and expands the image placeholder by hand: one ``<|image_pad|>`` becomes
``grid_thw.prod() // merge_size**2`` copies, exactly what the transformers processor does.

Each prompt is encoded on its own, so a prompt's tokens and pixels never depend on which batch it is in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

IMAGE_PAD = "<|image_pad|>"
# What the tiny model's folder declares; the torchvision-backed class of the same family reads it too (vLLM).
SAVED_IMAGE_PROCESSOR_TYPE = "Qwen2VLImageProcessor"


def default_image_processor(min_pixels: int = 56 * 56, max_pixels: int = 256 * 28 * 28) -> Any:
    """The PIL Qwen2-VL image processor with patch 14, merge 2, temporal patch 2 (Qwen's), bounded pixels."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    proc = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)
    proc.image_processor_type = SAVED_IMAGE_PROCESSOR_TYPE
    return proc


@dataclass
class Encoded:
    """One prompt, encoded: token ids with the image placeholder expanded, and the image tensors (or None)."""

    input_ids: list[int]
    pixel_values: torch.Tensor | None  # (patches, channels * temporal_patch * patch * patch)
    image_grid_thw: torch.Tensor | None  # (1, 3) long


class VLProcessor:
    """Tokenizer + PIL image processor for Qwen2-VL-family models (see the module docstring)."""

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
        """The chat text of a visplay Prompt: optional system turn, user = image then text, assistant prompt."""
        messages: list[dict[str, Any]] = []
        if prompt.system is not None:
            messages.append({"role": "system", "content": prompt.system})
        content: list[dict[str, str]] = []
        if prompt.image is not None:
            content.append({"type": "image"})
        content.append({"type": "text", "text": prompt.user})
        messages.append({"role": "user", "content": content})
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return _qwen_chat(messages)

    def encode(self, prompt: Any) -> Encoded:
        """Encode one Prompt (see :class:`Encoded`)."""
        text = self.chat_text(prompt)
        pixel_values = grid = None
        if prompt.image is not None:
            image = prompt.image.image if hasattr(prompt.image, "image") else prompt.image
            out = self.image_processor(images=[image.convert("RGB")], return_tensors="pt")
            pixel_values, grid = out["pixel_values"], out["image_grid_thw"].long()
            copies = int(grid.prod().item()) // self.merge_size**2
            if text.count(IMAGE_PAD) != 1:
                raise ValueError(f"chat template produced {text.count(IMAGE_PAD)} image placeholders, expected 1")
            text = text.replace(IMAGE_PAD, IMAGE_PAD * copies)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return Encoded(list(ids), pixel_values, grid)

    def decode(self, token_ids: list[int]) -> str:
        """Response text: special tokens (the closing <|im_end|>) removed."""
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)


def _qwen_chat(messages: list[dict[str, Any]]) -> str:
    """Qwen's chat format, for tokenizers that ship without a template."""
    parts = []
    for m in messages:
        body = m["content"] if isinstance(m["content"], str) else "".join(
            "<|vision_start|><|image_pad|><|vision_end|>" if p["type"] == "image" else p["text"] for p in m["content"])
        parts.append(f"<|im_start|>{m['role']}\n{body}<|im_end|>\n")
    return "".join(parts) + "<|im_start|>assistant\n"
