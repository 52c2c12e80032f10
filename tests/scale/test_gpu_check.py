"""reproduce/gpu_check.py at tiny size on CPU (HF sampler: the main environment has no vLLM): the same three steps
the GPU check runs on one H100/H200 (benchmark, the self-play plan, a 2-step self-play run) and the table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # ~30-60 s on 2 shared cores

SCRIPT = Path(__file__).resolve().parents[2] / "reproduce" / "gpu_check.py"


def test_tiny_gpu_check_on_cpu_runs_every_step_and_prints_the_table(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--size", "tiny", "--device", "cpu", "--sampler", "hf",
                           "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={"OMP_NUM_THREADS": "1", **__import__("os").environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "gpu_check.json").read_text())
    bench = result["bench"]
    assert bench["sampled_tokens"] == 2 * 2 * 5 and bench["update_tokens_per_s"] > 0
    assert bench["update_tokens"] > bench["sampled_tokens"]  # prompt tokens (image placeholders) count too
    assert result["selfplay_status"].startswith("finished")
    plan = (out / "plan.txt").read_text()
    assert "dry run: nothing loaded" in plan and f"model.path {out / 'model'}" in plan
    # EasyR1's perf/throughput: the step's prompt + response tokens / (sampling + update time), beside its 1,800
    assert bench["step_throughput_per_gpu"] == pytest.approx(
        bench["update_tokens"] / (bench["sampling_s"] + bench["grpo_step_s"]))
    row = next(line for line in proc.stdout.splitlines() if "EasyR1's perf/throughput" in line)
    assert row.split()[-2:] == [f"{bench['step_throughput_per_gpu']:.0f}", "1800"], row
    assert "hf sampling tokens/s per GPU" in proc.stdout and "EasyR1 v0.3.2 3B 8xH100" in proc.stdout
    assert "2-step self-play" in proc.stdout


def test_gpu_check_sh_runs_the_3b_plan_on_one_gpu_within_eight_minutes():
    text = (SCRIPT.parent / "gpu_check.sh").read_text()
    assert "--size 3b --device cuda" in text and "CUDA_VISIBLE_DEVICES" in text
    assert sum(int(t) for t in __import__("re").findall(r"timeout (\d+)", text)) <= 480  # both steps
    assert "reproduce/memory_check.py --device cuda" in text  # issue 22: planned vs measured peak memory


def test_mfu_counts_ten_n_flops_per_token():
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_benchmark", SCRIPT.parent / "gpu_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class Processor:
        def encode(self, prompt):
            return argparse.Namespace(input_ids=[0] * 90)

    class Rollout:
        prompt, token_ids = None, [1] * 10

    policy = argparse.Namespace(processor=Processor())
    args = argparse.Namespace(peak_tflops=1000.0, device="cpu")
    out = module.update_throughput(policy, [Rollout()] * 10, 2.0, 3_000_000_000, args)
    assert out["update_tokens"] == 1000 and out["update_tokens_per_s"] == 500.0
    assert out["mfu"] == pytest.approx(10 * 3e9 * 500 / 1e15)  # 0.015
