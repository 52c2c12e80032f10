"""Issue 23, done-means: an MMMU-format item with three images reaches the tiny model with three images, asserted
on the prompt the model's processor encoded (the real HF backend, in process), for Qwen2.5-VL and Idefics3."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from support.eval import png
from support.models import small_cfg

from visplay.eval.run import run_eval
from visplay.log.runlog import RunLog

QUESTION = "Compare <image 1>, <image 2> and <image 3>. Which is brightest?"


def _mmmu_item(root):
    """One row in lmms-lab/MMMU's layout (validation split file, image_1 .. image_7 columns)."""
    row = {"id": "validation_Art_1", "question": QUESTION, "answer": "A", "options": "['first', 'second', 'third']",
           "question_type": "multiple-choice", **{f"image_{n}": None for n in range(1, 8)},
           **{f"image_{n}": {"bytes": png(f"art{n}", 24 + 8 * n), "path": None} for n in (1, 2, 3)}}
    (root / "MMMU" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row]), root / "MMMU" / "data" / "validation-00000-of-00001.parquet")
    return root


def _spy(monkeypatch, cls):
    """Record what the processor encodes (then encode as usual)."""
    seen = []
    original = cls.encode

    def encode(self, prompt):
        enc = original(self, prompt)
        seen.append((self, prompt, enc))
        return enc

    monkeypatch.setattr(cls, "encode", encode)
    return seen


def _runs(ids, token):
    runs, prev = [], None
    for i, t in enumerate(ids):
        if t == token:
            if prev != i - 1:
                runs.append(0)
            runs[-1] += 1
            prev = i
    return runs


@pytest.mark.parametrize("architecture", ["qwen2_5_vl", "idefics3"])
def test_an_mmmu_item_with_three_images_reaches_the_tiny_model_with_three(tmp_path, monkeypatch, architecture):
    from visplay_models.processor import FamilyProcessor, VLProcessor
    from visplay_models.tiny import build_tiny_model

    torch.set_num_threads(1)
    folder = build_tiny_model(small_cfg(architecture=architecture), seed=0)
    data = _mmmu_item(tmp_path / "bench")
    seen = _spy(monkeypatch, VLProcessor if architecture == "qwen2_5_vl" else FamilyProcessor)
    monkeypatch.chdir(tmp_path)
    _, _, scores = run_eval(str(folder), benchmarks="mmmu", data=str(data), protocol="lmms-eval",
                            overrides=["eval.max_new_tokens=4"], db=str(tmp_path / "e.db"))
    assert scores[0]["n"] == 1
    (proc, prompt, enc), = seen
    assert len(prompt.images) == 3 and prompt.interleaved
    runs = _runs(enc.input_ids, proc.image_token_id)
    assert len(runs) == 3  # three blocks of image tokens in the processed prompt ...
    decoded = proc.tokenizer.decode(enc.input_ids)
    assert decoded.index("Compare") < decoded.index(",") < decoded.index("and") < decoded.index("Which")
    if architecture == "qwen2_5_vl":  # ... one grid row and its pixel rows per image, tokens = grid / merge**2
        assert enc.image_grid_thw.shape == (3, 3)
        assert runs == [int(g.prod()) // 4 for g in enc.image_grid_thw]
        assert enc.pixel_values.shape[0] == int(enc.image_grid_thw.prod(-1).sum())
    else:  # Idefics3: one 64 x 64 tile per image, 4 tokens each
        assert runs == [4, 4, 4] and enc.pixel_values.shape[0] == 3
    with RunLog(tmp_path / "e.db", readonly=True) as log:
        (row,) = log.rows("eval_items")
        dropped = [e for e in log.rows("events") if e["kind"] == "eval_images_dropped"]
    assert row["image_id"] == ",".join(r.image_id for r in prompt.images) and len(set(row["image_id"].split(","))) == 3
    assert dropped == []
