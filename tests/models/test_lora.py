"""LoRA through peft: the disabled adapter is the base model, training touches only adapters, merged export."""

from __future__ import annotations

import torch
from support.models import make_policy, prompts
from visplay_models.policy import load_policy
from visplay_models.sft import sft_train

RESPONSES = [[40, 41, 42, 43], [50, 51], [60, 61, 62]]


def _train(policy):
    pairs = [(p, "The answer is \\boxed{3}.") for p in prompts()]
    return sft_train(policy, pairs, steps=3, lr=5e-2, batch_size=2, seed=0)


def test_lora_reference_is_base_and_only_adapters_train(tmp_path):
    base = make_policy()
    lora = make_policy(lora={})
    assert lora.lora and all("lora_" in n for n, _ in lora.trainable_parameters())
    base_lp = base.logprobs(prompts(), RESPONSES)
    frozen = {n: p.detach().clone() for n, p in lora.model.named_parameters() if "lora_" not in n}
    adapters = {n: p.detach().clone() for n, p in lora.trainable_parameters()}
    losses = _train(lora)
    assert losses[-1] < losses[0]
    for n, p in lora.model.named_parameters():
        if "lora_" in n:
            continue
        assert torch.equal(p, frozen[n]), n
    assert any(not torch.equal(p, adapters[n]) for n, p in lora.trainable_parameters())
    ref_lp = lora.logprobs(prompts(), RESPONSES, reference=True)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=0) for a, b in zip(ref_lp, base_lp))
    trained_lp = lora.logprobs(prompts(), RESPONSES)
    assert not all(torch.allclose(a, b, atol=1e-4) for a, b in zip(trained_lp, base_lp))

    # merged export: an ordinary model folder computing the same function (up to rounding of the merge)
    lora.save(tmp_path / "export")
    merged = load_policy(tmp_path / "export", "reasoner")
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(merged.logprobs(prompts(), RESPONSES), trained_lp))
    # exact resume: the adapter reloaded onto the same base reproduces the trained log-probs bit for bit
    fresh = make_policy(lora={})
    fresh.load_weights(tmp_path / "export")
    assert fresh.weights_sha256() == lora.weights_sha256()
    assert all(torch.equal(a, b) for a, b in zip(fresh.logprobs(prompts(), RESPONSES), trained_lp))


def test_grpo_with_lora_updates_adapters_against_the_disabled_adapter():
    from support.models import grpo_run

    rewards, _, policy, opt = grpo_run(steps=3, seed=2, n=4, max_new_tokens=4, lora={})
    assert all("lora_" in n for n in opt.names)
    lp = policy.logprobs(prompts(), RESPONSES)
    ref = policy.logprobs(prompts(), RESPONSES, reference=True)
    assert not all(torch.equal(a, b) for a, b in zip(lp, ref))  # trained adapters moved away from the reference
