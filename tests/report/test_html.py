"""`visplay report` on a run log built through RunLog: the HTML, its figures, the text summary, the paper table."""

from __future__ import annotations

import base64
import re

import pytest
from support.eval import add_eval_scores, build_run

from visplay.cli import main
from visplay.log.runlog import RunLog
from visplay.report.build import collect, iteration_summary, write_report
from visplay.report.paper import check_printed_averages, compare, load_table1, scores_by_iteration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run_db(tmp_path):
    db = build_run(tmp_path / "run", iterations=2)
    add_eval_scores(db, {0: {"mmmu": 20.0, "hallusionbench": 40.0}, 2: {"mmmu": 30.0, "hallusionbench": 60.0}})
    return db


def test_iteration_summary_values(run_db):
    summary = iteration_summary(collect(run_db))
    assert [s["iteration"] for s in summary] == [1, 2]
    assert summary[0]["kept_n"] == "2/4" and summary[0]["kept"] == 0.5  # confidences 0.4 and 0.6 in the band
    assert summary[0]["confidence"] == pytest.approx((0.2 + 0.4 + 0.6 + 1.0) / 4)
    assert summary[0]["reasoner_reward"] == 0.5  # totals 0, 1, 0, 1 per step


def test_report_html_sections_figures_and_svgs(run_db, capsys):
    assert main(["report", str(run_db.parent)]) == 0
    out = capsys.readouterr().out
    index = run_db.parent / "report" / "index.html"
    page = index.read_text()
    for section in ("story", "summary", "samples", "training", "gold", "metrics", "eval", "paper", "run"):
        assert f"id='{section}'" in page
    assert page.index("id='story'") < page.index("id='samples'") < page.index("id='training'")
    for fig in ("story", "rewards", "confidence", "kept_fraction", "gold_silver", "metrics_questioner",
                "metrics_reasoner", "metrics_eval", "paper_comparison"):
        svg = (index.parent / f"{fig}.svg").read_text()
        assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
        assert f"<figure id='fig-{fig}'>{svg}" in page  # inlined as written
    assert "maj@m" in page and "gold/accuracy" in page  # the story table's column (games plugin), the metric panels
    embedded = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(embedded) == 4  # the sample browser's images; figures are SVG
    assert all(base64.b64decode(e).startswith(PNG_MAGIC) for e in embedded)
    assert "<details class='panel'>" in page and "<details class='panel' open" not in page  # metric panels closed
    assert "How many squares in image 1?" in page and "How many squares in image 0?" not in page  # kept first
    assert "src='http" not in page and "<script" not in page  # self-contained, nothing fetched
    assert "printed Avg 43.56, mean of the 7 scores 52.38" in page  # MiMo base row
    # the games plugin's summary fields (maj@m: the fixture logs no gold/votes)
    assert "paper model: qwen2.5-vl-3b" in out and "maj@m: i1=0.400, i2=0.500" in out
    assert "silver-label accuracy: i1=0.650, i2=0.600" in out and "gold/accuracy/2048:" not in out
    assert f"report: {index}" in out


def test_report_without_eval_or_gold(tmp_path):
    db = build_run(tmp_path / "run", iterations=1, with_gold=False)
    index = write_report(db, tmp_path / "out")
    page = index.read_text()
    assert "id='fig-gold_silver-missing'" in page and "no evaluation in this run log" in page
    assert not (tmp_path / "out" / "paper_comparison.svg").exists()


