"""The report in a real browser (headless Chromium, Debian's ``chromium`` package, installed by .ci/run): a finished
engine run's page is screenshotted whole, then cut into one PNG per section, saved in the test output
(``$VISPLAY_TEST_OUTPUT/report-screenshots``, else pytest's temporary folder; the path is printed). Section
positions come from a probe copy of the page with a one-line script (the report itself has none)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.eval import add_eval_scores

from visplay.report.build import write_report

engine_fixtures = pytest.importorskip("engine_fixtures")
engine = pytest.importorskip("visplay.loop.engine")

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]
SECTIONS = ("story", "samples", "training", "gold", "metrics", "eval", "paper", "run")
WIDTH = 1280
MAX_PAGE_PX = 8000  # the story, four images' browser and collapsed panels: a page, not a scroll marathon
MAX_HTML_BYTES = 1_500_000
PROBE = ("<script>for (const s of document.querySelectorAll('section[id]')) {s.dataset.top = s.offsetTop;"
         "s.dataset.h = s.offsetHeight;} document.body.dataset.h = document.documentElement.scrollHeight;</script>")


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
        db = engine.run_recipe(engine_fixtures.standin_recipe(tmp / "run"), quiet=True,
                               extra_plugins=engine_fixtures.standin_plugins())
    add_eval_scores(db, {0: {"mmmu": 20.0, "realworldqa": 50.0}, 2: {"mmmu": 35.0, "realworldqa": 55.0}})
    index = write_report(db)
    page = index.read_text()
    probe = index.parent / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    dom = _chromium(tmp / "profile", "--virtual-time-budget=3000", "--dump-dom", probe.as_uri()).stdout
    height = int(re.search(r'<body data-h="(\d+)"', dom).group(1))
    boxes = {m.group(1): (int(m.group(2)), int(m.group(3)))
             for m in re.finditer(r'<section id="(\w+)" data-top="(\d+)" data-h="(\d+)"', dom)}
    shot = tmp / "page.png"
    _chromium(tmp / "profile", f"--screenshot={shot}", f"--window-size={WIDTH},{min(height, MAX_PAGE_PX + 200)}",
              index.as_uri())
    out = Path(os.environ.get("VISPLAY_TEST_OUTPUT", tmp)) / "report-screenshots"
    out.mkdir(parents=True, exist_ok=True)
    full = Image.open(shot).convert("RGB")
    full.save(out / "page.png")
    for name in SECTIONS:
        top, h = boxes[name]
        full.crop((0, top, WIDTH, min(top + h, full.height))).save(out / f"{name}.png")
    print(f"\nreport screenshots: {out}")
    return {"page": page, "dom": dom, "height": height, "boxes": boxes, "out": out, "index": index}


def test_every_section_is_screenshotted_and_drawn(rendered):
    for name in SECTIONS:
        pixels = np.asarray(Image.open(rendered["out"] / f"{name}.png").convert("L"), dtype=np.float64)
        assert pixels.shape[1] == WIDTH and pixels.shape[0] >= 40, name
        assert pixels.std() > 10, name  # text and figures, not a flat band
    story = np.asarray(Image.open(rendered["out"] / "story.png").convert("L"), dtype=np.float64)
    assert (story < 200).mean() > 0.02  # the table and the headline curves are drawn


def test_page_size_is_bounded_and_the_story_fits_one_screen(rendered):
    assert rendered["height"] <= MAX_PAGE_PX
    assert len(rendered["page"].encode()) <= MAX_HTML_BYTES
    top, h = rendered["boxes"]["story"]
    assert top + h <= 1100  # title, facts, table and curves above the fold of a laptop screen
    assert [n for n in SECTIONS if n in rendered["boxes"]] == list(SECTIONS)
    assert "<script" not in rendered["page"] and "src='http" not in rendered["page"]


def test_sample_browser_shows_an_image_with_its_votes(rendered):
    dom = rendered["dom"]
    samples = dom[dom.index('<section id="samples"'):dom.index('<section id="training"')]
    assert samples.count('<img alt="image ') >= 1
    assert 'class="vote silver"' in samples and "silver label" in samples and "confidence" in samples
    assert 'class="rollouts"' in samples  # the reasoner's training rollouts with their rewards
    assert "filter:" in samples
    pixels = np.asarray(Image.open(rendered["out"] / "samples.png").convert("RGB"), dtype=np.float64)
    assert pixels.std() > 20


def test_metric_panels_start_collapsed(rendered):
    dom = rendered["dom"]
    metrics = dom[dom.index('<section id="metrics"'):dom.index('<section id="eval"')]
    assert metrics.count('<details class="panel">') >= 3 and "open" not in metrics
