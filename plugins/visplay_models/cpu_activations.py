"""Activation bytes of a Qwen2.5-VL training forward on the CPU, counted from the tensors it keeps for backward.

The planner's GPU figures use Korthikanti et al.'s 34*h bytes per layer (facts.activation_bytes). On the CPU the
planner is told the device (``model.device: cpu``) and counts instead what transformers' Qwen2.5-VL layers save for
the backward pass when torch runs them there, each tensor in its own dtype: torch's CPU ``scaled_dot_product_attention``
dispatches to ``_scaled_dot_product_flash_attention_for_cpu`` (grouped-query heads taken as they are), which keeps
q, k, v, its output and a float32 logsumexp per head, never the s x s scores. The counts below were read off
``torch.autograd.graph.saved_tensors_hooks`` over one decoder layer and one vision block (parameters left out), for
six text and five vision shapes in float32, and hold to the byte there (reproduce/memory_check.py measures the
whole update against them); b is the model's dtype bytes.

- RMSNorm (transformers' ``Qwen2RMSNorm`` computes in float32): its float32 input 4*w, the float32 rsqrt (4 bytes),
  the normalised input cast back (b*w) and the norm's output (b*w): (4 + 2b)*w + 4 per token.
- Text decoder layer, per token: two norms, q and the attention output (b*h each), k and v (b*kv_heads*head_dim
  each), the logsumexp (4 per head), and the SwiGLU MLP's gate, its SiLU, up and their product (4*b*I).
- Vision block, per patch: two norms, the fused qkv output (3*b*w), q and k after the rotary embedding (b*w each),
  the attention output and the projection's input (b*w each), the logsumexp and the SwiGLU MLP (4*b*I_v).
- Once per forward: per text token the final norm, whose output is the head's input (an upper bound: the head
  keeps only the response tokens'), and the rotary cos/sin (2*b*head_dim); per patch the patch
  embedding's input (b * channels * temporal patch * patch^2), the rotary cos/sin (2*4*head_dim, float32) and the
  patch merger (its norm, whose output is the MLP's input, then the GELU's input and output, 4w per merged token of
  4 patches: 2*b*w per patch).
- With recomputation each layer and block keeps only its input (b*h, b*w) and one at a time is recomputed. The
  backward pass runs the log-prob chunks, then the text layers, then the vision blocks, one after another: the
  peak holds only the largest of a chunk, a recomputed layer and a recomputed block beside what is kept (the GRPO
  plugin reports that maximum as ``recomputed``; ModelFacts.activation_bytes_recomputed_*).
- The log-prob chunk (forward.py ``_chunk_stats``) holds 5 float32 (C x V) tensors in its backward pass: the
  recomputed logits, the gather's gradient, logsumexp's exp(x - lse), its product with the incoming gradient and
  their sum: 20*V bytes per chunk token (the GPU figure keeps 16*V).
"""

from __future__ import annotations

from typing import Any

CHUNK_BYTES_PER_VOCAB = 20


def counts(cfg: dict[str, Any]) -> bool:
    """Whether the count applies: the Qwen2.5-VL layers it was read from."""
    return cfg.get("model_type") == "qwen2_5_vl"


def _norm(width: int, b: int) -> int:
    return (4 + 2 * b) * width + 4


def text_bytes_per_token(t: dict[str, Any], b: int, recompute: bool) -> tuple[int, int]:
    """(bytes kept per token for the whole backward pass, bytes of the one layer recomputed at a time: 0 without
    recomputation, whose layers are all in the first figure)."""
    h, layers, inter = int(t["hidden_size"]), int(t["num_hidden_layers"]), int(t["intermediate_size"])
    heads = int(t["num_attention_heads"])
    head_dim = int(t.get("head_dim") or h // heads)
    kv = int(t.get("num_key_value_heads", heads)) * head_dim
    layer = 2 * _norm(h, b) + b * (2 * h + 2 * kv) + 4 * heads + 4 * b * inter
    once = _norm(h, b) + 2 * b * head_dim
    return (once + b * h * layers, layer) if recompute else (once + layer * layers, 0)


def vision_bytes_per_patch(v: dict[str, Any], b: int, recompute: bool) -> tuple[int, int]:
    """(bytes kept per patch, bytes of the one block recomputed at a time), as :func:`text_bytes_per_token`."""
    if not v:
        return 0, 0
    w, depth, inter = int(v["hidden_size"]), int(v["depth"]), int(v["intermediate_size"])
    heads = int(v.get("num_heads", 16))
    block = 2 * _norm(w, b) + 7 * b * w + 4 * heads + 4 * b * inter
    patch_dim = int(v.get("in_chans", 3)) * int(v.get("temporal_patch_size", 2)) * int(v.get("patch_size", 14)) ** 2
    once = b * patch_dim + 2 * 4 * (w // heads) + _norm(w, b) + 2 * b * w
    return (once + b * w * depth, block) if recompute else (once + block * depth, 0)
