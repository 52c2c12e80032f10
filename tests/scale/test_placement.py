"""GPU placement: defaults (the paper's 4 + 4 on 8 GPUs), validation against what is visible, the run-log event."""

from __future__ import annotations

import pytest
from support.scale import plan_placement, training_device

from visplay.config import RecipeError, load_recipe
from visplay.log.runlog import RunLog
from visplay.scale.placement import Placement, cuda_visible_devices, log_placement, visible_gpu_count


def _recipe(*overrides):
    return load_recipe("tiny", list(overrides))


def test_paper_default_on_eight_gpus_is_four_sampling_four_training():
    p = plan_placement(_recipe("sampler.reasoner=vllm"), visible=8)
    assert (p.mode, p.sampling_gpus, p.training_gpus) == ("split", [0, 1, 2, 3], [4, 5, 6, 7])


def test_defaults_for_cpu_one_gpu_and_hf_only():
    assert plan_placement(_recipe(), visible=0).mode == "cpu"
    one = plan_placement(_recipe("sampler.questioner=vllm"), visible=1)
    assert (one.mode, one.sampling_gpus, one.training_gpus) == ("shared", [0], [0])
    hf_only = plan_placement(_recipe(), visible=4)
    assert (hf_only.sampling_gpus, hf_only.training_gpus) == ([], [0, 1, 2, 3])


def test_configured_split_is_kept_and_the_complement_fills_in():
    p = plan_placement(_recipe("sampler.reasoner=vllm", "distributed.sampling_gpus=[0,1]"), visible=8)
    assert (p.sampling_gpus, p.training_gpus) == ([0, 1], [2, 3, 4, 5, 6, 7])
    p = plan_placement(_recipe("sampler.reasoner=vllm", "distributed.training_gpus=[6,7]"), visible=8)
    assert (p.sampling_gpus, p.training_gpus) == ([0, 1, 2, 3, 4, 5], [6, 7])


@pytest.mark.parametrize("overrides, visible, message", [
    (["distributed.training_gpus=[0,8]"], 8, r"training_gpus: GPU index\(es\) \[8\] not visible"),
    (["sampler.reasoner=vllm", "distributed.sampling_gpus=[0,1]", "distributed.training_gpus=[1,2]"], 4,
     r"overlap on \[1\]"),
    (["distributed.training_gpus=[1,1]"], 4, "listed twice"),
    (["distributed.training_gpus=[0]"], 0, "none is visible"),
    (["distributed.nproc=4", "distributed.training_gpus=[0,1]"], 4, "nproc=4 training processes but only 2"),
])
def test_bad_placement_names_the_key(overrides, visible, message):
    with pytest.raises(RecipeError, match=message):
        plan_placement(_recipe(*overrides), visible=visible)


def test_visible_count_follows_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,7")
    assert visible_gpu_count() == 3
    assert cuda_visible_devices([0, 2]) == "3,7"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpu_count() == 0


def test_placement_is_written_to_the_run_log(tmp_path):
    placement = plan_placement(_recipe("sampler.reasoner=vllm"), visible=8)
    with RunLog(tmp_path / "run.db", create=True) as log:
        log_placement(log, placement)
        rows = log.rows("events", "kind = ?", ["placement"])
    assert len(rows) == 1 and "sampling on [0, 1, 2, 3]" in rows[0]["message"]
    assert '"training_gpus":[4,5,6,7]' in rows[0]["payload"]
    assert isinstance(placement, Placement)


def test_two_engines_split_the_sampling_gpus_and_must_fit():
    paper = plan_placement(_recipe("sampler.questioner=vllm", "sampler.reasoner=vllm",
                                   "plugins.vllm.tensor_parallel_size=2"), visible=8)
    assert paper.engine_gpus == {"questioner": [0, 1], "reasoner": [2, 3]}
    assert "reasoner engine on [2, 3]" in paper.describe()
    with pytest.raises(RecipeError, match=r"tensor_parallel_size=4 needs 4 GPUs per engine"):
        plan_placement(_recipe("sampler.questioner=vllm", "sampler.reasoner=vllm",
                               "plugins.vllm.tensor_parallel_size=4"), visible=8)
    with pytest.raises(RecipeError, match=r"gpu_memory_utilization=0.45: 3 users share a GPU"):
        plan_placement(_recipe("sampler.questioner=vllm", "sampler.reasoner=vllm"), visible=1)
    shared = plan_placement(_recipe("sampler.questioner=vllm", "sampler.reasoner=vllm",
                                    "plugins.vllm.gpu_memory_utilization=0.3"), visible=1)
    assert shared.engine_gpus == {"questioner": [0], "reasoner": [0]} and shared.mode == "shared"


def test_training_device_follows_the_placement():
    recipe = _recipe("sampler.reasoner=vllm", "model.device=cuda")
    assert training_device(recipe, plan_placement(recipe, visible=8)) == "cuda:4"
    assert training_device(recipe, plan_placement(recipe, visible=8), local_rank=3) == "cuda:7"
    assert training_device(_recipe("model.device=cuda:2"), plan_placement(recipe, visible=8)) == "cuda:2"
    assert training_device(_recipe(), plan_placement(_recipe(), visible=0)) == "cpu"


def test_an_nccl_rank_takes_its_training_gpu_not_its_local_rank(monkeypatch):
    """On the paper's split rank 0 trains on GPU 4: init_distributed must make cuda:4 current (NCCL and FSDP
    allocate on the current device), not cuda:LOCAL_RANK = 0, a sampling GPU."""
    import torch
    import torch.distributed

    from visplay.scale import distributed

    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda **kwargs: None)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.init_distributed("nccl", "cuda:4") and chosen == [4]
    assert distributed.init_distributed("nccl", "cuda") and chosen == [4, 0]  # no index: the local rank's