def test_report_refuses_a_missing_run(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 1
    assert "no run.db here" in capsys.readouterr().err


def test_paper_table_and_comparison():
    table = load_table1()
    assert table.benchmarks[0] == "mmmu" and len(table.rows) == 8
    notes = check_printed_averages(table)
    assert len(notes) == 7  # only the 7B base row's printed average is the mean of its scores
    assert not any(n.startswith("Qwen2.5-VL-7B iteration 0") for n in notes)
    rows = compare(table, "qwen2.5-vl-3b", {1: {"mmmu": 10.0, "mm-vet": 20.0, "mmstar": 99.0}, 5: {"mmmu": 1.0}})
    assert [r.iteration for r in rows] == [0, 1, 2, 3, 5]
    one = rows[1]
    assert (one.ours_avg, one.ours_count, one.paper_avg_printed) == (15.0, 2, 44.16)  # mmstar is not in Table 1
    assert one.paper_avg_mean == pytest.approx(sum(one.paper.values()) / 7)
    assert rows[4].paper == {} and rows[4].paper_avg_printed is None


def test_scores_by_iteration_prefers_the_rule_judge():
    rows = [{"judge": "endpoint", "iteration": 1, "benchmark": "mmmu", "accuracy": 90.0},
            {"judge": "rule", "iteration": 1, "benchmark": "mmmu", "accuracy": 10.0},
            {"judge": "rule", "iteration": None, "benchmark": "mmmu", "accuracy": 5.0}]
    assert scores_by_iteration(rows) == {1: {"mmmu": 10.0}}
    assert scores_by_iteration(rows, judge="endpoint") == {1: {"mmmu": 90.0}}


def test_samples_fall_back_to_invalid_questions_with_their_generation(tmp_path):
    """An untrained questioner writes no valid question: the samples show the raw generation instead."""
    import hashlib

    from support.eval import make_image, png

    from visplay.types import ImageRecord

    db = tmp_path / "run" / "run.db"
    raw = png("invalid", 16)
    with RunLog(db, create=True) as log:
        log.set_run(run_id="r", name="untrained", status="finished")
        log.upsert_image(ImageRecord(hashlib.sha256(raw).hexdigest(), make_image("invalid", 16), "procedural", raw),
                         store_bytes=True)
        with log.step(1, "questioner", 0):
            key = "i1/questioner/s0/p0/g0"
            log.insert("generations", [{"key": key, "iteration": 1, "phase": "questioner", "step": 0,
                                        "text": "<quest garbled"}])
            log.insert("questions", [{"key": key, "iteration": 1, "phase": "questioner", "step": 0, "valid": 0,
                                      "image_id": hashlib.sha256(raw).hexdigest(), "parse_reason": "no_question_tag"}])
    page = write_report(db).read_text()
    assert "(invalid: no_question_tag)" in page and "&lt;quest garbled" in page
    assert page.count("data:image/png;base64") == 1  # the sample image
    assert "id='fig-rewards-missing'" in page and "id='fig-confidence-missing'" in page  # nothing to plot there


def test_report_is_deterministic_and_the_cli_scripts_run(run_db, tmp_path):
    """Same log -> byte-identical HTML; `visplay report` and reproduce/compare_paper.py work as subprocesses."""
    import subprocess
    import sys
    from pathlib import Path

    first = write_report(run_db, tmp_path / "a").read_bytes()
    assert write_report(run_db, tmp_path / "b").read_bytes() == first
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "visplay.cli", "report", str(run_db), "--out", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c" / "index.html").read_bytes() == first
    done = subprocess.run([sys.executable, str(repo / "reproduce" / "compare_paper.py"), str(run_db.parent)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "paper model: qwen2.5-vl-3b" in done.stdout and "note: MiMo-VL-7B-SFT iteration 0" in done.stdout


def test_summary_fields_with_standard_errors_in_text_and_figure(tmp_path):
    """A plugin's (value, standard error) fields: ``±`` in the text summary and an error bar in the figure."""
    from visplay.report.build import text_summary

    db = build_run(tmp_path / "run")
    with RunLog(db) as log:
        for it in (1, 2):
            log.metrics(it, "eval", 1, {"gold/accuracy_se": 0.01 * it})
    out = text_summary(collect(db))
    assert "maj@m: i1=0.400\u00b10.010, i2=0.500\u00b10.020" in out
    assert "silver-label accuracy: i1=0.650, i2=0.600" in out  # no standard error logged: a plain value
    index = write_report(db, tmp_path / "report")
    assert "0.400\u00b10.010" in index.read_text()  # the story table's cell
