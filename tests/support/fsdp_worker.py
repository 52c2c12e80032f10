"""Worker for tests/scale/test_fsdp_policy.py: the HF policy and the GRPO optimizer under FSDP (issue 14).

    python tests/support/fsdp_worker.py OUT_DIR CACHE_DIR                                   # one process
    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/support/fsdp_worker.py OUT_DIR CACHE_DIR
    ... OUT_DIR CACHE_DIR images,checkpointing,chunks,budget   # memory savings of issue 22 (any subset)

Loads the tiny policy with ``fsdp=True`` (sharded model and reference under torchrun), runs 2 GRPO updates on 5
rollouts (shards of 3 and 2 with micro-batch 2: rank 1 runs a zero-weighted padding micro-batch, and a padding
forward for the old/reference log-probs), saves policy and optimizer, reloads both into a fresh sharded policy and
runs one more update on each copy. Each rank also builds the tiny model into a cache of its own (the folder's
files are reported). Rank 0 writes OUT_DIR/result.json and OUT_DIR/weights.safetensors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.scale import SMALL_TINY, fixed_batch  # noqa: E402

from visplay.scale import distributed as dist  # noqa: E402

MEMORY = set(sys.argv[3].split(",")) if len(sys.argv) > 3 else set()  # of images, checkpointing, chunks, budget


def load(cache_dir: Path):
    from visplay_models.options import TinyModelConfig
    from visplay_models.policy import load_policy
    from visplay_models.tiny import build_tiny_model

    path = build_tiny_model(TinyModelConfig(**SMALL_TINY), seed=0, cache_dir=cache_dir)
    return load_policy(path, "reasoner", keep_reference=True, fsdp=True, gradient_checkpointing="checkpointing" in MEMORY,
                       logprob_chunk_tokens=5 if "chunks" in MEMORY else None)


def optimizer(policy):
    from visplay_grpo.optimizer import GRPOOptimizer

    return GRPOOptimizer(policy, lr=1e-3, micro_batch_size=2, kl_coef=0.01, seed=0,
                         max_tokens_per_micro_batch=60 if "budget" in MEMORY else None)


def rollouts():
    """Five rollouts; with ``images`` every prompt has one (VisPlay's always do): under FSDP a forward whose rows
    have no image skips the vision tower's all-gathers, so ranks must not differ in that."""
    import dataclasses

    from visplay.types import Rollout

    batch = fixed_batch(6)[:5]
    picture = batch[0][0].image
    return [Rollout(key=f"r{i}", group=f"g{i // 3}", token_ids=r, old_logprobs=[], reward=a,
                    prompt=dataclasses.replace(p, image=p.image or picture) if "images" in MEMORY else p)
            for i, (p, r, a) in enumerate(batch)]


def main(out_dir: str, cache_dir: str) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dist.init_distributed("gloo", "cpu")
    out, rank = Path(out_dir), dist.rank()
    # a cold cache under torchrun: every rank builds the tiny model folder itself (transformers' save_pretrained
    # writes on rank 0 only once a process group exists); each folder must be complete
    from visplay_models.options import TinyModelConfig
    from visplay_models.tiny import build_tiny_model

    fresh = build_tiny_model(TinyModelConfig(**SMALL_TINY), seed=0, cache_dir=out / "fresh" / f"rank{rank}")
    built = dist.all_gather_objects(sorted(p.name for p in fresh.iterdir()))
    policy = load(Path(cache_dir))
    opt = optimizer(policy)
    losses = [opt.update(rollouts()).metrics["actor/loss"] for _ in range(2)]
    trained = policy.weights_sha256()
    mine = out / f"rank{rank}"
    policy.save(mine / "model")
    opt.save(mine / "optimizer")
    again = load(Path(cache_dir))
    again.load_weights(mine / "model")
    reloaded = again.weights_sha256()
    opt_again = optimizer(again)
    opt_again.load(mine / "optimizer")
    opt.update(rollouts())
    opt_again.update(rollouts())
    hashes = dist.all_gather_objects([trained, reloaded, policy.weights_sha256(), again.weights_sha256()])
    full = {k: v.detach().clone() for k, v in policy.full_state_dict().items()}
    if dist.is_rank0():
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in full.items()}, str(out / "weights.safetensors"))
        (out / "result.json").write_text(json.dumps({"world": dist.world_size(), "losses": losses,
                                                     "sharded": policy.sharded, "hashes": hashes,
                                                     "built": built}))
    dist.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
