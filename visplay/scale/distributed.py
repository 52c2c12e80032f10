"""Multi-process training with torch.distributed, launched by torchrun.

The shape of a data-parallel visplay run (docs/scale.md):

- every process runs the same loop with the same recipe and seeds; ``shard`` gives each rank a deterministic,
  contiguous slice of a batch (rank r of w gets the r-th of w near-equal blocks), so the union over ranks is the
  global batch in order whatever the world size;
- sampling: each rank samples its slice and the slices are gathered in rank order (``ShardedSampler``), or rank 0
  samples on the sampling GPUs (vLLM) and ``broadcast_object`` shares the result; either way every rank then holds
  the same generations, rewards and advantages;
- the update: each rank back-propagates its slice with the loss normalised by the *global* token count
  (``global_sum``), then ``all_reduce_gradients(model, average=False)`` sums the gradients, so every rank applies
  the same clipped AdamW step as one process with the whole batch would (DDP semantics, done explicitly because the
  policy runs several forward paths per step; ``parallelize(model, "fsdp")`` shards parameters instead);
- only rank 0 writes the run log (``is_rank0``).

Backends: ``auto`` is nccl when training on CUDA, gloo on CPU. Multi-node is the same program under
``torchrun --nnodes N --node-rank K --rdzv-endpoint HOST:PORT``; the tests simulate two nodes on 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

log = logging.getLogger("visplay.scale.distributed")
T = TypeVar("T")


# --- who am I ----------------------------------------------------------------------------------------------------


def _dist() -> Any:
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def world_size() -> int:
    """Processes in the run: the process group's size, else torchrun's WORLD_SIZE, else 1."""
    dist = _dist()
    return dist.get_world_size() if dist else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    dist = _dist()
    return dist.get_rank() if dist else int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its node (torchrun's LOCAL_RANK)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_rank0() -> bool:
    """True in the process that writes the run log, prints summaries and saves checkpoints."""
    return rank() == 0


def under_torchrun() -> bool:
    """True inside a process started by torchrun (it sets TORCHELASTIC_RUN_ID and LOCAL_RANK)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def pick_backend(backend: str, device: str) -> str:
    """``auto`` -> nccl for CUDA training, gloo otherwise; ``gloo``/``nccl`` are checked against the device."""
    if backend == "auto":
        return "nccl" if str(device).startswith("cuda") else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"distributed.backend must be auto, gloo or nccl, got {backend!r}")
    if backend == "nccl" and not str(device).startswith("cuda"):
        raise ValueError(f"distributed.backend=nccl needs model.device=cuda, got {device!r}")
    return backend


def init_distributed(backend: str = "auto", device: str = "cpu") -> bool:
    """Join the process group torchrun describes (env://); a no-op (False) for a single process.

    On CUDA each process takes ``device``'s GPU when it names one (``cuda:4``: the rank's training GPU from
    ``placement.training_device``, so NCCL and FSDP run there, not on a sampling GPU), else its local rank's.
    """
    import torch
    import torch.distributed as dist

    if _dist() is not None:
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    chosen = pick_backend(backend, device)
    if chosen == "nccl":
        torch.cuda.set_device(int(str(device).split(":")[1]) if ":" in str(device) else local_rank())
    dist.init_process_group(backend=chosen, init_method="env://")
    log.info("rank %d/%d joined (%s)", rank(), world_size(), chosen)
    return True


def shutdown() -> None:
    """Leave the process group (call once at the end of the run)."""
    dist = _dist()
    if dist is not None:
        dist.destroy_process_group()


# --- data --------------------------------------------------------------------------------------------------------


def shard_bounds(n: int, rank_: int, world: int) -> tuple[int, int]:
    """[start, end) of rank ``rank_``'s block: w near-equal contiguous blocks, the first ``n % w`` one longer."""
    if world < 1 or not 0 <= rank_ < world:
        raise ValueError(f"shard: rank {rank_} is not in a world of {world}")
    base, extra = divmod(n, world)
    start = rank_ * base + min(rank_, extra)
    return start, start + base + (1 if rank_ < extra else 0)


def shard(items: Sequence[T], rank_: int | None = None, world: int | None = None) -> list[T]:
    """This rank's contiguous slice of ``items`` (default: the current rank and world). Deterministic; the slices
    of ranks 0..w-1 concatenated give ``items`` back."""
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    start, end = shard_bounds(len(items), rank_, world)
    return list(items[start:end])


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (pickled through the process group); ``[obj]`` when not distributed."""
    dist = _dist()
    if dist is None:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (e.g. generations sampled by rank 0's vLLM engine)."""
    dist = _dist()
    if dist is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def global_sum(value: float) -> float:
    """The sum of ``value`` over ranks (e.g. the update batch's token count, the token-mean's denominator)."""
    import torch

    dist = _dist()
    if dist is None:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return float(t.item())


