"""Planner vs measured peak memory of one GRPO update, for reduced Qwen2.5-VL configurations (issue 22).

    python reproduce/memory_check.py --device cuda --out DIR          # on one GPU, about a minute (not run yet)
    python reproduce/memory_check.py --device cpu --out DIR           # on the CPU: 3 sizes x recomputation on/off

GPU (prepared for reproduce/gpu_check.sh; **not run** by this work, no GPU was lent to it and no GPU figure is
claimed). For each configuration (the Qwen2.5-VL-3B architecture with fewer and narrower layers,
reproduce/gpu_benchmark.py ``SIZES``), in a process of its own: a random-weight model folder; the dry run's
``training:`` total for it on one GPU (``visplay reproduce qwen-vl-3b --dry-run --gpus 1`` with that
``model.path`` and the HF sampler, so no engine shares the figure; the recipe's own training switches); then the
models and GRPO plugins build the policy and optimizer from the same recipe and run one update on rollouts at the
recipe's full lengths (every response ``max_new_tokens`` long, one 224 px image each), measuring
``torch.cuda.max_memory_allocated`` over a second update (the first loads the reference and allocates AdamW's
moments, which the plan counts).

CPU (run; docs/scale.md "Planner vs measured, CPU"). ``CPU_SIZES``: three Qwen2.5-VL frames of 2-4 layers, each with
recomputation on and off, the recipe overridden to one float32 process on the CPU (``cpu_overrides``) and one update
of 4 rollouts at the planner's bound: prompts padded to the planner's allowance (448 text + 64 image tokens of a
224 px image, through the real processor) and 256-token responses, in one micro-batch (the token budget is their
tokens). The plan is the dry run's ``training`` items of this machine (``model.device=cpu``: the activations
counted by visplay_models/cpu_activations.py), unrounded. The measure: torch has no CPU max_memory_allocated, so
the update runs under ``torch.profiler`` with ``profile_memory=True``, which records every allocation (+bytes) and
free (-bytes) of torch's CPU allocator; the peak of their running sum, added to the bytes of the storages alive
before the update (weights, reference, AdamW moments, counted from the modules and the optimizer), is the peak of
live tensor bytes, what max_memory_allocated is on the GPU. Not RSS: RSS adds the interpreter, libraries and
glibc's retained free memory, and never goes down. A first update before the measured one loads the reference
and allocates AdamW's moments (the steady state the plan adds up). Issue 22's bar is within 25%. Both write
DIR/memory_check.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

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

# --- the CPU check: the same update, float32 on one core, peak live tensor bytes from the profiler -------------

# Qwen2.5-VL frames (the 3B's structure: GQA, SwiGLU, mrope, window + full-attention vision blocks) narrow and
# shallow enough that one update at the planner's bound takes seconds on one core.
CPU_SIZES = {
    "cpu-2l": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=4096, tie_word_embeddings=True, mrope_section=[8, 12, 12],
                   rope_theta=1000000.0, vision=dict(depth=2, hidden_size=128, intermediate_size=512, num_heads=2,
                                                     fullatt_block_indexes=[1])),
    "cpu-3l": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=3, num_attention_heads=8,
                   num_key_value_heads=2, vocab_size=16384, tie_word_embeddings=True, mrope_section=[8, 12, 12],
                   rope_theta=1000000.0, vision=dict(depth=2, hidden_size=256, intermediate_size=1024, num_heads=4,
                                                     fullatt_block_indexes=[1])),
    "cpu-4l": dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=6,
                   num_key_value_heads=2, vocab_size=8192, tie_word_embeddings=True, mrope_section=[8, 12, 12],
                   rope_theta=1000000.0, vision=dict(depth=4, hidden_size=192, intermediate_size=768, num_heads=3,
                                                     fullatt_block_indexes=[3])),
}
gpu_benchmark.SIZES.update(CPU_SIZES)

CPU_GROUP, CPU_RESPONSE = 4, 256  # rollouts per update and tokens per response of the CPU check


def cpu_overrides(recompute: bool, prompt_tokens: int) -> list[str]:
    """The recipe on one CPU process in float32, one update of CPU_GROUP rollouts at the planner's bound (a prompt
    of the allowance, a response of max_new_tokens) in one micro-batch: the token budget is exactly their tokens."""
    budget = CPU_GROUP * (prompt_tokens + CPU_RESPONSE)
    return ["model.device=cpu", "model.dtype=float32", "distributed.nproc=1", f"reasoner.group_size={CPU_GROUP}",
            f"reasoner.sampling.max_new_tokens={CPU_RESPONSE}", f"questioner.sampling.max_new_tokens={CPU_RESPONSE}",
            f"plugins.grpo.max_tokens_per_micro_batch={budget}",
            f"plugins.models.gradient_checkpointing={str(recompute).lower()}"]


def planned_gib(model: Path, gpu_memory: float) -> float:
    proc = subprocess.run([sys.executable, "-m", "visplay.cli", "reproduce", "qwen-vl-3b", "--dry-run", "--gpus", "1",
                           "--gpu-memory", str(gpu_memory), f"model.path={model}", *OVERRIDES],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r"^  training: .*total ([0-9.]+)$", proc.stdout + proc.stderr, re.M)
    if found is None:
        raise SystemExit(f"memory_check: no training total in the dry run:\n{(proc.stdout + proc.stderr)[-2000:]}")
    return float(found.group(1))


def planned_items(model: Path, extra: list[str]) -> dict[str, float]:
    """The dry run's ``training`` items of this machine, in bytes, unrounded: the same hooks ``--dry-run`` adds up
    (visplay.scale.plan.dry_run), called here because its text rounds to 0.01 GiB."""
    from visplay.config import load_recipe
    from visplay.context import RunContext
    from visplay.plugins import get_plugin_manager
    from visplay.scale.placement import plan_placement, training_processes
    from visplay.scale.plan import memory_table

    recipe = load_recipe("qwen-vl-3b", [f"model.path={model}", *OVERRIDES, *extra])
    ctx = RunContext(recipe=recipe, pm=get_plugin_manager(), run_dir=model.parent / "run")
    facts = ctx.hooks.model_facts()
    placement = plan_placement(ctx, 0)
    parts = ctx.hooks.footprint(facts, placement, training_processes(ctx, placement), 80.0)
    return {i.name: i.gib * GIB for i in memory_table(parts).get("training", [])}


def build(model: Path, device: str, extra: list[str]) -> tuple[Any, Any, Any]:
    """(recipe, policy, optimizer) as a run builds them: the models and GRPO plugins from the recipe."""
    from visplay.config import load_recipe
    from visplay.context import RunContext
    from visplay.plugins import get_plugin_manager

    recipe = load_recipe("qwen-vl-3b", [f"model.path={model}", f"model.device={device}", *OVERRIDES, *extra])
    ctx = RunContext(recipe=recipe, pm=get_plugin_manager(), run_dir=model.parent / "run")
    policy = ctx.hooks.load_policy("reasoner", None)
    return recipe, policy, ctx.hooks.make_optimizer("reasoner", policy)


def rollouts_for(prompts: list[Any], length: int) -> list[Any]:
    from visplay.types import Rollout

    return [Rollout(key=f"r{i}", group="g0", prompt=p, token_ids=[7 + (i + j) % 500 for j in range(length)],
                    old_logprobs=[], reward=float(i % 2)) for i, p in enumerate(prompts)]


def measure(model: Path, device: str) -> float:
    """One GRPO update of the recipe's largest micro-batch, built by the plugins from the recipe; peak GiB."""
    import torch

    recipe, policy, optimizer = build(model, device, [])
    prompts = gpu_benchmark.make_prompts(int(recipe.reasoner.group_size), seed=0, image_size=224)
    rollouts = rollouts_for(prompts, int(recipe.reasoner.sampling.max_new_tokens))
    optimizer.update(rollouts)  # warm-up: the reference and AdamW's moments, which the plan counts, are allocated
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    optimizer.update(rollouts)
    return gpu_benchmark.peak_memory_gib(device)


