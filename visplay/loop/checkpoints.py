"""The two roles' live policies, optimizers and samplers, and their checkpoints on disk.

Why a checkpoint after every training step: resume must continue bit-exactly, and the only state a step carries
forward is the training role's weights and optimizer state. So after each step the engine saves both to a fresh
directory and records it (``checkpoints`` row, with file hashes) in the same transaction as the step; the
directory is written under a temporary name and renamed into place inside that transaction, so the log never
names a half-written checkpoint. Names (relative to ``<run_dir>/checkpoints``):

- ``<role>_v<i>``: the role after iteration i (``_v0``: the base model after ``visplay_run_start``);
- ``state/<role>-i<i>-s<s>``: the training role after step s of iteration i (only the newest is kept on disk;
  the rows keep every step's hashes).

Each iteration loads each role from ``<role>_v<i-1>`` (so the frozen reference is the iteration's starting model,
as the released code restarts training per iteration) and, mid-phase, overlays the newest step state.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from visplay.types import Optimizer, Policy, RefreshableSampler, Sampler

if TYPE_CHECKING:  # pragma: no cover
    from visplay.context import RunContext


def version_name(role: str, iteration: int) -> str:
    return f"{role}_v{iteration}"


def state_name(role: str, iteration: int, step: int) -> str:
    return f"state/{role}-i{iteration}-s{step}"


@dataclass
class Held:
    """What one role holds in memory: its policy (loaded from checkpoint ``reference``, with the weights of
    checkpoint ``weights`` on top), its optimizer (for the training step after ``optimizer_at``) and its sampler."""

    policy: Policy
    reference: str | None
    weights: str | None
    optimizer: Optimizer | None = None
    optimizer_at: tuple[int, str | None] | None = None
    sampler: Sampler | None = None


class Roles:
    """Loads the two roles' policies on demand and keeps track of which weights each one holds."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.root = Path(ctx.run_dir) / "checkpoints"
        self.held: dict[str, Held] = {}

    def path(self, name: str) -> Path:
        return self.root / name

    # --- policies ----------------------------------------------------------------------------------------

    def policy(self, role: str, reference: str | None, weights: str | None = None) -> Policy:
        """The role's policy loaded from checkpoint ``reference`` (None: the base model) holding ``weights``."""
        weights = weights or reference
        held = self.held.get(role)
        if held is not None and (held.reference, held.weights) == (reference, weights):
            return held.policy
        self.release(role)
        init_from = str(self._existing(reference)) if reference else None
        policy = self.ctx.hooks.load_policy(role, init_from)
        if weights != reference:
            policy.load_weights(str(self._existing(weights)))
        self.held[role] = Held(policy, reference, weights)
        return policy

    def frozen(self, role: str, weights: str) -> Policy:
        """The role's policy holding checkpoint ``weights``, for sampling only (any reference will do)."""
        held = self.held.get(role)
        if held is not None and held.weights == weights:
            return held.policy
        return self.policy(role, weights)

    def release(self, role: str) -> None:
        if self.held.pop(role, None) is not None:
            gc.collect()

    def trainer(self, role: str, iteration: int, step: int) -> tuple[Policy, Optimizer]:
        """Policy and optimizer ready for training step ``step`` of ``iteration``."""
        previous = state_name(role, iteration, step - 1) if step > 0 else None
        policy = self.policy(role, version_name(role, iteration - 1), previous)
        held = self.held[role]
        if held.optimizer is not None and held.optimizer_at == (iteration, previous):
            return policy, held.optimizer
        optimizer = self.ctx.hooks.make_optimizer(role, policy)
        if previous is not None:
            optimizer.load(str(self._existing(previous) / "optimizer"))
        held.optimizer, held.optimizer_at = optimizer, (iteration, previous)
        return policy, optimizer

    def sampler(self, role: str) -> Sampler:
        """A sampler over the role's live policy (kept while the role holds the same policy object)."""
        held = self.held[role]
        if held.sampler is None:
            sampler = self.ctx.hooks.make_sampler(role, held.policy)
            if int(os.environ.get("WORLD_SIZE", "1")) > 1 and self.ctx.recipe.sampler[role] == "hf":
                from visplay.scale.distributed import ShardedSampler

                sampler = ShardedSampler(sampler)  # each rank samples its slice; all ranks get every generation
            held.sampler = sampler
        return held.sampler

    def trained(self, role: str, iteration: int, step: int, name: str) -> None:
        """After an update: the live policy now holds ``name``; a sampler with its own weights is refreshed."""
        held = self.held[role]
        held.weights, held.optimizer_at = name, (iteration, name)
        if isinstance(held.sampler, RefreshableSampler):
            held.sampler.refresh()

    # --- saving ------------------------------------------------------------------------------------------

    def save(self, role: str, name: str, *, with_optimizer: bool) -> tuple[Path, dict[str, str]]:
        """Write the role's policy (and optimizer) under a temporary directory; return it and {file: sha256}."""
        tmp = self.root / ".tmp" / name.replace("/", "__")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        files = dict(self.held[role].policy.save(str(tmp)))
        if with_optimizer:
            optimizer = self.held[role].optimizer
            assert optimizer is not None, f"{role} has no optimizer to save (not a training step)"
            optimizer_files = optimizer.save(str(tmp / "optimizer"))
            files.update({f"optimizer/{k}": v for k, v in optimizer_files.items()})
        return tmp, files

    def commit(self, tmp: Path, name: str, role: str, iteration: int, step: int, files: dict[str, str]) -> None:
        """Inside the step's transaction: move the checkpoint into place and record it."""
        final = self.path(name)
        if final.exists():  # left by a run killed between this rename and its commit
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(final)
        self.ctx.log.insert("checkpoints", [{
            "name": name, "iteration": iteration, "role": role, "step": step,
            "path": str(Path("checkpoints") / name), "files": json.dumps(files, sort_keys=True),
        }])

    def prune_states(self, role: str, keep: str | None) -> None:
        """After a commit: delete this role's step states other than ``keep`` (the newest committed)."""
        state_dir = self.root / "state"
        if not state_dir.is_dir():
            return
        for path in state_dir.glob(f"{role}-i*"):
            if keep is None or path != self.path(keep):
                shutil.rmtree(path, ignore_errors=True)

    def _existing(self, name: str) -> Path:
        path = self.path(name)
        if not path.is_dir():
            raise FileNotFoundError(f"checkpoint {name!r} not found at {path}; the run directory is incomplete "
                                    f"(was it moved or pruned?)")
        return path
