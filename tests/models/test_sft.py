"""sft_train: the cold-start fine-tuning the games plugin uses."""

from __future__ import annotations

import pytest
import torch
from support.models import make_policy, prompts
from visplay_models.sft import sft_train

from visplay.types import SamplingParams


def test_sft_learns_targets_and_is_deterministic():
    pairs = [(prompts()[0], "<question>How many tiles?</question>"), (prompts()[1], "\\boxed{5}")]
    a, b = make_policy(), make_policy()
    losses = sft_train(a, pairs, steps=50, lr=1e-2, batch_size=2, seed=3)
    assert sft_train(b, pairs, steps=50, lr=1e-2, batch_size=2, seed=3) == losses
    assert a.weights_sha256() == b.weights_sha256()
    assert losses[-1] < 0.02 * losses[0]
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=24)
    outs = a.sampler().sample([p for p, _ in pairs], [greedy, greedy])
    assert [gs[0].text for gs in outs] == [t for _, t in pairs]
    assert all(gs[0].finish_reason == "stop" for gs in outs)


def test_sft_rejects_bad_arguments():
    policy = make_policy()
    with pytest.raises(ValueError, match="no .prompt, target. pairs"):
        sft_train(policy, [], steps=1, lr=1e-3, batch_size=1, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        sft_train(policy, [(prompts()[0], "x")], steps=1, lr=1e-3, batch_size=0, seed=0)
    assert torch.is_tensor(next(policy.model.parameters()))
