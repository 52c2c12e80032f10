"""GPU placement, path checks and the ``--dry-run`` plan: what runs where, and roughly how much memory it needs.

The paper ran on 8 GPUs: 4 served the frozen reasoner through vLLM, 4 trained. Here the split is
``recipe.distributed.sampling_gpus`` / ``training_gpus`` (indices into the visible devices); left empty, it is
decided from what is visible: no GPU -> everything on CPU; one GPU -> shared by sampling and training; more -> the
first half samples (only if a role uses ``sampler: vllm``), the rest trains (the paper's 4 + 4 for 8). The plan is
validated against CUDA_VISIBLE_DEVICES / ``torch.cuda.device_count()`` and recorded in the run log as an event of
kind ``placement``.

Which sampler runs in processes of its own, on how many GPUs per engine and with what share of their memory, is the
sampler plugin's answer to ``visplay_engine_needs``; the core knows no sampler by name. Nothing here loads a model.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from visplay.config import ROLES, RecipeError

if TYPE_CHECKING:  # pragma: no cover
    from visplay.context import RunContext
    from visplay.types import EngineNeeds

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GIB = 1024**3


# --- placement ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Which devices sample and which train. ``mode``: ``cpu``, ``shared`` (one GPU does both) or ``split``."""

    mode: str
    visible_gpus: int
    sampling_gpus: list[int] = field(default_factory=list)
    training_gpus: list[int] = field(default_factory=list)
    samplers: dict[str, str] = field(default_factory=dict)
    engine_gpus: dict[str, list[int]] = field(default_factory=dict)
    """GPUs of each role's vLLM engine: with two engines and >= 2 sampling GPUs each gets half, else they share."""

    def describe(self) -> str:
        roles = ", ".join(f"{r}: {s}" for r, s in self.samplers.items())
        if self.mode == "cpu":
            return f"cpu (no GPU visible); samplers {roles}"
        engines = "".join(f"; {r} engine on {g}" for r, g in self.engine_gpus.items())
        return (f"{self.mode} over {self.visible_gpus} visible GPU(s): sampling on {self.sampling_gpus or 'none'}, "
                f"training on {self.training_gpus}; samplers {roles}{engines}")


