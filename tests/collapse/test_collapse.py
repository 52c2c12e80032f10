"""Issue 26: the collapse signals (plugins.collapse), the gold-free guards (question_guard, margin_guard, kind_cap)
and the gold side of the signals in the games plugin."""

from __future__ import annotations

import numpy as np
import pytest
import visplay_algorithm.plugin as algorithm
import visplay_games.plugin as games
import visplay_metrics.plugin as metrics_plugin
from support.metrics import accumulator
from visplay_collapse import kind_cap, margin_guard, question_guard, signals
from visplay_collapse.kinds import answer_form, quantile, shares, total_variation, vote_margin
from visplay_games import gold

from visplay.api import RecipeError, RunLog, hookimpl
from visplay.report.build import collect
from visplay.report.plots import plot_kind_shares
from visplay.testing import make_context, question_items, run_standin

GUARDS = [algorithm, margin_guard, question_guard, kind_cap]


def q(text: str) -> str:
    return f"<question>{text}</question>"


# --- the quantities ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label, form", [
    ("yes", "answer/yes-no"), ("No.", "answer/yes-no"), ("12", "answer/number"), ("$3.5$", "answer/number"),
    ("0", "answer/number"), ("B", "answer/letter"), ("\\text{red}", "answer/word"), ("two red squares", "answer/text"),
    (None, "answer/none"), ("  ", "answer/none")])
def test_a_question_no_plugin_names_gets_the_form_of_its_label(label, form):
    assert answer_form(label) == form


def test_vote_margin_counts_the_lead_over_the_runner_up_and_ignores_missing_answers():
    assert vote_margin(["a", "a", "a", "a", "b", "b", "b", None, None]) == 1
    assert vote_margin(["a", "a", "a", "a", "b", "c", "d", "e", None]) == 3
    assert vote_margin(["a"] * 9) == 9
    assert vote_margin([None, None]) == 0


def test_shift_and_quantiles():
    p, r = shares(["x", "x", "y", "z"]), shares(["x", "y", "y", "y"])
    assert p == {"x": 0.5, "y": 0.25, "z": 0.25}
    assert total_variation(p, r) == pytest.approx(0.5)  # |0.5-0.25| + |0.25-0.75| + 0.25, halved
    assert total_variation(p, p) == 0.0 and total_variation({"a": 1.0}, {"b": 1.0}) == 1.0
    values = [0.1, 0.7, 0.3, 0.9, 0.2]
    for level in (0.1, 0.5, 0.9):
        assert quantile(values, level) == pytest.approx(float(np.quantile(values, level)))


def row(kind: str, keys: list, keep: int = 1) -> dict:
    return {"kind": kind, "answer_keys": keys, "m": len(keys), "keep": keep}


def test_signals_of_a_set_against_iteration_one():
    first = [row("a", ["1", "1", "2", "3"]), row("a", ["1", "2", "2", "2"]), row("b", ["x"] * 4, keep=0),
             row("c", ["y", "y", "z", None])]
    now = [row("a", ["1", "1", "1", "1"], keep=0), row("b", ["x", "x", "x", "y"]), row("b", ["x", "x", "y", "y"]),
           row("b", ["x", "y", None, None])]
    m = signals.signals(now, first)
    assert m["collapse/asked_share/a"] == 0.25 and m["collapse/asked_share/b"] == 0.75
    assert m["collapse/kept_share/b"] == 1.0 and "collapse/kept_share/a" not in m
    assert m["collapse/kind_shift"] == pytest.approx(0.5)  # first: a .5 b .25 c .25; now: a .25 b .75
    assert m["collapse/kept_kind_shift"] == pytest.approx(1.0)  # first kept: a, a, c; now kept: b, b, b
    assert m["collapse/top_kept_share"] == 1.0
    assert m["collapse/unanimous_frac"] == 0.25
    margins = [2 / 4, 0 / 4, 0 / 4]  # 3-1, 2-2, 1-1
    assert m["collapse/margin_mean"] == pytest.approx(np.mean(margins))
    assert m["collapse/margin_p50"] == pytest.approx(np.quantile(margins, 0.5))
    assert m["collapse/margin_p90"] == pytest.approx(np.quantile(margins, 0.9))
    assert signals.signals([], first) == {}


