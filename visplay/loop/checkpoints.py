"""The two roles' live policies, optimizers and samplers, and their checkpoints on disk.

Why snapshots: resume must continue bit-exactly, and the only state a step carries forward is the training role's
weights and optimizer state. Every ``checkpoint.every`` steps the engine saves both to a fresh directory and records
it (``checkpoints`` row, with file hashes) in the same transaction as the step (between snapshots a resume recomputes
the logged steps from the run log, see ``SelfPlay.catch_up`` in visplay/loop/engine.py); the
directory is written under a temporary name and renamed into place inside that transaction, so the log never
names a half-written checkpoint. Names (relative to ``<run_dir>/checkpoints``):

- ``<role>_v<i>``: the role after iteration i (``_v0``: the base model after ``visplay_run_start``): the model
  folder alone (no ``optimizer/``; files 0644 under the usual umask), what lmms-eval or ``from_pretrained`` load;
- ``state/<role>-i<i>-s<s>``: the training role (model and ``optimizer/``) after step s of iteration i, for the steps s with
  (s + 1) % ``checkpoint.every`` == 0 (the ``checkpoint.keep`` newest stay on disk; the rows keep every snapshot's
  hashes), written by the policy's ``save_snapshot`` where it has one (a format only its ``load_weights`` reads,
  e.g. the models plugin's sharded FSDP state), else by ``save``.

Each iteration loads each role from ``<role>_v<i-1>`` (so the frozen reference is the iteration's starting model,
as the released code restarts training per iteration) and, mid-phase, overlays the newest step state.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from visplay.files import sha256_file
from visplay.log.runlog import RunLog, RunLogError
from visplay.types import Optimizer, Policy, RefreshableSampler, Sampler

if TYPE_CHECKING:  # pragma: no cover
    from visplay.context import RunContext


def version_name(role: str, iteration: int) -> str:
    return f"{role}_v{iteration}"


def state_name(role: str, iteration: int, step: int) -> str:
    return f"state/{role}-i{iteration}-s{step}"


def state_position(name: str) -> tuple[int, int]:
    """(iteration, step) of a state name's last part (``<role>-i<i>-s<s>``): the inverse of :func:`state_name`."""
    _, iteration, step = Path(name).name.rsplit("-", 2)
    return int(iteration[1:]), int(step[1:])


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


TRASH = ".trash"  # under checkpoints/: snapshots being deleted


