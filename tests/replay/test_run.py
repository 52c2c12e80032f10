"""Replay of a real tiny run: clean replay, tampered logs, what-if replays, slices, --resample, the CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch
from support.metrics import accumulator
from support.replay import EveryTextIsAQuestion, make_run, sha256_file, tamper

from visplay.hookspecs import hookimpl
from visplay.log.runlog import RunLog, generation_digest
from visplay.loop.replay import format_report, plan_slice, replay_run, resolve_start

PARSER = (EveryTextIsAQuestion(),)


@pytest.fixture(scope="module")
def run_db(tmp_path_factory):
    """One finished tiny run, every step state kept on disk (so a slice can start at any step)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("VISPLAY_KEEP_STATES", "1")
    try:
        yield make_run(tmp_path_factory.mktemp("replay") / "tiny")
    finally:
        mp.undo()


def _copy_db(run_db, tmp_path):
    """A copy of the run log alone (a full replay needs no checkpoint files)."""
    target = tmp_path / "orig"
    target.mkdir()
    return tamper_free_copy(run_db, target / "run.db")


def tamper_free_copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst


def test_clean_replay_checks_every_value(run_db):
    before = sha256_file(run_db)
    report = replay_run(run_db, extra_plugins=PARSER)
    assert report.ok, format_report(report)
    with RunLog(run_db, readonly=True) as log:
        for table in ("generations", "questions", "labels", "filters", "answers", "rewards", "advantages",
                      "metrics", "checkpoints", "steps"):
            assert report.diff.tables[table].equal == log.count(table) > 0, table
        losses = log.count("metrics", "name = 'actor/loss'")
    assert losses == 4  # 2 questioner + 2 reasoner updates, each loss compared bit for bit
    assert report.served["questioner"] > 0 and report.served["reasoner"] > 0
    assert sha256_file(run_db) == before
    assert "OK:" in format_report(report)
    assert report.machines is None and "machine:" not in format_report(report)  # logged and replayed here
    with RunLog(run_db, readonly=True) as log:  # the device names the CPU kernels the floats came from
        assert log.run()["device"].endswith(f" {torch.backends.cpu.get_cpu_capability()} kernels)")
    # both runs sent their wall-clock timing_s/* to TensorBoard (values differ), and neither run log holds it:
    # the replay compares every metrics row and still passes
    for db in (run_db, report.replayed):
        tags = accumulator(db.parent / "tensorboard").Tags()["scalars"]
        assert {"questioner/timing_s/gen", "reasoner/timing_s/update", "eval/timing_s/step"} <= set(tags), db
        with RunLog(db, readonly=True) as log:
            assert not log.rows("metrics", "name like 'timing_s/%'"), db


def test_training_steps_log_their_prompt_lengths_in_tokens(run_db):
    """The tiny model's policy counts its prompts (chat template and image tokens): prompt_length/* per step."""
    with RunLog(run_db, readonly=True) as log:
        for role in ("questioner", "reasoner"):
            steps = [(i, s) for i, phase, s in log.done_steps() if phase == role]
            for i, s in steps:
                metrics = {r["name"]: r["value"] for r in log.step_rows("metrics", i, role, s)}
                low, mean, high = (metrics[f"prompt_length/{k}"] for k in ("min", "mean", "max"))
                assert 10 < low <= mean <= high and low == int(low) and high == int(high), (role, i, s)
                assert high < 2000, (role, i, s)
            assert len(steps) == 2


def test_tampered_reward_confidence_and_loss_are_named_exactly(run_db, tmp_path):
    copy = tamper(run_db, tmp_path / "t1.db",
                  "update rewards set value = value + 0.25 where key = 'i1/questioner/s1/p0/g1' and component = 'total'")
    copy = tamper(copy, tmp_path / "t2.db",
                  "update labels set confidence = 0.125 where question_key = 'i1/reasoner_set/s0/p1/g0'")
    copy = tamper(copy, tmp_path / "t3.db",
                  "update metrics set value = 42.0 where iteration = 1 and phase = 'reasoner' and step = 1 "
                  "and name = 'actor/loss'")
    report = replay_run(copy, out=tmp_path / "out" / "run.db", extra_plugins=PARSER)
    assert not report.ok
    named = [(d.table, d.key, d.column) for d in report.diff.divergences]
    assert named == [("rewards", ("i1/questioner/s1/p0/g1", "total"), "value"),
                     ("labels", ("i1/reasoner_set/s0/p1/g0",), "confidence"),
                     ("metrics", (1, "reasoner", 1, "actor/loss"), "value")]
    assert report.diff.first.b != report.diff.first.a
    text = format_report(report)
    assert "FIRST DIVERGENCE: rewards[i1/questioner/s1/p0/g1/total].value" in text
    assert "hook visplay_combine_rewards" in text and "plugin 'algorithm'" in text


