"""The Transformers sampling backend (sampler name ``hf``).

Determinism contract: each request (prompt + SamplingParams) is generated on its own: one prefill of its prompt,
then its ``n`` samples decoded together as one batch of ``n`` rows; row ``j`` draws from its own
``torch.Generator`` seeded with ``derive_seed(params.seed, j)``. So a request's tokens depend only on the weights,
its prompt and its params (seed included), never on the other requests sent with it or their order. They may differ
if ``n`` changes (a different batch shape can round differently), so keep ``n`` fixed where that matters.

Special tokens (``<|image_pad|>``, ``<|vision_start|>``, ...) are never sampled; ``<|im_end|>`` (and the model's
other end-of-sequence ids) end a sample: it is kept as the last entry of ``token_ids`` (training learns to stop) and
left out of ``text``. Reported log-probs follow :mod:`visplay_models.forward`'s convention (full-vocabulary
``log_softmax(logits / T)``, before truncation and masking), so they match ``HFPolicy.logprobs`` at the same T.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from visplay.api import Generation, Prompt, SamplingParams, derive_seed
from visplay_models.forward import decode_step, inner_model, prefill

if TYPE_CHECKING:  # pragma: no cover
    from visplay_models.policy import HFPolicy


def filter_logits(logits: torch.Tensor, forbidden: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask forbidden ids, then keep the top_k (0: all) and the smallest nucleus with mass >= top_p.

    :param logits: (B, V) float32, already temperature-scaled.
    :param forbidden: (V,) bool.
    :return: (B, V) with removed entries set to -inf.
    """
    logits = logits.masked_fill(forbidden[None, :], float("-inf"))
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Remove a token when the mass strictly before it already reaches top_p (the first token always stays).
        before = torch.cumsum(probs, dim=-1) - probs
        remove_sorted = before >= top_p
        remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


class HFSampler:
    """Samples from an HFPolicy's current weights (see the module docstring for the determinism contract)."""

    def __init__(self, policy: HFPolicy):
        self.policy = policy

    def sample(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams]) -> list[list[Generation]]:
        """One list of ``params[i].n`` generations per prompt, in sample order."""
        if len(prompts) != len(params):
            raise ValueError(f"sample: {len(prompts)} prompts but {len(params)} SamplingParams")
        was_training = self.policy.model.training
        self.policy.model.eval()
        try:
            with torch.no_grad():
                return [self._request(p, sp) for p, sp in zip(prompts, params)]
        finally:
            self.policy.model.train(was_training)

    def _request(self, prompt: Prompt, sp: SamplingParams) -> list[Generation]:
        if sp.n < 1 or sp.max_new_tokens < 1:
            raise ValueError(f"SamplingParams: n and max_new_tokens must be >= 1, got {sp}")
        policy, proc = self.policy, self.policy.processor
        hf = inner_model(policy.model)
        enc = proc.encode(prompt)
        logits, cache, delta = prefill(hf, proc, enc, policy.device, policy.dtype)
        n = sp.n
        if n > 1:
            cache.batch_repeat_interleave(n)
            logits = logits.expand(n, -1)
        gens = [torch.Generator(device="cpu").manual_seed(derive_seed(sp.seed, j)) for j in range(n)]
        stop = policy.stop_ids
        forbidden = self._forbidden(logits.shape[-1], stop)
        tokens: list[list[int]] = [[] for _ in range(n)]
        logps: list[list[float]] = [[] for _ in range(n)]
        done = [False] * n
        position = len(enc.input_ids) + delta
        for step in range(sp.max_new_tokens):
            chosen, chosen_lp = self._draw(logits, sp, forbidden, gens)
            for j in range(n):
                if not done[j]:
                    tokens[j].append(int(chosen[j]))
                    logps[j].append(float(chosen_lp[j]))
                    done[j] = int(chosen[j]) in stop
            if all(done) or step == sp.max_new_tokens - 1:
                break
            feed = torch.tensor([t[-1] if not d else proc.pad_id for t, d in zip(tokens, done)],
                                dtype=torch.long, device=policy.device)
            logits = decode_step(hf, feed, cache, position + step, mrope=bool(getattr(proc, "mrope", False)))
        return [
            Generation(prompt=prompt, text=proc.decode([t for t in tokens[j] if t not in stop]),
                       token_ids=tokens[j], logprobs=logps[j], seed=sp.seed, sample_index=j,
                       finish_reason="stop" if tokens[j] and tokens[j][-1] in stop else "length")
            for j in range(n)
        ]

    def _forbidden(self, vocab: int, stop: set[int]) -> torch.Tensor:
        forbidden = torch.zeros(vocab, dtype=torch.bool)
        ids = [i for i in self.policy.processor.special_ids if i not in stop and i < vocab]
        forbidden[ids] = True
        # Rows of the head beyond the tokenizer (Qwen pads its embedding matrix) are not tokens at all.
        forbidden[len(self.policy.processor.tokenizer):] = True
        return forbidden

    @staticmethod
    def _draw(logits: torch.Tensor, sp: SamplingParams, forbidden: torch.Tensor,
              gens: list[torch.Generator]) -> tuple[list[int], list[float]]:
        """Pick one token per row; return the tokens and their log-probs under the reporting convention."""
        logits = logits.float().cpu()
        temperature = sp.temperature if sp.temperature > 0 else 1.0
        scaled = logits / temperature
        report = torch.log_softmax(scaled, dim=-1)
        filtered = filter_logits(scaled, forbidden, sp.top_k, sp.top_p)
        if sp.temperature <= 0:
            chosen = filtered.argmax(dim=-1).tolist()
        else:
            probs = torch.softmax(filtered, dim=-1)
            chosen = [int(torch.multinomial(probs[j], 1, generator=g)) for j, g in enumerate(gens)]
        return chosen, [float(report[j, c]) for j, c in enumerate(chosen)]
