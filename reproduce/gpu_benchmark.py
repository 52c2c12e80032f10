"""GPU benchmark: sampling tokens/s per GPU, GRPO step time and peak memory on the exact Qwen2.5-VL-3B architecture.

Nothing is downloaded: the model is the public Qwen2.5-VL-3B-Instruct config (36 layers of width 2048, GQA 16/2,
a 32-block vision tower, 3,754,622,976 parameters) initialised at random from a seed, with the embedded tiny
tokenizer (token ids only decide which ids are special; every weight shape is the real model's). Random weights
rarely emit the stop token, so every sample runs to ``--max-new-tokens``: the timings are for full-length samples.

    python reproduce/gpu_benchmark.py --size 3b --device cuda --sampler vllm      # on one GPU
    python reproduce/gpu_benchmark.py --size tiny --device cpu --batch 2 --n 2     # the CPU smoke test

Printed beside EasyR1's published figures for the 3B model on 8 x H100 (the paper's trainer; EasyR1 v0.3.2,
assets/baselines.md, "Performance Baselines", Qwen2.5-VL-3B, AMP, micro-batches 1 / 2, vLLM TP 2): throughput
1800 tokens/s per GPU, 120 s per step, peak VRAM 54 GB. EasyR1's throughput is its metric ``perf/throughput``
(verl/trainer/metrics.py, ``compute_throughout_metrics``): the step's prompt + response tokens (the attention
mask's sum, ``global_token_num``) / (the whole step's wall time x GPUs), sampling included. This script's
comparable figure is its own rollouts' prompt + response tokens / (sampling time + GRPO step time), one GPU. An
EasyR1 step is ``rollout_batch_size`` 512 prompts x ``rollout.n`` 5 samples over 8 GPUs (examples/config.yaml:
320 rollouts per GPU), so this script also projects its own per-GPU step time to that batch; the projection
assumes linear scaling. EasyR1's 8-GPU run shards the training state 8 ways (FSDP, offload of the reference), so
its peak VRAM is not comparable with one GPU's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# EasyR1 v0.3.2 assets/baselines.md, 3B on 8 x H100 80GB (AMP); rollouts per GPU from examples/config.yaml.
EASYR1 = {"version": "v0.3.2", "throughput_per_gpu": 1800.0, "step_s": 120.0, "peak_vram_gb": 54.0,
          "rollouts_per_gpu": 512 * 5 / 8}

# Qwen/Qwen2.5-VL-3B-Instruct config.json facts; "50m" and "tiny" keep the structure with small widths (CPU runs).
SIZES = {
    "3b": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
               num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True, mrope_section=[16, 24, 24],
               rope_theta=1000000.0, vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                                                 fullatt_block_indexes=[7, 15, 23, 31])),
    "50m": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                num_key_value_heads=4, vocab_size=1024, tie_word_embeddings=True, mrope_section=[8, 12, 12],
                rope_theta=1000000.0, vision=dict(depth=4, hidden_size=256, intermediate_size=1024, num_heads=4,
                                                  fullatt_block_indexes=[3])),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, vocab_size=1024, tie_word_embeddings=True, mrope_section=[4, 6, 6],
                 rope_theta=1000000.0, vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=1,
                                                   fullatt_block_indexes=[1])),
}


def architecture_config(size: str) -> Any:
    """The transformers Qwen2_5_VLConfig of ``size`` with the tiny tokenizer's special-token ids."""
    from transformers import Qwen2_5_VLConfig
    from visplay_models.tiny import SPECIAL_IDS

    s = SIZES[size]
    text = dict(
        vocab_size=s["vocab_size"], hidden_size=s["hidden_size"], intermediate_size=s["intermediate_size"],
        num_hidden_layers=s["num_hidden_layers"], num_attention_heads=s["num_attention_heads"],
        num_key_value_heads=s["num_key_value_heads"], max_position_embeddings=128000, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": s["rope_theta"], "mrope_section": s["mrope_section"]},
        bos_token_id=SPECIAL_IDS["<|endoftext|>"], eos_token_id=SPECIAL_IDS["<|im_end|>"],
        pad_token_id=SPECIAL_IDS["<|endoftext|>"], tie_word_embeddings=s["tie_word_embeddings"],
    )
    vision = dict(s["vision"], out_hidden_size=s["hidden_size"], window_size=112, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, in_chans=3, hidden_act="silu")
    return Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, tie_word_embeddings=s["tie_word_embeddings"],
        image_token_id=SPECIAL_IDS["<|image_pad|>"], video_token_id=SPECIAL_IDS["<|video_pad|>"],
        vision_start_token_id=SPECIAL_IDS["<|vision_start|>"], vision_end_token_id=SPECIAL_IDS["<|vision_end|>"],
    )