def test_warnings_fire_past_their_thresholds_and_name_the_kinds():
    first = [row("a", ["1"] * 3)] * 8 + [row("b", ["1", "2", "2"])] * 2
    now = [row("a", ["1"] * 3, keep=0)] * 2 + [row("b", ["1", "2", "2"])] * 8
    m = signals.signals(now, first)
    assert m["collapse/kind_shift"] == pytest.approx(0.6)
    opts = signals.CollapseOptions(kind_shift_warn=0.5, concentration_warn=0.9, min_kept=8)
    fired = dict(signals.warnings(m, now, first, opts, iteration=2))
    assert set(fired) == {"collapse_kind_shift", "collapse_concentration"}
    assert "moved 0.60" in fired["collapse_kind_shift"] and fired["collapse_kind_shift"].count("->") == 1
    assert ": b 20% -> 80%;" in fired["collapse_kind_shift"]  # the kinds that grew, not the one that shrank
    assert "100% of the 8 kept questions are of one kind (b)" in fired["collapse_concentration"]
    # the kind shift is measured from iteration 2 on; the concentration needs min_kept kept questions
    assert signals.warnings(m, now, first, opts, iteration=1) == [
        ("collapse_concentration", fired["collapse_concentration"])]
    few = signals.CollapseOptions(kind_shift_warn=0.5, concentration_warn=0.9, min_kept=9)
    assert [kind for kind, _ in signals.warnings(m, now, first, few, iteration=2)] == ["collapse_kind_shift"]
    above = signals.CollapseOptions(kind_shift_warn=0.61, concentration_warn=1.0, min_kept=8)
    assert signals.warnings(m, now, first, above, iteration=2) == []  # thresholds above the values: silent


@pytest.mark.parametrize("override, key", [
    ("plugins.collapse.kind_shift_warn=1.5", "plugins.collapse.kind_shift_warn"),
    ("plugins.collapse.min_kept=0", "plugins.collapse.min_kept"),
    ("plugins.margin_guard.min_votes=-1", "plugins.margin_guard.min_votes"),
    ("plugins.question_guard.min_words=2.5", "plugins.question_guard.min_words"),
    ("plugins.kind_cap.max_share=0", "plugins.kind_cap.max_share")])
def test_bad_settings_are_refused_at_load_naming_the_key(override, key):
    with pytest.raises(RecipeError, match=key.replace(".", r"\.")):
        make_context([override], plugins=[signals, *GUARDS])


# --- the guards -------------------------------------------------------------------------------------------------


def decisions(ctx, items) -> list[tuple[str, bool, str]]:
    """(plugin, keep, reason) of every deciding plugin, per item."""
    return [(short(plugin), d.keep, d.reason) for plugin, per_item in ctx.hooks.filter_questions(items)
            for d in per_item]


def short(plugin: str) -> str:
    """``visplay_collapse.margin_guard`` -> ``margin_guard`` (plugins passed by module are named by module)."""
    return plugin.rsplit(".", 1)[-1]


def test_guards_abstain_when_off():
    ctx = make_context([], plugins=GUARDS)
    items = question_items(ctx, [q("How?")], [["1", "2", "1", "2"]])
    assert [p for p, _ in ctx.hooks.filter_questions(items)] == [algorithm.__name__]


def test_margin_guard_keeps_a_clear_majority_only():
    ctx = make_context(["plugins.margin_guard.min_votes=2"], plugins=GUARDS)
    votes = [["4", "4", "4", "4", "3", "3", "3", "1", "2"],   # lead 1
             ["4", "4", "4", "4", "3", "3", "1", "2", None],  # lead 2
             ["4", "4", "4", "3", "1", "2", "5", None, None]]  # lead 2
    items = question_items(ctx, [q("How many empty cells are there?")] * 3, votes)
    guard = [(keep, reason) for plugin, keep, reason in decisions(ctx, items) if plugin == "margin_guard"]
    assert guard == [(False, "vote_margin"), (True, "kept"), (True, "kept")]


