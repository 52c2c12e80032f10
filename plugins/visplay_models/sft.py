"""Supervised fine-tuning on (prompt, target text) pairs: the games plugin's perception cold start (G1)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from visplay.types import Prompt


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
