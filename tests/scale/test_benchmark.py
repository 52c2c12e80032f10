"""reproduce/gpu_benchmark.py: the exact 3B architecture from config facts, and a tiny run on CPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.scale import ARCHITECTURES
from visplay_models.facts import count_parameters

SCRIPT = Path(__file__).resolve().parent.parent.parent / "reproduce" / "gpu_benchmark.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_3b_architecture_has_the_real_parameter_count():
    torch = pytest.importorskip("torch")
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(_module().architecture_config("3b"))
    total = sum(p.numel() for p in model.parameters())
    assert total == count_parameters(ARCHITECTURES["qwen-vl-3b"])["total"] == 3_754_622_976


def test_tiny_cpu_run_reports_beside_easyr1(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--size", "tiny", "--device", "cpu", "--batch", "2", "--n",
                           "2", "--max-new-tokens", "5", "--steps", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["sampled_tokens"] == 2 * 2 * 5  # random weights: every sample runs to max_new_tokens
    assert result["grpo_rollouts"] == 4 and result["grpo_step_s"] > 0 and result["tokens_per_s_per_gpu"] > 0
    assert result["peak_memory_gib"] > 0
    assert result["step_throughput_per_gpu"] == pytest.approx(
        result["update_tokens"] / (result["sampling_s"] + result["grpo_step_s"]))
    assert result["easyr1"] == {"version": "v0.3.2", "throughput_per_gpu": 1800.0, "step_s": 120.0,
                                "peak_vram_gb": 54.0, "rollouts_per_gpu": 320.0}
    lines = proc.stdout.splitlines()
    row = next(line for line in lines if "EasyR1's perf/throughput" in line)
    assert row.split()[-2:] == [f"{result['step_throughput_per_gpu']:.1f}", "1800"], row
    assert next(line for line in lines if "projected to 320 rollouts/GPU" in line).split()[-1] == "120"
