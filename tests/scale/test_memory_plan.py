"""The planner's memory model (issue 22): recomputation, chunked logits, the token budget and image tokens from the
images plugin's resize settings, each checked against its formula, and the boxes the GPU recipes now fit."""

from __future__ import annotations

import re

import pytest
from support.scale import dry_run, load_for_dry_run
from visplay_models.facts import ARCHITECTURES, image_tokens

GIB = 1024**3
QWEN_3B = ARCHITECTURES["Qwen/Qwen2.5-VL-3B-Instruct"]
H, LAYERS, VOCAB = 2048, 36, 151936  # Qwen2.5-VL-3B's text model
VISION = 34 * 1280 * 32  # bytes per patch without recomputation: 32 blocks of width 1280


def _training(text: str) -> dict[str, float]:
    line = re.search(r"^  training: (.*)$", text, re.M).group(1)
    return {name: float(value) for name, value in (item.rsplit(" ", 1) for item in line.split(", "))}


@pytest.mark.parametrize("overrides, tokens", [
    ([], 64),                                                          # the paper: 224 x 224 = 8 x 8 merged patches
    (["plugins.images.size=448"], 256),
    (["plugins.images.resize=pixels"], 4194304 // 784),                # released max_pixels: 5,349 tokens
    (["plugins.images.resize=pixels", "plugins.images.max_pixels=262144"], 334),  # released min_pixels
])
def test_image_tokens_follow_the_resize_settings_and_patch_merge_sizes(overrides, tokens):
    cfg = load_for_dry_run("qwen-vl-3b", overrides)
    assert image_tokens(cfg, QWEN_3B)[0] == tokens
    text = dry_run(cfg, visible=8)
    assert f"prompt allowance: {448 + tokens} tokens = 448 text + {tokens} image tokens" in text


def test_without_the_switches_the_plan_is_the_old_full_length_bound():
    """Recomputation, chunks and the budget off: one micro-batch of 4 at full length (512 + 4096 tokens), 34*h*L +
    10*V bytes per token: the 69.11 GiB the plan printed before issue 22."""
    off = ["plugins.models.gradient_checkpointing=false", "plugins.models.logprob_chunk_tokens=null",
           "plugins.grpo.max_tokens_per_micro_batch=null"]
    items = _training(dry_run(load_for_dry_run("qwen-vl-3b", off), visible=8))
    assert items["activations"] == pytest.approx(4 * 4608 * (34 * H * LAYERS + 10 * VOCAB) / GIB, abs=0.01)
    assert items["activations"] == pytest.approx(69.11, abs=0.01)
    assert items["vision"] == pytest.approx(4 * 64 * 4 * VISION / GIB, abs=0.01) and "logits" not in items


def test_each_switch_shrinks_its_term_by_its_formula():
    base = ["plugins.grpo.max_tokens_per_micro_batch=null"]
    plain = _training(dry_run(load_for_dry_run("qwen-vl-3b", base + [
        "plugins.models.gradient_checkpointing=false", "plugins.models.logprob_chunk_tokens=null"]), visible=8))
    recompute = _training(dry_run(load_for_dry_run("qwen-vl-3b", base + [
        "plugins.models.logprob_chunk_tokens=null"]), visible=8))
    chunked = _training(dry_run(load_for_dry_run("qwen-vl-3b", base), visible=8))
    budget = _training(dry_run(load_for_dry_run("qwen-vl-3b", ["plugins.grpo.max_tokens_per_micro_batch=8192"]),
                               visible=8))
    tokens = 4 * 4608
    assert recompute["activations"] == pytest.approx(tokens * (2 * H * LAYERS + 34 * H + 10 * VOCAB) / GIB, abs=0.01)
    assert chunked["activations"] == pytest.approx(tokens * (2 * H * LAYERS + 34 * H) / GIB, abs=0.01)
    assert chunked["logits"] == pytest.approx(16 * VOCAB * 1024 / GIB, abs=0.01)
    assert budget["activations"] == pytest.approx(8192 * (2 * H * LAYERS + 34 * H) / GIB, abs=0.01)
    assert budget["vision"] == pytest.approx(8192 // 513 * 64 * 4 * (2 * 1280 * 32 + 34 * 1280) / GIB, abs=0.01)
    assert plain["activations"] > 10 * chunked["activations"]


def test_float32_activations_take_twice_the_bytes_and_the_logits_their_own_dtype():
    """The activation bytes follow model.dtype (the CPU check runs float32): 17*b*h per layer, b*h per checkpointed
    layer input, (b + 8)*V unchunked logits; a chunk's 16*V float32 bytes per token do not change."""
    f32 = ["model.dtype=float32", "plugins.grpo.max_tokens_per_micro_batch=null"]
    recompute = _training(dry_run(load_for_dry_run("qwen-vl-3b", f32 + ["plugins.models.logprob_chunk_tokens=null"]),
                                  visible=8))
    plain = _training(dry_run(load_for_dry_run("qwen-vl-3b", f32 + ["plugins.models.gradient_checkpointing=false"]),
                              visible=8, gpu_memory_gib=1000.0))
    tokens = 4 * 4608
    assert recompute["activations"] == pytest.approx(tokens * (4 * H * LAYERS + 68 * H + 12 * VOCAB) / GIB, abs=0.01)
    assert recompute["vision"] == pytest.approx(4 * 64 * 4 * (4 * 1280 * 32 + 68 * 1280) / GIB, abs=0.01)
    assert plain["activations"] == pytest.approx(tokens * 68 * H * LAYERS / GIB, abs=0.01)
    assert plain["vision"] == pytest.approx(4 * 64 * 4 * 2 * VISION / GIB, abs=0.01)
    assert plain["logits"] == pytest.approx(16 * VOCAB * 1024 / GIB, abs=0.01)


def test_the_3b_recipe_leaves_30_percent_on_8_gpus_and_fits_4_gpus_of_40_gib():
    text = dry_run(load_for_dry_run("qwen-vl-3b", []), visible=8)
    total = _training(text)["total"]
    assert total <= 0.7 * 80 and "fits: yes" in text
    assert "recomputation on" in text and "log-probs in chunks of 1024 tokens" in text
    four = dry_run(load_for_dry_run("qwen-vl-3b", ["plugins.vllm.tensor_parallel_size=1"]), visible=4,
                   gpu_memory_gib=40)
    assert _training(four)["total"] <= 40 and "fits: yes" in four


def _cli_plan(capsys, *args):
    from visplay.cli import main

    code = main(["reproduce", *args, "--dry-run"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_planner_chooses_the_engine_layout_for_a_smaller_box_and_names_it(capsys):
    """Issue 22: `--gpus 4 --gpu-memory 40` was refused (the recipe's 8-GPU tensor_parallel_size=2); the vLLM plugin
    now offers fewer GPUs per engine (visplay_plan_choices), the dry run plans with the first that fits and says so."""
    code, out, err = _cli_plan(capsys, "qwen-vl-3b", "--gpus", "4", "--gpu-memory", "40")
    assert code == 0, err
    assert out.startswith("chose: plugins.vllm.tensor_parallel_size=1 for 4 GPU(s) of 40 GiB; give them to run this "
                          "layout (the recipe as given: plugins.vllm.tensor_parallel_size=2 needs 2 GPUs per engine")
    assert "questioner engine on [0]; reasoner engine on [1]" in out and "fits: yes" in out
    assert _training(out)["total"] <= 40
    code, out, _ = _cli_plan(capsys, "qwen-vl-3b", "--gpus", "8")  # the recipe's own box: nothing chosen
    assert code == 0 and "chose:" not in out
    code, out, err = _cli_plan(capsys, "qwen-vl-3b", "--gpus", "1", "--gpu-memory", "80")  # one shared GPU
    assert code == 0, err
    assert out.startswith("chose: plugins.vllm.tensor_parallel_size=1 plugins.vllm.gpu_memory_utilization=0.2 ")
    assert "placement: shared over 1 visible GPU(s)" in out and "fits: yes" in out


def test_a_key_the_user_set_is_not_chosen_over_and_a_box_nothing_fits_lists_what_was_tried(capsys):
    code, _, err = _cli_plan(capsys, "qwen-vl-3b", "--gpus", "4", "--gpu-memory", "40",
                             "plugins.vllm.tensor_parallel_size=2")
    assert code == 2 and "tensor_parallel_size=2 needs 2 GPUs per engine" in err and "also tried" not in err
    code, _, err = _cli_plan(capsys, "qwen-vl-3b", "--gpus", "1", "--gpu-memory", "40")
    assert code == 2
    assert "also tried for 1 GPU(s) of 40 GiB, none fits:" in err
    assert "plugins.vllm.tensor_parallel_size=1 plugins.vllm.gpu_memory_utilization=0.2: the plan does not fit: " in err


def _host(text: str) -> dict[str, float]:
    line = re.search(r"^host memory per process \(GiB\), training: (.*)$", text, re.M).group(1)
    return {name: float(value) for name, value in (item.rsplit(" ", 1) for item in line.split(", "))}


def test_cpu_offload_moves_the_sharded_state_to_host_memory_and_leaves_two_gathered_units():
    """plugins.models.fsdp.offload: weights, grads, AdamW and the reference leave the training GPU (the host line
    holds exactly what the plain plan had on the GPU); the GPU keeps two gathered units (the 3B's largest: the tied
    151,936 x 2048 embedding, bf16)."""
    plain = dry_run(load_for_dry_run("qwen-vl-3b", []), visible=8)
    offload = dry_run(load_for_dry_run("qwen-vl-3b", ["plugins.models.fsdp.offload=true"]), visible=8)
    on_gpu, host, before = _training(offload), _host(offload), _training(plain)
    moved = ("weights", "grads", "adamw", "reference")
    assert {k: host[k] for k in moved} == {k: before[k] for k in moved}
    assert not set(moved) & set(on_gpu)
    assert on_gpu["gathered_units"] == pytest.approx(2 * VOCAB * H * 2 / GIB, abs=0.01)
    assert on_gpu["total"] == pytest.approx(before["total"] - sum(before[k] for k in moved)
                                            + on_gpu["gathered_units"], abs=0.02)
    assert "fsdp: CPU offload" in offload and "host memory per process" not in plain
    # one process shards nothing, so nothing is offloaded (FSDP2 offloads shards)
    single = dry_run(load_for_dry_run("qwen-vl-3b", ["plugins.models.fsdp.offload=true", "distributed.nproc=1"]),
                     visible=8)
    assert "host memory per process" not in single and "needs distributed.strategy=fsdp with 2+ processes" in single


def _peaks(text: str) -> tuple[float, float, float]:
    found = re.search(r"([0-9.]+) GiB freed: update peak ([0-9.]+) GiB, sampling peak ([0-9.]+) GiB", text)
    return tuple(float(x) for x in found.groups())


def test_on_one_shared_gpu_the_engines_sleep_during_the_update_and_the_plan_counts_both_peaks():
    """The 1-GPU layout: with sleep mode (the default there) the update's peak is training alone, sampling's is the
    training state without activations plus both engines; without it both always add up."""
    chosen = ["plugins.vllm.tensor_parallel_size=1", "plugins.vllm.gpu_memory_utilization=0.2"]
    text = dry_run(load_for_dry_run("qwen-vl-3b", chosen), visible=1)
    train = _training(text)
    freed, update, sampling = _peaks(text)
    transient = sum(train.get(k, 0.0) for k in ("activations", "vision", "logits"))
    assert freed == pytest.approx(2 * 0.2 * 80, abs=0.01) and update == pytest.approx(train["total"], abs=0.01)
    assert sampling == pytest.approx(train["total"] - transient + freed, abs=0.02)
    awake = dry_run(load_for_dry_run("qwen-vl-3b", [*chosen, "plugins.vllm.sleep_mode=false"]), visible=1)
    assert "the engines keep their memory during the update (no sleep mode): peak " \
           f"{train['total'] + 2 * 0.2 * 80:.2f} GiB" in awake
