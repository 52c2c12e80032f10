"""Training memory (issue 22): chunked log-probs and activation recomputation give the plain path's numbers.

Each test computes log-probs, entropies and the gradients of a weighted sum of log-probs twice on the tiny model,
once the plain way (the whole (N, V) log-softmax, every activation held) and once the memory-saving way, and also
checks that the saving really happens (the head never sees more rows than a chunk; each decoder layer runs again in
the backward pass).
"""

from __future__ import annotations

import pytest
import torch
from support.models import count_decoder_layer_calls, make_policy, prompts, tiny_path
from visplay_models.forward import inner_model
from visplay_models.policy import load_policy

RESPONSES = [[10, 11, 12, 13, 14, 15, 16], [20, 21], [30, 31, 32, 33, 34]]  # 14 response tokens
LORA = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0,
        "target_modules": r".*model\.language_model.*\.(q_proj|v_proj)"}


def _stats(policy, *, temperature: float = 1.0):
    """(log-probs, entropies, {name: grad}) of one training forward/backward over the fixed batch."""
    policy.model.train()
    for _, p in policy.trainable_parameters():
        p.grad = None
    lps, ents = policy.forward_stats(prompts(), RESPONSES, grad=True, temperature=temperature, with_entropy=True)
    weights = [torch.linspace(-1.0, 1.0, len(r)) for r in RESPONSES]  # signed, so no term cancels by symmetry
    sum(((lp * w).sum() for lp, w in zip(lps, weights)), torch.zeros(())).backward()
    grads = {n: p.grad.detach().clone() for n, p in policy.trainable_parameters() if p.grad is not None}
    return [lp.detach() for lp in lps], [e.detach() for e in ents], grads


def _assert_same(a, b, atol: float = 1e-6):
    (lp_a, ent_a, g_a), (lp_b, ent_b, g_b) = a, b
    for x, y in zip(lp_a + ent_a, lp_b + ent_b):
        assert torch.allclose(x, y, atol=atol, rtol=1e-5), (x, y)
    assert g_a.keys() == g_b.keys() and g_a
    for name in g_a:
        assert torch.allclose(g_a[name], g_b[name], atol=atol, rtol=1e-4), name


def _head_rows(policy) -> list[int]:
    """Rows the head is called on, recorded by a forward hook (the recomputation calls it again)."""
    rows: list[int] = []
    inner_model(policy.model).lm_head.register_forward_pre_hook(lambda mod, args: rows.append(int(args[0].shape[0])))
    return rows


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_logprobs_equal_the_plain_path_values_and_gradients(temperature):
    plain = _stats(make_policy(), temperature=temperature)
    policy = make_policy()
    policy.logprob_chunk_tokens = 4  # 14 tokens: chunks of 4, 4, 4, 2
    rows = _head_rows(policy)
    chunked = _stats(policy, temperature=temperature)
    _assert_same(plain, chunked)
    assert max(rows) == 4 and rows[:4] == [4, 4, 4, 2]  # the (14, V) logits were never formed at once
    assert len(rows) == 8  # each chunk ran again in the backward pass (its logits were not kept)
    # without gradients (old and reference log-probs) the chunks run once, and give the same numbers
    with torch.no_grad():
        again = policy.logprobs(prompts(), RESPONSES, temperature=temperature)
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(again, plain[0]))


def test_chunk_larger_than_the_batch_is_one_chunk():
    policy = make_policy()
    policy.logprob_chunk_tokens = 1000
    rows = _head_rows(policy)
    _assert_same(_stats(make_policy()), _stats(policy))
    assert rows == [14, 14]


def test_chunk_size_is_validated():
    from visplay_models.forward import selected_logprobs

    with pytest.raises(ValueError, match="plugins.models.logprob_chunk_tokens must be >= 1"):
        selected_logprobs(torch.zeros(2, 4), torch.nn.Linear(4, 8), torch.zeros(2, dtype=torch.long), chunk_tokens=0)


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_gradient_checkpointing_gives_the_same_gradients(lora):
    path = tiny_path()
    plain_policy = load_policy(path, "reasoner", lora_cfg=lora, seed=1)
    policy = load_policy(path, "reasoner", lora_cfg=lora, seed=1, gradient_checkpointing=True)
    plain_calls, calls = count_decoder_layer_calls(plain_policy), count_decoder_layer_calls(policy)
    plain, recomputed = _stats(plain_policy), _stats(policy)
    _assert_same(plain, recomputed)
    layers = 2  # support.models.SMALL
    assert plain_calls[0] == layers and calls[0] == 2 * layers  # each layer ran again in the backward pass
    # evaluation (old / reference log-probs) recomputes nothing: checkpointing acts in training mode only
    policy.model.eval()
    with torch.no_grad():
        policy.logprobs(prompts(), RESPONSES)
    assert calls[0] == 3 * layers


def test_checkpointing_and_chunks_together_in_a_grpo_update():
    """The optimizer's update is the same with both savings on (loss, metrics and trained weights)."""
    from visplay_grpo.optimizer import GRPOOptimizer

    from visplay.types import Rollout

    ps = prompts()
    rollouts = [Rollout(f"k{i}", f"g{i % 2}", ps[i % 3], RESPONSES[i % 3], [], float(i % 2)) for i in range(6)]
    results = []
    for saving in (False, True):
        policy = load_policy(tiny_path(), "reasoner", seed=1, gradient_checkpointing=saving,
                             logprob_chunk_tokens=3 if saving else None)
        res = GRPOOptimizer(policy, lr=1e-3, micro_batch_size=4).update(rollouts)
        results.append((res.metrics, dict(policy.trainable_parameters())))
    (m1, p1), (m2, p2) = results
    for key in ("actor/loss", "actor/pg_loss", "actor/kl", "actor/grad_norm", "actor/entropy"):
        assert m1[key] == pytest.approx(m2[key], rel=1e-5, abs=1e-7), key
    assert all(torch.allclose(p1[n], p2[n], atol=1e-6) for n in p1)


def test_padding_head_calls_for_fsdp_changes_no_number():
    """Under FSDP every rank calls a sharded head as often as the busiest (min_chunks): the extra calls weigh 0."""
    from visplay_models.forward import selected_logprobs

    gen = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(8, 32)
    calls: list[int] = []
    head.register_forward_pre_hook(lambda mod, args: calls.append(int(args[0].shape[0])))
    targets = torch.randint(0, 32, (5,), generator=gen)
    results = []
    for min_chunks in (0, 6):
        hidden = torch.randn(5, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
        head.zero_grad()
        logp, ent = selected_logprobs(hidden, head, targets, chunk_tokens=2, with_entropy=True, min_chunks=min_chunks)
        logp.sum().backward()
        results.append((logp.detach(), ent, hidden.grad, head.weight.grad.clone()))
    # 3 chunks (2, 2, 1 rows), each run again in the backward pass; then 3 more of one row, likewise
    assert sorted(calls[:6]) == [1, 1, 2, 2, 2, 2] and sorted(calls[6:]) == [1] * 8 + [2] * 4
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-7)
