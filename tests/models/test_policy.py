"""HFPolicy and the hf sampler: parity, determinism, special tokens, checkpoints, loading errors, hooks."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from support.models import SMALL, make_policy, prompts, tiny_path
from visplay_models.policy import ModelLoadError, load_policy

from visplay.config import RecipeError
from visplay.types import SamplingParams

PARAMS = SamplingParams(n=3, temperature=1.0, top_p=0.99, max_new_tokens=12, seed=7)


@pytest.fixture(scope="module")
def policy():
    torch.set_num_threads(1)
    return make_policy()


def _flat(groups):
    return [g for gs in groups for g in gs]


def test_sampling_logprobs_match_teacher_forced(policy):
    ps = prompts()
    gens = _flat(policy.sampler().sample(ps, [PARAMS] * 3))
    assert len(gens) == 9 and [g.sample_index for g in gens[:3]] == [0, 1, 2]
    lps = policy.logprobs([g.prompt for g in gens], [g.token_ids for g in gens])  # one padded batch
    for g, lp in zip(gens, lps):
        assert len(g.logprobs) == len(g.token_ids) == lp.shape[0]
        assert torch.allclose(lp, torch.tensor(g.logprobs), atol=2e-5)
    # temperature-scaled convention: at T=0.7 the sampler's numbers equal logprobs(temperature=0.7)
    hot = SamplingParams(n=2, temperature=0.7, max_new_tokens=6, seed=3)
    [gs] = policy.sampler().sample(ps[:1], [hot])
    lps = policy.logprobs([g.prompt for g in gs], [g.token_ids for g in gs], temperature=0.7)
    assert all(torch.allclose(lp, torch.tensor(g.logprobs), atol=2e-5) for g, lp in zip(gs, lps))


def test_batched_logprobs_are_padding_aware(policy):
    ps = prompts()
    responses = [[10, 11, 12, 13, 14, 15, 16], [20, 21], [30, 31, 32, 33]]
    batched = policy.logprobs(ps, responses)
    for p, r, b in zip(ps, responses, batched):
        [single] = policy.logprobs([p], [r])
        assert torch.allclose(single, b, atol=1e-5)


def test_same_seed_same_tokens_regardless_of_batch(policy):
    ps = prompts()
    together = policy.sampler().sample(ps, [PARAMS] * 3)
    alone = policy.sampler().sample([ps[2]], [PARAMS])
    reordered = policy.sampler().sample([ps[2], ps[0]], [PARAMS, PARAMS])
    ids = lambda gs: [g.token_ids for g in gs]  # noqa: E731
    assert ids(alone[0]) == ids(together[2]) == ids(reordered[0])
    assert ids(reordered[1]) == ids(together[0])
    other = policy.sampler().sample([ps[2]], [SamplingParams(**{**PARAMS.__dict__, "seed": 8})])
    assert ids(other[0]) != ids(alone[0])
    assert len({tuple(t) for t in ids(alone[0])}) == 3  # the n samples differ from each other


def test_special_tokens_never_sampled_and_im_end_stops(policy):
    proc = policy.processor
    gens = _flat(policy.sampler().sample(prompts(), [SamplingParams(n=4, max_new_tokens=24, seed=s) for s in
                                                      range(3)]))
    forbidden = set(proc.special_ids) - {proc.im_end_id}
    for g in gens:
        assert not forbidden & set(g.token_ids)
        assert proc.im_end_id not in g.token_ids[:-1]
        assert (g.finish_reason == "stop") == (g.token_ids[-1] == proc.im_end_id)
        assert "<|im_end|>" not in g.text
    # Bias the head towards <|im_end|> and <|image_pad|>: it must stop at once and never emit the image pad.
    with torch.no_grad():
        head = policy.model.lm_head.weight
        saved = head.clone()
        head[proc.im_end_id] += 50 * head[proc.im_end_id].sign()
        head[proc.image_token_id] += 100 * head[proc.image_token_id].sign()
    try:
        [gs] = policy.sampler().sample(prompts()[:1], [SamplingParams(n=2, max_new_tokens=8, seed=0)])
        assert all(g.token_ids == [proc.im_end_id] and g.finish_reason == "stop" and g.text == "" for g in gs)
    finally:
        with torch.no_grad():
            head.copy_(saved)


def test_greedy_is_argmax_and_seed_free(policy):
    greedy = [SamplingParams(n=2, temperature=0.0, max_new_tokens=8, seed=s) for s in (1, 2)]
    a, b = policy.sampler().sample(prompts()[:1] * 2, greedy)
    assert a[0].token_ids == a[1].token_ids == b[0].token_ids


def test_top_k_one_equals_greedy(policy):
    [k1] = policy.sampler().sample(prompts()[1:2], [SamplingParams(n=1, top_k=1, max_new_tokens=8, seed=5)])
    [g] = policy.sampler().sample(prompts()[1:2], [SamplingParams(n=1, temperature=0.0, max_new_tokens=8)])
    assert k1[0].token_ids == g[0].token_ids


def test_checkpoint_round_trip_reproduces_logprobs_exactly(policy, tmp_path):
    ps = prompts()
    responses = [[40, 41, 42], [50, 51, 52, 53], [60]]
    before = policy.logprobs(ps, responses)
    hashes = policy.save(tmp_path / "ckpt")
    assert "model.safetensors" in hashes and all(len(h) == 64 for h in hashes.values())
    assert not list((tmp_path / "ckpt").glob("*.bin"))
    reloaded = load_policy(tmp_path / "ckpt", "reasoner")
    after = reloaded.logprobs(ps, responses)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert reloaded.weights_sha256() == policy.weights_sha256()


def test_load_weights_keeps_reference(tmp_path):
    trained = make_policy()
    with torch.no_grad():
        for _, p in trained.trainable_parameters():
            p.add_(0.01)
    trained.save(tmp_path / "state")
    fresh = make_policy()
    ref_before = fresh.logprobs(prompts(), [[50, 60, 70]] * 3, reference=True)
    fresh.load_weights(tmp_path / "state")
    assert fresh.weights_sha256() == trained.weights_sha256()
    ref_after = fresh.logprobs(prompts(), [[50, 60, 70]] * 3, reference=True)
    assert all(torch.equal(a, b) for a, b in zip(ref_before, ref_after))


def test_bad_model_paths_give_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_policy(tmp_path / "missing", "reasoner")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_policy(tmp_path / "empty", "reasoner")
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelLoadError, match="unsupported architecture.*llama"):
        load_policy(llama, "reasoner")
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_path(), pickled)
    (pickled / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_policy(pickled, "reasoner")
    with pytest.raises(ModelLoadError, match="model.dtype"):
        load_policy(tiny_path(), "reasoner", dtype="float8")


def _ctx(tmp_path, *overrides):
    from visplay_grpo import plugin as grpo_plugin
    from visplay_models import plugin as models_plugin

    from visplay.config import load_recipe
    from visplay.context import RunContext
    from visplay.plugins import get_plugin_manager

    tiny = [f"plugins.models.tiny.{k}={v}" for k, v in SMALL.items()]
    recipe = load_recipe("tiny", [*tiny, *overrides], plugins=(models_plugin, grpo_plugin))
    pm = get_plugin_manager(autoload=False, extra=(models_plugin, grpo_plugin))
    return RunContext(recipe=recipe, pm=pm, run_dir=tmp_path)


def test_hooks_load_policy_and_sampler(tmp_path):
    ctx = _ctx(tmp_path)
    policy = ctx.hooks.load_policy(role="questioner", init_from=None)
    sampler = ctx.hooks.make_sampler(role="questioner", policy=policy)
    [gs] = sampler.sample(prompts()[:1], [SamplingParams(n=2, max_new_tokens=4, seed=1)])
    assert len(gs) == 2
    optimizer = ctx.hooks.make_optimizer(role="questioner", policy=policy)
    assert optimizer.kl_coef == pytest.approx(1e-2) and optimizer.clip_high == pytest.approx(0.3)
    policy.save(tmp_path / "v1")
    again = ctx.hooks.load_policy(role="questioner", init_from=str(tmp_path / "v1"))
    assert again.weights_sha256() == policy.weights_sha256()
    import dataclasses

    from omegaconf import OmegaConf
    from visplay_models.plugin import visplay_load_policy, visplay_make_sampler

    # names only other plugins serve (a recipe naming them loads only with those plugins installed)
    other = dataclasses.replace(ctx, recipe=OmegaConf.merge(ctx.recipe, {
        "model": {"backend": "elsewhere"}, "sampler": {"questioner": "vllm"}, "optimizer": {"name": "sgd"}}))
    assert visplay_load_policy(other, "questioner", None) is None
    assert visplay_make_sampler(other, "questioner", policy) is None


def test_hf_backend_requires_path(tmp_path):
    ctx = _ctx(tmp_path, "model.backend=hf")
    with pytest.raises(Exception, match="model.path"):
        ctx.hooks.load_policy(role="reasoner", init_from=None)


def test_grpo_plugin_options_are_validated(tmp_path):
    ctx = _ctx(tmp_path, "plugins.grpo.old_logprobs=sampler")
    policy = ctx.hooks.load_policy(role="reasoner", init_from=None)
    assert ctx.hooks.make_optimizer(role="reasoner", policy=policy).old_logprobs == "sampler"
    with pytest.raises(RecipeError, match=r"plugins\.grpo\.old_logprob'; did you mean 'plugins\.grpo\.old_logprobs"):
        _ctx(tmp_path, "plugins.grpo.old_logprob=sampler")  # refused when the recipe loads
    with pytest.raises(RecipeError, match=r"plugins\.grpo\.old_logprobs': must be one of recompute, sampler"):
        _ctx(tmp_path, "plugins.grpo.old_logprobs=maybe")
