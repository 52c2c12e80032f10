"""Sharded step snapshots (``plugins.models.fsdp.state_format: sharded``, torch.distributed.checkpoint) and FSDP2 CPU
offload (``plugins.models.fsdp.offload``) with 2 gloo ranks (issue 22). The worker: tests/support/dcp_worker.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.dist, pytest.mark.slow]

WORKER = Path(__file__).parent.parent / "support" / "dcp_worker.py"


def _launch(out: Path, mode: str, cache: Path) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(WORKER),
           str(out), mode, str(cache)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _result(out: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    return json.loads((out / "result.json").read_text()), load_file(str(out / "weights.safetensors"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """3 updates without a break, a snapshot in each format after update 2."""
    tmp = tmp_path_factory.mktemp("dcp")
    run = _launch(tmp / "straight", "straight", tmp / "cache")
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp


def test_a_run_killed_after_a_sharded_snapshot_resumes_to_the_uninterrupted_weights(straight, tmp_path):
    cache = straight / "cache"
    killed = _launch(tmp_path / "killed", "killed", cache)
    assert killed.returncode != 0 and not (tmp_path / "killed" / "result.json").exists()  # it died after the commit
    resumed = _launch(tmp_path / "killed", "resume", cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    one, weights = _result(straight / "straight")
    two, weights_resumed = _result(tmp_path / "killed")
    # the snapshot holds exactly the trained state, and the resumed update equals the uninterrupted one bit for bit
    assert two["reloaded"] == one["trained"]
    assert two["losses"] == [one["losses"][2]]
    assert weights.keys() == weights_resumed.keys()
    assert all(torch.equal(weights[k], weights_resumed[k]) for k in weights)
    # what the commit recorded: each rank's shard file of the model and of the optimizer, DCP's metadata, the marker
    snapshot = tmp_path / "killed" / "run" / "checkpoints" / "state" / "reasoner-i1-s1"
    files = set(one["files"])
    assert {"model/__0_0.distcp", "model/__1_0.distcp", "model/.metadata", "optimizer/__0_0.distcp",
            "optimizer/__1_0.distcp", "optimizer/.metadata", "optimizer/optimizer.json",
            "visplay_state.json"} <= files, files
    assert not any(name.endswith(".safetensors") for name in files)  # nothing gathered whole
    assert not list((tmp_path / "killed" / "run" / "checkpoints" / ".tmp").glob("*"))  # renamed into place
    assert snapshot.is_dir()


def test_each_rank_writes_less_than_the_full_state(straight):
    """Measured: each rank's shard files (model + AdamW moments) against the full format's files of the same
    state. The figures are printed (pytest -s) for docs/scale.md."""
    sizes = json.loads((straight / "straight" / "result.json").read_text())["sizes"]
    full = sizes["full"]["model.safetensors"] + sizes["full"]["optimizer/optimizer.safetensors"]
    per_rank = {r: sizes["sharded"][f"model/__{r}_0.distcp"] + sizes["sharded"][f"optimizer/__{r}_0.distcp"]
                for r in (0, 1)}
    print(f"full state {full} bytes; rank shards {per_rank} bytes; "
          f"ratios {[round(v / full, 3) for v in per_rank.values()]}")
    assert all(v < full for v in per_rank.values()), (per_rank, full)
    assert sum(per_rank.values()) >= 0.9 * full  # the shards together hold the whole state (+ DCP's framing)


def test_cpu_offload_reaches_fully_shard_and_gives_the_same_updates(tmp_path):
    cache = tmp_path / "cache"
    on = _launch(tmp_path / "on", "offload", cache)
    assert on.returncode == 0, on.stderr[-3000:]
    off = _launch(tmp_path / "off", "offload-off", cache)
    assert off.returncode == 0, off.stderr[-3000:]
    a, wa = _result(tmp_path / "on")
    b, wb = _result(tmp_path / "off")
    # the setting reached every FSDP unit of the model (or none), and the updates are the same to the bit
    assert a["offload_units"][0] == a["offload_units"][1] > 0 and b["offload_units"][0] == 0
    assert a["losses"] == b["losses"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
