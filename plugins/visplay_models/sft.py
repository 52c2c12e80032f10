"""Supervised fine-tuning on (prompt, target text) pairs: the games plugin's perception cold start (G1), and a
content-addressed cache of its results, so a long cold start is built once per machine."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visplay.api import Prompt


def target_ids(policy: Any, text: str) -> list[int]:
    """Token ids the model should produce for ``text``: its tokens, then ``<|im_end|>`` (so it learns to stop)."""
    ids = policy.processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    return list(ids) + [policy.processor.im_end_id]


def sft_train(policy: Any, pairs: Sequence[tuple[Prompt, str]], *, steps: int, lr: float, batch_size: int,
              seed: int, weight_decay: float = 0.0, grad_clip: float = 1.0,
              on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Fine-tune ``policy`` in place to maximise the log-likelihood of each target given its prompt.

    Each step draws ``batch_size`` pairs (a fresh permutation of ``pairs`` per epoch, from ``seed``), minimises the
    token-mean negative log-likelihood of the targets (plus ``<|im_end|>``), clips the gradient norm and takes one
    AdamW step (a fresh optimizer, separate from any GRPO state). Only trainable parameters change (adapters only
    under LoRA).

    :param on_step: called with (steps done, loss) after each step (the terminal's progress bar).
    :return: the loss of each step, in order.
    """
    if not pairs:
        raise ValueError("sft_train: no (prompt, target) pairs")
    if steps < 0 or batch_size < 1 or lr <= 0:
        raise ValueError(f"sft_train: need steps >= 0, batch_size >= 1, lr > 0 (got {steps}, {batch_size}, {lr})")
    params = [p for _, p in policy.trainable_parameters()]
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    targets = [target_ids(policy, text) for _, text in pairs]
    rng = np.random.default_rng(seed)
    order: list[int] = []
    losses: list[float] = []
    policy.model.train()
    for _ in range(steps):
        while len(order) < batch_size:
            order += rng.permutation(len(pairs)).tolist()
        batch, order = order[:batch_size], order[batch_size:]
        logps = policy.logprobs([pairs[i][0] for i in batch], [targets[i] for i in batch], grad=True)
        flat = torch.cat(logps)
        loss = -flat.mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optim.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(len(losses), losses[-1])
    return losses


# --- a content-addressed cache of SFT results -------------------------------------------------------------------

CACHE_FORMAT = 1


def sft_cache_key(policy: Any, pairs: Sequence[tuple[Prompt, str]], **settings: Any) -> str:
    """sha256 of everything the SFT result depends on: the starting weights (names, shapes, bytes), every pair
    (system, user text, image content hash, target), the settings (steps, lr, batch size, seed, ...), the torch
    version and this cache's format. Equal keys mean bit-identical results on CPU (the loop is deterministic)."""
    h = hashlib.sha256(f"visplay-sft:{CACHE_FORMAT}:{torch.__version__}\n".encode())
    h.update(policy.weights_sha256().encode())
    for prompt, target in pairs:
        image = ",".join(r.image_id for r in prompt.images)  # one image: its id, as before several were possible
        h.update(json.dumps([prompt.system, prompt.user, image, target]).encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


def default_sft_cache_dir() -> Path:
    """$VISPLAY_CACHE/sft, else ~/.cache/visplay/sft (next to the tiny models' cache)."""
    root = os.environ.get("VISPLAY_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "visplay") / "sft"


def cached_sft_train(policy: Any, pairs: Sequence[tuple[Prompt, str]], *, cache_dir: Path | str | None = None,
                     on_step: Callable[[int, float], None] | None = None,
                     **settings: Any) -> tuple[list[float], bool]:
    """:func:`sft_train`, built once: the trained weights and losses are stored under ``cache_dir`` keyed by
    :func:`sft_cache_key`, and a later call with the same key loads them instead of training (``on_step`` is
    then not called; it is not part of the key).

    :return: (losses, whether they came from the cache).
    """
    from safetensors.torch import load_file, save_file

    if getattr(policy, "sharded", False):  # FSDP: parameters are shards (DTensors) on several ranks; train as is
        return sft_train(policy, pairs, on_step=on_step, **settings), False
    folder = Path(cache_dir) if cache_dir is not None else default_sft_cache_dir()
    entry = folder / sft_cache_key(policy, pairs, **settings)
    if (entry / "losses.json").is_file():
        weights = load_file(str(entry / "weights.safetensors"))
        with torch.no_grad():
            for name, param in policy.trainable_parameters():
                param.copy_(weights[name])
        return json.loads((entry / "losses.json").read_text()), True
    losses = sft_train(policy, pairs, on_step=on_step, **settings)
    folder.mkdir(parents=True, exist_ok=True)
    # Written to a temporary sibling and renamed: an interrupted build never leaves a half entry behind.
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=folder))
    try:
        save_file({n: p.detach().to("cpu").contiguous() for n, p in policy.trainable_parameters()},
                  str(tmp / "weights.safetensors"))
        (tmp / "losses.json").write_text(json.dumps(losses))
        try:
            tmp.rename(entry)
        except OSError:  # another process stored the same entry first; it is identical
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return losses, False