def test_question_guard_rejects_short_and_repeated_questions():
    ctx = make_context(["plugins.question_guard.min_words=4", "plugins.question_guard.max_repeats=1"], plugins=GUARDS)
    split = ["1", "1", "2", "2"]  # confidence 0.5: in the band
    texts = [q("How?"), q("How many red shapes are there?"), q("how many red  shapes are there"),
             q("Which letter is at row 1, column 2?")]
    out = [(keep, reason) for plugin, keep, reason in decisions(ctx, question_items(ctx, texts, [split] * 4))
           if plugin == "question_guard"]
    assert out == [(False, "short_question"), (True, "kept"), (False, "repeated_question"), (True, "kept")]
    # a question the band rejects (all votes agree) is not counted as kept: its repeat still gets in
    items = question_items(ctx, [q("How many red shapes are there?")] * 2, [["1"] * 4, split])
    assert [(k, r) for p, k, r in decisions(ctx, items) if p == "question_guard"] == [(True, "kept"), (True, "kept")]


def test_question_guard_at_parse_makes_short_questions_invalid_for_the_questioner_too():
    ctx = make_context(["plugins.question_guard.min_words=4", "plugins.question_guard.at_parse=true"],
                       plugins=GUARDS)
    short, long = ctx.hooks.parse_question(q("How?")), ctx.hooks.parse_question(q("How many red shapes are there?"))
    assert (short.valid, short.reason, short.question) == (False, "short_question", "How?")
    assert (long.valid, long.reason) == (True, "ok")
    assert ctx.hooks.parse_question("no tags") == make_context([], plugins=GUARDS).hooks.parse_question("no tags")
    assert make_context(["plugins.question_guard.min_words=4"], plugins=GUARDS).hooks.parse_question(q("How?")).valid
    with pytest.raises(RecipeError, match=r"plugins\.question_guard\.at_parse': needs"):
        make_context(["plugins.question_guard.at_parse=true"], plugins=GUARDS)


class FirstWordKinds:
    plugin_name = "first_word_kinds"

    @hookimpl
    def visplay_question_kinds(self, ctx, questions):
        return [text.split()[0].lower() if text.split()[0] != "Free" else None for _, text in questions]


def test_kind_cap_caps_each_kind_of_the_set_and_counts_only_what_the_band_keeps():
    # cap = max(min_count, floor(0.02 x 128 set images x 1 question)) = 2
    ctx = make_context(["plugins.kind_cap.max_share=0.02", "reasoner.set_images=128"],
                       plugins=[*GUARDS, FirstWordKinds()])
    split, sure = ["1", "1", "2", "2"], ["1"] * 4
    texts = ["How many a?", "How many b?", "How many c?", "What is d?", "How many e?", "Free one?", "Free two?",
             "Free three?"]
    votes = [split, sure, split, split, split, split, split, ["yes", "yes", "no", "no"]]
    out = [(k, r) for p, k, r in decisions(ctx, question_items(ctx, [q(t) for t in texts], votes))
           if p == "kind_cap"]
    # the second "how" is out of the band (not counted); the fourth kept "how" is over the cap; unnamed questions
    # are kinds by their labels' form (two numbers, one yes/no)
    assert out == [(True, "kept"), (True, "kept"), (True, "kept"), (True, "kept"), (False, "kind_cap"),
                   (True, "kept"), (True, "kept"), (True, "kept")]
    three = make_context(["plugins.kind_cap.max_share=0.02", "plugins.kind_cap.min_count=3"],
                         plugins=[*GUARDS, FirstWordKinds()])
    assert (False, "kind_cap") not in [(k, r) for p, k, r in decisions(three, question_items(three, [q(t) for t in
                                       texts], votes)) if p == "kind_cap"]


# --- the games plugin: kinds and the gold side -------------------------------------------------------------------


def test_games_names_the_template_of_a_question_about_its_pool():
    ctx = make_context(["data.num_images=6"], plugins=[algorithm, games])
    states = games.states_by_id(ctx, games.options(ctx))
    image_id, gs = next(iter(states.items()))
    qa = gs.qa[0]
    kinds = ctx.hooks.question_kinds([(image_id, qa.question), (image_id, "What is the meaning of this?"),
                                      ("not-an-image", qa.question)])
    assert kinds == [f"{gs.game}/{qa.kind}", None, None]