def visible_gpu_count() -> int:
    """GPUs this process can see: CUDA_VISIBLE_DEVICES when set, else ``torch.cuda.device_count()``."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return len([d for d in env.split(",") if d.strip() and d.strip() != "-1"])
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def plan_placement(ctx: RunContext, visible: int | None = None) -> Placement:
    """Decide and validate the placement for the context's recipe given ``visible`` GPUs (default: count them).

    Raises RecipeError naming ``distributed.sampling_gpus`` / ``distributed.training_gpus`` when an index is
    not visible, listed twice, or when the two sets overlap on a multi-GPU machine.
    """
    recipe = ctx.recipe
    visible = visible_gpu_count() if visible is None else visible
    samplers = {role: str(recipe.sampler[role]) for role in ROLES}
    needs = {role: n for role in ROLES if (n := ctx.hooks.engine_needs(role)) is not None}
    uses_vllm = bool(needs)
    sampling = [int(i) for i in recipe.distributed.sampling_gpus]
    training = [int(i) for i in recipe.distributed.training_gpus]
    if visible == 0:
        if sampling or training:
            raise RecipeError(f"distributed.sampling_gpus={sampling} / training_gpus={training} name GPUs, but none "
                              "is visible (CUDA_VISIBLE_DEVICES / torch.cuda.device_count() is 0)")
        return Placement("cpu", 0, [], [], samplers)
    if not sampling and not training:
        sampling, training = _default_split(visible, uses_vllm)
    elif not training:
        training = [i for i in range(visible) if i not in sampling] or list(sampling)
    elif not sampling and uses_vllm:
        sampling = [i for i in range(visible) if i not in training] or list(training)
    for key, ids in (("sampling_gpus", sampling), ("training_gpus", training)):
        bad = [i for i in ids if not 0 <= i < visible]
        if bad:
            raise RecipeError(f"distributed.{key}: GPU index(es) {bad} not visible (visible: 0..{visible - 1}; "
                              "check CUDA_VISIBLE_DEVICES)")
        if len(set(ids)) != len(ids):
            raise RecipeError(f"distributed.{key}: GPU listed twice in {ids}")
    overlap = sorted(set(sampling) & set(training))
    if overlap and visible > 1:
        raise RecipeError(f"distributed.sampling_gpus and training_gpus overlap on {overlap}; with {visible} GPUs "
                          "give each role its own devices (sharing one GPU is only the single-GPU default)")
    nproc = int(recipe.distributed.nproc)
    if nproc > len(training):
        raise RecipeError(f"distributed.nproc={nproc} training processes but only {len(training)} training GPU(s) "
                          f"{training}")
    if nproc < 0:
        raise RecipeError(f"distributed.nproc={nproc}: give a process count, or 0 for one per training GPU")
    mode = "shared" if overlap or not sampling and visible == 1 else "split"
    sampling = sampling if uses_vllm else []
    engines = _engine_gpus(samplers, needs, sampling, shared_with_training=bool(overlap))
    return Placement(mode, visible, sampling, training, samplers, engines)


def _engine_gpus(samplers: dict[str, str], needs: dict[str, EngineNeeds], sampling: list[int],
                 shared_with_training: bool) -> dict[str, list[int]]:
    """Split the sampling GPUs between the engines and check that their GPUs per engine and memory shares fit."""
    roles = [r for r in samplers if r in needs]
    if not roles or not sampling:
        return {}
    if len(roles) == 2 and len(sampling) >= 2:
        half = len(sampling) // 2
        engines = {roles[0]: sampling[:half], roles[1]: sampling[half:]}
    else:
        engines = {r: list(sampling) for r in roles}
    for role, gpus in engines.items():
        if needs[role].gpus > len(gpus):
            raise RecipeError(f"{needs[role].gpus_setting or f'sampler.{role}={samplers[role]}'} needs "
                              f"{needs[role].gpus} GPUs per engine, but the {role} engine has {gpus} "
                              f"(distributed.sampling_gpus)")
    for gpu in sampling:
        sharing = [r for r in roles if gpu in engines[r]]
        fractions = [needs[r].memory_fraction for r in sharing]
        users = len(sharing) + int(shared_with_training)
        total = sum(fractions) + (max(fractions) if shared_with_training and fractions else 0.0)
        if users > 1 and total > 0.95:
            settings = ", ".join(dict.fromkeys(needs[r].memory_setting or f"sampler.{r}" for r in sharing))
            raise RecipeError(f"{settings}: {users} users share a GPU (engines {', '.join(sharing)}"
                              f"{' and training' if shared_with_training else ''}); their memory shares must add "
                              f"up to <= 0.95")
    return engines


def _default_split(visible: int, uses_vllm: bool) -> tuple[list[int], list[int]]:
    if visible == 1:
        return ([0] if uses_vllm else []), [0]
    if not uses_vllm:
        return [], list(range(visible))
    half = visible // 2
    return list(range(half)), list(range(half, visible))


def training_processes(ctx: RunContext, placement: Placement | None = None, requested: int | None = None) -> int:
    """Training processes to launch: ``requested`` (``--nproc``) or ``distributed.nproc``; 0 means one per training
    GPU of the placement (the paper recipes: 4 of 8), and 1 on a machine without GPUs."""
    nproc = int(ctx.recipe.distributed.nproc) if requested is None else int(requested)
    if nproc > 0:
        return nproc
    placement = placement or plan_placement(ctx)
    return max(len(placement.training_gpus), 1)


def training_device(ctx: RunContext, placement: Placement | None = None, local_rank: int = 0) -> str:
    """The torch device a training process should use: ``recipe.model.device`` on CPU or when it names a GPU
    index explicitly; for plain ``cuda``, the training GPU of this local rank (e.g. ``cuda:4`` on the paper's
    8-GPU split, so training does not land on a sampling GPU)."""
    device = str(ctx.recipe.model.device)
    if device != "cuda":
        return device
    placement = placement or plan_placement(ctx)
    if not placement.training_gpus:
        return device
    if local_rank >= len(placement.training_gpus):
        raise RecipeError(f"local rank {local_rank} has no training GPU (distributed.training_gpus="
                          f"{placement.training_gpus})")
    return f"cuda:{placement.training_gpus[local_rank]}"


def log_placement(log: Any, placement: Placement) -> None:
    """Record the placement in the run log (event kind ``placement``; payload = the Placement as a dict)."""
    log.event("placement", placement.describe(), level="info", source="visplay.scale.placement", payload=asdict(placement))


def cuda_visible_devices(gpus: list[int]) -> str:
    """The CUDA_VISIBLE_DEVICES value that restricts a process to ``gpus`` (indices into the visible list)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    physical = [d.strip() for d in env.split(",")] if env else [str(i) for i in range(max(gpus, default=-1) + 1)]
    return ",".join(physical[i] for i in gpus)
