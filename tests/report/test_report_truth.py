"""The report tells the truth about a run: each role's reward on its own step axis, every number of one moment of a
live run (one read transaction), no hook names in figure titles, the cold start's loss curve, readable axes for a
single point, and the reasoner's rollouts with their text."""

from __future__ import annotations

import matplotlib.pyplot as plt
from support.eval import build_run

from visplay.hookspecs import hookimpl
from visplay.log.runlog import RunLog
from visplay.report import plots
from visplay.report.build import collect, write_report
from visplay.session import PluginSession


def _totals(role: str, iterations: int, steps: int) -> list[dict]:
    return [{"role": role, "iteration": it, "step": s, "value": 0.1 * s, "key": f"{role}{it}{s}"}
            for it in range(1, iterations + 1) for s in range(steps)]


def test_each_role_has_its_own_step_axis():
    """The questioner's 8 steps and the reasoner's 24 per iteration: each panel marks its own iteration starts."""
    totals = _totals("questioner", 3, 8) + _totals("reasoner", 3, 24)
    for svg in (plots.plot_rewards(totals), plots.plot_story(totals, [], {})):
        assert "questioner: mean reward per training step" in svg and "reasoner: mean reward per training step" in svg
        assert "questioner step (dashed: next iteration)" in svg and "reasoner step (dashed: next iteration)" in svg
    fig, ax = plt.subplots()
    plots.plot_role_steps(ax, "reasoner", [(it, s, 0.0) for it in (1, 2, 3) for s in range(24)])
    assert [line.get_xdata()[0] for line in ax.lines[1:]] == [23.5, 47.5]  # boundaries on the reasoner's own axis
    plt.close(fig)


class CountingPlugin:
    """Summary fields computed from the run log the report hands it: what it saw of the log."""

    plugin_name = "counting"

    @hookimpl
    def visplay_summary_fields(self, ctx, iteration):
        return {"questions in the log": float(ctx.log.count("questions"))}


class WriterDuringReport:
    """Progress parts that let another process's commit land between the report's reads."""

    def __init__(self, db):
        self.db = db

    def part(self, name):
        import contextlib

        if name == "pick the samples":
            with RunLog(self.db) as log, log.step(3, "questioner", 0):
                log.insert("questions", [{"key": f"i3/questioner/s0/p0/g{g}", "iteration": 3, "phase": "questioner",
                                          "step": 0, "image_id": "x", "grp": "g", "valid": 1, "question": "?"}
                                         for g in range(5)])
        return contextlib.nullcontext()


def test_a_live_run_is_read_at_one_moment(tmp_path):
    db = build_run(tmp_path / "run", iterations=2)
    data = collect(db, PluginSession(extra=(CountingPlugin(),)), parts=WriterDuringReport(db))
    seen = {fields["questions in the log"] for fields in data.fields.values()}
    assert seen == {float(len(data.questions))}  # the plugins read the same moment as the tables
    assert 3 not in data.fields  # the step committed meanwhile is not in this report
    with RunLog(db, readonly=True) as log:
        assert log.count("questions") == len(data.questions) + 5  # it was committed


def test_figures_name_no_hooks_and_plot_the_cold_start_losses(tmp_path):
    db = build_run(tmp_path / "run", iterations=1)
    with RunLog(db) as log, log.step(0, "cold_start", 0):
        log.declare_table("cold_start_losses", {"role": str, "step": int, "loss": float}, pk=("role", "step"))
        log.insert("cold_start_losses", [{"role": role, "step": s, "loss": 2.0 / (1 + s)}
                                         for role in ("questioner", "reasoner") for s in range(300)])
    index = write_report(db)
    svgs = {p.name: p.read_text() for p in index.parent.glob("*.svg")}
    assert not [name for name, svg in svgs.items() if "visplay_" in svg]
    losses = svgs["loss_cold_start_losses.svg"]
    assert "questioner (300 steps)" in losses and "reasoner (300 steps)" in losses
    assert f"<figure id='fig-loss_cold_start_losses'>{losses}" in index.read_text()


def test_a_single_point_gets_readable_axes():
    fig, ax = plt.subplots()
    ax.plot([1], [0.4], marker="o")
    plots.readable_limits(ax, [1], [0.4])
    assert ax.get_xlim() == (0, 2) and [round(v, 6) for v in ax.get_ylim()] == [0.35, 0.45]
    fig.canvas.draw()
    assert ax.yaxis.get_offset_text().get_text() == ""  # no "1e-7+0.4" offset
    plt.close(fig)
    svg = plots.plot_metric_grid("eval", {"gold/accuracy": [(1, 0, 0.4)]})
    assert "0.40" in svg and "i1s0" in svg


def test_rollouts_show_their_text(tmp_path):
    db = build_run(tmp_path / "run", iterations=1)
    question = collect(db).samples[0]["iterations"][0]["questions"][0]["key"]
    text = "There are three squares, so the answer is \\boxed{3}."
    with RunLog(db) as log, log.step(1, "reasoner", 7):
        log.insert("generations", [{"key": f"{question}/r0", "iteration": 1, "phase": "reasoner", "step": 7,
                                    "role": "reasoner", "kind": "rollout", "parent_key": question, "sample_index": 0,
                                    "seed": 1, "text": text, "token_ids": [1]}])
        log.insert("answers", [{"key": f"{question}/r0", "question_key": question, "iteration": 1,
                                "phase": "reasoner", "step": 7, "extracted": "3", "answer_key": "3",
                                "silver_key": "3"}])
    page = write_report(db).read_text()
    assert f"<td class='l rtext'>{text}</td>" in page.replace("&#34;", '"').replace("\\\\", "\\")
