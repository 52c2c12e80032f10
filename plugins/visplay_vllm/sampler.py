"""The vLLM sampler (sampler name ``vllm``): the same contract as the HF sampler, served by a live vLLM engine.

- Prompts are formatted by the policy's own processor adapter (``processor.chat_text``), so the text and token ids
  are exactly the HF backend's; the image goes in as ``multi_modal_data`` and vLLM expands the placeholder with
  the model folder's image-processor settings (the same ones the adapter uses).
- Sample ``j`` of a request is its own vLLM request with seed ``derive_seed(params.seed, j)`` (the HF sampler
  derives its per-sample generators the same way), so a sample depends only on the weights, its prompt, its
  params and ``j``: not on ``n``, nor on the other requests in the batch (vLLM's per-request generators).
- Special tokens other than the stop ids are never sampled (``allowed_token_ids``, the HF sampler's forbidden
  set); ``<|im_end|>`` and the model's EOS ids stop a sample and stay as its last token id; ``text`` leaves them out.
- Log-probs are vLLM's ``raw_logprobs`` of the sampled token: full-vocabulary ``log_softmax(logits)`` before any
  masking, i.e. the HF convention at temperature 1 (the paper's setting). At another temperature they are the
  T = 1 values; the GRPO optimizer recomputes old log-probs by default, so training is unaffected.
- Before sampling, the engine is made to hold this sampler's weights: ``refresh()`` (called by the engine after
  each optimizer update) marks the policy's current weights as wanted, and the next ``sample`` pushes them; a
  frozen sampler re-pushes its own weights only if another sampler of the same role pushed different ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from visplay.loop.seeding import derive_seed
from visplay.types import Generation, Prompt, SamplingParams

log = logging.getLogger("visplay.vllm")


class VllmSampler:
    """Samples a policy's weights through a shared :class:`visplay_vllm.engine.VllmEngine`."""

    def __init__(self, engine: Any, policy: Any):
        self.engine = engine
        self.policy = policy
        self.processor = policy.processor
        stop = set(getattr(policy, "stop_ids", {self.processor.im_end_id}))
        self.stop_ids = sorted(stop)
        forbidden = {i for i in self.processor.special_ids if i not in stop}
        self.allowed_ids = [i for i in range(len(self.processor.tokenizer)) if i not in forbidden]
        self.tag = policy.weights_sha256()
        self._warned_temperature = False

    def refresh(self) -> None:
        """Take the policy's current weights (after an optimizer update); they are pushed before the next sample,
        so several updates in a row cost one push."""
        self.tag = self.policy.weights_sha256()

    def sample(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams]) -> list[list[Generation]]:
        """One list of ``params[i].n`` generations per prompt, in sample order."""
        if len(prompts) != len(params):
            raise ValueError(f"sample: {len(prompts)} prompts but {len(params)} SamplingParams")
        if self.engine.loaded_tag != self.tag:
            self.engine.push(self.policy, self.tag)
        requests, vparams, where = [], [], []
        for i, (prompt, sp) in enumerate(zip(prompts, params)):
            if sp.n < 1 or sp.max_new_tokens < 1:
                raise ValueError(f"SamplingParams: n and max_new_tokens must be >= 1, got {sp}")
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
        request: dict[str, Any] = {"prompt": self.processor.chat_text(prompt)}
        if prompt.image is not None:
            image = prompt.image.image if hasattr(prompt.image, "image") else prompt.image
            request["multi_modal_data"] = {"image": image.convert("RGB")}
        return request

    def _params(self, sp: SamplingParams, j: int) -> Any:
        from vllm import SamplingParams as VParams

        if sp.temperature not in (0, 1) and not self._warned_temperature:
            log.warning("vLLM sampler: log-probs are reported at temperature 1, sampling at %s", sp.temperature)
            self._warned_temperature = True
        return VParams(
            n=1, temperature=float(sp.temperature), top_p=float(sp.top_p), top_k=int(sp.top_k),
            max_tokens=int(sp.max_new_tokens), seed=derive_seed(sp.seed, j), logprobs=0,
            stop_token_ids=self.stop_ids, allowed_token_ids=self.allowed_ids, detokenize=False,
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