def test_silver_accuracy_per_kind_and_the_warning_below_the_starting_pass_at_1():
    rows = [{"game": "2048", "kind": "tile_at", "correct": c, "kept": k} for c, k in ((0, 1), (0, 1), (1, 0))]
    rows += [{"game": "shapes", "kind": "total", "correct": 1, "kept": 1}]
    labels = [{"confidence": 0.5}] * 4
    m = gold.silver_metrics(labels, rows, {str(i): r["kept"] for i, r in enumerate(rows)})
    assert m["gold/silver_accuracy"] == 0.5
    assert m["gold/silver_accuracy/kind/2048/tile_at"] == pytest.approx(1 / 3)
    assert m["gold/silver_accuracy_kept/kind/2048/tile_at"] == 0.0
    assert m["gold/silver_accuracy/kind/shapes/total"] == 1.0
    message = gold.silver_warning(m, {"gold/sample_accuracy": 0.55})
    assert message.startswith("silver-label accuracy 0.500 is below the starting pass@1 0.550")
    assert "2048/tile_at 0.33" in message
    assert gold.silver_warning(m, {"gold/sample_accuracy": 0.5}) is None
    assert gold.silver_warning(m, {}) is None


# --- a whole run that provokes the warnings ----------------------------------------------------------------------


PROVOKE = ["plugins.collapse.kind_shift_warn=0.0", "plugins.collapse.concentration_warn=0.0",
           "plugins.collapse.min_kept=1", "plugins.metrics.sinks=[tensorboard]"]


def test_a_run_where_the_signals_fire_shows_them_in_the_log_terminal_tensorboard_and_report(tmp_path, capsys):
    db = run_standin(tmp_path / "run", PROVOKE, plugins=[signals, metrics_plugin])
    err = capsys.readouterr().err
    with RunLog(db, readonly=True) as log:
        events = [e for e in log.rows("events") if e["source"] == "collapse"]
        voted = [i for i in (1, 2) if log.labels_of(i)]  # the stand-in's questioner may write nothing valid
        evals = {i: log.metrics_of(i, "eval") for i in voted}
    assert 1 in voted and evals[1]["collapse/kind_shift"] == 0.0  # iteration 1 is the reference
    assert {e["kind"] for e in events} == {"collapse_concentration"}  # a shift fires from iteration 2 only
    assert all(e["level"] == "warning" and e["phase"] == "eval" for e in events)
    for i, ev in evals.items():
        assert ev["collapse/warnings"] == sum(e["iteration"] == i for e in events) >= 1
        assert sum(v for k, v in ev.items() if k.startswith("collapse/asked_share/")) == pytest.approx(1.0)
        assert 0.0 <= ev["collapse/margin_p10"] <= ev["collapse/margin_p50"] <= ev["collapse/margin_p90"] <= 1.0
    assert [line for line in err.splitlines() if line.startswith("warning:") and "kept questions are of one kind"]
    tags = accumulator(tmp_path / "run" / "tensorboard").Tags()["scalars"]
    assert {"eval/collapse/kind_shift", "eval/collapse/margin_p50", "eval/collapse/unanimous_frac"} <= set(tags)
    data = collect(db)
    assert "collapse_concentration" in data.warnings
    svg = plot_kind_shares(data.metrics)
    assert svg.startswith("<svg") and "shift 0.00" in svg


def test_signals_are_deterministic_and_the_guards_off_leave_the_filters_as_they_were(tmp_path):
    def rows(db, table):
        with RunLog(db, readonly=True) as log:
            return [tuple(r.values()) for r in log.rows(table)]

    a = run_standin(tmp_path / "a", ["plugins.metrics.sinks=[]"], plugins=[signals, *GUARDS[1:]])
    b = run_standin(tmp_path / "b", ["plugins.metrics.sinks=[]"], plugins=[signals, *GUARDS[1:]])
    plain = run_standin(tmp_path / "plain", ["plugins.metrics.sinks=[]"])
    assert rows(a, "metrics") == rows(b, "metrics")
    assert [r for r in rows(a, "metrics") if "collapse/" in str(r)]
    assert rows(a, "filters") == rows(plain, "filters")
