"""reproduce/collapse_study.py: paired gains from the run log, and the table made from the JSON only."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
from support.studies import fake_study_run

ROOT = Path(__file__).resolve().parents[2]


def study():
    spec = importlib.util.spec_from_file_location("collapse_study", ROOT / "reproduce" / "collapse_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gains_are_paired_over_the_same_questions_and_the_table_comes_from_the_json(tmp_path):
    cs = study()
    out = tmp_path / "runs"
    fake_study_run(out / "paper-s0", "paper", 0, [0.0, 0.5, 1.0, 0.5], [0.5, 0.5, 1.0, 1.0], [0.6, 0.7, 0.8])
    fake_study_run(out / "margin-s0", "margin", 0, [0.0, 0.5, 1.0, 0.5], [0.0, 0.25, 1.0, 0.5], [0.6, 0.4, 0.8])
    run = cs.collect_run(out / "paper-s0")
    diffs = [0.5, 0.0, 0.0, 0.5]
    mean = sum(diffs) / 4
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 3) / 2
    assert (run["gain"], run["gain_se"], run["paired_questions"]) == (pytest.approx(mean), pytest.approx(se), 4)
    assert run["silver_above_start"] is True  # start pass@1 0.5; silver 0.6-0.8
    assert cs.collect_run(out / "margin-s0")["silver_above_start"] is False  # 0.4 in iteration 2
    docs = tmp_path / "page.md"
    docs.write_text(f"head\n{cs.BEGIN}\nold\n{cs.END}\ntail\n")
    assert cs.main(["--out", str(out), "--table-only", "--arms", "paper,margin", "--docs", str(docs)]) == 0
    page = docs.read_text()
    assert "| 0 | 0.500 | +25.0 ± 14.4 | -6.2 ± 6.2 (s) |" in page
    assert "| paper | 1 | +25.0 | [+25.0, +25.0] | 1/1 | 1/1 |" in page
    assert "| margin | 1 | -6.2 | [-6.2, -6.2] | 0/1 | 0/1 |" in page
    assert page.startswith("head\n") and page.endswith("tail\n") and "old" not in page
    # the kept JSON alone (no run folders) gives the same table
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "collapse.json").write_text((out / "collapse.json").read_text())
    again = tmp_path / "again.md"
    again.write_text(f"{cs.BEGIN}\n{cs.END}\n")
    cs.main(["--out", str(kept), "--table-only", "--arms", "paper,margin", "--docs", str(again)])
    assert again.read_text().split(cs.BEGIN)[1] == page.split(cs.BEGIN)[1].replace("\ntail\n", "\n")
