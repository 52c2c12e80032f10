"""Sharded step snapshots through torch.distributed.checkpoint (DCP), for ``plugins.models.fsdp.state_format:
sharded`` under FSDP2.

Why: the ``full`` format gathers every weight and both AdamW moments on every rank (``full_tensor()``) and writes
them whole, so each rank briefly holds the whole training state (12 bytes per parameter in float32 moments + the
weights) and every rank writes the whole snapshot. Here each rank writes only its own shards
(``get_model_state_dict`` / ``get_optimizer_state_dict`` of torch.distributed.checkpoint.state_dict keep the
FSDP2 DTensors sharded; ``dcp.save`` writes one ``__<rank>_0.distcp`` file per rank and the coordinator's
``.metadata``), and a resume reads them back with ``dcp.load`` + ``set_model_state_dict`` /
``set_optimizer_state_dict``, each rank reading the byte ranges of its shards.

Where: every rank writes into *rank 0's* folder (visplay gives ranks > 0 a private copy of the run directory, see
visplay/loop/runsetup.py, so the folder is rank 0's path broadcast to all): rank 0's snapshot is the complete one,
its files hashed into the run log like any checkpoint's and moved into place with the step's commit (the folder
is written under ``checkpoints/.tmp`` and renamed, as every snapshot is), so a kill mid-write leaves no snapshot
the log names. The run directory must therefore be on a filesystem every rank sees (one node always; several
nodes: a shared filesystem); a rank that cannot see rank 0's folder stops the save with a message saying so.

Pickle: DCP's ``.metadata`` is a pickle, and torch's ``FileSystemReader`` unpickles it (the only format DCP has;
the tensors themselves are raw bytes). visplay reads a snapshot only after every file of it matched the sha256 this
run logged when it wrote them (visplay/loop/checkpoints.py ``verify_checkpoint``, run by rank 0 before the
collective load, which the other ranks wait for), so only a file this run wrote is ever unpickled. That, and the
shared filesystem, is why ``sharded`` is opt-in; the default ``full`` format unpickles nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STATE_FILE = "visplay_state.json"  # marks a sharded snapshot folder (written by every rank into its own folder)
MODEL = "model"  # the model's DCP checkpoint, a subfolder of the snapshot
FORMAT = 1


def is_sharded_snapshot(directory: str | Path) -> bool:
    """Whether ``directory`` is a snapshot written by :func:`save_model_state` (its marker file)."""
    return (Path(directory) / STATE_FILE).is_file()


def shared_folder(directory: str | Path, *, create: bool) -> Path:
    """Rank 0's ``directory`` on every rank (a collective), checked visible to all ranks."""
    from visplay.api import distributed

    mine = Path(directory).resolve()
    if create and distributed.is_rank0():
        mine.mkdir(parents=True, exist_ok=True)
    target = Path(distributed.broadcast_object(str(mine)))
    blind = [r for r, seen in enumerate(distributed.all_gather_objects(target.is_dir())) if not seen]
    if blind:
        raise RuntimeError(f"plugins.models.fsdp.state_format=sharded: rank(s) {blind} cannot see rank 0's snapshot "
                           f"folder {target}; every rank writes its shards there, so the run directory must be on a "
                           f"filesystem all nodes share (or use plugins.models.fsdp.state_format=full)")
    return target


def write_marker(directory: Path, role: str, extra: dict[str, Any]) -> None:
    from visplay.api import distributed

    directory.mkdir(parents=True, exist_ok=True)
    (directory / STATE_FILE).write_text(json.dumps(
        {"format": FORMAT, "state_format": "sharded", "role": role, "world_size": distributed.world_size(), **extra},
        indent=1, sort_keys=True))


def _writer(folder: Path) -> Any:
    from torch.distributed.checkpoint import FileSystemWriter

    # one file per rank; fsync'd before the step's commit can name them
    return FileSystemWriter(str(folder), single_file_per_rank=True, sync_files=True, thread_count=1)


def _reader(folder: Path) -> Any:
    from torch.distributed.checkpoint import FileSystemReader

    if not (folder / ".metadata").is_file():
        raise FileNotFoundError(f"{folder}: not a torch.distributed.checkpoint folder (no .metadata)")
    return FileSystemReader(str(folder))


def save_model_state(model: Any, directory: str | Path) -> Path:
    """Each rank writes its shards of ``model``'s state dict into rank 0's ``directory`` (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    folder = shared_folder(directory, create=True)
    dcp.save({"model": get_model_state_dict(model)}, storage_writer=_writer(folder))
    return folder


def load_model_state(model: Any, directory: str | Path) -> None:
    """Load the shards :func:`save_model_state` wrote into ``model`` (each rank reads its own; a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    folder = shared_folder(directory, create=False)
    state = {"model": get_model_state_dict(model)}
    dcp.load(state, storage_reader=_reader(folder))
    set_model_state_dict(model, state["model"])


def save_optimizer_state(model: Any, optim: Any, directory: str | Path) -> Path:
    """Each rank writes its shards of the torch optimizer's state (moments, step counts, param groups; keyed by
    parameter name) into rank 0's ``directory`` (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    folder = shared_folder(directory, create=True)
    dcp.save({"optim": get_optimizer_state_dict(model, optim)}, storage_writer=_writer(folder))
    return folder


def load_optimizer_state(model: Any, optim: Any, directory: str | Path) -> None:
    """Load what :func:`save_optimizer_state` wrote into ``optim`` (a collective). ``get_optimizer_state_dict`` of a
    fresh optimizer first creates its state (torch steps it once with zero gradients and lr 0, leaving the weights
    as they are), which ``dcp.load`` then overwrites in place."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    folder = shared_folder(directory, create=False)
    state = {"optim": get_optimizer_state_dict(model, optim)}
    dcp.load(state, storage_reader=_reader(folder))
    set_optimizer_state_dict(model, optim, state["optim"])


def offload_policy(enabled: bool, device: Any) -> Any:
    """FSDP2's ``CPUOffloadPolicy`` for ``plugins.models.fsdp.offload`` (None: parameters stay on ``device``).
    Pinned host memory only where there is a GPU to copy to (pinning needs CUDA)."""
    if not enabled:
        return None
    from torch.distributed.fsdp import CPUOffloadPolicy

    return CPUOffloadPolicy(pin_memory=str(device).startswith("cuda"))
