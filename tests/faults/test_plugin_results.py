"""Fault suite, plugin results (issue 17, item 6): what a plugin returns is checked where it enters the core, and
the error names the plugin and the hook that produced it (the typed hook proxy, visplay/hooks.py).

Before: a NaN reward was stored as NULL and trained on, strings and a component named ``total`` gave raw
ValueError / sqlite IntegrityError tracebacks, and a question hook returning the wrong shape was blamed on plugin
``games`` in ``visplay_run_start``. Each case runs the stand-in loop with one misbehaving plugin added.
"""

from __future__ import annotations

import math
import re

import pytest
from support.engine import standin_plugins
from support.faults import stand_in_run

from visplay.hookspecs import hookimpl
from visplay.log.runlog import RunLog
from visplay.plugins import PluginError


@pytest.fixture(autouse=True)
def _no_entry_points(no_autoload):
    yield


class BadReward:
    """A reward plugin whose ``extra`` component for the questioner is whatever ``make(n)`` returns."""

    plugin_name = "bad_reward"

    def __init__(self, make):
        self.make = make

    @hookimpl
    def visplay_reward_components(self, ctx, role, items):
        return self.make(len(items)) if role == "questioner" else None


class WrongShapeQuestions:
    """Answers the question hook first, with one generation too few per image."""

    plugin_name = "short_questions"

    @hookimpl(tryfirst=True)
    def visplay_generate_questions(self, ctx, sampler, images, n, seeds):
        from visplay.testing import _params  # the stand-in's own sampling parameters
        from visplay.types import Prompt

        prompts = [Prompt(user="Ask a question about the image.", image=img) for img in images]
        groups = sampler.sample(prompts, [_params(ctx.recipe.questioner, n, s) for s in seeds])
        return [group[:-1] for group in groups]


STOP = (1, "questioner", 0)

BAD_RESULTS = [  # (make(n), words of the expected message)
    (lambda n: {"extra": [math.nan] * n}, r"component 'extra'\[0\] is nan"),
    (lambda n: {"extra": [math.inf] * n}, r"component 'extra'\[0\] is inf"),
    (lambda n: {"extra": ["high"] * n}, r"component 'extra'\[0\] must be a number, got str 'high'"),
    (lambda n: {"extra": [1.0] * (n + 1)}, r"component 'extra' has 7 values for 6 items"),
    (lambda n: {"total": [1.0] * n}, r"'total'.*reserved"),
    (lambda n: [1.0] * n, r"expected \{component: values\}, got list"),
]


@pytest.mark.parametrize("make,words", BAD_RESULTS, ids=["nan", "inf", "string", "length", "total", "list"])
def test_bad_reward_result_names_plugin_and_hook(tmp_path, make, words):
    with pytest.raises(PluginError) as info:
        stand_in_run(tmp_path / "run", "reward.weights.extra=1.0", stop=STOP,
                     plugins=(*standin_plugins(), BadReward(make)))
    message = str(info.value)
    assert "'bad_reward'" in message and "visplay_reward_components" in message, message
    assert re.search(words, message), message
    with RunLog(tmp_path / "run" / "run.db", readonly=True) as log:
        assert (1, "questioner", 0) not in log.done_steps()  # nothing of the step was committed


def test_lazy_reward_values_are_read_once_and_logged(tmp_path):
    db = stand_in_run(tmp_path / "run", "reward.weights.extra=1.0", stop=STOP,
                      plugins=(*standin_plugins(), BadReward(lambda n: {"extra": (0.5 for _ in range(n))})))
    with RunLog(db, readonly=True) as log:
        values = [r["value"] for r in log.rows_matching("rewards", component="extra", iteration=1)]
    assert values and all(v == 0.5 for v in values)


def test_wrong_shape_from_the_question_hook_names_that_plugin(tmp_path):
    with pytest.raises(PluginError) as info:
        stand_in_run(tmp_path / "run", stop=STOP, plugins=(*standin_plugins(), WrongShapeQuestions()))
    message = str(info.value)
    assert "'short_questions'" in message and "visplay_generate_questions" in message, message
    assert "groups of sizes" in message, message
