"""`visplay eval` with the vLLM sampler (``sampler.reasoner=vllm``, issue 23's "generation at speed"): the same
responses and verdicts as the HF backend's greedy evaluation of the same tiny model on the same benchmark files.

Runs in the vLLM environment (.ci/vllm_env.sh); both evaluations go through the CLI, in this process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm.entrypoints.llm", reason="needs the vLLM environment (.ci/vllm_env.sh)")
sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).resolve().parents[1])]  # vllm_fixtures, support
from support.eval import write_benchmarks  # noqa: E402
from vllm_fixtures import SMALL  # noqa: E402

from visplay.cli import main  # noqa: E402
from visplay.log.runlog import RunLog  # noqa: E402

pytestmark = pytest.mark.vllm
BENCHMARKS = "mmmu,mmstar,hallusionbench"


def _eval(tmp_path: Path, model: Path, data: Path, name: str, *overrides: str) -> list[dict]:
    db = tmp_path / f"{name}.db"
    args = ["eval", str(model), "--benchmarks", BENCHMARKS, "--data", str(data), "--db", str(db), "-q",
            "eval.max_new_tokens=12", *overrides]
    assert main(args) == 0
    with RunLog(db, readonly=True) as log:
        return log.rows("eval_items", order_by="key")


def test_eval_with_the_vllm_sampler_gives_the_hf_backends_responses_and_verdicts(tmp_path, monkeypatch):
    import torch
    from visplay_models.options import TinyModelConfig
    from visplay_models.tiny import build_tiny_model
    from visplay_vllm.plugin import shutdown_engines

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    model = build_tiny_model(TinyModelConfig(**SMALL), seed=0, cache_dir=tmp_path / "tiny")
    data = write_benchmarks(tmp_path / "bench")
    from visplay_vllm import engine

    batches: list[int] = []  # requests per vLLM generate call: the evaluation ran on the engine, batched
    generate = engine.VllmEngine.generate
    monkeypatch.setattr(engine.VllmEngine, "generate",
                        lambda self, requests, params: batches.append(len(requests)) or generate(self, requests, params))
    hf = _eval(tmp_path, model, data, "hf", "sampler.reasoner=hf")
    assert batches == []
    try:
        vllm = _eval(tmp_path, model, data, "vllm", "sampler.reasoner=vllm", "plugins.vllm.max_model_len=512")
    finally:
        shutdown_engines()
    assert len(hf) == len(vllm) > 0
    assert sum(batches) == len(vllm) and max(batches) > 1, batches
    keys = ("key", "benchmark", "prompt_user", "response", "finish_reason", "extracted", "correct", "reason")
    for a, b in zip(hf, vllm):
        assert {k: a.get(k) for k in keys} == {k: b.get(k) for k in keys}, a["key"]
    assert any(r["response"] for r in hf)  # the tiny model said something on every benchmark
