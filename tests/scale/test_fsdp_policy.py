"""The HF policy and the GRPO optimizer under FSDP2 (distributed.strategy: fsdp), 2 gloo processes vs one.

Covers the FSDP pieces of issue 14 without vLLM: the policy shards model and reference at load; every rank runs
the same number of forward passes (a shard of 2 against 3 pads with a zero-weighted micro-batch); weights_sha256,
save, load_weights and the optimizer's moments gather/scatter; the result equals one process's within 1e-5 (only
the order of float32 sums differs: FSDP reduce-scatters the gradients).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.dist, pytest.mark.slow]

WORKER = Path(__file__).parent.parent / "support" / "fsdp_worker.py"
TOLERANCE = 1e-5


def _run(out: Path, cache: Path, nproc: int, *extra: str) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(WORKER), str(out), str(cache), *extra]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *cmd[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


def test_fsdp_policy_and_optimizer_match_one_process_and_round_trip(tmp_path):
    from safetensors.torch import load_file

    cache = tmp_path / "cache"
    one = _run(tmp_path / "one", cache, 1)
    two = _run(tmp_path / "two", cache, 2)
    assert (one["world"], one["sharded"], two["world"], two["sharded"]) == (1, False, 2, True)
    assert one["losses"] == pytest.approx(two["losses"], rel=TOLERANCE, abs=TOLERANCE)
    for hashes in (one["hashes"], two["hashes"]):
        for trained, reloaded, after, after_reloaded in hashes:
            assert trained == reloaded  # save -> load_weights is exact
            assert after == after_reloaded  # and so is optimizer save -> load (moments, step counts)
        assert len({h[0] for h in hashes}) == 1  # every rank gathers the same full weights
    a, b = load_file(str(tmp_path / "one" / "weights.safetensors")), load_file(str(tmp_path / "two" / "weights.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= TOLERANCE, worst
    # the checkpoint folders every rank wrote are complete model folders (transformers writes on rank 0 only)
    for rank in (0, 1):
        assert (tmp_path / "two" / f"rank{rank}" / "model" / "config.json").is_file()
    # and so is the tiny model folder each rank built into a cold cache of its own under the process group
    assert len(two["built"]) == 2
    for files in two["built"]:
        assert {"config.json", "model.safetensors", "tokenizer.json", "visplay_tiny.json"} <= set(files), files


def test_fsdp_with_recomputation_chunks_and_token_budget_matches_the_plain_one_process_run(tmp_path):
    """Issue 22 under FSDP2 (2 gloo ranks): gradient checkpointing inside the sharded layers, the head called once
    per chunk and again in the backward pass, and token-budget micro-batches (ranks padded to the busiest) give the
    plain one-process run's losses and weights."""
    from safetensors.torch import load_file

    cache = tmp_path / "cache"
    one = _run(tmp_path / "one", cache, 1, "images")
    two = _run(tmp_path / "two", cache, 2, "images,checkpointing,chunks,budget")
    assert two["sharded"] and one["losses"] == pytest.approx(two["losses"], rel=TOLERANCE, abs=TOLERANCE)
    for trained, reloaded, after, after_reloaded in two["hashes"]:
        assert (trained, after) == (reloaded, after_reloaded)
    a, b = load_file(str(tmp_path / "one" / "weights.safetensors")), load_file(str(tmp_path / "two" / "weights.safetensors"))
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= TOLERANCE, worst
