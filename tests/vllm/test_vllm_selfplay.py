"""A tiny self-play iteration with both roles sampled by vLLM engines (sampler.questioner/reasoner = vllm): the
default tiny Qwen2.5-VL, and each other tiny family vLLM runs (plugins.models.tiny.architecture)."""

from __future__ import annotations

import pytest

pytest.importorskip("vllm.entrypoints.llm", reason="needs the vLLM environment (.ci/vllm_env.sh)")
engine = pytest.importorskip("visplay.loop.engine")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from visplay.config import load_recipe  # noqa: E402
from visplay.log.runlog import RunLog  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from vllm_fixtures import FAMILIES, SMALL  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]  # ~1-2 min: the tiny recipe's cold start + 2 engines

OVERRIDES = [
    "sampler.questioner=vllm", "sampler.reasoner=vllm", "plugins.vllm.max_model_len=512", "iterations=1",
    "questioner.steps=2", "questioner.images_per_step=2", "questioner.group_size=2", "questioner.votes=3",
    "reasoner.steps=2", "reasoner.questions_per_step=2", "reasoner.group_size=2", "reasoner.votes=3",
    "reasoner.set_images=8", "plugins.algorithm.filter.band=[0.0,1.0]", "data.num_images=8",
]  # the tiny recipe's token budgets (48 / 32): shorter ones truncate questions and answers into invalid ones


# The families' test: vllm_fixtures' small sizes (two engines of each family on 2 shared cores) and 48-px game
# images (Idefics3's tiny tower takes 64-px tiles; the Qwen families resize anyway).
FAMILY_SIZES = [f"plugins.models.tiny.{k}={v}" for k, v in SMALL.items()] + ["plugins.games.image_size=48"]


def test_one_iteration_with_vllm_samplers(tmp_path):
    import torch
    from visplay_vllm.plugin import _ENGINES, shutdown_engines

    torch.set_num_threads(1)
    cfg = load_recipe("tiny", [*OVERRIDES, f"run_dir={tmp_path / 'run'}"])
    try:
        db = engine.run_recipe(cfg, run_dir=tmp_path / "run", quiet=True)
        engines = {role: held[1] for role, held in _ENGINES.items()}
        assert set(engines) == {"questioner", "reasoner"}
        # Each role trained for 2 steps: the step-2 samples came from weights pushed after the step-1 update.
        assert engines["questioner"].pushes >= 1 and engines["reasoner"].pushes >= 1
    finally:
        shutdown_engines()
    with RunLog(db, readonly=True) as log:
        assert log.run()["status"] == "finished"
        gens = log.rows("generations")
        assert gens and {g["role"] for g in gens} == {"questioner", "reasoner"}
        assert all(g["token_ids"] and (g["logprobs"] or g["kind"] == "vote") for g in gens)  # votes: log.vote_logprobs
        assert log.count("steps", "phase = ?", ["reasoner"]) == 2
        placement = log.rows("events", "kind = ?", ["placement"])
        assert placement and "questioner: vllm, reasoner: vllm" in placement[0]["message"]


@pytest.mark.parametrize("family", FAMILIES[:2])  # ~3.5 min each here; qwen2_vl shares qwen2_5_vl's code
def test_one_iteration_of_each_family_with_vllm_samplers(tmp_path, family):
    import json

    import torch
    from visplay_vllm.plugin import _ENGINES, shutdown_engines

    torch.set_num_threads(1)
    run = tmp_path / "run"
    cfg = load_recipe("tiny", [*OVERRIDES, *FAMILY_SIZES, f"plugins.models.tiny.architecture={family}",
                               f"run_dir={run}"])
    try:
        db = engine.run_recipe(cfg, run_dir=run, quiet=True)
        engines = {role: held[1] for role, held in _ENGINES.items()}
        assert set(engines) == {"questioner", "reasoner"}
        for role, eng in engines.items():
            # each step-2 sample came from pushed weights; the sampler compared the engine's hash with the
            # trainer's at every push (it raises otherwise), and the engine's workers report that same hash
            assert eng.pushes >= 1, role
            assert eng.weights_sha256() == [eng.engine_sha256] and eng.engine_sha256 == eng.loaded_tag, role
        model_type = json.loads((Path(engines["reasoner"].workdir) / "model" / "config.json").read_text())
        assert model_type["model_type"] == family
    finally:
        shutdown_engines()
    with RunLog(db, readonly=True) as log:
        assert log.run()["status"] == "finished"
        gens = log.rows("generations")
        assert gens and {g["role"] for g in gens} == {"questioner", "reasoner"}
        assert all(g["token_ids"] and (g["logprobs"] or g["kind"] == "vote") for g in gens)
        assert log.count("steps", "phase = ?", ["reasoner"]) == 2