def _comm_device() -> Any:
    import torch

    dist = _dist()
    if dist is not None and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# --- gradients and models -----------------------------------------------------------------------------------------


def all_reduce_gradients(model: Any, *, average: bool = True) -> int:
    """Sum (``average=False``) or average the gradients of ``model``'s parameters over ranks, in place.

    Call after backward and before clipping. Sum is right when each rank's loss was divided by the global
    denominator (see the module docstring); average when each rank's loss is a mean over equal-sized slices.
    Parameters without a gradient are skipped (the same on every rank, since all ranks run the same model);
    FSDP-sharded gradients (DTensor) were already averaged by FSDP and are only rescaled when ``average=False``.
    Gradients are flattened into one buffer per dtype so the reduction is one collective, not one per tensor.
    Returns the number of (non-FSDP) tensors reduced.
    """
    import torch

    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return 0
    params = list(model.parameters() if hasattr(model, "parameters") else model)
    world = dist.get_world_size()
    # A rank whose shard never reached a parameter has no gradient for it while others do; agree first (one small
    # collective) so every rank reduces the same tensors. Parameters no rank touched keep no gradient, as in one
    # process (AdamW then skips them).
    has = torch.tensor([float(p.grad is not None) for p in params], device=_comm_device())
    dist.all_reduce(has)
    for p, count in zip(params, has.tolist()):
        if count > 0 and p.grad is None:
            p.grad = torch.zeros_like(p)
    for p in params:
        if p.grad is not None and _is_dtensor(p.grad) and not average:
            p.grad.mul_(world)  # FSDP already reduce-scattered the mean; the caller asked for the sum
    grads = [p.grad for p in params if p.grad is not None and not _is_dtensor(p.grad)]
    by_dtype: dict[Any, list[Any]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        if average:
            flat /= world
        offset = 0
        for g in group:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
    return len(grads)


def clip_grad_norm_(parameters: Any, max_norm: float) -> Any:
    """``torch.nn.utils.clip_grad_norm_`` that also accepts a mix of FSDP-sharded (DTensor) and replicated
    gradients (FSDP with tied embeddings), which torch's version refuses. Returns the total norm (a tensor)."""
    import torch

    params = [p for p in parameters if p.grad is not None]
    groups = [[p for p in params if _is_dtensor(p.grad)], [p for p in params if not _is_dtensor(p.grad)]]
    groups = [g for g in groups if g]
    if len(groups) < 2:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    norms = []
    for group in groups:
        norm = torch.nn.utils.get_total_norm([p.grad for p in group])
        norms.append((norm.full_tensor() if _is_dtensor(norm) else norm).float())
    total = torch.linalg.vector_norm(torch.stack(norms))
    for group in groups:
        torch.nn.utils.clip_grads_with_norm_(group, max_norm, total)
    return total


def _is_dtensor(t: Any) -> bool:
    return type(t).__name__ == "DTensor"


def broadcast_parameters(model: Any, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (identical starting weights, as DDP does)."""
    dist = _dist()
    if dist is None:
        return
    for tensor in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(tensor.data, src=src)


def parallelize(model: Any, strategy: str, is_block: Callable[[Any], bool] | None = None,
                offload: Any = None) -> Any:
    """Prepare ``model`` for data-parallel training in place and return it.

    ``ddp``: parameters broadcast from rank 0; gradients are then reduced with :func:`all_reduce_gradients`.
    ``fsdp``: every transformer block and every other parameter-owning module are sharded with FSDP2
    (``fully_shard``; the units: :func:`fsdp_units`); FSDP reduce-scatters (averages) the gradients during backward,
    and ``all_reduce_gradients(average=False)`` only rescales those shards to the sum (gloo has no pre-scaled sum).
    Save with ``p.full_tensor()`` on every rank. ``is_block`` says which modules are the model's transformer blocks
    (the backend plugin knows its families; default :func:`named_like_a_block`). ``offload``: an FSDP2 offload
    policy (``torch.distributed.fsdp.CPUOffloadPolicy``) every unit is sharded with; None keeps them on the device.
    """
    if strategy not in ("ddp", "fsdp"):
        raise ValueError(f"distributed.strategy must be ddp or fsdp, got {strategy!r}")
    if _dist() is None:
        return model
    if strategy == "ddp":
        broadcast_parameters(model)
        return model
    from torch.distributed.fsdp import fully_shard

    units, tied = fsdp_units(model, is_block or named_like_a_block)
    extra = {} if offload is None else {"offload_policy": offload}
    for module in units:
        fully_shard(module, ignored_params=tied, **extra)
    fully_shard(model, ignored_params=tied, **extra)
    return model


def named_like_a_block(module: Any) -> bool:
    """A transformer block by its class name (``...DecoderLayer``, ``...VisionBlock``): what FSDP wrapped before a
    backend said which modules are its blocks."""
    return type(module).__name__.endswith(("DecoderLayer", "VisionBlock"))


def fsdp_units(model: Any, is_block: Callable[[Any], bool]) -> tuple[list[Any], set[Any]]:
    """(the submodules FSDP shards one by one, in order; the tied parameters it leaves replicated).

    Units: every transformer block (``is_block``), then every other module that owns parameters directly
    (embeddings, norms, lm_head, patch embedding, merger) and is not inside a block. Each unit gathers its parameters
    in its own forward hook, so the model works whichever submodule a caller enters through (the policy calls the
    inner model, then the head). Tied weights (embed_tokens = lm_head) stay replicated: a shard owned by one unit
    would reach the other module still sharded; all_reduce_gradients reduces their gradients like any replicated
    parameter. A block missed here still trains, but as one unit per linear layer (many small all-gathers)."""
    owners: dict[int, int] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    tied = {p for p in model.parameters() if owners[id(p)] > 1}
    covered: set[int] = {id(p) for p in tied}
    units = []
    for module in model.modules():
        if module is not model and is_block(module):
            units.append(module)
            covered.update(id(p) for p in module.parameters())
    for module in model.modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in covered]
        if own and module is not model:
            units.append(module)
            covered.update(id(p) for p in module.parameters())
    return units, tied


class ShardedSampler:
    """Wraps a sampler so each rank samples its slice of the requests; every rank gets all results in order.

    Requests carry their own seeds, so on CPU the gathered result equals one process sampling everything.
    """

    def __init__(self, inner: Any):
        self.inner = inner

    def sample(self, prompts: Sequence[Any], params: Sequence[Any]) -> list[Any]:
        my_prompts, my_params = shard(prompts), shard(params)
        mine = self.inner.sample(my_prompts, my_params) if my_prompts else []
        return [item for part in all_gather_objects(mine) for item in part]

    def refresh(self) -> None:
        if hasattr(self.inner, "refresh"):
            self.inner.refresh()


class Rank0Sampler:
    """Rank 0 samples (its vLLM engine on the sampling GPUs) and every rank receives the same generations.

    ``inner`` is the real sampler on rank 0 and None elsewhere (no engine is started there).
    """

    def __init__(self, inner: Any | None):
        if is_rank0() and inner is None:
            raise ValueError("Rank0Sampler: rank 0 needs the real sampler")
        self.inner = inner

    def sample(self, prompts: Sequence[Any], params: Sequence[Any]) -> list[Any]:
        return broadcast_object(self.inner.sample(prompts, params) if is_rank0() else None)

    def refresh(self) -> None:
        if self.inner is not None and hasattr(self.inner, "refresh"):
            self.inner.refresh()


# --- launching ---------------------------------------------------------------------------------------------------


def torchrun_command(argv: Sequence[str], nproc: int, *, nnodes: int = 1, node_rank: int = 0,
                     master: str | None = None, module: str | None = "visplay.cli") -> list[str]:
    """The torchrun command that runs ``visplay <argv>`` in ``nproc`` processes per node (``--nproc`` removed).

    Multi-node (``nnodes > 1``) uses torchrun's static rendezvous: every node runs the same command with its own
    ``node_rank`` and the same ``master`` HOST:PORT (node 0's address). ``module=None`` runs ``argv[0]`` as a
    script instead of ``python -m visplay.cli``.
    """
    args = _strip_nproc(list(argv))
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    if nnodes == 1:
        cmd += ["--standalone"]
    else:
        if not master or ":" not in master:
            raise ValueError(f"multi-node torchrun needs master HOST:PORT (node 0), got {master!r}")
        host, port = master.rsplit(":", 1)
        cmd += ["--nnodes", str(nnodes), "--node-rank", str(node_rank), "--master-addr", host, "--master-port", port]
    cmd += ["--nproc-per-node", str(nproc)]
    return cmd + (["-m", module] if module else []) + args


def _strip_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def relaunch_under_torchrun(argv: Sequence[str], nproc: int) -> int:
    """Run ``visplay <argv>`` again under ``torchrun --standalone --nproc-per-node nproc``; return its exit code.

    ``argv`` is the command line after ``visplay`` (``sys.argv[1:]``); ``--nproc`` is dropped so the children
    do not relaunch themselves.
    """
    if under_torchrun():
        raise RuntimeError("already running under torchrun: not relaunching (drop --nproc)")
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    cmd = torchrun_command(argv, nproc)
    log.info("relaunching: %s", " ".join(cmd))
    return subprocess.call(cmd)
