"""The GRPO optimizer plugin (name ``grpo``): rewards -> group advantages -> clipped policy-gradient updates.

One ``update(rollouts)`` call is one GRPO step over a rollout batch (EasyR1's defaults, PAPER.md):
1. advantages from rewards by the recipe's ``advantage_estimator`` (default grpo: per group (same prompt),
   (r - mean) / (std + eps)); the per-token ``policy_loss`` (default dual_clip) and the ``loss_agg`` (default
   token_mean) are looked up by name too (visplay_grpo/registry.py; the functions in core_algos.py);
2. old log-probs: recomputed teacher-forced with the current weights before any update (EasyR1 does the same;
   recipe ``plugins.grpo.old_logprobs: sampler`` uses the sampler's instead), at the role's sampling temperature;
3. reference log-probs (frozen starting weights, or the LoRA adapter disabled) when ``kl_coef > 0``;
4. for each update batch (``update_batch_size`` rollouts, in order; the plugin passes the recipe's prompts x
   group size, EasyR1's ``global_batch_size * rollout.n``): micro-batches of ``micro_batch_size`` rollouts
   accumulate gradients of ``pg_loss + kl_coef * kl``, then the gradient norm is clipped and AdamW steps.
   ``loss_agg="token_mean"``: each micro-batch is weighted by its share of the update batch's tokens, so the loss
   is the token-mean over the whole update batch (EasyR1 HEAD); ``"seq_mean_token_mean"``: each rollout's
   token-mean, averaged over the update batch's rollouts (the released fork at micro-batch 1); any aggregation
   weighs a micro-batch by its tokens or by its rollouts, as it registered.
   A non-finite loss, gradient norm or weight raises NonFiniteUpdate there and then, so the engine never
   commits the step (EasyR1 skips such an update instead, which hides it).

Data-parallel (torchrun, ``visplay.scale.distributed.world_size() > 1``): every rank holds the same rollouts; each computes
the old/reference log-probs of its shard (gathered in rank order) and back-propagates its shard of every update batch
with the loss still divided by the *global* token count; the gradients are then summed across ranks before
clipping, so each rank takes the one-process step (tests/test_scale_dist_ddp.py). With one process nothing of this
runs and the results are bit-identical to before.

Metrics (averaged over the step's updates where several): ``actor/loss``, ``actor/pg_loss``, ``actor/kl``,
``actor/ppo_kl``, ``actor/pg_clipfrac_higher``, ``actor/pg_clipfrac_lower``, ``actor/grad_norm``, ``actor/entropy``,
``actor/lr``, ``actor/updates``, ``actor/old_logprob_max_diff`` (sampler vs recomputed old log-probs),
``reward/mean``, ``reward/std``, ``advantage/abs_mean``, ``response_length/mean``, ``response_length/max``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from visplay.api import PluginError, Rollout, UpdateResult, file_hashes
from visplay.api import distributed as dist
from visplay_grpo.core_algos import kl_penalty, masked_mean, pad_rows, token_budget_micro_batches
from visplay_grpo.options import ADVANTAGE_DTYPES, CLIPFRACS, KL_TYPES
from visplay_grpo.registry import lookup

STATE_FORMAT = 1
NOT_COMMITTED = ("; the step was not committed (the run log and checkpoints hold the previous step): lower "
                 "plugins.grpo.lr or check the rewards, then `visplay resume` retries it")


class NonFiniteUpdate(PluginError):
    """A GRPO update met a non-finite loss, gradient norm or weight; raised before the step can be committed."""


class GRPOOptimizer:
    """GRPO over an HFPolicy (anything with ``forward_stats``, ``trainable_parameters`` and ``model``)."""

    def __init__(self, policy: Any, *, lr: float = 1e-6, weight_decay: float = 1e-2, grad_clip: float = 1.0,
                 clip_low: float = 0.2, clip_high: float = 0.3, dual_clip: float = 3.0, kl_coef: float = 1e-2,
                 kl_type: str = "low_var_kl", adv_eps: float = 1e-6, micro_batch_size: int = 8,
                 update_batch_size: int | None = None, temperature: float = 1.0, old_logprobs: str = "recompute",
                 seed: int = 0, loss_agg: str = "token_mean", max_tokens_per_micro_batch: int | None = None,
                 advantage_estimator: str = "grpo", norm_adv_by_std: bool = True, advantage_dtype: str = "float64",
                 policy_loss: str = "dual_clip", tau_positive: float = 1.0, tau_negative: float = 1.05,
                 clip_cov_ratio: float = 2e-4, clip_cov_lb: float = 1.0, clip_cov_ub: float = 5.0,
                 kl_cov_ratio: float = 2e-4, ppo_kl_coef: float = 0.1,
                 norm_length: int = 1, clipfrac_higher: str = "positive", drop_zero_variance: bool = False):
        if kl_type not in KL_TYPES:
            raise ValueError(f"plugins.grpo.kl_type must be one of {', '.join(KL_TYPES)}, got {kl_type!r}")
        if advantage_dtype not in ADVANTAGE_DTYPES or clipfrac_higher not in CLIPFRACS:
            raise ValueError(f"plugins.grpo.advantage_dtype must be one of {', '.join(ADVANTAGE_DTYPES)} and "
                             f"plugins.grpo.clipfrac_higher one of {', '.join(CLIPFRACS)}, got {advantage_dtype!r}, "
                             f"{clipfrac_higher!r}")
        self.estimator = lookup("advantage_estimator", advantage_estimator)
        self.policy_loss = lookup("policy_loss", policy_loss)
        self.reduce, self.weigh_by = lookup("loss_agg", loss_agg)
        self.norm_adv_by_std, self.advantage_dtype = bool(norm_adv_by_std), getattr(torch, advantage_dtype)
        self.loss_settings = {"clip_low": clip_low, "clip_high": clip_high, "dual_clip": dual_clip,
                              "tau_positive": tau_positive, "tau_negative": tau_negative,
                              "clip_cov_ratio": clip_cov_ratio, "clip_cov_lb": clip_cov_lb, "clip_cov_ub": clip_cov_ub,
                              "kl_cov_ratio": kl_cov_ratio, "ppo_kl_coef": ppo_kl_coef}
        self.norm_length = float(norm_length)
        self.drop_zero_variance = bool(drop_zero_variance)
        self.clipfrac_key = "clipped_higher" if clipfrac_higher == "positive" else "clipped_higher_any"
        if old_logprobs not in ("recompute", "sampler"):
            raise ValueError(f"plugins.grpo.old_logprobs must be 'recompute' or 'sampler', got {old_logprobs!r}")
        if micro_batch_size < 1 or (update_batch_size is not None and update_batch_size < 1):
            raise ValueError("plugins.grpo.micro_batch_size and plugins.grpo.update_batch_size must be >= 1")
        if max_tokens_per_micro_batch is not None and max_tokens_per_micro_batch < 1:
            raise ValueError("plugins.grpo.max_tokens_per_micro_batch must be >= 1 or null, got "
                             f"{max_tokens_per_micro_batch}")
        self.policy = policy
        self.grad_clip, self.clip_low, self.clip_high, self.dual_clip = grad_clip, clip_low, clip_high, dual_clip
        self.kl_coef, self.kl_type, self.adv_eps = kl_coef, kl_type, adv_eps
        self.micro_batch_size, self.update_batch_size = micro_batch_size, update_batch_size
        self.temperature, self.old_logprobs, self.seed = temperature, old_logprobs, seed
        self.loss_agg = loss_agg
        self.max_tokens = max_tokens_per_micro_batch
        self.names = [n for n, _ in policy.trainable_parameters()]
        if not self.names:
            raise ValueError("GRPO: the policy has no trainable parameters")
        self.optim = torch.optim.AdamW([p for _, p in policy.trainable_parameters()], lr=lr,
                                       weight_decay=weight_decay, betas=(0.9, 0.999), eps=1e-8)
        self.updates = 0

    # --- one GRPO step ---------------------------------------------------------------------------------------------

    def update(self, rollouts: Sequence[Rollout]) -> UpdateResult:
        """Advantages from rewards, then the clipped policy update(s). Deterministic given the inputs and state."""
        if not rollouts:
            raise ValueError("GRPO update: no rollouts")
        for r in rollouts:
            if not r.token_ids:
                raise ValueError(f"GRPO update: rollout {r.key!r} has no tokens")
        rewards = torch.tensor([float(r.reward) for r in rollouts])
        adv = self.estimator(rewards, [r.group for r in rollouts], torch.tensor([len(r.token_ids) for r in rollouts]),
                             eps=self.adv_eps, norm_by_std=self.norm_adv_by_std, dtype=self.advantage_dtype)
        if adv.shape != rewards.shape:  # a non-finite one stops the update at its loss, naming the loss
            raise ValueError(f"GRPO: the advantage estimator gave {tuple(adv.shape)} advantages for "
                             f"{len(rollouts)} rollouts")
        all_rollouts, all_adv, dropped = rollouts, adv, self._zero_variance(rollouts)
        if dropped:  # DAPO's dynamic sampling: those groups leave the update (their advantage is logged 0)
            kept = [i for i, r in enumerate(rollouts) if r.group not in dropped]
            rollouts, adv = [rollouts[i] for i in kept], adv[kept]
            all_adv = torch.where(torch.tensor([r.group in dropped for r in all_rollouts]), 0.0, all_adv)
        metrics, batches, diff = self._train(rollouts, adv) if rollouts else ({}, 0, 0.0)
        lengths = torch.tensor([len(r.token_ids) for r in all_rollouts], dtype=torch.float64)
        metrics.update({  # in this order since before issue 24 (run-log rows)
            "actor/updates": float(batches), "actor/lr": float(self.optim.param_groups[0]["lr"]),
            "actor/old_logprob_max_diff": diff, "reward/mean": float(rewards.mean()),
            "reward/std": float(rewards.std()) if len(all_rollouts) > 1 else 0.0,
            "advantage/abs_mean": float(all_adv.abs().mean()), "response_length/mean": float(lengths.mean()),
            "response_length/max": float(lengths.max()),
        })
        if self.drop_zero_variance:
            metrics.update({"dynamic_sampling/dropped_groups": float(len(dropped)),
                            "dynamic_sampling/dropped_rollouts": float(len(all_rollouts) - len(rollouts))})
        return UpdateResult(advantages={r.key: float(a) for r, a in zip(all_rollouts, all_adv)}, metrics=metrics,
                            dropped_groups=[g for g in dict.fromkeys(r.group for r in all_rollouts) if g in dropped])

    def _zero_variance(self, rollouts: Sequence[Rollout]) -> set[str]:
        """Groups whose rewards are all equal (a group of one included), when dynamic sampling is on; else none."""
        if not self.drop_zero_variance:
            return set()
        rewards: dict[str, set[float]] = {}
        for r in rollouts:
            rewards.setdefault(r.group, set()).add(float(r.reward))
        return {g for g, values in rewards.items() if len(values) == 1}

    def _train(self, rollouts: Sequence[Rollout], adv: torch.Tensor) -> tuple[dict[str, float], int, float]:
        """Old/reference log-probs, then the update batches' AdamW steps: (the metrics averaged over them, their
        count, the largest sampler vs recomputed old log-prob difference)."""
        prompts, responses = [r.prompt for r in rollouts], [list(r.token_ids) for r in rollouts]
        lengths = self._sequence_lengths(prompts, responses)
        old, ref, diff = self._fixed_logprobs(rollouts, prompts, responses, lengths)
        size = self.update_batch_size or len(rollouts)
        sums: dict[str, float] = {}
        batches = 0
        # Dropout (LoRA dropout) draws from torch's global generator: fork it under a seed of this update.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + self.updates)
            self.policy.model.train()
            for start in range(0, len(rollouts), size):
                idx = list(range(start, min(start + size, len(rollouts))))
                for k, v in self._update_batch(idx, prompts, responses, old, ref, adv, lengths).items():
                    sums[k] = sums.get(k, 0.0) + v
                batches += 1
        return {k: v / batches for k, v in sums.items()}, batches, diff

    def _sequence_lengths(self, prompts: list, responses: list) -> list[int] | None:
        """Prompt + response tokens per rollout, which a token budget groups by (None without one)."""
        if self.max_tokens is None:
            return None
        if not hasattr(self.policy, "sequence_lengths"):
            raise ValueError(f"plugins.grpo.max_tokens_per_micro_batch needs a policy that counts its prompt tokens "
                             f"(sequence_lengths); {type(self.policy).__name__} has none")
        return list(self.policy.sequence_lengths(prompts, responses))

    def _micro_batches(self, rows: list[int], lengths: list[int] | None) -> list[list[int]]:
        """``rows`` in micro-batches: ``micro_batch_size`` at a time, or by the token budget."""
        if lengths is None or self.max_tokens is None:
            return [rows[s:s + self.micro_batch_size] for s in range(0, len(rows), self.micro_batch_size)]
        return [[rows[j] for j in group]
                for group in token_budget_micro_batches([lengths[i] for i in rows], self.max_tokens)]

    def _fixed_logprobs(self, rollouts: Sequence[Rollout], prompts: list, responses: list,
                        lengths: list[int] | None) -> tuple[list[torch.Tensor], list[torch.Tensor] | None, float]:
        """Old (behaviour) and reference log-probs, computed once per step without gradients."""
        self.policy.model.eval()
        recomputed = self._logprobs(prompts, responses, reference=False, lengths=lengths)
        diff = 0.0
        for r, lp in zip(rollouts, recomputed):
            if r.old_logprobs and len(r.old_logprobs) == len(lp):
                diff = max(diff, float((torch.tensor(r.old_logprobs) - lp.cpu()).abs().max()))
        if self.old_logprobs == "sampler":
            bad = [r.key for r in rollouts if len(r.old_logprobs) != len(r.token_ids)]
            if bad:
                raise ValueError(f"GRPO: rollouts {bad[:3]} have no sampler log-probs for every token")
            old = [torch.tensor(r.old_logprobs, dtype=torch.float32) for r in rollouts]
        else:
            old = recomputed
        ref = None
        if self.kl_coef > 0:
            ref = self._logprobs(prompts, responses, reference=True, lengths=lengths)
        return old, ref, diff

    def _logprobs(self, prompts: list, responses: list, *, reference: bool, lengths: list[int] | None = None
                  ) -> list[torch.Tensor]:
        """Teacher-forced log-probs; under several processes each rank computes its shard, gathered in order."""
        if lengths is not None:
            return self._budget_logprobs(prompts, responses, reference, lengths)
        kwargs = dict(reference=reference, temperature=self.temperature, micro_batch_size=self.micro_batch_size)
        if dist.world_size() == 1:
            return self.policy.logprobs(prompts, responses, **kwargs)
        mine = dist.shard(list(range(len(prompts))))
        real = len(mine)
        if self._sharded():  # FSDP: every rank must run the same number of forwards (each one all-gathers)
            mine += [0] * (-(-len(prompts) // dist.world_size()) - real)
        local = self.policy.logprobs([prompts[i] for i in mine], [responses[i] for i in mine], **kwargs) \
            if mine else []
        return [lp for part in dist.all_gather_objects([t.cpu() for t in local[:real]]) for lp in part]

    def _budget_logprobs(self, prompts: list, responses: list, reference: bool, lengths: list[int]
                         ) -> list[torch.Tensor]:
        """:meth:`_logprobs` with one forward per token-budget micro-batch (FSDP: as many forwards on every rank)."""
        world = dist.world_size()
        mine = dist.shard(list(range(len(prompts)))) if world > 1 else list(range(len(prompts)))
        groups = self._micro_batches(mine, lengths)
        padding = self._fsdp_padding(len(groups)) if world > 1 else 0
        out: dict[int, torch.Tensor] = {}
        for group in groups + [[0]] * padding:  # a padding forward's results are dropped
            lps = self.policy.logprobs([prompts[i] for i in group], [responses[i] for i in group],
                                       reference=reference, temperature=self.temperature)
            for i, lp in zip(group, lps):
                out.setdefault(i, lp)
        local = [out[i] for i in mine]
        if world == 1:
            return local
        return [lp for part in dist.all_gather_objects([t.cpu() for t in local]) for lp in part]

    def _fsdp_padding(self, count: int) -> int:
        """Extra passes this rank runs so every rank runs the most any rank does (FSDP: each one all-gathers)."""
        return max(dist.all_gather_objects(count)) - count if self._sharded() else 0

    def _sharded(self) -> bool:
        return bool(getattr(self.policy, "sharded", False))

    def _update_batch(self, idx: list[int], prompts: list, responses: list, old: list[torch.Tensor],
                      ref: list[torch.Tensor] | None, adv: torch.Tensor, lengths: list[int] | None = None
                      ) -> dict[str, float]:
        """Gradient accumulation over micro-batches of ``idx``, then clip and one AdamW step."""
        self.optim.zero_grad(set_to_none=True)
        total_tokens = sum(len(responses[i]) for i in idx)
        sums = {"actor/loss": 0.0, "actor/pg_loss": 0.0, "actor/kl": 0.0, "actor/ppo_kl": 0.0,
                "actor/pg_clipfrac_higher": 0.0, "actor/pg_clipfrac_lower": 0.0, "actor/entropy": 0.0}
        world = dist.world_size()
        mine = dist.shard(idx) if world > 1 else idx  # total_tokens above stays the global count
        batches = [(mb, 1.0) for mb in self._micro_batches(mine, lengths)]
        if world > 1:  # FSDP: the same number of forward/backward passes on every rank; a rank with fewer runs
            batches += [([idx[0]], 0.0)] * self._fsdp_padding(len(batches))  # a copy of one rollout, weighted 0
        for mb, weight in batches:
            logp_rows, ent_rows = self.policy.forward_stats([prompts[i] for i in mb], [responses[i] for i in mb],
                                                            grad=True, temperature=self.temperature,
                                                            with_entropy=True)
            logp, mask = pad_rows(logp_rows)
            device = logp.device
            old_t, _ = pad_rows([old[i].to(device) for i in mb])
            a = adv[mb].to(device)[:, None].expand_as(logp)
            terms = self.policy_loss(old_t, logp, a, mask, **self.loss_settings)
            pg = self.reduce(terms["loss"], mask, self.norm_length)
            kl = torch.zeros((), device=device)
            if ref is not None:
                ref_t, _ = pad_rows([ref[i].to(device) for i in mb])
                kl = self.reduce(kl_penalty(logp, ref_t, self.kl_type), mask, self.norm_length)
            loss = pg + self.kl_coef * kl
            # A rank alone must not raise mid-update under several processes (the others would wait in the
            # all-reduce): there the global gradient norm below, NaN on every rank alike, stops the step.
            if world == 1 and not torch.isfinite(loss):
                raise NonFiniteUpdate(f"GRPO update {self.updates}: the loss is {float(loss.detach())} (pg_loss "
                                      f"{float(pg.detach())}, kl {float(kl.detach())}) on rollouts "
                                      f"{[mb[0], mb[-1]]}{NOT_COMMITTED}")
            # The micro-batch's weight in the update batch: its tokens (token-mean) or its rollouts (seq-mean);
            # ``weight`` 0 marks an FSDP padding pass (a copy that only keeps the ranks in step).
            share = weight * (float(mask.sum()) / total_tokens if self.weigh_by == "tokens" else len(mb) / len(idx))
            (loss * share).backward()
            ent, _ = pad_rows([e.detach() for e in ent_rows])
            zero = torch.zeros_like(mask)
            for key, value in (("actor/loss", loss), ("actor/pg_loss", pg), ("actor/kl", kl),
                               ("actor/ppo_kl", masked_mean(terms.get("neg_log_ratio", old_t - logp.detach()), mask)),
                               ("actor/pg_clipfrac_higher", masked_mean(terms.get(self.clipfrac_key, zero), mask)),
                               ("actor/pg_clipfrac_lower", masked_mean(terms.get("clipped_lower", zero), mask)),
                               ("actor/entropy", masked_mean(ent, mask))):
                sums[key] += float(value.detach()) * share
        params = [p for _, p in self.policy.trainable_parameters()]
        if world > 1:
            dist.all_reduce_gradients(params, average=False)
            sums = {k: dist.global_sum(v) for k, v in sums.items()}
            grad_norm = dist.clip_grad_norm_(params, self.grad_clip)
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        if not torch.isfinite(grad_norm):  # EasyR1 skips such an update; a run that hides it cannot be trusted
            raise NonFiniteUpdate(f"GRPO update {self.updates}: the gradient norm is {float(grad_norm)}"
                                  f"{NOT_COMMITTED}")
        self.optim.step()
        self._check_weights()
        self.updates += 1
        sums["actor/grad_norm"] = float(grad_norm)
        return sums

    def _check_weights(self) -> None:
        """After a step: every trainable weight finite (an lr of 1e30 makes finite gradients into inf weights).
        Under several processes (FSDP shards) the ranks agree first, so they all stop together."""
        bad = next((name for name, param in self.policy.trainable_parameters()
                    if not bool(torch.isfinite(param).all())), None)
        anywhere = dist.global_sum(float(bad is not None)) if dist.world_size() > 1 else float(bad is not None)
        if anywhere:
            raise NonFiniteUpdate(f"GRPO update {self.updates}: weight {bad or '(on another rank)'} is non-finite "
                                  f"after the AdamW step (plugins.grpo.lr={self.optim.param_groups[0]['lr']})"
                                  f"{NOT_COMMITTED}")

    # --- state -----------------------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> dict[str, str]:
        """AdamW moments as safetensors (keyed by parameter name) + hyper-parameters/step counts as JSON."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"format": STATE_FORMAT, "updates": self.updates, "names": self.names,
                "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in self.optim.param_groups]}
        if getattr(self.policy, "sharded_state", False):  # FSDP, plugins.models.fsdp.state_format=sharded
            (directory / "optimizer.json").write_text(json.dumps({**meta, "sharded": True}, indent=1, sort_keys=True))
            return self.policy.save_optimizer_state(self.optim, directory)  # each rank its shards of the moments
        params = dict(self.policy.trainable_parameters())
        tensors: dict[str, torch.Tensor] = {}
        steps: dict[str, float] = {}
        for name in self.names:
            state = self.optim.state.get(params[name], {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:  # FSDP: every rank gathers the full moments; the file equals one process's
                    tensors[f"{key}/{name}"] = _full(state[key]).detach().cpu().contiguous()
            if "step" in state:
                steps[name] = float(state["step"])
        save_file(tensors, str(directory / "optimizer.safetensors"))
        (directory / "optimizer.json").write_text(json.dumps({**meta, "steps": steps}, indent=1, sort_keys=True))
        return {k: v for k, v in file_hashes(directory).items() if k.startswith("optimizer.")}

    def load(self, directory: str | Path) -> None:
        """Restore the state written by :meth:`save` (no pickle: safetensors + JSON)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        meta_file, tensor_file = directory / "optimizer.json", directory / "optimizer.safetensors"
        if meta_file.is_file() and json.loads(meta_file.read_text()).get("sharded"):
            self._load_sharded(directory, json.loads(meta_file.read_text()))
            return
        if not meta_file.is_file() or not tensor_file.is_file():
            raise FileNotFoundError(f"{directory}: no optimizer state (optimizer.json / optimizer.safetensors)")
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != STATE_FORMAT or meta.get("names") != self.names:
            raise ValueError(f"{directory}: optimizer state does not match this policy's trainable parameters")
        tensors = load_file(str(tensor_file))
        params = dict(self.policy.trainable_parameters())
        for name in self.names:
            p = params[name]
            if f"exp_avg/{name}" in tensors:
                self.optim.state[p] = {
                    "step": torch.tensor(meta["steps"][name]),
                    "exp_avg": _like(p, tensors[f"exp_avg/{name}"]),
                    "exp_avg_sq": _like(p, tensors[f"exp_avg_sq/{name}"]),
                }
        for group, saved in zip(self.optim.param_groups, meta["param_groups"]):
            group.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items()})
        self.updates = int(meta["updates"])

    def _load_sharded(self, directory: Path, meta: dict[str, Any]) -> None:
        """A sharded optimizer state (torch.distributed.checkpoint, written by the policy's save_optimizer_state):
        the moments, step counts and param groups come from it, the update count from optimizer.json."""
        if meta.get("format") != STATE_FORMAT or meta.get("names") != self.names \
                or not hasattr(self.policy, "load_optimizer_state"):
            raise ValueError(f"{directory}: sharded optimizer state does not match this policy's trainable parameters "
                             f"(or the policy cannot read sharded state)")
        self.policy.load_optimizer_state(self.optim, directory)
        self.updates = int(meta["updates"])


def _full(t: torch.Tensor) -> torch.Tensor:
    """An FSDP-sharded tensor (DTensor) gathered on every rank; a plain tensor as it is."""
    return t.full_tensor() if type(t).__name__ == "DTensor" else t


def _like(p: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """``full`` placed like parameter ``p``: this rank's shard under FSDP, else on p's device and dtype."""
    if type(p).__name__ == "DTensor":
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full.to(p.device, p.dtype), p.device_mesh, p.placements)
    return full.to(p.device, p.dtype)
