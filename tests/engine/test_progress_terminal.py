"""A terminal that tells the truth: warnings as they happen (also under -q), the plugins' own step counts on the
bar (cold-start SFT), and the running reward in the bar's postfix."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from visplay.loop.progress import INVALID_WARN_SHARE, Progress

engine_fixtures = pytest.importorskip("support.engine")
engine = pytest.importorskip("visplay.loop.engine")


def test_warnings_print_under_quiet_and_repeat_sparingly(capsys):
    p = Progress(quiet=True, iterations=2)
    for step in range(5):
        p.on_event({"level": "warning", "kind": "empty_reasoner_set", "iteration": 1, "phase": "reasoner",
                    "step": step, "message": "no question was kept"})
    for k in range(6):
        p.on_event({"level": "warning", "kind": "image_skipped", "message": f"bad{k}.png: truncated"})
    p.on_event({"level": "info", "kind": "run_resumed", "message": "resumed"})
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "warning: [iter 1 train reasoner step 0] no question was kept"
    assert sum("no question was kept" in line for line in err) == 1  # once per iteration is enough
    assert [line for line in err if "bad" in line] == [f"warning: bad{k}.png: truncated" for k in range(3)]
    assert err[-1] == "warning: further 'image_skipped' warnings are not printed (the run log has the details)"
    assert not any("resumed" in line for line in err)


def test_metric_checks_warn_about_nan_and_invalid_questions(capsys):
    p = Progress(quiet=True)
    p.check_metrics(1, "questioner", 3, {"actor/loss": math.nan, "reward/mean": 0.5,
                                         "questions/valid_frac": 1 - INVALID_WARN_SHARE - 0.25})
    p.check_metrics(1, "questioner", 4, {"actor/loss": math.inf, "questions/valid_frac": 0.0})  # same phase: quiet
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: [iter 1 train questioner step 3] actor/loss is nan",
                   "warning: [iter 1 train questioner step 3] 75% of the questions did not parse (threshold 50%)"]


def test_silent_ranks_print_nothing(capsys):
    p = Progress(silent=True)
    p.warn("x", "hidden")
    assert capsys.readouterr().err == ""


def test_substeps_replace_the_one_step_bar(capsys):
    p = Progress(iterations=1)
    p.phase(0, "cold_start", 1)
    p.substep(10, 450, "sft step", {"q_loss": 2.5})
    assert (p._bar.n, p._bar.total, p._bar.unit) == (10, 450, "sft step")
    p.substep(449, 450, "sft step")
    p.advance()
    assert p._bar.n == 450
    p.close()
    assert "450/450" in capsys.readouterr().err


def test_cold_start_reports_sft_steps_across_roles(tmp_path):
    from support.games import make_ctx
    from visplay_games import coldstart, pools
    from visplay_games.plugin import options

    class Recorder:
        def __init__(self):
            self.calls = []

        def substep(self, done, total, unit, postfix):
            self.calls.append((done, total, unit, sorted(postfix or {})))

    def sft(policy, pairs, *, steps, lr, batch_size, seed, on_step):
        for k in range(steps):
            on_step(k + 1, 1.0 / (k + 1))
        return [1.0 / (k + 1) for k in range(steps)]

    ctx = make_ctx(tmp_path, overrides=["plugins.games.cold_start_steps=2", "plugins.games.cold_start_images=4",
                                        "plugins.games.cold_start_reasoner_steps=3"])
    ctx.progress = Recorder()
    opts = options(ctx)
    pool = pools.cold_start_pool(ctx.seed, opts, opts.image_size)
    coldstart.cold_start(ctx, {"questioner": "Q", "reasoner": "R"}, pool, opts, sft)
    assert [(d, t) for d, t, _, _ in ctx.progress.calls] == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert ctx.progress.calls[0][2:] == ("sft step", ["q_loss"]) and ctx.progress.calls[-1][3] == ["r_loss"]


def test_empty_reasoner_set_warns_under_quiet_and_the_bar_shows_the_reward(tmp_path, capsys):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
        # band [0, 0]: a voted question has confidence >= 1/m > 0, so the filters keep nothing
        engine.run_recipe(engine_fixtures.standin_recipe(tmp_path / "q", ["plugins.standin.band=[0.0,0.0]"]),
                          quiet=True, extra_plugins=engine_fixtures.standin_plugins())
        err = capsys.readouterr().err
        engine.run_recipe(engine_fixtures.standin_recipe(tmp_path / "bars", ["iterations=1"]), quiet=False,
                          extra_plugins=engine_fixtures.standin_plugins())
        bars = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert "warning: iteration 1: the filters kept 0 of 4 questions; reasoner training is skipped " \
           "(reasoner_v1 = reasoner_v0)" in lines
    assert sum("kept 0 of" in line or "no question was kept" in line for line in lines) == 2  # one per iteration
    assert "iter 1/1 train questioner" in bars and "reward=" in bars


@pytest.mark.slow
def test_cli_quiet_after_overrides_with_real_plugins(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", None)
    args = ["run", "tiny", "-q", "name=x", f"run_dir={tmp_path / 'x'}", "iterations=1", "questioner.steps=1",
            "reasoner.steps=1", "reasoner.set_images=4", "data.num_images=8", "plugins.algorithm.filter.band=[0.0,0.0]",
            "plugins.games.cold_start_steps=0", "plugins.games.cold_start_reasoner_steps=0",
            "plugins.games.held_out=0"]
    done = subprocess.run([sys.executable, "-m", "visplay.cli", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "warning: iteration 1: the filters kept 0 of" in done.stderr
    assert "iteration 1/1:" in done.stdout and "%|" not in done.stderr  # no bars under -q
    # the default sinks with the real entry-point plugins: TensorBoard holds exactly the run log's metrics
    from support.metrics import assert_tensorboard_equals_run_log

    assert assert_tensorboard_equals_run_log(tmp_path / "x" / "run.db") > 10


# --- issue 27: bars that move, and plain lines when stderr is not a terminal ---------------------------------


def test_non_terminal_stderr_gets_a_plain_line_per_tenth_of_a_phase(capsys):
    p = Progress(iterations=3, plain=True)
    p.phase(1, "reasoner", 24)
    for _ in range(24):
        p.advance({"reward": 0.5})
    p.close()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" step")[0] for line in lines] == [f"iter 1/3 train reasoner: {n}/24" for n in range(3, 25, 3)]
    assert lines[0].startswith("iter 1/3 train reasoner: 3/24 step (12%) ") and lines[0].endswith(", reward=0.5")
    assert "\r" not in "".join(lines)


def test_plain_lines_follow_stderr_not_being_a_terminal(capsys):
    p = Progress(iterations=1)  # plain=None: capsys's stderr is no terminal
    p.phase(1, "questioner", 2)
    p.advance()
    p.advance()
    p.close()
    assert capsys.readouterr().err.splitlines()[-1].startswith("iter 1/1 train questioner: 2/2 step (100%) ")


@pytest.mark.parametrize("plain", [True, False])
def test_a_one_step_phase_never_shows_0_of_1(capsys, plain):
    p = Progress(iterations=1, plain=plain)
    p.phase(0, "cold_start", 1)
    assert p._bar is None  # nothing shown while the models load
    for k in range(1, 601):
        p.substep(k, 600, "sft step", {"q_loss": 1.0})
    p.advance()
    p.close()
    p.phase(1, "eval", 1)  # a one-step phase with no plugin count: shown when it ends, as 1/1
    p.advance()
    p.close()
    err = capsys.readouterr().err
    assert "0/1" not in err and "600/600" in err and "1/1" in err
    if plain:
        assert err.splitlines()[0].startswith("cold start: 60/600 sft step (10%) ")


def test_gold_evaluation_bar_moves_per_chunk_of_questions(no_autoload):
    from support.games import ScriptedSampler, StandInPolicy, make_ctx

    class Recorder:
        def __init__(self):
            self.calls = []

        def substep(self, done, total, unit, postfix):
            self.calls.append((done, total, unit))

    ctx = make_ctx(overrides=["plugins.games.held_out_questions=5", "plugins.games.eval_votes=2"])
    ctx.progress = Recorder()
    policy = StandInPolicy(ScriptedSampler(lambda prompt, j: "\\boxed{1}"))
    metrics = ctx.hooks.iteration_end(iteration=1, questioner=None, reasoner=policy)
    n = int(metrics["gold/items"])
    assert n == 30  # 6 games x 5 questions
    # 20 chunks of ceil(30 / 20) = 2 questions: sampled answers, then greedy ones
    assert ctx.progress.calls == [(min(k, n) + offset, 2 * n, "question") for offset in (0, n)
                                  for k in range(2, n + 2, 2)]


def test_v_logs_a_line_per_phase_and_committed_step_and_no_hook_calls(tmp_path, caplog):
    import logging

    with pytest.MonkeyPatch.context() as mp, caplog.at_level(logging.INFO):
        mp.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
        db = engine.run_recipe(engine_fixtures.standin_recipe(tmp_path / "v", ["iterations=1"]), quiet=True,
                               extra_plugins=engine_fixtures.standin_plugins())
    lines = [r.getMessage() for r in caplog.records if r.name == "visplay.loop.engine"]
    from visplay.log.runlog import RunLog

    with RunLog(db, readonly=True) as log:
        steps = log.rows("steps")
        questioner = log.count("steps", "phase = 'questioner'")
    committed = [line for line in lines if " committed in " in line]
    assert len(committed) == len(steps)  # one line per committed step
    assert f"iteration 1 train questioner: {questioner} step(s), 0 already committed" in lines
    assert any(line.startswith("iteration 1 train questioner step 0 committed in ") and "reward/mean" in line
               for line in committed)
    assert not [r for r in caplog.records if r.name == "visplay.hooks"]  # one line per hook call is -vv's
