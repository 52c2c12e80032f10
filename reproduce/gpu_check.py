"""The prepared GPU check (reproduce/gpu_check.sh): one GPU, random weights of the exact Qwen2.5-VL-3B architecture.

Three measurements, each in its own process so the GPU is free for the next:
1. ``gpu_benchmark.py --sampler vllm``: vLLM sampling tokens/s, GRPO update tokens/s and MFU, weight-push time
   (the model folder is kept for step 3);
2. the dry run of step 3's plan on this GPU (``visplay run ... --dry-run --gpus 1``): the memory plan must fit;
3. a 2-step self-play run (one iteration, 2 questioner + 2 reasoner steps, procedural images) with both vLLM
   engines and the training process sharing the one GPU; its wall time and the run log's status.
Then one table beside EasyR1 v0.3.2's published 3B figures (8 x H100: 1,800 tokens/s per GPU by its
``perf/throughput``, the step's prompt + response tokens / (step time x GPUs); 120 s per step; 54 GB peak VRAM).

Random weights rarely write a valid question, so the reasoner's steps usually find an empty set and are skipped
(event ``empty_reasoner_set``); the run still exercises both engines, the pushes and training on a shared GPU.
The budget (< 8 min on one H100/H200) is set by the sizes below; ``--size tiny --device cpu`` is the CPU test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# (batch, n, max_new_tokens, self-play overrides) per size: 3b fits 8 minutes on one H100; tiny runs on CPU.
PLANS = {
    "3b": dict(bench=["--batch", "32", "--n", "8", "--max-new-tokens", "512", "--steps", "2",
                      "--micro-batch-size", "4", "--gpu-memory-utilization", "0.5"],
               selfplay=["plugins.grpo.micro_batch_size=2", "plugins.vllm.gpu_memory_utilization=0.2",
                         "questioner.sampling.max_new_tokens=128", "reasoner.sampling.max_new_tokens=128",
                         "plugins.vllm.max_model_len=2048", "plugins.vllm.enforce_eager=true"]),
    "tiny": dict(bench=["--batch", "2", "--n", "2", "--max-new-tokens", "5", "--steps", "1"],
                 selfplay=["questioner.sampling.max_new_tokens=8", "reasoner.sampling.max_new_tokens=8",
                           "plugins.vllm.max_model_len=512", "plugins.vllm.enforce_eager=true", "model.device=cpu",
                           "model.dtype=float32"]),
}
SELFPLAY = ["iterations=1", "questioner.steps=2", "reasoner.steps=2", "questioner.images_per_step=4",
            "questioner.group_size=4", "questioner.votes=3", "reasoner.questions_per_step=4", "reasoner.group_size=4",
            "reasoner.votes=3", "reasoner.set_images=8", "data.source=procedural", "data.images=unused", "data.num_images=16",
            "plugins.vllm.tensor_parallel_size=1", "distributed.nproc=1"]


def _python(*args: str, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT)


def selfplay_args(size: str, model: Path, run_dir: Path, sampler: str) -> list[str]:
    """The ``visplay run`` arguments of step 3: the paper's 3B recipe, shrunk, on the random model."""
    return ["-m", "visplay.cli", "run", "qwen-vl-3b", f"model.path={model}", f"run_dir={run_dir}",
            f"sampler.questioner={sampler}", f"sampler.reasoner={sampler}", *SELFPLAY, *PLANS[size]["selfplay"]]


def check(args: argparse.Namespace) -> dict:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model, bench_json, run_dir = out / "model", out / "bench.json", out / "selfplay"
    result: dict = {"size": args.size, "device": args.device}
    bench = _python(str(HERE / "gpu_benchmark.py"), "--size", args.size, "--device", args.device, "--sampler",
                    args.sampler, "--keep-model", str(model), "--json", str(bench_json), *PLANS[args.size]["bench"],
                    timeout=args.timeout)
    (out / "bench.log").write_text(bench.stdout + bench.stderr)
    if bench.returncode != 0:
        raise SystemExit(f"gpu_check: the benchmark failed (see {out / 'bench.log'}):\n{bench.stderr[-2000:]}")
    result["bench"] = json.loads(bench_json.read_text())
    play = selfplay_args(args.size, model, run_dir, args.sampler)
    plan = _python(*play, "--overwrite", "--dry-run", "--gpus", "0" if args.device == "cpu" else "1",
                   "--gpu-memory", str(args.gpu_memory), timeout=120)
    (out / "plan.txt").write_text(plan.stdout + plan.stderr)
    if plan.returncode != 0:
        raise SystemExit(f"gpu_check: the self-play plan does not fit this GPU:\n{plan.stderr[-2000:]}")
    start = time.perf_counter()
    run = _python(*play, "--overwrite", "--quiet", timeout=args.timeout)
    result["selfplay_s"] = time.perf_counter() - start
    (out / "selfplay.log").write_text(run.stdout + run.stderr)
    result["selfplay_status"] = _status(run_dir / "run.db") if run.returncode == 0 else f"exit {run.returncode}"
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1, sort_keys=True))
    return result


def _status(db: Path) -> str:
    from visplay.log.runlog import RunLog

    with RunLog(db, readonly=True) as log:
        steps = len(log.done_steps())
        return f"{log.run()['status']}, {steps} committed steps"


def table(r: dict) -> str:
    """One table beside EasyR1's published figures (3B, 8 x H100)."""
    b = r["bench"]
    e = b["easyr1"]
    rows = [
        ("step throughput, tokens/s per GPU (EasyR1's perf/throughput)", f"{b['step_throughput_per_gpu']:.0f}",
         f"{e['throughput_per_gpu']:.0f}"),
        (f"{b['sampler']} sampling tokens/s per GPU", f"{b['tokens_per_s_per_gpu']:.0f}", "-"),
        ("GRPO update tokens/s (prompt + response)", f"{b['update_tokens_per_s']:.0f}", "-"),
        ("GRPO MFU (10N FLOPs per token)", f"{b['mfu']:.3f}", "-"),
        ("weight push, full 3B state (s)", f"{b['weight_push_s']:.2f}", "-"),
        ("2-step self-play, engines + training on one GPU (s)", f"{r['selfplay_s']:.0f}", "-"),
        ("self-play run log", r["selfplay_status"], "-"),
        ("peak memory of the benchmark process (GiB; EasyR1: GB, 1 of 8 GPUs)", f"{b['peak_memory_gib']:.1f}",
         f"{e['peak_vram_gb']:.0f}"),
    ]
    width = max(len(name) for name, _, _ in rows)
    head = (f"gpu_check: Qwen2.5-VL '{b['size']}' ({b['parameters']:,} parameters, random weights) on "
            f"{b['device_name']}, {b['dtype']}")
    easyr1 = f"EasyR1 {e['version']} 3B 8xH100"
    lines = [head, f"{'metric':<{width}}  {'this GPU':>24}  {easyr1:>23}"]
    return "\n".join(lines + [f"{n:<{width}}  {ours:>24}  {theirs:>23}" for n, ours, theirs in rows])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(PLANS), default="3b")
    p.add_argument("--device", default="cuda")
    p.add_argument("--sampler", choices=["vllm", "hf"], default="vllm", help="hf: the CPU test without vLLM")
    p.add_argument("--gpu-memory", type=float, default=80.0, help="GiB of the GPU, for the self-play plan")
    p.add_argument("--out", default="gpu_check_out")
    p.add_argument("--timeout", type=int, default=420, help="seconds per step")
    args = p.parse_args(argv)
    print(table(check(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
