"""The report renders in a real browser: headless Chromium takes a screenshot (not blank) and dumps the DOM
(the expected sections and figures are there). Needs Debian's ``chromium`` package (installed by .ci/run)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from support.eval import add_eval_scores, build_run

from visplay.report.build import write_report

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


def _chromium(tmp_path, *args):
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    db = build_run(tmp / "run", iterations=2)
    add_eval_scores(db, {0: {"mmmu": 20.0, "realworldqa": 50.0}, 2: {"mmmu": 35.0, "realworldqa": 55.0}})
    return write_report(db)


def test_screenshot_is_not_blank(report, tmp_path):
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri())
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 20  # text, tables and plots, not a flat page
    assert (pixels < 200).mean() > 0.02  # a real share of dark (drawn) pixels
    top = pixels[:400]
    assert top.std() > 10  # the title and run table render at the top


def test_dom_has_sections_and_figures(report, tmp_path):
    dom = _chromium(tmp_path, "--dump-dom", report.as_uri()).stdout
    for section in ("run", "summary", "training", "gold", "metrics", "samples", "eval", "paper"):
        assert f'<section id="{section}">' in dom
    for fig in ("rewards", "confidence", "kept_fraction", "gold_silver", "metrics_questioner", "paper_comparison"):
        assert f'<figure id="fig-{fig}">' in dom
    assert dom.count("<img ") == 8 + 4
    assert "visplay report: fixture" in dom
