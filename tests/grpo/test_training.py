"""GRPO on the tiny model: learning is real, fresh processes agree bit for bit, optimizer state resumes exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.models import grpo_run, make_policy, prompts

from visplay.types import Rollout

TESTS = Path(__file__).resolve().parents[1]


def test_grpo_raises_a_verifiable_reward():
    rewards, _, policy, _ = grpo_run(steps=25, seed=0)
    start, end = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert start < 0.35, rewards
    assert end > 0.6 and end > start + 0.4, rewards


SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from support.models import grpo_run
rewards, tokens, policy, opt = grpo_run(steps=3, seed=11, n=4, max_new_tokens=6)
print(json.dumps({{"tokens": tokens, "sha": policy.weights_sha256()}}))
"""


def _fresh_process_run() -> dict:
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=str(TESTS))], capture_output=True, text=True,
                         env=env, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_fresh_processes_are_bit_identical():
    a, b = _fresh_process_run(), _fresh_process_run()
    assert a["tokens"] == b["tokens"]
    assert a["sha"] == b["sha"]
    assert len(a["tokens"]) == 3 and len(a["tokens"][0]) == 8


def test_optimizer_state_round_trip_resumes_exactly(tmp_path):
    _, _, straight, _ = grpo_run(steps=3, seed=5, n=4, max_new_tokens=4)
    _, _, policy, opt = grpo_run(steps=2, seed=5, n=4, max_new_tokens=4)
    policy.save(tmp_path / "state")
    hashes = opt.save(tmp_path / "state")
    assert set(hashes) == {"optimizer.json", "optimizer.safetensors"}

    # a fresh policy + optimizer, restored from disk, then the third step of the same run
    from support.models import digit_reward
    from visplay_grpo.optimizer import GRPOOptimizer

    from visplay.seeding import derive_seed
    from visplay.types import SamplingParams

    resumed = make_policy()
    resumed.load_weights(tmp_path / "state")
    opt2 = GRPOOptimizer(resumed, lr=1e-2, kl_coef=1e-2, micro_batch_size=16, update_batch_size=16,
                         seed=derive_seed(5, "grpo"))
    opt2.load(tmp_path / "state")
    ps = prompts()[:2]
    params = [SamplingParams(n=4, max_new_tokens=4, top_p=0.99, seed=derive_seed(5, 2, i)) for i in range(2)]
    groups = resumed.sampler().sample(ps, params)
    rollouts = [Rollout(f"p{i}/{g.sample_index}", f"p{i}", g.prompt, g.token_ids, g.logprobs,
                        digit_reward(resumed, g.token_ids)) for i, gs in enumerate(groups) for g in gs]
    opt2.update(rollouts)
    assert resumed.weights_sha256() == straight.weights_sha256()


def test_update_metrics_and_micro_batching_match():
    """Micro-batches accumulate to the same token-mean gradient as one big batch (up to rounding)."""
    from visplay_grpo.optimizer import GRPOOptimizer

    ps = prompts()
    rollouts = [Rollout(f"k{i}", f"g{i % 2}", ps[i % 3], [40 + i, 41, 42][: 1 + i % 3], [], float(i % 2))
                for i in range(6)]
    results = []
    for mb in (6, 2):
        policy = make_policy()
        opt = GRPOOptimizer(policy, lr=1e-3, micro_batch_size=mb)
        res = opt.update(rollouts)
        results.append((res, dict(policy.trainable_parameters())))
    (r1, p1), (r2, p2) = results
    for key in ("actor/pg_loss", "actor/kl", "actor/grad_norm", "actor/entropy", "actor/pg_clipfrac_higher",
                "actor/pg_clipfrac_lower", "actor/ppo_kl", "response_length/mean", "reward/mean"):
        assert key in r1.metrics and r1.metrics[key] == pytest.approx(r2.metrics[key], rel=1e-4, abs=1e-6), key
    assert all(torch.allclose(p1[n], p2[n], atol=1e-6) for n in p1)
    assert set(r1.advantages) == {r.key for r in rollouts}
    assert r1.metrics["actor/updates"] == 1.0


def test_update_batches_split_the_rollouts():
    from visplay_grpo.optimizer import GRPOOptimizer

    ps = prompts()
    rollouts = [Rollout(f"k{i}", "g", ps[0], [40, 41], [], float(i)) for i in range(4)]
    opt = GRPOOptimizer(make_policy(), lr=1e-3, update_batch_size=2)
    assert opt.update(rollouts).metrics["actor/updates"] == 2.0
    with pytest.raises(ValueError, match="no rollouts"):
        opt.update([])