class Roles:
    """Loads the two roles' policies on demand and keeps track of which weights each one holds."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.root = Path(ctx.run_dir) / "checkpoints"
        self.held: dict[str, Held] = {}
        self.verified: set[str] = set()  # checkpoints whose files matched the log's sha256 (checked once each)
        trash = self.root / TRASH
        if trash.is_dir():  # what a process killed while pruning left: never a checkpoint anyone reads
            shutil.rmtree(trash, ignore_errors=True)

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

    def frozen_sampler(self, role: str, weights: str) -> Sampler:
        """A sampler over the role's policy holding checkpoint ``weights`` (the frozen reasoner_{i-1} that votes,
        the questioner_i that writes the reasoner's set)."""
        self.frozen(role, weights)
        return self.sampler(role)

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
            if int(os.environ.get("WORLD_SIZE", "1")) > 1 and self.ctx.hooks.engine_needs(role) is None:
                from visplay.scale.distributed import ShardedSampler

                # a sampler inside the training processes: each rank samples its slice, all ranks get everything
                sampler = ShardedSampler(sampler)
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
        try:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            policy = self.held[role].policy
            # a step snapshot may be in the policy's own resume format (e.g. each FSDP rank its shards); versions
            # <role>_v<i> are always what save writes (a model folder the next iteration and export load)
            save = getattr(policy, "save_snapshot", policy.save) if name.startswith("state/") else policy.save
            files = dict(save(str(tmp)))
            if with_optimizer:
                optimizer = self.held[role].optimizer
                assert optimizer is not None, f"{role} has no optimizer to save (not a training step)"
                optimizer_files = optimizer.save(str(tmp / "optimizer"))
                files.update({f"optimizer/{k}": v for k, v in optimizer_files.items()})
        except Exception as exc:
            if not is_write_failure(exc):
                raise
            raise CheckpointWriteError(
                f"cannot write checkpoint {name} under {tmp} ({type(exc).__name__}: {exc}); nothing of this step "
                f"was committed: free disk space, then `visplay resume {self.root.parent}`") from exc
        return tmp, files

    def commit(self, tmp: Path, name: str, role: str, iteration: int, step: int, files: dict[str, str]) -> None:
        """Inside the step's transaction: move the checkpoint into place and record it."""
        final = self.path(name)
        if final.exists():  # left by a run killed between this rename and its commit
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(final)
        self.verified.add(name)  # written by this process from its own weights: nothing to re-hash
        self.ctx.log.insert("checkpoints", [{
            "name": name, "iteration": iteration, "role": role, "step": step,
            "path": str(Path("checkpoints") / name), "files": json.dumps(files, sort_keys=True),
        }])

    def prune_states(self, role: str, keep: int | None) -> None:
        """After a commit: keep this role's ``keep`` newest step states (None: delete them all)."""
        state_dir = self.root / "state"
        if not state_dir.is_dir():
            return
        states = sorted(state_dir.glob(f"{role}-i*"), key=lambda path: state_position(path.name))
        for path in states[: max(0, len(states) - keep) if keep is not None else None]:
            # renamed out of state/ first (atomic), then deleted: a process killed here leaves a whole snapshot or
            # none, never a half-deleted one a later resume or slice replay would trip over; the trash is emptied
            # by the next process that opens the run
            trash = self.root / TRASH / f"{path.name}-{os.getpid()}"
            trash.parent.mkdir(parents=True, exist_ok=True)
            path.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
            with contextlib.suppress(OSError):  # only when empty
                trash.parent.rmdir()

    def holds_weights(self, role: str, iteration: int, name: str) -> bool:
        """Whether the live policy and optimizer of ``role`` are at checkpoint ``name`` (saved or not)."""
        held = self.held.get(role)
        return (held is not None and held.weights == name and held.optimizer is not None
                and held.optimizer_at == (iteration, name))

    def newest_snapshot(self, role: str, iteration: int, before: int) -> int:
        """The newest committed step snapshot of ``role`` at step <= ``before`` still on disk; -1: none (start
        from ``<role>_v<iteration-1>``)."""
        steps = [row["step"] for row in self.ctx.log.snapshots(iteration, role)
                 if row["step"] <= before and self.path(row["name"]).is_dir()]
        return max(steps, default=-1)

    def _existing(self, name: str) -> Path:
        path = self.path(name)
        if not path.is_dir():
            raise FileNotFoundError(f"checkpoint {name!r} not found at {path}; the run directory is incomplete "
                                    f"(was it moved or pruned?)")
        if name not in self.verified:
            verify_checkpoint(self.ctx.log, name, path)
            self.verified.add(name)
        return path


class CheckpointWriteError(RunLogError):
    """A checkpoint could not be written (disk full, file too large, I/O error); the step is not committed."""


def is_write_failure(exc: BaseException) -> bool:
    """An OSError, or safetensors' error wrapping one (it raises its own type, with the OS error in the text)."""
    if isinstance(exc, OSError):
        return True
    return type(exc).__name__ == "SafetensorError" and ("os error" in str(exc) or "I/O error" in str(exc))


class CheckpointMismatch(RunLogError):
    """A checkpoint file differs from the sha256 the run log recorded when it was written."""


def verify_checkpoint(runlog: RunLog | None, name: str, path: Path) -> None:
    """Check every file the ``checkpoints`` row of ``name`` lists against its logged sha256, before any is loaded.

    A checkpoint the log does not know (a replay's copied prefix, a log-less context) is not checked.
    """
    row = runlog.checkpoint(name) if runlog is not None else None
    if row is None:
        return
    for relative, logged in sorted(row["files"].items()):
        if relative == "weights_sha256":  # a hash of the live weights, not of a file
            continue
        file = path / relative
        found = sha256_file(file) if file.is_file() else None
        if found != logged:
            what = "is missing" if found is None else f"has sha256 {found[:16]}..., the log recorded {logged[:16]}..."
            raise CheckpointMismatch(
                f"checkpoint file {file} {what}: it changed after the run wrote it, so resuming would silently "
                f"continue from other weights. Restore the file from a backup (or undo the edit) and resume "
                f"again, or start the run over with `visplay run <recipe> --overwrite`.")
