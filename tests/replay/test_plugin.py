"""The replay plugin serves logged generations through the real hook machinery and records who produced what."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from support.replay import build_log, question_key, question_seed, vote_seed

from visplay.context import RunContext
from visplay.hookspecs import hookimpl
from visplay.log.runlog import RunLog
from visplay.loop.serve import ReplayError, ReplayPlugin
from visplay.plugins import PluginError, get_plugin_manager
from visplay.types import AskedQuestion, Generation, ImageRecord, Prompt


class FreshSampler:
    """Stands in for the ordinary sampling plugin: answers what the replay plugin leaves alone."""

    calls = 0

    @hookimpl
    def visplay_generate_questions(self, ctx, sampler, images, n, seeds):
        FreshSampler.calls += 1
        return [[Generation(Prompt(user="fresh"), "fresh", [1], [-1.0], seed, j) for j in range(n)]
                for seed in seeds]


class ToyReward:
    @hookimpl
    def visplay_reward_components(self, ctx, role, items):
        return {"toy_len": [float(len(i)) for i in items]}


class Abstains:
    @hookimpl
    def visplay_reward_components(self, ctx, role, items):
        return None


def _image(image_id: str) -> ImageRecord:
    return ImageRecord(image_id=image_id, image=None, source="test")


@pytest.fixture()
def setup(tmp_path):
    path = build_log(tmp_path / "a.db")
    log = RunLog(path, readonly=True)
    yield path, log
    log.close()


def _ctx(tmp_path, *plugins) -> RunContext:
    pm = get_plugin_manager(autoload=False, extra=plugins)
    return RunContext(recipe=OmegaConf.create({"seed": 7}), pm=pm, run_dir=tmp_path)


def test_questions_are_served_from_the_log(tmp_path, setup):
    _, log = setup
    replay = ReplayPlugin(log)
    ctx = _ctx(tmp_path, replay, FreshSampler()).at(1, "questioner", 1)
    images = [_image("img1"), _image("img0")]  # order of the request, not of the log
    out = ctx.hooks.generate_questions(sampler=None, images=images, n=2,
                   seeds=[question_seed(1, 1), question_seed(1, 0)])
    assert [[g.text for g in gens] for gens in out] == [["<question>q10?</question>", "<question>q11?</question>"],
                                                         ["<question>q00?</question>", "<question>q01?</question>"]]
    first = out[0][1]
    row = log.rows("generations", "key = ?", [question_key(1, 1, 1)])[0]
    assert first.token_ids == row["token_ids"]
    assert first.logprobs == [-0.5, -0.5, -1.0 / 3]  # floats back bit for bit through JSON
    assert (first.seed, first.sample_index, first.finish_reason) == (question_seed(1, 1), 1, "stop")
    assert first.prompt == Prompt(user="user 1", image=images[0], system="sys")
    assert replay.served["questioner"] == 4
    assert FreshSampler.calls == 0


def test_votes_are_served_by_request_seed(tmp_path, setup):
    _, log = setup
    replay = ReplayPlugin(log)
    ctx = _ctx(tmp_path, replay).at(1, "questioner", 0)
    out = ctx.hooks.sample_answers(sampler=None, questions=[AskedQuestion(_image("img1"), "q11?")], n=3,
                   seeds=[vote_seed(0, 1, 1)], purpose="vote")
    assert [g.text for g in out[0]] == ["\\boxed{1}", "\\boxed{0}", "\\boxed{1}"]
    assert replay.served == {"reasoner": 3}


def test_unknown_request_is_a_clear_error(tmp_path, setup):
    _, log = setup
    ctx = _ctx(tmp_path, ReplayPlugin(log)).at(1, "questioner", 0)
    with pytest.raises(PluginError, match=r"no logged questioner generation for request seed 999 sample\(s\) \[0, 1\]"):
        ctx.hooks.generate_questions(sampler=None, images=[_image("img0")], n=2, seeds=[999])
    with pytest.raises(PluginError, match=r"sample\(s\) \[2\]"):  # asked for more samples than were logged
        ctx.hooks.generate_questions(sampler=None, images=[_image("img0")], n=3,
                 seeds=[question_seed(0, 0)])
    with pytest.raises(PluginError, match="is for image img0"):
        ctx.hooks.generate_questions(sampler=None, images=[_image("img1")], n=2,
                 seeds=[question_seed(0, 0)])
    ctx.at(1, "questioner", 5)  # a step the run never reached
    with pytest.raises(PluginError, match="step 5"):
        ctx.hooks.generate_questions(sampler=None, images=[_image("img0")], n=1, seeds=[1])


def test_what_if_samples_fresh_when_the_log_has_no_answer(tmp_path, setup):
    _, log = setup
    replay = ReplayPlugin(log, missing="sample")
    ctx = _ctx(tmp_path, replay, FreshSampler()).at(1, "questioner", 0)
    before = FreshSampler.calls
    out = ctx.hooks.generate_questions(sampler=None, images=[_image("img0")], n=2, seeds=[999])
    assert [g.text for g in out[0]] == ["fresh", "fresh"]
    assert FreshSampler.calls == before + 1 and replay.sampled_fresh == {"questioner": 1}
    with pytest.raises(ValueError, match="missing"):
        ReplayPlugin(log, missing="maybe")


def test_producers_name_the_plugin_behind_a_reward_component(tmp_path, setup):
    """Who produced a component is known where it is computed (ctx.hooks) and logged with it; no wrapping of
    other plugins' functions is involved, so their results are untouched (the abstaining plugin adds nothing)."""
    _, log = setup
    replay = ReplayPlugin(log)
    ctx = _ctx(tmp_path, replay, ToyReward(), Abstains()).at(1, "questioner", 0)
    toy_name = ctx.pm.get_name(next(p for p in ctx.pm.get_plugins() if isinstance(p, ToyReward)))
    assert ctx.hooks.reward_components("questioner", ["ab", "c"]) == {"toy_len": (toy_name, [2.0, 1.0])}
    assert ctx.hooks.reward_components(role="questioner", items=["x"]) == {"toy_len": (toy_name, [1.0])}


def test_replay_error_is_an_exception_type():
    assert issubclass(ReplayError, Exception)