def build_model_folder(size: str, folder: Path, *, dtype: str, device: str, seed: int) -> int:
    """Write a randomly initialised model folder (weights, tiny tokenizer, image processor); return #params."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    from visplay_models.policy import DTYPES
    from visplay_models.processor import default_image_processor
    from visplay_models.tiny import SPECIAL_IDS, train_tokenizer

    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration._from_config(architecture_config(size), dtype=DTYPES[dtype])
    model.generation_config.eos_token_id = SPECIAL_IDS["<|im_end|>"]
    model.save_pretrained(folder, safe_serialization=True)
    train_tokenizer(1024).save_pretrained(folder)
    default_image_processor().save_pretrained(folder)
    count = sum(p.numel() for p in model.parameters())
    del model
    return count


# --- measurements ------------------------------------------------------------------------------------------------


class Clock:
    """Wall time with device synchronisation (CUDA kernels run asynchronously)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()


def peak_memory_gib(device: str) -> float:
    """Peak CUDA memory allocated, or the process's peak RSS on CPU."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 1024**3
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def make_prompts(batch: int, seed: int, image_size: int) -> list[Any]:
    import numpy as np
    from PIL import Image

    from visplay.types import ImageRecord, Prompt

    rng = np.random.default_rng(seed)
    out = []
    for i in range(batch):
        pixels = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
        out.append(Prompt(user="Ask one hard question about this image.",
                          image=ImageRecord(f"bench{i}", Image.fromarray(pixels), "benchmark")))
    return out


def make_sampler(kind: str, policy: Any, args: argparse.Namespace) -> Any:
    if kind == "hf":
        return policy.sampler()
    from visplay_vllm.engine import start_engine
    from visplay_vllm.plugin import forbidden_token_ids
    from visplay_vllm.sampler import VllmSampler

    engine = start_engine("benchmark", policy, leader=True, forbidden=forbidden_token_ids(policy), dtype=args.dtype,
                          max_model_len=args.max_model_len, enforce_eager=args.device == "cpu", seed=args.seed,
                          gpu_memory_utilization=args.gpu_memory_utilization)
    engine.loaded_tag = policy.weights_sha256()
    return VllmSampler(engine, policy)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the model, sample, run GRPO steps; return the measurements."""
    import torch
    from visplay_grpo.optimizer import GRPOOptimizer
    from visplay_models.policy import load_policy

    from visplay.seeding import derive_seed
    from visplay.types import Rollout, SamplingParams

    torch.set_num_threads(args.threads)
    clock = Clock(args.device)
    folder = Path(args.keep_model) if args.keep_model else Path(tempfile.mkdtemp(prefix=f"visplay-bench-{args.size}-"))
    params = build_model_folder(args.size, folder, dtype=args.dtype, device=args.device, seed=args.seed)
    policy = load_policy(folder, "questioner", dtype=args.dtype, device=args.device, keep_reference=True)
    sampler = make_sampler(args.sampler, policy, args)
    prompts = make_prompts(args.batch, args.seed, args.image_size)
    sp = [SamplingParams(n=args.n, temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens,
                         seed=derive_seed(args.seed, "bench", i)) for i in range(args.batch)]
    sampler.sample(prompts[:1], [SamplingParams(n=1, max_new_tokens=2, seed=0)])  # warm-up (kernels, caches)
    start = clock.now()
    gens = sampler.sample(prompts, sp)
    sample_s = clock.now() - start
    tokens = sum(len(g.token_ids) for group in gens for g in group)
    opt = GRPOOptimizer(policy, lr=1e-6, micro_batch_size=args.micro_batch_size, kl_coef=1e-2,
                        seed=derive_seed(args.seed, "bench", "grpo"))
    rng = torch.Generator().manual_seed(args.seed)
    rollouts = [Rollout(key=f"p{i}/g{j}", group=f"p{i}", prompt=g.prompt, token_ids=g.token_ids,
                        old_logprobs=g.logprobs, reward=float(torch.rand((), generator=rng)))
                for i, group in enumerate(gens) for j, g in enumerate(group)]
    step_times = []
    for _ in range(args.steps):
        start = clock.now()
        opt.update(rollouts)
        step_times.append(clock.now() - start)
    step_s = min(step_times) if step_times else float("nan")  # --steps 0: sampling only
    push_s = time_push(sampler, policy, clock) if args.sampler == "vllm" else float("nan")
    update = update_throughput(policy, rollouts, step_s, params, args)
    tps = tokens / sample_s
    per_rollout = step_s / len(rollouts)
    projected = EASYR1["rollouts_per_gpu"] * (tokens / len(rollouts)) / tps + EASYR1["rollouts_per_gpu"] * per_rollout
    # EasyR1's perf/throughput: the step's prompt + response tokens / (step wall time x GPUs); one GPU here.
    step_throughput = update["update_tokens"] / (sample_s + step_s) if step_s == step_s else float("nan")
    return {
        "size": args.size, "device": args.device, "device_name": device_name(args.device), "dtype": args.dtype,
        "sampler": args.sampler, "parameters": params, "batch": args.batch, "n": args.n,
        "max_new_tokens": args.max_new_tokens, "sampled_tokens": tokens, "sampling_s": sample_s,
        "tokens_per_s_per_gpu": tps, "grpo_step_s": step_s, "grpo_rollouts": len(rollouts),
        "projected_easyr1_step_s": projected, "peak_memory_gib": peak_memory_gib(args.device),
        "weight_push_s": push_s, **update, "step_throughput_per_gpu": step_throughput, "easyr1": EASYR1,
    }


