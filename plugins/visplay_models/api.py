"""The models plugin's public API: what other plugins may use of it.

- ``sft_train(policy, pairs, ...)`` / ``cached_sft_train(...)``: supervised fine-tuning of an HF policy on
  (Prompt, target text) pairs (the games plugin's cold start);
- ``merged_lora_state_dict(peft_model)``: a LoRA model's weights with the adapters merged (the vllm plugin pushes
  them into its engine).
"""

from __future__ import annotations

from visplay_models.checkpoint import merged_lora_state_dict
from visplay_models.sft import cached_sft_train, sft_train

__all__ = ["cached_sft_train", "merged_lora_state_dict", "sft_train"]
