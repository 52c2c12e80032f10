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
