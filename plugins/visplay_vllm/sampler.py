"""The vLLM sampler (sampler name ``vllm``): the same contract as the HF sampler, served by a live vLLM engine.

- Prompts are formatted by the policy's own processor adapter (``processor.chat_text``), so the text and token ids
  are exactly the HF backend's; the images go in as ``multi_modal_data`` (one image, or a list in the prompt's
  order for several: the k-th fills the k-th placeholder) and vLLM expands each placeholder with the model
  folder's image-processor settings (the same ones the adapter uses). The engine takes at most
  ``plugins.vllm.images_per_prompt`` images per prompt (its ``limit_mm_per_prompt``).
- Sample ``j`` of a request is its own vLLM request with seed ``derive_seed(params.seed, j)`` (the HF sampler
  derives its per-sample generators the same way), so a sample depends only on the weights, its prompt, its
  params and ``j``: not on ``n``, nor on the other requests in the batch (vLLM's per-request generators).
- Special tokens other than the stop ids are never sampled: the engine masks them (and the embedding's padding
  rows beyond the tokenizer) for every request with one engine-wide logits processor
  (:class:`visplay_vllm.logits.ForbiddenTokens`), so no request carries a ~150k-id ``allowed_token_ids`` list at
  Qwen's vocabulary; the end-of-turn id (``<|im_end|>``, Idefics3's ``<end_of_utterance>``) and the model's EOS
  ids stop a sample and stay as its last token id; ``text`` leaves them out.
- Log-probs are vLLM's ``raw_logprobs`` of the sampled token: full-vocabulary ``log_softmax(logits)`` before any
  masking, i.e. the HF convention at temperature 1 (the paper's setting). At another temperature they are the
  T = 1 values; the GRPO optimizer recomputes old log-probs by default, so training is unaffected.
- Before sampling, the engine is made to hold this sampler's weights: ``refresh()`` (called by the engine after
  each optimizer update) marks the policy's current weights as wanted, and the next ``sample`` pushes them; a
  frozen sampler re-pushes its own weights only if another sampler of the same role pushed different ones.
- Several training processes (torchrun): every rank holds a VllmSampler; rank 0's engine is real (its own
  processes), the others hold a stub. A push gathers the FSDP-sharded weights on every rank (a collective, so all
  ranks push together), rank 0 loads them into the engine; rank 0 samples and broadcasts the generations.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from visplay.api import Generation, Prompt, SamplingParams, derive_seed

log = logging.getLogger("visplay.vllm")


class VllmSampler:
    """Samples a policy's weights through a shared :class:`visplay_vllm.engine.VllmEngine`."""

    def __init__(self, engine: Any, policy: Any):
        self.engine = engine
        self.policy = policy
        self.processor = policy.processor
        self.stop_ids = sorted(set(getattr(policy, "stop_ids", {self.processor.im_end_id})))
        self.tag = policy.weights_sha256()
        self._warned_temperature = False

    def refresh(self) -> None:
        """Take the policy's current weights (after an optimizer update); they are pushed before the next sample,
        so several updates in a row cost one push."""
        self.tag = self.policy.weights_sha256()

    def push_if_needed(self) -> None:
        """Make the engine hold this sampler's weights (every rank calls this: the gather is a collective)."""
        if self.engine.loaded_tag == self.tag:
            return
        from visplay_vllm.engine import state_dict_for_push

        loaded = self.engine.push(state_dict_for_push(self.policy), self.tag)
        # Without LoRA the pushed tensors are exactly the trainable weights: the hash the engine's workers computed
        # over what they loaded must be the trainer's (checked on every push; rank 0 holds the engine).
        if loaded is not None and not getattr(self.policy, "lora", False) and loaded != self.tag:
            raise RuntimeError(f"vLLM {self.engine.role} engine loaded weights {loaded[:12]}, the trainer holds "
                               f"{self.tag[:12]}")
        if loaded is not None:  # rank 0: the engine's own hash was compared
            log.info("engine %s holds the trainer's weights: sha256 %s", self.engine.role, self.tag[:16])

    def sample(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams]) -> list[list[Generation]]:
        """One list of ``params[i].n`` generations per prompt, in sample order."""
        if len(prompts) != len(params):
            raise ValueError(f"sample: {len(prompts)} prompts but {len(params)} SamplingParams")
        for sp in params:  # checked on every rank, before any collective
            if sp.n < 1 or sp.max_new_tokens < 1:
                raise ValueError(f"SamplingParams: n and max_new_tokens must be >= 1, got {sp}")
        self.check_images(prompts)
        self.push_if_needed()
        from visplay.api import distributed

        if distributed.world_size() > 1:  # rank 0's engine samples for every rank
            return distributed.broadcast_object(self._sample(prompts, params) if distributed.is_rank0() else None)
        return self._sample(prompts, params)

    def _sample(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams]) -> list[list[Generation]]:
        requests, vparams, where = [], [], []
        for i, (prompt, sp) in enumerate(zip(prompts, params)):
            request = self._request(prompt)
            for j in range(sp.n):
                requests.append(request)
                vparams.append(self._params(sp, j))
                where.append((i, j))
        outputs = self.engine.generate(requests, vparams) if requests else []
        result: list[list[Generation]] = [[None] * sp.n for sp in params]  # type: ignore[list-item]
        for (i, j), out in zip(where, outputs):
            result[i][j] = self._generation(prompts[i], params[i], j, out)
        return result

    def _request(self, prompt: Prompt) -> dict[str, Any]:
        """The prompt text (images at their placeholders) and its images in order: one image alone, several as a
        list (vLLM's multi-image form; the k-th image fills the k-th placeholder)."""
        request: dict[str, Any] = {"prompt": self.processor.chat_text(prompt)}
        images = [(r.image if hasattr(r, "image") else r).convert("RGB") for r in prompt.images]
        if images:
            request["multi_modal_data"] = {"image": images[0] if len(images) == 1 else images}
        return request

    def check_images(self, prompts: Sequence[Prompt]) -> None:
        """Refuse a prompt with more images than the engine accepts (``plugins.vllm.images_per_prompt``)."""
        limit = int(getattr(self.engine, "images_per_prompt", 1))
        over = [(i, len(p.images)) for i, p in enumerate(prompts) if len(p.images) > limit]
        if over:
            i, n = over[0]
            raise ValueError(f"vLLM sampler: prompt {i} has {n} images, the {self.engine.role} engine takes at most "
                             f"{limit} per prompt; set plugins.vllm.images_per_prompt={max(n for _, n in over)}")

    def _params(self, sp: SamplingParams, j: int) -> Any:
        from vllm import SamplingParams as VParams

        if sp.temperature not in (0, 1) and not self._warned_temperature:
            log.warning("vLLM sampler: log-probs are reported at temperature 1, sampling at %s", sp.temperature)
            self._warned_temperature = True
        return VParams(
            n=1, temperature=float(sp.temperature), top_p=float(sp.top_p), top_k=int(sp.top_k),
            max_tokens=int(sp.max_new_tokens), seed=derive_seed(sp.seed, j), logprobs=0,
            stop_token_ids=self.stop_ids, detokenize=False,
            skip_special_tokens=True,
        )

    def _generation(self, prompt: Prompt, sp: SamplingParams, j: int, out: Any) -> Generation:
        completion = out.outputs[0]
        ids = [int(t) for t in completion.token_ids]
        logprobs = [float(step[t].logprob) for step, t in zip(completion.logprobs or [], ids)]
        if len(logprobs) != len(ids):
            raise RuntimeError(f"vLLM returned {len(logprobs)} log-probs for {len(ids)} tokens")
        stopped = bool(ids) and ids[-1] in self.stop_ids
        return Generation(
            prompt=prompt, text=self.processor.decode([t for t in ids if t not in self.stop_ids]), token_ids=ids,
            logprobs=logprobs, seed=sp.seed, sample_index=j, finish_reason="stop" if stopped else "length",
        )
