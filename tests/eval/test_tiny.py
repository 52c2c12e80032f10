"""`visplay eval` as a user runs it: the real CLI in a subprocess, the tiny model through the HF backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.eval import write_benchmarks

from visplay.config import load_recipe
from visplay.log.runlog import RunLog

REPO = Path(__file__).resolve().parents[2]


def _eval(tmp_path, model, db, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "visplay.cli", "eval", str(model), "eval.max_new_tokens=12", "eval.batch_size=3",
           "--benchmarks", "mmstar,hallusionbench,mathverse", "--data", str(tmp_path / "bench"), "--db", str(db),
           *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)


@pytest.mark.slow
def test_eval_tiny_model_folder_deterministic(tmp_path):
    tiny = pytest.importorskip("visplay_models.tiny")
    folder = tiny.build_tiny_model(load_recipe("tiny").plugins.models.tiny, seed=0)
    write_benchmarks(tmp_path / "bench")
    first = _eval(tmp_path, folder, tmp_path / "a.db")
    assert first.returncode == 0, first.stderr
    assert "judged by rule" in first.stdout and "MathVerse" in first.stdout
    second = _eval(tmp_path, folder, tmp_path / "b.db")
    assert second.returncode == 0, second.stderr

    def items(db):
        with RunLog(db, readonly=True) as log:
            return [(r["key"], r["response"], r["correct"], r["reason"], r["seed"]) for r in log.rows("eval_items")]

    rows = items(tmp_path / "a.db")
    assert len(rows) == 1 + 2 + 1 and all(isinstance(r[1], str) for r in rows)
    assert rows == items(tmp_path / "b.db")  # greedy and seeded: the same responses, bit for bit
    with RunLog(tmp_path / "a.db", readonly=True) as log:
        scores = {r["benchmark"]: (r["n"], r["correct"]) for r in log.rows("eval_scores")}
    assert {b: n for b, (n, _) in scores.items()} == {"mmstar": 1, "hallusionbench": 2, "mathverse": 1}
    assert all(c == sum(r[2] for r in rows if f"/{b}/" in r[0]) for b, (_, c) in scores.items())


@pytest.mark.slow
def test_eval_tiny_model_under_the_lmms_eval_protocol_with_a_three_image_item(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from support.eval import png

    tiny = pytest.importorskip("visplay_models.tiny")
    folder = tiny.build_tiny_model(load_recipe("tiny").plugins.models.tiny, seed=0)
    write_benchmarks(tmp_path / "bench")
    row = {"id": "validation_Art_1", "question": "Compare <image 1>, <image 2> and <image 3>.", "answer": "A",
           "options": "['first', 'second']", "question_type": "multiple-choice",
           **{f"image_{n}": {"bytes": png(f"t{n}"), "path": None} for n in (1, 2, 3)}}
    (tmp_path / "bench" / "MMMU").rename(tmp_path / "bench" / "unused")
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "bench" / "mmmu.parquet")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "visplay.cli", "eval", str(folder), "eval.max_new_tokens=8", "--protocol",
           "lmms-eval", "--benchmarks", "mmmu,mmstar", "--data", str(tmp_path / "bench"), "--db",
           str(tmp_path / "e.db")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "under protocol lmms-eval" in done.stdout
    with RunLog(tmp_path / "e.db", readonly=True) as log:
        items = {r["benchmark"]: r for r in log.rows("eval_items")}
        events = [e for e in log.rows("events") if e["kind"] == "eval_images_dropped"]
    assert items["mmmu"]["prompt_user"].startswith("Compare<image>,<image>and<image>.\nA. first")
    assert items["mmstar"]["prompt_user"].endswith("\nAnswer with the option's letter from the given choices directly")
    assert events == []  # the three images reached the model at their tags (tests/eval/test_multi_image.py)
    assert len(items["mmmu"]["image_id"].split(",")) == 3
