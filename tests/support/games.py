"""Stand-ins for testing the games plugin without the models, algorithm and engine plugins.

``StandInPlugin`` answers the sampling, extraction and answer-key hooks; visplay.testing's ScriptedSampler replies
from a scripted function of (image, question), so tests know exactly which answers are right.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from visplay.hookspecs import hookimpl
from visplay.session import PluginSession
from visplay.testing import ScriptedSampler, StandinPolicy
from visplay.types import Prompt, SamplingParams

StandInPolicy = StandinPolicy  # the games tests' name for visplay.testing's stand-in policy
__all__ = ["BOXED", "ScriptedSampler", "StandInPlugin", "StandInPolicy", "make_ctx"]

BOXED = re.compile(r"\\boxed\{([^}]*)\}")


class StandInPlugin:
    """Minimal answers to the hooks the games plugin calls: the prompt is the bare question."""

    @hookimpl
    def visplay_sample_answers(self, ctx, sampler, questions, n, seeds, purpose):
        prompts = [Prompt(user=q.text, image=q.image) for q in questions]
        return sampler.sample(prompts, [SamplingParams(n=n, seed=s) for s in seeds])

    @hookimpl
    def visplay_extract_answers(self, ctx, texts):
        out = []
        for t in texts:
            found = BOXED.findall(t)
            out.append(found[-1].strip() if found else None)
        return out

    @hookimpl
    def visplay_answer_key(self, ctx, answer):
        return " ".join(answer.lower().split())


def make_ctx(tmp_path: Path | None = None, overrides: Sequence[str] = (), log=None, standin: bool = True,
             plugins: Sequence[object] = (), autoload: bool = False):
    """A RunContext over the tiny recipe with data.source=games, the games plugin and (optionally) the stand-in,
    plus ``plugins`` (or every installed plugin with ``autoload``), through one plugin session."""
    import visplay_games.plugin as games_plugin

    # Pin what the tests assume, whatever tiny.yaml sets (no cold start unless a test asks for one).
    recipe_overrides = ["data.source=games", "data.num_images=12", "plugins.games.image_size=64",
                        "plugins.games.held_out=6", "plugins.games.cold_start_steps=0",
                        "plugins.games.cold_start_reasoner_steps=null", "plugins.games.cold_start_images=48",
                        "plugins.games.cold_start_think_chars=16", "plugins.games.cold_start_describe=true",
                        "plugins.games.games=[2048,shisen,swap,shapes,bars,clock]",
                        "plugins.games.held_out_questions=2", "plugins.games.eval_votes=3", *overrides]
    extra = (games_plugin, *plugins, *((StandInPlugin(),) if standin else ()))
    session = PluginSession(extra=extra, autoload=autoload)
    return session.context(session.load_recipe("tiny", recipe_overrides), tmp_path or Path("."), log=log)
