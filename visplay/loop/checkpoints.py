"""The two roles' live policies, optimizers and samplers, and their checkpoints on disk.

Why snapshots: resume must continue bit-exactly, and the only state a step carries forward is the training role's
weights and optimizer state. Every ``checkpoint.every`` steps the engine saves both to a fresh directory and records
it (``checkpoints`` row, with file hashes) in the same transaction as the step (between snapshots a resume recomputes
the logged steps from the run log, see ``SelfPlay.catch_up`` in visplay/loop/engine.py); the
directory is written under a temporary name and renamed into place inside that transaction, so the log never
names a half-written checkpoint. Names (relative to ``<run_dir>/checkpoints``):

- ``<role>_v<i>``: the role after iteration i (``_v0``: the base model after ``visplay_run_start``);
- ``state/<role>-i<i>-s<s>``: the training role after step s of iteration i, for the steps s with
  (s + 1) % ``checkpoint.every`` == 0 (the ``checkpoint.keep`` newest stay on disk; the rows keep every snapshot's
  hashes).

Each iteration loads each role from ``<role>_v<i-1>`` (so the frozen reference is the iteration's starting model,
as the released code restarts training per iteration) and, mid-phase, overlays the newest step state.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
from pathlib import Path
from typing import Any

from visplay.plugins import PluginError


def version_name(role: str, iteration: int) -> str:
    return f"{role}_v{iteration}"


def state_name(role: str, iteration: int, step: int) -> str:
    return f"state/{role}-i{iteration}-s{step}"


class Roles:
    """Loads policies on demand and keeps track of which weights each one holds."""

    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.root = Path(ctx.run_dir) / "checkpoints"
        self.policies: dict[str, Any] = {}
        self.holds: dict[str, tuple[str | None, str | None]] = {}  # role -> (reference name, weights name)
        self.optimizers: dict[str, tuple[tuple[int, str | None], Any]] = {}
        self.samplers: dict[str, tuple[int, Any]] = {}

    def path(self, name: str) -> Path:
        return self.root / name

    # --- policies ----------------------------------------------------------------------------------------

    def policy(self, role: str, reference: str | None, weights: str | None = None) -> Any:
        """The role's policy loaded from checkpoint ``reference`` (None: the base model) holding ``weights``."""
        weights = weights or reference
        if self.holds.get(role) == (reference, weights):
            return self.policies[role]
        self.release(role)
        init_from = str(self._existing(reference)) if reference else None
        policy = self.ctx.call("visplay_load_policy", role=role, init_from=init_from)
        if policy is None:
            raise PluginError(f"no plugin loads model.backend={self.ctx.recipe.model.backend!r} "
                              f"(hook visplay_load_policy; see `visplay plugins`)")
        if weights != reference:
            load_weights(policy, self._existing(weights))
        self.policies[role], self.holds[role] = policy, (reference, weights)
        return policy

    def frozen(self, role: str, weights: str) -> Any:
        """The role's policy holding checkpoint ``weights``, for sampling only (any reference will do)."""
        held = self.holds.get(role)
        if held is not None and held[1] == weights:
            return self.policies[role]
        return self.policy(role, weights)

    def release(self, role: str) -> None:
        if role in self.policies:
            del self.policies[role]
            self.holds.pop(role, None)
            self.optimizers.pop(role, None)
            self.samplers.pop(role, None)
            gc.collect()

    def trainer(self, role: str, iteration: int, step: int) -> tuple[Any, Any]:
        """Policy and optimizer ready for training step ``step`` of ``iteration``."""
        previous = state_name(role, iteration, step - 1) if step > 0 else None
        policy = self.policy(role, version_name(role, iteration - 1), previous)
        key = (iteration, previous)
        held = self.optimizers.get(role)
        if held is not None and held[0] == key and held[1] is not None:
            return policy, held[1]
        optimizer = self.ctx.call("visplay_make_optimizer", role=role, policy=policy)
        if optimizer is None:
            raise PluginError(f"no plugin makes optimizer.name={self.ctx.recipe.optimizer.name!r} "
                              f"(hook visplay_make_optimizer)")
        if previous is not None:
            optimizer.load(str(self._existing(previous) / "optimizer"))
        self.optimizers[role] = (key, optimizer)
        return policy, optimizer

    def sampler(self, role: str) -> Any:
        """A sampler over the role's live policy (rebuilt when the policy object changes)."""
        policy = self.policies[role]
        held = self.samplers.get(role)
        if held is not None and held[0] == id(policy):
            return held[1]
        sampler = self.ctx.call("visplay_make_sampler", role=role, policy=policy) or policy.sampler()
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and self.ctx.recipe.sampler[role] == "hf":
            from visplay.scale.distributed import ShardedSampler

            sampler = ShardedSampler(sampler)  # each rank samples its slice; all ranks get every generation
        self.samplers[role] = (id(policy), sampler)
        return sampler

    def trained(self, role: str, iteration: int, step: int, name: str) -> None:
        """After an update: the live policy now holds ``name``; samplers with a ``refresh`` pick up the weights."""
        reference = self.holds[role][0]
        self.holds[role] = (reference, name)
        optimizer = self.optimizers[role][1]
        self.optimizers[role] = ((iteration, name), optimizer)
        held = self.samplers.get(role)
        if held is not None and hasattr(held[1], "refresh"):
            held[1].refresh()

    # --- saving ------------------------------------------------------------------------------------------

    def save(self, role: str, name: str, *, with_optimizer: bool) -> tuple[Path, dict[str, str]]:
        """Write the role's policy (and optimizer) under a temporary directory; return it and {file: sha256}."""
        tmp = self.root / ".tmp" / name.replace("/", "__")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        files = dict(self.policies[role].save(str(tmp)))
        if with_optimizer:
            optimizer_files = self.optimizers[role][1].save(str(tmp / "optimizer"))
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

    def prune_states(self, role: str, keep: int | None) -> None:
        """After a commit: keep this role's ``keep`` newest step states (None: delete them all)."""
        state_dir = self.root / "state"
        if not state_dir.is_dir():
            return
        states = sorted(state_dir.glob(f"{role}-i*"), key=_state_order)
        for path in states[: max(0, len(states) - keep) if keep is not None else None]:
            shutil.rmtree(path, ignore_errors=True)

    def holds_weights(self, role: str, iteration: int, name: str) -> bool:
        """Whether the live policy and optimizer of ``role`` are at checkpoint ``name`` (saved or not)."""
        held = self.optimizers.get(role)
        return self.holds.get(role, (None, None))[1] == name and held is not None and held[0] == (iteration, name)

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
        return path


def _state_order(path: Path) -> tuple[int, int]:
    # ``<role>-i<i>-s<s>``: numeric order, so s10 is newer than s9
    _, iteration, step = path.name.rsplit("-", 2)
    return int(iteration[1:]), int(step[1:])


def load_weights(policy: Any, directory: Path) -> None:
    """Overlay saved trainable weights on a live policy, keeping its reference model."""
    if hasattr(policy, "load_weights"):
        policy.load_weights(str(directory))
        return
    model = getattr(policy, "model", None)
    if model is None:
        raise PluginError(f"policy {type(policy).__name__} has no load_weights(); resuming mid-phase needs it")
    from safetensors.torch import load_file

    state: dict[str, Any] = {}
    for file in sorted(directory.glob("*.safetensors")):
        state.update(load_file(str(file)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or len(state) == 0:
        raise PluginError(f"cannot overlay weights from {directory} on {type(policy).__name__}: "
                          f"{len(unexpected)} unexpected keys; the models plugin needs load_weights()")
