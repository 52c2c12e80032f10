"""Planner vs measured peak GPU memory of one GRPO update, for reduced Qwen2.5-VL configurations (issue 22).

Prepared for the GPU check (reproduce/gpu_check.sh runs it after gpu_check.py); **not run** by this work: no GPU
was lent to it, and no GPU figure is claimed.

    python reproduce/memory_check.py --device cuda --out DIR          # on one GPU, about a minute
    python reproduce/memory_check.py --device cpu --sizes tiny        # the CPU smoke test (RSS, no comparison)

For each configuration (the Qwen2.5-VL-3B architecture with fewer and narrower layers, reproduce/gpu_benchmark.py
``SIZES``), in a process of its own: a random-weight model folder; the dry run's ``training:`` total for it on one
GPU (``visplay reproduce qwen-vl-3b --dry-run --gpus 1`` with that ``model.path`` and the HF sampler, so no engine
shares the figure; the recipe's own training switches: recomputation, chunked log-probs, the token budget); then
the models and GRPO plugins build the policy and optimizer from the same recipe and run one update on rollouts at
the recipe's full lengths (the planner's bound: every response ``max_new_tokens`` long, one 224 px image each),
measuring ``torch.cuda.max_memory_allocated``. Prints plan, measured and measured / plan per configuration; issue
22's bar is within 25%. Writes DIR/memory_check.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gpu_benchmark  # noqa: E402

# reduced 3B shapes: the 3B's widths with 2 and 4 layers, and the 50m model (all Qwen2.5-VL, random weights)
EXTRA_SIZES = {
    "3b-2l": dict(gpu_benchmark.SIZES["3b"], num_hidden_layers=2, vision=dict(gpu_benchmark.SIZES["3b"]["vision"],
                                                                              depth=2, fullatt_block_indexes=[1])),
    "3b-4l": dict(gpu_benchmark.SIZES["3b"], num_hidden_layers=4, vision=dict(gpu_benchmark.SIZES["3b"]["vision"],
                                                                              depth=4, fullatt_block_indexes=[3])),
}
gpu_benchmark.SIZES.update(EXTRA_SIZES)
OVERRIDES = ["sampler.questioner=hf", "sampler.reasoner=hf", "data.images=__not_given__"]


def planned_gib(model: Path, gpu_memory: float) -> float:
    proc = subprocess.run([sys.executable, "-m", "visplay.cli", "reproduce", "qwen-vl-3b", "--dry-run", "--gpus", "1",
                           "--gpu-memory", str(gpu_memory), f"model.path={model}", *OVERRIDES],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r"^  training: .*total ([0-9.]+)$", proc.stdout + proc.stderr, re.M)
    if found is None:
        raise SystemExit(f"memory_check: no training total in the dry run:\n{(proc.stdout + proc.stderr)[-2000:]}")
    return float(found.group(1))


def measure(model: Path, device: str) -> float:
    """One GRPO update of the recipe's largest micro-batch, built by the plugins from the recipe; peak GiB."""
    import torch

    from visplay.config import load_recipe
    from visplay.context import RunContext
    from visplay.plugins import get_plugin_manager
    from visplay.types import Rollout

    recipe = load_recipe("qwen-vl-3b", [f"model.path={model}", f"model.device={device}", *OVERRIDES])
    ctx = RunContext(recipe=recipe, pm=get_plugin_manager(), run_dir=model.parent / "run")
    policy = ctx.hooks.load_policy("reasoner", None)
    optimizer = ctx.hooks.make_optimizer("reasoner", policy)
    prompts = gpu_benchmark.make_prompts(int(recipe.reasoner.group_size), seed=0, image_size=224)
    length = int(recipe.reasoner.sampling.max_new_tokens)
    rollouts = [Rollout(key=f"r{i}", group="g0", prompt=p, token_ids=[7 + (i + j) % 500 for j in range(length)],
                        old_logprobs=[], reward=float(i % 2)) for i, p in enumerate(prompts)]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    optimizer.update(rollouts)
    return gpu_benchmark.peak_memory_gib(device)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--sizes", default="50m,3b-2l,3b-4l")
    p.add_argument("--gpu-memory", type=float, default=80.0)
    p.add_argument("--out", default="memory_check_out")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model folder in this process
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps({"peak_gib": measure(Path(args.one), args.device)}))
        return 0
    out = Path(args.out).resolve()
    rows = []
    for size in args.sizes.split(","):
        folder = out / size / "model"
        gpu_benchmark.build_model_folder(size, folder, dtype="bfloat16", device="cpu", seed=0)
        plan = planned_gib(folder, args.gpu_memory)
        proc = subprocess.run([sys.executable, __file__, "--device", args.device, "--one", str(folder)],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"memory_check: the update of {size} failed:\n{proc.stderr[-2000:]}")
        peak = json.loads(proc.stdout.strip().splitlines()[-1])["peak_gib"]
        rows.append({"size": size, "plan_gib": plan, "peak_gib": peak, "ratio": peak / plan if plan else None})
    (out / "memory_check.json").write_text(json.dumps(rows, indent=1))
    print("| config | plan GiB | measured peak GiB | measured / plan |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['plan_gib']:.2f} | {r['peak_gib']:.2f} | {r['ratio']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
