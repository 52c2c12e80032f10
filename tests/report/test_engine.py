"""Report and eval on a run the real engine finished (its stand-in model plugins keep it to seconds)."""

from __future__ import annotations

import re

import pytest
from support.eval import StandInModels, patch_plugin_manager, write_benchmarks

from visplay.cli import main
from visplay.log.runlog import RunLog
from visplay.report.build import collect, iteration_summary, text_summary, write_report

engine_fixtures = pytest.importorskip("support.engine")
engine = pytest.importorskip("visplay.loop.engine")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("engine") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
        db = engine.run_recipe(engine_fixtures.standin_recipe(run_dir), quiet=True,
                               extra_plugins=engine_fixtures.standin_plugins())
    return db


def test_report_of_a_finished_engine_run(finished_run, tmp_path):
    data = collect(finished_run)
    summary = iteration_summary(data)
    with RunLog(finished_run, readonly=True) as log:
        kept = log.count("filters", "iteration = 1 and keep = 1")
        voted = log.count("labels", "iteration = 1")
    assert [s["iteration"] for s in summary] == [1, 2]
    assert summary[0]["kept_n"] == f"{kept}/{voted}"
    page = write_report(finished_run, tmp_path / "report").read_text()
    for fig in ("story", "rewards", "confidence", "kept_fraction", "metrics_questioner", "metrics_reasoner"):
        assert f"id='fig-{fig}'" in page
    assert page.count("<div class='image'") >= 1 and "silver label" in page
    assert "no evaluation in this run log" in page
    assert text_summary(data).startswith("run ")


def test_eval_then_report_shows_the_paper_comparison(finished_run, tmp_path, monkeypatch, capsys):
    standin = StandInModels()
    patch_plugin_manager(monkeypatch, standin)
    data_dir = write_benchmarks(tmp_path / "bench")
    for it in ("0", "2"):
        assert main(["eval", str(finished_run.parent), "--iteration", it, "--benchmarks",
                     "mmmu,hallusionbench,mathverse", "--data", str(data_dir)]) == 0
    assert [init.rsplit("/", 1)[-1] for _, init, _ in standin.loaded] == ["reasoner_v0", "reasoner_v2"]
    capsys.readouterr()
    assert main(["report", str(finished_run.parent), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^0\s+paper\s+19\.95", out, re.M) and re.search(r"^\s+ours\s+100\.00", out, re.M)
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "id='fig-paper_comparison'" in page and "ours (3 of 7)" in page

