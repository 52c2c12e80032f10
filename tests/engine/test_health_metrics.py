"""The health metrics of a GRPO step under EasyR1's and TRL's names (issue 27), recomputed here from the run log's
own rows: truncation, shortest response, groups with no reward variance, advantage range, per-component std."""

from __future__ import annotations

import statistics

import pytest
from support.engine import standin_plugins, standin_recipe

from visplay.log.runlog import RunLog
from visplay.loop.engine import run_recipe
from visplay.loop.phases import health_metrics, prompt_lengths
from visplay.types import ImageRecord, Prompt, Rollout


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
        return run_recipe(standin_recipe(tmp_path_factory.mktemp("health") / "run"), quiet=True,
                          extra_plugins=standin_plugins())


def _rollout(key: str, group: str, length: int, reward: float) -> Rollout:
    return Rollout(key=key, group=group, prompt=Prompt(user="q"), token_ids=[1] * length, old_logprobs=[0.0] * length,
                   reward=reward)


def test_health_metrics_by_hand():
    rollouts = [_rollout("a", "g0", 4, 1.0), _rollout("b", "g0", 2, 1.0),  # all equal: no signal
                _rollout("c", "g1", 4, 0.0), _rollout("d", "g1", 3, 1.0)]
    assert health_metrics(rollouts, [0.0, 0.0, -0.7, 0.7], max_new_tokens=4) == {
        "response_length/clip_ratio": 0.5, "response_length/min": 2.0, "frac_reward_zero_std": 0.5,
        "advantage/min": -0.7, "advantage/max": 0.7}


def test_prompt_length_by_hand():
    rollouts = [_rollout("a", "g0", 4, 1.0), _rollout("b", "g0", 2, 0.0)]
    metrics = health_metrics(rollouts, [0.5, -0.5], max_new_tokens=8, prompt_tokens=[10, 13])
    assert {k: v for k, v in metrics.items() if k.startswith("prompt_length/")} == {
        "prompt_length/mean": 11.5, "prompt_length/max": 13.0, "prompt_length/min": 10.0}
    assert not [k for k in health_metrics(rollouts, [0.5, -0.5], 8) if k.startswith("prompt_length/")]


class CountingPolicy:
    """Counts a prompt's tokens as its words plus 100 for an image, as a backend's ``sequence_lengths`` would."""

    def __init__(self):
        self.calls = []

    def sequence_lengths(self, prompts, responses):
        self.calls.append(len(prompts))
        return [len(p.user.split()) + (100 if p.image else 0) + len(r) for p, r in zip(prompts, responses)]


def test_prompt_lengths_encode_each_distinct_prompt_once():
    from PIL import Image

    image = ImageRecord(image_id="x", image=Image.new("RGB", (4, 4)), source="mem", meta={"unhashable": []})
    asks = [Rollout(key=f"q{k}", group="g0", prompt=Prompt(user="ask a question", image=image), token_ids=[1, 2],
                    old_logprobs=[0.0, 0.0], reward=0.0) for k in range(3)]
    answer = Rollout(key="a0", group="g1", prompt=Prompt(user="what is two plus two"), token_ids=[1],
                     old_logprobs=[0.0], reward=1.0)
    policy = CountingPolicy()
    assert prompt_lengths(policy, [*asks, answer]) == [103, 103, 103, 5]
    assert policy.calls == [2]  # the three identical questioner prompts were counted once
    assert prompt_lengths(object(), asks) is None  # a policy that cannot count its prompts: no prompt_length/*


@pytest.mark.parametrize(("role", "max_new_tokens", "kind"), [("reasoner", 4, "rollout"), ("questioner", 6, "question")])
def test_every_training_step_logs_them_as_its_rows_say(finished_run, role, max_new_tokens, kind):
    with RunLog(finished_run, readonly=True) as log:
        steps = sorted((i, s) for i, phase, s in log.done_steps() if phase == role)
        checked = 0
        for i, s in steps:
            metrics = {r["name"]: r["value"] for r in log.step_rows("metrics", i, role, s)}
            if metrics.get("set/empty"):  # nothing was kept: no update, no health to tell
                continue
            checked += 1
            advantages = log.step_rows("advantages", i, role, s)
            lengths = [len(g["token_ids"]) for g in log.rows(
                "generations", "iteration = ? and phase = ? and step = ? and kind = ?", [i, role, s, kind])]
            groups: dict[str, list[float]] = {}
            for a in advantages:
                groups.setdefault(a["grp"], []).append(a["reward"])
            assert metrics["response_length/clip_ratio"] == pytest.approx(
                sum(n >= max_new_tokens for n in lengths) / len(lengths))
            assert metrics["response_length/min"] == min(lengths)
            assert metrics["frac_reward_zero_std"] == pytest.approx(
                sum(len(set(g)) == 1 for g in groups.values()) / len(groups))
            assert metrics["advantage/min"] == min(a["advantage"] for a in advantages)
            assert metrics["advantage/max"] == max(a["advantage"] for a in advantages)
            components = {}
            for r in log.rows("rewards", "iteration = ? and role = ? and step = ?", [i, role, s]):
                if r["component"] != "total":
                    components.setdefault(r["component"], []).append(r["value"])
            for name, values in components.items():
                assert metrics[f"reward/{name}/std"] == pytest.approx(statistics.stdev(values)), name
    assert checked >= 2
