"""Forward passes of an image-text-to-text model: teacher-forced log-probs (batched) and incremental decoding.

For the mrope families (Qwen2-VL, Qwen2.5-VL: ``processor.mrope``) we compute the multimodal rotary positions
ourselves with the model's ``get_rope_index`` and pass them explicitly, so no call depends on the position state
transformers caches on the model between calls (``rope_deltas``). Any other family gets no position ids (its model
counts them from the attention mask or the cache) and its processor's image tensors as they come
(``Encoded.extras``, concatenated over the batch's images). A model whose forward takes ``token_type_ids`` gets the
processor's per-token types (Gemma 3: 1 on image tokens, so each image attends to itself bidirectionally, as in its
training) on the prompt and 0 on response and padding tokens, in the teacher-forced pass and in the prefill alike; the
decoding steps get none (the image is in the cache by then), as transformers' ``generate`` does.

Log-prob convention (shared by the sampler and the teacher-forced pass, so they match): the log-probability of a
token is ``log_softmax(logits / T)`` over the **whole vocabulary**, at the sampling temperature ``T`` (T = 1 when
sampling greedily), *before* top-k / top-p truncation and before special tokens are forbidden. This is what
EasyR1 computes for ``old_log_probs`` (temperature-scaled logits) and what vLLM reports as processed log-probs.

Memory: the head runs only on response positions. With ``chunk_tokens`` (recipe ``plugins.models.logprob_chunk_tokens``)
it runs on that many tokens at a time and each chunk is reduced to the selected token's logit minus the row's
logsumexp (TRL's ``selective_log_softmax``, trl/trainer/utils.py; verl's ``logprobs_from_logits_v2``,
verl/utils/torch_functional.py) inside an activation checkpoint, so neither the forward nor the backward pass ever
holds more than one chunk's float32 logits: the backward pass recomputes a chunk's logits from its hidden states.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from visplay_models.processor import Encoded, VLProcessor


def inner_model(model: Any) -> Any:
    """The transformers ``...ForConditionalGeneration`` under a peft wrapper (LoRA layers stay injected)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _scale(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    logits = logits.float()
    return logits / temperature if temperature > 0 else logits


@dataclass
class Batch:
    """Right-padded prompt+response rows ready for one forward pass."""

    input_ids: torch.Tensor  # (B, L) long
    attention_mask: torch.Tensor  # (B, L) long
    position_ids: torch.Tensor | None  # (3, B, L) long (mrope families), else None
    pixel_values: torch.Tensor | None  # (sum of patches, patch_dim), or the family's image layout
    image_grid_thw: torch.Tensor | None  # (images, 3) (mrope families)
    prompt_lens: list[int]
    response_lens: list[int]
    extras: dict[str, torch.Tensor] | None = None  # the family processor's other image tensors
    token_type_ids: torch.Tensor | None = None  # (B, L) long, for models that take them (Gemma 3)


def _is_mrope(processor: Any) -> bool:
    return bool(getattr(processor, "mrope", False))


def _cat_images(processor: Any, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate per-prompt image tensors (images first) over the batch; families that take them as (1, images,
    ...) (``processor.images_batched``, Idefics3) get that leading dimension back."""
    out = torch.cat(list(tensors))
    return out[None] if getattr(processor, "images_batched", False) else out


def image_kwargs(batch: Batch) -> dict[str, Any]:
    """The image arguments of the model call: Qwen's pixel_values + image_grid_thw, or the family's tensors."""
    out: dict[str, Any] = {"pixel_values": batch.pixel_values}
    if batch.image_grid_thw is not None or batch.extras is None:
        out["image_grid_thw"] = batch.image_grid_thw
    out.update(batch.extras or {})
    if batch.token_type_ids is not None:
        out["token_type_ids"] = batch.token_type_ids
    return out


def _takes_token_types(hf: Any, encs: Sequence[Encoded]) -> bool:
    """Whether to pass token_type_ids: the processor gave them and the model's forward takes them."""
    return any(e.token_types is not None for e in encs) and \
        "token_type_ids" in inspect.signature(hf.model.forward).parameters


def token_types(encs: Sequence[Encoded], length: int, device: torch.device) -> torch.Tensor:
    """(B, length) long: each prompt's token types, then 0 (response and right padding)."""
    out = torch.zeros((len(encs), length), dtype=torch.long)
    for i, e in enumerate(encs):
        if e.token_types is not None:
            out[i, : len(e.token_types)] = torch.tensor(e.token_types, dtype=torch.long)
    return out.to(device)


def make_batch(hf: Any, processor: VLProcessor, encs: Sequence[Encoded], responses: Sequence[Sequence[int]],
               device: torch.device, dtype: torch.dtype) -> Batch:
    """Concatenate each prompt with its response, pad on the right, and compute mrope positions."""
    for i, r in enumerate(responses):
        if processor.image_token_id in r:
            raise ValueError(f"response {i} contains the image placeholder token {processor.image_token_id}")
    rows = [list(e.input_ids) + list(r) for e, r in zip(encs, responses)]
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), processor.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    images = [e for e in encs if e.pixel_values is not None]
    ids, mask = ids.to(device), mask.to(device)
    lens = [len(e.input_ids) for e in encs], [len(r) for r in responses]
    if not _is_mrope(processor):
        pixels = _cat_images(processor, [e.pixel_values for e in images]).to(device, dtype) if images else None
        extras = {k: _cat_images(processor, [e.extras[k] for e in images]).to(device)
                  for k in (images[0].extras if images else {})}
        types = token_types(encs, length, device) if _takes_token_types(hf, encs) else None
        return Batch(ids, mask, None, pixels, None, *lens, extras=extras, token_type_ids=types)
    pixels = torch.cat([e.pixel_values for e in images]).to(device, dtype) if images else None
    grid = torch.cat([e.image_grid_thw for e in images]).to(device) if images else None
    positions = rope_positions(hf, processor, ids, mask, grid)
    return Batch(ids, mask, positions, pixels, grid, *lens)


def rope_positions(hf: Any, processor: VLProcessor, ids: torch.Tensor, mask: torch.Tensor | None,
                   grid: torch.Tensor | None) -> torch.Tensor:
    """(3, B, L) multimodal rotary positions (text tokens: the same position on all three axes)."""
    types = (ids == processor.image_token_id).int()
    if mask is not None:
        types = types * mask.int()
    positions, _ = hf.model.get_rope_index(ids, mm_token_type_ids=types, image_grid_thw=grid, attention_mask=mask)
    return positions


def token_logprobs(model: Any, processor: VLProcessor, encs: Sequence[Encoded],
                   responses: Sequence[Sequence[int]], *, temperature: float = 1.0, with_entropy: bool = False,
                   device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                   chunk_tokens: int | None = None, min_chunks: int = 0,
                   ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """Teacher-forced per-token log-probs of ``responses`` given the encoded prompts, in one padded batch.

    :param chunk_tokens: response tokens per head chunk (see the module docstring); None: all at once.
    :param min_chunks: call the head at least this often (FSDP: every rank must call it as often as the others).
    :return: (logprobs, entropies): one (len(response),) float32 tensor per row each; entropies (of the
        temperature-scaled distribution) only when ``with_entropy``. Gradients flow when grad mode is on.
    """
    hf = inner_model(model)
    device = torch.device(device)
    batch = make_batch(hf, processor, encs, responses, device, dtype)
    out = hf.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   position_ids=batch.position_ids, use_cache=False, **image_kwargs(batch))
    hidden = out.last_hidden_state  # (B, L, H)
    # Position p - 1 predicts token p: gather only response positions before the (large-vocabulary) head.
    rows, cols = [], []
    for i, (p, r) in enumerate(zip(batch.prompt_lens, batch.response_lens)):
        rows += [i] * r
        cols += range(p - 1, p - 1 + r)
    rows_t = torch.tensor(rows, dtype=torch.long, device=device)
    cols_t = torch.tensor(cols, dtype=torch.long, device=device)
    targets = batch.input_ids[rows_t, cols_t + 1]
    logp, entropy = selected_logprobs(hidden[rows_t, cols_t], hf.lm_head, targets, temperature=temperature,
                                      with_entropy=with_entropy, chunk_tokens=chunk_tokens, min_chunks=min_chunks)
    splits = list(batch.response_lens)
    lps = list(torch.split(logp, splits))
    ents = list(torch.split(entropy, splits)) if entropy is not None else None
    return lps, ents


def selected_logprobs(hidden: torch.Tensor, head: Any, targets: torch.Tensor, *, temperature: float = 1.0,
                      with_entropy: bool = False, chunk_tokens: int | None = None, min_chunks: int = 0,
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of ``targets`` under ``head(hidden) / T`` and, when ``with_entropy``, the distribution's entropy.

    :param hidden: (N, H) hidden states of the positions that predict ``targets`` (N,).
    :param chunk_tokens: None: the whole (N, V) float32 log-softmax at once; else chunks of that many rows, each
        logit minus logsumexp, recomputed in the backward pass (the same numbers up to float rounding).
    :param min_chunks: pad with chunks of the first row, weighted 0, up to this many head calls: under FSDP2 an
        untied head is a unit of its own that all-gathers at each call and in each backward recomputation.
    :return: ((N,) float32 log-probs with the graph when grad mode is on, (N,) float32 entropies without one).
    """
    if chunk_tokens is None:
        logp_all = torch.log_softmax(_scale(head(hidden), temperature), dim=-1)  # (N, V)
        logp = logp_all.gather(-1, targets[:, None])[:, 0]
        if not with_entropy:
            return logp, None
        with torch.no_grad():  # a metric only: no graph, so it costs no activation memory in the backward pass
            return logp, -(logp_all.exp() * logp_all).sum(-1)
    if chunk_tokens < 1:
        raise ValueError(f"plugins.models.logprob_chunk_tokens must be >= 1 or null, got {chunk_tokens}")
    from torch.utils.checkpoint import checkpoint

    parts = []
    for start in range(0, hidden.shape[0], chunk_tokens):
        args = (hidden[start:start + chunk_tokens], head, targets[start:start + chunk_tokens], temperature,
                with_entropy)
        parts.append(checkpoint(_chunk_stats, *args, use_reentrant=False) if torch.is_grad_enabled()
                     else _chunk_stats(*args))
    logp = torch.cat([lp for lp, _ in parts]) if parts else hidden.new_zeros(0, dtype=torch.float32)
    entropy = torch.cat([e for _, e in parts]) if with_entropy and parts else None
    for _ in range(min_chunks - len(parts)):  # in the graph with weight 0, so its backward runs on every rank too
        args = (hidden[:1], head, targets[:1], temperature, False)
        pad, _ = checkpoint(_chunk_stats, *args, use_reentrant=False) if torch.is_grad_enabled() else _chunk_stats(*args)
        logp = logp + 0.0 * pad.sum()
    return logp, entropy


def _chunk_stats(hidden: torch.Tensor, head: Any, targets: torch.Tensor, temperature: float, with_entropy: bool
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One chunk: log p(target) = logit(target) - logsumexp(logits); entropy = logsumexp - sum(p * logits)."""
    logits = _scale(head(hidden), temperature)  # (C, V) float32, freed when the chunk is done
    lse = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets[:, None])[:, 0] - lse
    if not with_entropy:
        return logp, None
    with torch.no_grad():  # computed after logp, so the backward recomputation stops before it (early stop)
        return logp, lse - (torch.softmax(logits, dim=-1) * logits).sum(-1)


def prefill(hf: Any, processor: VLProcessor, enc: Encoded, device: torch.device, dtype: torch.dtype
            ) -> tuple[torch.Tensor, Any, int]:
    """Run the prompt once (batch 1). Returns (last logits (1, V), the KV cache, the rope delta)."""
    from transformers import DynamicCache

    ids = torch.tensor([enc.input_ids], dtype=torch.long, device=device)
    cache = DynamicCache(config=hf.config)
    if not _is_mrope(processor):
        pixels = _cat_images(processor, [enc.pixel_values]).to(device, dtype) if enc.pixel_values is not None else None
        extras = {k: _cat_images(processor, [v]).to(device) for k, v in enc.extras.items()}
        if _takes_token_types(hf, [enc]):
            extras["token_type_ids"] = token_types([enc], ids.shape[1], device)
        out = hf.model(input_ids=ids, pixel_values=pixels, past_key_values=cache, use_cache=True, **extras)
        return hf.lm_head(out.last_hidden_state[:, -1:])[:, 0], out.past_key_values, 0
    grid = enc.image_grid_thw.to(device) if enc.image_grid_thw is not None else None
    pixels = enc.pixel_values.to(device, dtype) if enc.pixel_values is not None else None
    positions = rope_positions(hf, processor, ids, None, grid)
    delta = int(positions.max().item()) + 1 - ids.shape[1]
    out = hf.model(input_ids=ids, position_ids=positions, pixel_values=pixels, image_grid_thw=grid,
                   past_key_values=cache, use_cache=True)
    logits = hf.lm_head(out.last_hidden_state[:, -1:])[:, 0]
    return logits, out.past_key_values, delta


def decode_step(hf: Any, tokens: torch.Tensor, cache: Any, position: int, mrope: bool = True) -> torch.Tensor:
    """Feed one token per row at text position ``position`` (same for all rows); returns logits (B, V)."""
    b = tokens.shape[0]
    shape = (3, b, 1) if mrope else (b, 1)
    positions = torch.full(shape, position, dtype=torch.long, device=tokens.device)
    out = hf.model(input_ids=tokens[:, None], position_ids=positions, past_key_values=cache, use_cache=True)
    return hf.lm_head(out.last_hidden_state[:, -1:])[:, 0]
