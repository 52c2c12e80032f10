"""The planner's CPU activation count (visplay_models/cpu_activations.py) against the tensors torch really keeps for
the backward pass of transformers' Qwen2.5-VL, and the end-to-end check: one GRPO update per reduced configuration
in a process of its own, its profiled peak within 25% of the plan (issue 22; reproduce/memory_check.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.scale import dry_run, load_for_dry_run
from visplay_models import cpu_activations

ROOT = Path(__file__).resolve().parent.parent.parent
GIB = 1024**3


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "reproduce" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "reproduce"))
    spec.loader.exec_module(module)
    return module


def _saved_bytes(run, params: set[int]) -> int:
    """Bytes of the distinct storages autograd saves while ``run()`` builds its graph, parameters left out."""
    import torch

    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(seen.values())


def _model(text: dict, vision: dict):
    torch = pytest.importorskip("torch")
    from transformers import Qwen2_5_VLForConditionalGeneration

    bench = _script("gpu_benchmark")
    bench.SIZES["count"] = dict(bench.SIZES["tiny"], **text, vision=dict(bench.SIZES["tiny"]["vision"], **vision))
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration._from_config(bench.architecture_config("count"), dtype=torch.float32)
    return model.train(), {p.untyped_storage().data_ptr() for p in model.parameters()}


@pytest.mark.parametrize("text", [
    dict(hidden_size=256, intermediate_size=1024, num_attention_heads=4, num_key_value_heads=2),  # GQA 2:1
    dict(hidden_size=256, intermediate_size=1536, num_attention_heads=4, num_key_value_heads=4),  # no GQA
    dict(hidden_size=512, intermediate_size=1024, num_attention_heads=16, num_key_value_heads=8, mrope_section=[4, 6, 6]),
])
def test_the_text_count_is_what_a_float32_forward_saves(text):
    import torch

    text = {"num_hidden_layers": 2, "mrope_section": [8, 12, 12], **text}
    model, params = _model(text, {})
    lm = model.model.language_model
    batch, length = 2, 300
    embeds = lm.embed_tokens(torch.randint(10, 1000, (batch, length))).detach().requires_grad_()
    positions = torch.arange(length)[None, None].expand(3, batch, length)
    saved = _saved_bytes(lambda: lm(inputs_embeds=embeds, position_ids=positions, use_cache=False), params)
    counted, _ = cpu_activations.text_bytes_per_token(model.config.text_config.to_dict(), 4, False)
    # the count includes the head's input (the final norm's output, b*h per token), which this forward has no head for
    assert saved == batch * length * (counted - 4 * text["hidden_size"])


@pytest.mark.parametrize("vision", [
    dict(depth=2, hidden_size=128, intermediate_size=512, num_heads=2, fullatt_block_indexes=[1]),
    dict(depth=1, hidden_size=192, intermediate_size=768, num_heads=3, fullatt_block_indexes=[]),
])
def test_the_vision_count_is_what_a_float32_forward_saves(vision):
    import torch

    model, params = _model({}, vision)
    grid = torch.tensor([[1, 16, 16], [1, 16, 16]])  # two 224 px images: 256 patches each
    patches = 512
    pixels = torch.randn(patches, 3 * 2 * 14 * 14)
    saved = _saved_bytes(lambda: model.model.visual(pixels, grid_thw=grid), params)
    counted = patches * cpu_activations.vision_bytes_per_patch(model.config.vision_config.to_dict(), 4, False)[0]
    # the window-attention index (int64, one per merged token: 2 bytes per patch) is left out of the count
    assert counted <= saved <= counted + 4 * patches


def test_the_cpu_plan_counts_and_the_gpu_plan_keeps_its_figures():
    """model.device=cpu plans a Qwen2.5-VL's activations with the count: what recomputation keeps for the whole
    backward pass, plus the largest of one recomputed layer, one recomputed vision block and one 20*V-byte chunk;
    cuda keeps its 34*h figures and adds its items up."""
    from visplay_models.facts import ARCHITECTURES

    text = dry_run(load_for_dry_run("qwen-vl-3b", ["model.device=cpu", "model.dtype=float32"]), visible=0)
    assert "activations counted for the CPU" in text
    cfg = ARCHITECTURES["Qwen/Qwen2.5-VL-3B-Instruct"]
    kept, layer = cpu_activations.text_bytes_per_token(cfg, 4, True)
    kept_patch, block = cpu_activations.vision_bytes_per_patch(cfg["vision_config"], 4, True)
    rows, patches = 16384 // 513, 64 * 4  # the budget's rows of the shortest sequences; 224 px: 256 patches
    line = next(x for x in text.splitlines() if x.startswith("  training: "))
    items = {k: float(v) for k, v in (i.rsplit(" ", 1) for i in line[len("  training: "):].split(", "))}
    assert items["activations"] == pytest.approx(16384 * kept / GIB, abs=0.01)
    assert items["vision"] == pytest.approx(rows * patches * kept_patch / GIB, abs=0.01)
    parts = [16384 * layer, rows * patches * block, 20 * 151936 * 1024]
    assert items["recomputed"] == pytest.approx(max(parts) / GIB, abs=0.01) and "logits" not in items
    gpu = dry_run(load_for_dry_run("qwen-vl-3b", []), visible=8)
    assert "activations 3.31, vision 0.93, logits 2.32, total 15.30" in gpu and "counted for the CPU" not in gpu


@pytest.mark.slow
def test_the_plan_is_within_25_percent_of_the_measured_peak_on_three_reduced_configurations(tmp_path):
    """reproduce/memory_check.py --device cpu: 3 reduced Qwen2.5-VL configurations, recomputation on and off, each
    update in a subprocess; measured / plan within [0.75, 1.25] for every one, and recomputation lowers the peak."""
    proc = subprocess.run([sys.executable, str(ROOT / "reproduce" / "memory_check.py"), "--device", "cpu",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "memory_check.json").read_text())
    assert {r["size"] for r in rows} == set(_script("memory_check").CPU_SIZES) and len(rows) == 6
    for r in rows:
        assert 0.75 <= r["ratio"] <= 1.25, r
        assert r["resident_gib"] > 0 and r["update_gib"] > 0
    for size in {r["size"] for r in rows}:
        on, off = (next(r for r in rows if r["size"] == size and r["recompute"] is flag) for flag in (True, False))
        assert on["peak_gib"] < off["peak_gib"] and on["plan_gib"] < off["plan_gib"]
