"""`visplay report` links each evaluation score (the paper comparison, the evaluation table) to a page listing its
items: question, images, response, extracted and reference answer, verdict, and the judge's stored reply."""

from __future__ import annotations

import html
import re

import pytest
from support.eval import (
    RESPONSES,
    JudgeServer,
    ScriptedSampler,
    StandInModels,
    build_run,
    patch_plugin_manager,
    write_benchmarks,
)

import visplay.plugins
from visplay.cli import main
from visplay.log.runlog import RunLog

LONG = "step " * 80  # 400 characters: folded in the listing
SCRIPTED = {**{k: v[0] for k, v in RESPONSES.items()},
            "vet0": "<script>alert(1)</script> & it is \\boxed{Crimson}.",
            "hal0": LONG + "\\boxed{No, it is blue}"}


@pytest.fixture
def evaluated(tmp_path, monkeypatch):
    """A run evaluated at iterations 2 and 0 with the rule judge, then re-judged by an endpoint on loopback."""
    from visplay.config import load_recipe
    from visplay.context import RunContext
    from visplay.eval.run import rejudge

    patch_plugin_manager(monkeypatch, StandInModels(ScriptedSampler(SCRIPTED)))
    data = write_benchmarks(tmp_path / "bench")
    db = build_run(tmp_path / "run", iterations=2)
    for extra in ([], ["--iteration", "0"]):
        assert main(["eval", str(db.parent), "--benchmarks", "mm-vet,hallusionbench", "--data", str(data),
                     "-q", *extra]) == 0
    with JudgeServer() as server, RunLog(db) as log:
        ctx = RunContext(recipe=load_recipe("tiny", [f"plugins.eval.judge_url={server.url}"]),
                         pm=visplay.plugins.get_plugin_manager(), run_dir=db.parent, log=log)
        rejudge(ctx, "iter2/rule", "endpoint")
    assert main(["report", str(db.parent)]) == 0
    return db.parent / "report"


def _section(page: str, name: str) -> str:
    return page[page.index(f"<section id='{name}'>"):].split("</section>", 1)[0]


def _links(fragment: str) -> list[tuple[str, str]]:
    return re.findall(r"<a href='([^'#]+#[^']+)' title='[^']*'>([^<]+)</a>", fragment)


def _listing(report, href: str) -> str:
    page, anchor = href.split("#")
    text = (report / page).read_text()
    return _section(text, anchor)


def test_each_paper_score_links_to_its_items(evaluated):
    paper = _section((evaluated / "index.html").read_text(), "paper")
    links = _links(paper)
    # ours at iterations 0 and 2, two benchmarks each; hallusionbench: hal0 right, hal1 wrong; mm-vet: vet0 right
    assert sorted(text for _, text in links) == ["50.00"] * 4
    assert len({href for href, _ in links}) == 4
    for href, _ in links:
        listing = _listing(evaluated, href)
        rows = re.findall(r"<tr class='(right|wrong)' id='([^']+)'>", listing)
        benchmark = "mm-vet" if "mm-vet" in href else "hallusionbench"
        tags = ("vet0", "vet1") if benchmark == "mm-vet" else ("hal0", "hal1")
        label = "iter2" if "iter2" in href else "base"
        assert rows == [("right" if RESPONSES[t][1] else "wrong", f"{label}/rule/{benchmark}/{i}")
                        for i, t in enumerate(tags)]
        assert "1/2 correct, 50.00 %" in listing


def test_listing_shows_answers_escaped_and_long_texts_folded(evaluated):
    paper = _section((evaluated / "index.html").read_text(), "paper")
    (href,) = [h for h, _ in _links(paper) if "iter2_rule-" in h and h.endswith("#bench-mm-vet")]
    listing = _listing(evaluated, href)
    assert "<script>" not in listing and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; it is \\boxed{Crimson}." in listing
    assert "red&lt;OR&gt;crimson" in listing and "apple&lt;AND&gt;pear" in listing  # the references
    assert "[q:vet0] What colour is the car?" in listing  # the prompt's question
    assert ">Crimson<" in listing and ">an apple<" in listing  # the extracted answers
    assert "no_boxed_answer" not in listing and listing.count(">yes<") == 1 and listing.count(">no<") == 1
    with RunLog(evaluated.parent / "run.db", readonly=True) as log:
        ids = {r["key"]: r["image_id"] for r in log.rows("eval_items")}
    assert f"<code>{ids['iter2/rule/mm-vet/0'][:12]}</code>" in listing
    hal = _listing(evaluated, href.replace("bench-mm-vet", "bench-hallusionbench"))
    folded = re.search(r"<details class='long'><summary>(step [^<]*)</summary><pre>([^<]*)</pre></details>", hal)
    assert folded and folded.group(1) == LONG[:240] + "\u2026" and folded.group(2) == SCRIPTED["hal0"]


def test_judged_scores_link_to_the_judges_replies(evaluated):
    evaluation = _section((evaluated / "index.html").read_text(), "eval")
    links = dict((h.split("#")[1], h) for h, _ in _links(evaluation) if "iter2_endpoint-" in h)
    assert set(links) == {"bench-mm-vet", "bench-hallusionbench"}
    listing = _listing(evaluated, links["bench-mm-vet"])
    with RunLog(evaluated.parent / "run.db", readonly=True) as log:
        items = {r["key"]: r for r in log.rows("eval_items") if r["judge"] == "endpoint"}
        stored = {r["prompt"]: r for r in log.rows("judge_verdicts")}
    for key in ("iter2/endpoint/mm-vet/0", "iter2/endpoint/mm-vet/1"):
        item = items[key]
        assert f"id='{key}'" in listing
        assert html.escape(item["judge_prompt"], quote=False) in listing  # the exact prompt, escaped
        reply = stored[item["judge_prompt"]]
        assert (f"stored reply ({reply['judge']}, ok, 1 attempt(s)): {html.escape(reply['reply'])}"
                in listing.replace(f", {reply['served_model']})", ")"))
        assert f"verdict: {html.escape(item['verdict'])}" in listing


def test_scores_without_items_get_no_link_and_stale_pages_go(tmp_path):
    from support.eval import add_eval_scores

    db = build_run(tmp_path / "run", iterations=1)
    add_eval_scores(db, {1: {"mmmu": 30.0}})  # scores only: no eval_items rows behind them
    stale = db.parent / "report" / "items-iter9_rule-00000000.html"  # a page of an evaluation since replaced
    stale.parent.mkdir()
    stale.write_text("old")
    assert main(["report", str(db.parent)]) == 0
    page = (db.parent / "report" / "index.html").read_text()
    assert "<td>30.00</td>" in _section(page, "paper") and "href='items-" not in page
    assert sorted(p.name for p in stale.parent.glob("items-*")) == []