def prompts_at_allowance(policy: Any, count: int, tokens: int) -> list[Any]:
    """``count`` prompts (a 224 px random image each) whose encoded length is exactly ``tokens``, the planner's
    allowance (chat template + question + image tokens): the question is padded with one-token words."""
    from visplay.types import Prompt

    base = gpu_benchmark.make_prompts(count, seed=0, image_size=224)
    out = []
    for p in base:
        words = 0
        while True:
            prompt = Prompt(user=p.user + " a" * words, image=p.image)
            have = policy.sequence_lengths([prompt], [[]])[0]
            if have >= tokens:
                break
            words += tokens - have
        if have != tokens:
            raise SystemExit(f"memory_check: cannot pad a prompt to {tokens} tokens (got {have})")
        out.append(prompt)
    return out


def live_bytes(*objects: Any) -> int:
    """Bytes of the distinct tensor storages held by modules (parameters, gradients, buffers) and optimizers."""
    import torch

    seen: dict[int, int] = {}
    for obj in objects:
        tensors: list[Any] = []
        if isinstance(obj, torch.nn.Module):
            for t in obj.parameters():
                tensors += [t, t.grad] if t.grad is not None else [t]
            tensors += list(obj.buffers())
        else:  # a torch optimizer: its state's tensors
            tensors += [v for state in obj.state.values() for v in state.values() if torch.is_tensor(v)]
        for t in tensors:
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def measure_cpu(model: Path, extra: list[str]) -> dict[str, float]:
    """Peak live tensor bytes of one GRPO update on the CPU, in GiB: the storages alive before it (weights,
    reference, AdamW moments) plus the highest running sum of torch.profiler's allocation (+) and free (-) events
    during it (``profile_memory=True``: every allocation through torch's CPU allocator, as max_memory_allocated
    counts the CUDA caching allocator's). A first update before it allocates AdamW's moments and loads the
    reference, so the measured update holds the state the plan adds up."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    recipe, policy, optimizer = build(model, "cpu", extra)
    from visplay_models.facts import TEXT_TOKENS

    allowance = TEXT_TOKENS + 64  # 224 px: 8 x 8 merged 28-px patches (facts.image_tokens)
    rollouts = rollouts_for(prompts_at_allowance(policy, CPU_GROUP, allowance), CPU_RESPONSE)
    optimizer.update(rollouts)  # warm-up: AdamW moments, the reference model
    torch_opt = optimizer.optim
    # the profiler cannot subtract frees of blocks allocated before it started: the update's first act on the
    # gradients (zero_grad(set_to_none=True)) happens here, so none is freed inside the profiled window
    torch_opt.zero_grad(set_to_none=True)
    reference = policy._reference
    before = live_bytes(policy.model, *([reference] if reference is not None else []), torch_opt)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        optimizer.update(rollouts)
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    running = peak = 0
    for e in events:
        running += e.nbytes()
        peak = max(peak, running)
    return {"peak_gib": (before + peak) / GIB, "resident_gib": before / GIB, "update_gib": peak / GIB,
            "net_gib": running / GIB}


GIB = 1024**3


def check_cuda(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    rows = []
    for size in (args.sizes or "50m,3b-2l,3b-4l").split(","):
        folder = out / size / "model"
        gpu_benchmark.build_model_folder(size, folder, dtype="bfloat16", device="cpu", seed=0)
        plan = planned_gib(folder, args.gpu_memory)
        peak = one_update(args.device, folder, [])["peak_gib"]
        rows.append({"size": size, "plan_gib": plan, "peak_gib": peak, "ratio": peak / plan if plan else None})
    print("| config | plan GiB | measured peak GiB | measured / plan |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['plan_gib']:.2f} | {r['peak_gib']:.2f} | {r['ratio']:.2f} |")
    return rows


def check_cpu(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """Each CPU size with recomputation on and off: the plan of this machine (no GPU: placement cpu) against the
    profiler's peak, each update in a process of its own."""
    from visplay_models.facts import TEXT_TOKENS

    rows = []
    for size in (args.sizes or ",".join(CPU_SIZES)).split(","):
        folder = out / size / "model"
        gpu_benchmark.build_model_folder(size, folder, dtype="float32", device="cpu", seed=0)
        for recompute in (True, False):
            extra = cpu_overrides(recompute, TEXT_TOKENS + 64)
            items = planned_items(folder, extra)
            plan = sum(items.values()) / GIB
            got = one_update("cpu", folder, extra)
            rows.append({"size": size, "recompute": recompute, "plan_gib": plan, "plan_items": items, **got,
                         "ratio": got["peak_gib"] / plan})
    print("| config | recomputation | plan MiB | measured peak MiB (resident + update) | measured / plan |\n"
          "|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {'on' if r['recompute'] else 'off'} | {r['plan_gib'] * 1024:.1f} | "
              f"{r['peak_gib'] * 1024:.1f} ({r['resident_gib'] * 1024:.1f} + {r['update_gib'] * 1024:.1f}) | "
              f"{r['ratio']:.3f} |")
    for size in dict.fromkeys(r["size"] for r in rows):
        on, off = (next(r for r in rows if r["size"] == size and r["recompute"] is flag) for flag in (True, False))
        print(f"{size}: peak with / without recomputation {on['peak_gib'] / off['peak_gib']:.3f} measured, "
              f"{on['plan_gib'] / off['plan_gib']:.3f} planned")
    return rows


def one_update(device: str, folder: Path, extra: list[str]) -> dict[str, float]:
    proc = subprocess.run([sys.executable, __file__, "--device", device, "--one", str(folder),
                           *(f"--extra={e}" for e in extra)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"memory_check: the update of {folder.parent.name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (max_memory_allocated) or cpu (torch.profiler)")
    p.add_argument("--sizes", help="default: 50m,3b-2l,3b-4l on cuda, " + ",".join(CPU_SIZES) + " on cpu")
    p.add_argument("--gpu-memory", type=float, default=80.0)
    p.add_argument("--out", default="memory_check_out")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model folder in this process
    p.add_argument("--extra", action="append", default=[], help=argparse.SUPPRESS)  # its recipe overrides
    args = p.parse_args(argv)
    if args.one:
        got = measure_cpu(Path(args.one), args.extra) if args.device == "cpu" else {
            "peak_gib": measure(Path(args.one), args.device)}
        print(json.dumps(got))
        return 0
    out = Path(args.out).resolve()
    rows = check_cpu(args, out) if args.device == "cpu" else check_cuda(args, out)
    (out / "memory_check.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