def test_tampered_generation_reports_downstream_changes(run_db, tmp_path):
    # a vote of a unanimous question gets one more character: the test extractor's answer (length parity) flips
    # (with its digest made to match: an edit of the text alone is refused as a damaged log, tests/faults/test_replay.py)
    with RunLog(run_db, readonly=True) as log:
        question = next(r["question_key"] for r in log.rows("labels", "phase = 'questioner'") if r["confidence"] == 1)
        row = log.rows_matching("generations", key=f"{question}/v0")[0]
    vote = f"{question}/v0"
    digest = generation_digest(row["text"] + "x", list(row["token_ids"]))  # RunLog decodes the arrays
    copy = tamper(run_db, tmp_path / "gen.db", "update generations set text = text || 'x', digest = ? where key = ?",
                  (digest, vote))
    report = replay_run(copy, out=tmp_path / "out" / "run.db", extra_plugins=PARSER, limit=50)
    assert not report.ok
    first = report.diff.first
    assert (first.table, first.key, first.column) == ("answers", (vote,), "extracted")
    named = {(d.table, d.key, d.column) for d in report.diff.divergences}
    assert ("answers", (vote,), "extracted") in named
    assert ("labels", (question,), "answers") in named
    assert ("rewards", (question, "uncertainty"), "value") in named  # confidence 1 -> 2/3
    stats = report.diff.tables
    assert stats["generations"].differing == 0  # the generation is what the log says; what follows from it changed
    assert stats["rewards"].differing >= 1 and stats["labels"].differing == 1


class FlatQuestionerReward:
    """A what-if reward rule: every question scores 0.5 (the algorithm plugin's formula is bypassed)."""

    @hookimpl(tryfirst=True)
    def visplay_combine_rewards(self, ctx, role, components, items):
        return [0.5] * len(items) if role == "questioner" else None


def test_what_if_reward_plugin_lists_changed_rewards(run_db, tmp_path):
    copy = _copy_db(run_db, tmp_path)
    before = sha256_file(copy)
    report = replay_run(copy, extra_plugins=(*PARSER, FlatQuestionerReward()), what_if=True)
    assert report.mode == "what-if"
    rewards = report.changes["rewards"]
    with RunLog(copy, readonly=True) as log:
        totals = log.rows("rewards", "role = 'questioner' and component = 'total'")
    expected = sum(1 for r in totals if r["value"] != 0.5)
    assert expected > 0 and rewards["changed"] == expected
    assert all(b == 0.5 for _, _, _, b in rewards["largest"])
    assert report.changes["advantages"]["compared"] > 0
    assert sha256_file(copy) == before
    assert "what-if changes" in format_report(report)


def test_what_if_override_changes_filters(run_db, tmp_path):
    copy = _copy_db(run_db, tmp_path)
    before = sha256_file(copy)
    report = replay_run(copy, overrides=["plugins.algorithm.filter.band=[0.9,1.0]"], extra_plugins=PARSER)
    filters = report.changes["filters"]
    with RunLog(copy, readonly=True) as log:
        low = sum(1 for r in log.rows("labels", "phase = 'reasoner_set'") if r["confidence"] < 0.9)
    assert filters["kept_to_dropped"] == low > 0
    assert sha256_file(copy) == before


def test_slice_replays_one_step_from_its_checkpoint(run_db, tmp_path):
    report = replay_run(run_db, iteration=1, role="reasoner", step=1, out=tmp_path / "s" / "run.db",
                        extra_plugins=PARSER)
    assert report.ok, format_report(report)
    assert (report.slice.start, report.slice.stop) == ((1, "reasoner", 1), (1, "reasoner", 1))
    assert not report.slice.phase_start
    assert report.diff.tables["steps"].equal == 1
    assert report.diff.tables["rewards"].equal > 0 and report.diff.tables["questions"].equal == 0
    assert report.served == {"reasoner": report.diff.tables["generations"].equal}


def test_slice_without_step_state_starts_at_the_phase(run_db, tmp_path):
    copy_dir = tmp_path / "run"
    shutil.copytree(run_db.parent, copy_dir, ignore=shutil.ignore_patterns("replay"))
    shutil.rmtree(copy_dir / "checkpoints" / "state" / "reasoner-i1-s0")
    with RunLog(copy_dir / "run.db", readonly=True) as log:
        plan = resolve_start(log, copy_dir, plan_slice(log, 1, "reasoner", 1))
        assert (plan.start, plan.stop, plan.phase_start) == ((1, "reasoner", 0), (1, "reasoner", 1), True)
        whole = plan_slice(log, 1, None, None)
        assert (whole.start, whole.stop) == ((1, "questioner", 0), (1, "eval", 0))
        with pytest.raises(Exception, match="no committed step"):
            plan_slice(log, 3, None, None)
        with pytest.raises(Exception, match="--step needs --role"):
            plan_slice(log, 1, None, 0)


def test_resample_reruns_sampling_bit_identically(run_db, tmp_path):
    report = replay_run(run_db, resample=True, out=tmp_path / "r" / "run.db", extra_plugins=PARSER)
    assert report.ok, format_report(report)
    assert report.served == {} and report.diff.tables["generations"].equal > 0


def test_cli_replay_names_the_plugin_behind_a_divergence(run_db, tmp_path):
    # The CLI loads only the installed plugins: without the test parser the algorithm plugin parses the logged
    # questions differently, and the report must say so.
    out = subprocess.run([sys.executable, "-m", "visplay.cli", "replay", str(run_db), "--iteration", "1",
                          "--role", "questioner", "--step", "0", "--out", str(tmp_path / "c" / "run.db"), "-q"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FIRST DIVERGENCE: questions[i1/questioner/s0/p0/g0].valid" in out.stdout
    produced = next(line for line in out.stdout.splitlines() if "produced by:" in line)
    # every installed parser in call order (question_guard abstains unless its section turns it on)
    assert "'algorithm'" in produced and "(hook visplay_parse_question, firstresult" in produced, produced
