"""Worker for tests/scale/test_dcp_snapshots.py: sharded step snapshots (torch.distributed.checkpoint) and FSDP2 CPU
offload under 2 gloo ranks (issue 22).

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/support/dcp_worker.py OUT MODE CACHE_DIR

MODE ``straight``: 3 GRPO updates without a break; after update 2 a snapshot in each format (``sharded`` and
``full``) is written through the engine's own ``Roles.save`` / ``Roles.commit`` (visplay/loop/checkpoints.py:
under ``checkpoints/.tmp``, then renamed), and the byte sizes of each rank's shard files and of the full files are
reported. MODE ``killed``: the same 2 updates and the sharded snapshot, then every rank SIGKILLs itself (no cleanup,
like a killed run). MODE ``resume``: fresh processes load the base model, check the snapshot's files against the
sha256 the commit recorded (``verify_checkpoint``), load weights and optimizer from it and run update 3. MODE
``offload`` / ``offload-off``: 2 updates with ``plugins.models.fsdp.offload`` on / off. Rank 0 writes OUT/result.json
(losses, hashes, sizes) and OUT/weights.safetensors (the gathered weights at the end).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.fsdp_worker import rollouts  # noqa: E402
from support.scale import SMALL_TINY  # noqa: E402

from visplay.scale import distributed as dist  # noqa: E402

NAME = "state/reasoner-i1-s1"


class RowLog:
    """What Roles.commit and verify_checkpoint need of a run log: the ``checkpoints`` rows (kept as JSON)."""

    def __init__(self, file: Path):
        self.file = file
        self.rows = json.loads(file.read_text()) if file.is_file() else []

    def insert(self, table: str, rows: list[dict]) -> None:
        self.rows += rows
        self.file.write_text(json.dumps(self.rows))

    def checkpoint(self, name: str) -> dict | None:
        row = next((r for r in self.rows if r["name"] == name), None)
        return None if row is None else {**row, "files": json.loads(row["files"])}


def load(cache_dir: Path, state_format: str = "sharded", offload: bool = False):
    from visplay_models.options import TinyModelConfig
    from visplay_models.policy import load_policy
    from visplay_models.tiny import build_tiny_model

    path = build_tiny_model(TinyModelConfig(**SMALL_TINY), seed=0, cache_dir=cache_dir)
    return load_policy(path, "reasoner", keep_reference=True, fsdp=True, state_format=state_format, offload=offload)


def optimizer(policy):
    from visplay_grpo.optimizer import GRPOOptimizer

    return GRPOOptimizer(policy, lr=1e-3, micro_batch_size=2, kl_coef=0.01, seed=0)


def roles(out: Path, policy, opt):
    """The engine's checkpoint writer over this rank's run directory (ranks > 0: a private one, as in a run)."""
    from visplay.loop.checkpoints import Held, Roles

    run_dir = out / "run" if dist.is_rank0() else out / f"shadow{dist.rank()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = SimpleNamespace(run_dir=str(run_dir), log=RowLog(run_dir / "checkpoints.json"))
    writer = Roles(ctx)
    writer.held["reasoner"] = Held(policy, None, None, optimizer=opt)
    return writer


def snapshot(writer, name: str) -> dict[str, str]:
    tmp, files = writer.save("reasoner", name, with_optimizer=True)
    writer.commit(tmp, name, "reasoner", 1, 1, files)
    return files


def offloaded_units(model) -> list[int]:
    """[FSDP units whose parameters FSDP2 keeps offloaded to the CPU (``FSDPParam.offload_to_cpu``), FSDP units]."""
    from torch.distributed.fsdp import FSDPModule

    groups = [module._get_fsdp_state()._fsdp_param_group for module in model.modules()
              if isinstance(module, FSDPModule)]
    groups = [g for g in groups if g is not None]
    return [sum(all(p.offload_to_cpu for p in g.fsdp_params) for g in groups), len(groups)]


def sizes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def main(out_dir: str, mode: str, cache_dir: str) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dist.init_distributed("gloo", "cpu")
    out, cache = Path(out_dir), Path(cache_dir)
    result: dict = {"world": dist.world_size()}
    policy = load(cache, offload=mode == "offload")
    opt = optimizer(policy)
    if mode == "resume":
        from visplay.loop.checkpoints import verify_checkpoint

        folder = out / "run" / "checkpoints" / NAME
        if dist.is_rank0():
            verify_checkpoint(RowLog(out / "run" / "checkpoints.json"), NAME, folder)
        mine = folder if dist.is_rank0() else out / f"shadow{dist.rank()}" / "checkpoints" / NAME
        policy.load_weights(mine)
        opt.load(mine / "optimizer")
        result["reloaded"] = policy.weights_sha256()
        result["losses"] = [opt.update(rollouts()).metrics["actor/loss"]]
    else:
        result["losses"] = [opt.update(rollouts()).metrics["actor/loss"] for _ in range(2)]
        if mode.startswith("offload"):
            result["offload_units"] = offloaded_units(policy.model)
        else:
            result["trained"] = policy.weights_sha256()
            writer = roles(out, policy, opt)
            result["files"] = snapshot(writer, NAME)
            if mode == "killed":
                dist.all_gather_objects(None)  # every rank is past the commit
                os.kill(os.getpid(), signal.SIGKILL)
            policy.state_format = "full"  # the same state in the full format, for the sizes
            snapshot(writer, NAME.replace("-s1", "-s1full"))
            policy.state_format = "sharded"
            if dist.is_rank0():
                root = out / "run" / "checkpoints" / "state"
                result["sizes"] = {"sharded": sizes(root / "reasoner-i1-s1"),
                                   "full": sizes(root / "reasoner-i1-s1full")}
            result["losses"].append(opt.update(rollouts()).metrics["actor/loss"])
    full = {k: v.detach().clone() for k, v in policy.full_state_dict().items()}
    if dist.is_rank0():
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in full.items()}, str(out / "weights.safetensors"))
        (out / "result.json").write_text(json.dumps(result))
    dist.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:4])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # as tests/support/dist_worker.py: no gloo teardown