def time_push(sampler: Any, policy: Any, clock: Clock) -> float:
    """Seconds for one weight push after an update: gather the state, write it to shared memory, every engine
    worker loads it (visplay_vllm.engine.VllmEngine.push), caches reset."""
    sampler.refresh()
    start = clock.now()
    sampler.push_if_needed()
    return clock.now() - start


# Dense bf16 peak of one GPU (vendor datasheets, without sparsity), for MFU; --peak-tflops overrides.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "H800": 989.0, "B200": 2250.0}


def update_throughput(policy: Any, rollouts: list[Any], step_s: float, params: int,
                      args: argparse.Namespace) -> dict[str, float]:
    """GRPO update tokens/s (prompt + response tokens of the step's rollouts) and MFU.

    FLOPs per token ~ 2 x parameters per forward pass (the 6N rule: forward 2N, backward 4N); a GRPO step runs the
    old-log-prob and reference forwards (2N + 2N) and the trained forward + backward (6N): 10N per token.
    """
    tokens = sum(len(policy.processor.encode(r.prompt).input_ids) + len(r.token_ids) for r in rollouts)
    tps = tokens / step_s if step_s == step_s and step_s > 0 else float("nan")
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in device_name(args.device)), 0.0)
    mfu = 10 * params * tps / (peak * 1e12) if peak else float("nan")
    return {"update_tokens": tokens, "update_tokens_per_s": tps, "mfu": mfu, "peak_tflops": peak}


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return platform.processor() or platform.machine()


def report(r: dict[str, Any]) -> str:
    """The measurements beside EasyR1's 3B-on-8xH100 figures."""
    e = r["easyr1"]
    rows = [
        ("step throughput, tokens/s per GPU (EasyR1's perf/throughput)", f"{r['step_throughput_per_gpu']:.1f}",
         f"{e['throughput_per_gpu']:.0f}"),
        ("sampling tokens/s per GPU (sampled tokens / sampling time)", f"{r['tokens_per_s_per_gpu']:.1f}", "-"),
        (f"GRPO step, {r['grpo_rollouts']} rollouts (s)", f"{r['grpo_step_s']:.2f}", "-"),
        (f"step projected to {e['rollouts_per_gpu']:.0f} rollouts/GPU (s)", f"{r['projected_easyr1_step_s']:.1f}",
         f"{e['step_s']:.0f}"),
        ("GRPO update tokens/s (prompt + response)", f"{r['update_tokens_per_s']:.1f}", "-"),
        (f"MFU (10N FLOPs/token, peak {r['peak_tflops']:g} TFLOPs)", f"{r['mfu']:.3f}", "-"),
        ("weight push (s)", f"{r['weight_push_s']:.2f}", "-"),
        ("peak memory (GiB; EasyR1's is 1 of 8 sharded GPUs, in GB)", f"{r['peak_memory_gib']:.2f}",
         f"{e['peak_vram_gb']:.0f}"),
    ]
    head = (f"Qwen2.5-VL architecture '{r['size']}' ({r['parameters']:,} parameters, random weights), {r['dtype']}, "
            f"sampler {r['sampler']}, on {r['device']} ({r['device_name']}); batch {r['batch']} x n {r['n']} x "
            f"{r['max_new_tokens']} new tokens")
    width = max(len(name) for name, _, _ in rows)
    lines = [head, f"{'metric':<{width}}  {'this run':>12}  {'EasyR1 ' + e['version'] + ' 3B, 8xH100':>25}"]
    lines += [f"{name:<{width}}  {ours:>12}  {theirs:>25}" for name, ours, theirs in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="3b")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    p.add_argument("--sampler", choices=["hf", "vllm"], default="hf")
    p.add_argument("--batch", type=int, default=16, help="prompts (one image each)")
    p.add_argument("--n", type=int, default=8, help="samples per prompt (the paper's G)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--image-size", type=int, default=224, help="side of the random square images (paper: 224)")
    p.add_argument("--steps", type=int, default=2, help="GRPO steps timed (the fastest is reported; 0: sampling only)")
    p.add_argument("--micro-batch-size", type=int, default=4)
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peak-tflops", type=float, default=0.0, help="the GPU's dense bf16 peak for MFU (default: by name)")
    p.add_argument("--keep-model", help="write the random model folder here and keep it (for gpu_check's run)")
    p.add_argument("--json", help="also write the measurements to this file")
    args = p.parse_args(argv)
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    result = run(args)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
