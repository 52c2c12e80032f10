"""The replay plugin: answers the sampling hooks from a run's logged generations.

It is not an always-on plugin. ``visplay replay`` builds a :class:`ReplayPlugin` over the original run log (opened
read-only) and hands it to the engine through ``extra_plugins``; its ``tryfirst`` implementations of
``visplay_generate_questions`` and ``visplay_sample_answers`` then return the logged generations instead of
sampling, and everything downstream (parsing, votes, filters, rewards, advantages, the update) is recomputed by the
ordinary plugins. A request is matched to the log by where the engine is (``ctx.iteration/phase/step``), the role
that samples, the request seed the engine passed and the sample index, so the way the engine batches its calls does
not matter. A request the log cannot answer is an error (:class:`ReplayError`), or, for a what-if replay that
changed what gets asked (``missing="sample"``), it is sampled fresh and counted.

The plugin also records which plugin produced each value (:attr:`ReplayPlugin.producers`), so a divergence can name
the plugin behind it (e.g. the reward component ``uncertainty`` -> plugin ``algorithm``).
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from visplay.hookspecs import hookimpl
from visplay.types import Generation, Prompt

if TYPE_CHECKING:  # pragma: no cover
    import pluggy

    from visplay.context import RunContext
    from visplay.log.runlog import RunLog
    from visplay.types import ImageRecord

# Phases whose generations the engine logs; sampling elsewhere (e.g. a plugin's evaluation at iteration end) is
# recomputed by the ordinary sampler, which on CPU is deterministic given the weights the replay reproduced.
LOGGED_PHASES = ("questioner", "reasoner_set", "reasoner")
# Hooks whose producer a divergence report names; reward components are recorded per component.
TRACKED_HOOKS = ("visplay_load_policy", "visplay_parse_question", "visplay_extract_answers", "visplay_answer_key",
                 "visplay_reward_components", "visplay_combine_rewards", "visplay_filter_questions",
                 "visplay_make_optimizer", "visplay_generate_questions", "visplay_sample_answers")


class ReplayError(Exception):
    """The log cannot answer a sampling request the replayed engine made."""


class ReplayPlugin:
    """Serve logged generations to the engine. ``log`` is the original run's RunLog (read-only is enough)."""

    def __init__(self, log: RunLog, *, missing: str = "error", serve: bool = True, record: bool = True):
        if missing not in ("error", "sample"):
            raise ValueError(f"missing must be 'error' or 'sample', got {missing!r}")
        self.log = log
        self.missing = missing
        self.serve = serve  # False: only record which plugin produced what (``replay --resample``)
        # False: serve only, leave the other plugins' hook functions unwrapped (the engine's resume uses this to
        # recompute logged steps after a snapshot; see visplay/loop/engine.py ``catch_up``)
        self.record = record
        self.served: Counter[str] = Counter()  # generations answered from the log, per role
        self.sampled_fresh: Counter[str] = Counter()  # requests the log could not answer (what-if only)
        self.passed_through: Counter[str] = Counter()  # requests outside LOGGED_PHASES, per phase
        self.producers: dict[str, set[str]] = defaultdict(set)
        self._steps: dict[tuple[int, str, int], dict[tuple[str, int, int], dict[str, Any]]] = {}
        self._instrumented: set[int] = set()

    # --- hooks ------------------------------------------------------------------------------------------------

    @hookimpl(tryfirst=True)
    def visplay_image_source(self, ctx: RunContext, name: str, options: dict[str, Any]) -> None:
        """Never answers; the engine opens the pool first thing in every run, so provenance is recorded from here."""
        self._instrument(ctx.pm)

    @hookimpl(tryfirst=True)
    def visplay_generate_questions(self, ctx: RunContext, sampler: Any, images: Sequence[ImageRecord], n: int,
                                   seeds: Sequence[int]) -> list[list[Generation]] | None:
        """The questioner's logged generations for these images (``n`` each, in sample order)."""
        self._instrument(ctx.pm)
        return self._serve(ctx, "questioner", list(images), n, seeds) if self.serve else None

    @hookimpl(tryfirst=True)
    def visplay_sample_answers(self, ctx: RunContext, sampler: Any, questions: Sequence[tuple[ImageRecord, str]],
                               n: int, seeds: Sequence[int], purpose: str) -> list[list[Generation]] | None:
        """The reasoner's logged answers (votes or rollouts) for these questions."""
        self._instrument(ctx.pm)
        return self._serve(ctx, "reasoner", [image for image, _ in questions], n, seeds) if self.serve else None

    # --- matching ---------------------------------------------------------------------------------------------

    def _step_rows(self, iteration: int, phase: str, step: int) -> dict[tuple[str, int, int], dict[str, Any]]:
        where = (iteration, phase, step)
        if where not in self._steps:
            rows = self.log.generations(*where)
            self._steps = {where: {(r["role"], int(r["seed"]), int(r["sample_index"])): r for r in rows
                                   if r["seed"] is not None and r["sample_index"] is not None}}
        return self._steps[where]

    def _serve(self, ctx: RunContext, role: str, images: list[ImageRecord], n: int,
               seeds: Sequence[int]) -> list[list[Generation]] | None:
        if ctx.phase not in LOGGED_PHASES:
            self.passed_through[ctx.phase] += len(images)
            return None
        rows = self._step_rows(ctx.iteration, ctx.phase, ctx.step)
        out: list[list[Generation]] = []
        for image, seed in zip(images, seeds):
            found = [rows.get((role, int(seed), j)) for j in range(n)]
            problem = self._problem(ctx, role, image, int(seed), n, found)
            if problem is not None:
                if self.missing == "sample":
                    self.sampled_fresh[role] += len(images)
                    return None  # the ordinary sampling plugin answers this whole request
                raise ReplayError(problem)
            out.append([_generation(row, image) for row in found])
        self.served[role] += sum(len(g) for g in out)
        return out

    def _problem(self, ctx: RunContext, role: str, image: ImageRecord, seed: int, n: int,
                 found: list[dict | None]) -> str | None:
        where = f"iteration {ctx.iteration}, phase {ctx.phase!r}, step {ctx.step}"
        absent = [j for j, row in enumerate(found) if row is None]
        if absent:
            return (f"{self.log.path}: no logged {role} generation for request seed {seed} sample(s) {absent} "
                    f"(image {image.image_id[:12]}, {where}); the replayed run asked for something the original "
                    f"did not sample (was the recipe changed? use a what-if replay)")
        wrong = [row["key"] for row in found if row["image_id"] not in (None, image.image_id)]
        if wrong:
            return (f"{self.log.path}: logged generation {wrong[0]} is for image {found[0]['image_id'][:12]}, "
                    f"the replay asked about image {image.image_id[:12]} ({where})")
        return None

    # --- provenance -------------------------------------------------------------------------------------------

    def _instrument(self, pm: pluggy.PluginManager) -> None:
        """Wrap the tracked hook implementations once per plugin manager to record who produced what."""
        if not self.record or id(pm) in self._instrumented:
            return
        self._instrumented.add(id(pm))
        for hook in TRACKED_HOOKS:
            for impl in getattr(pm.hook, hook).get_hookimpls():
                if impl.plugin is self or getattr(impl.function, "_visplay_replay_wrapped", False):
                    continue
                impl.function = _recording(impl.function, hook, pm.get_name(impl.plugin), self.producers)

    def producer(self, hook: str, component: str | None = None) -> str | None:
        """Which plugin(s) returned a value for ``hook`` (and reward ``component``) during the replay."""
        names = self.producers.get(f"{hook}:{component}" if component else hook)
        return ", ".join(sorted(names)) if names else None


def _recording(function: Any, hook: str, plugin: str, producers: dict[str, set[str]]) -> Any:
    @functools.wraps(function)
    def wrapper(*args: Any) -> Any:
        result = function(*args)
        if result is not None:
            producers[hook].add(plugin)
            if hook == "visplay_reward_components" and isinstance(result, dict):
                for component in result:
                    producers[f"{hook}:{component}"].add(plugin)
            if hook == "visplay_filter_questions" and any(not d.keep for d in result):
                producers[f"{hook}:reject"].add(plugin)
        return result

    wrapper._visplay_replay_wrapped = True  # type: ignore[attr-defined]
    return wrapper


def _generation(row: dict[str, Any], image: ImageRecord) -> Generation:
    """Rebuild a Generation from its ``generations`` row; the image is the one the engine asked about."""
    prompt = Prompt(user=row["prompt_user"] or "", image=image, system=row["prompt_system"])
    # votes may be logged without log-probs (log.vote_logprobs): nothing downstream of a vote reads them
    return Generation(prompt=prompt, text=row["text"] or "", token_ids=_as_list(row["token_ids"]),
                      logprobs=_as_list(row["logprobs"]), seed=int(row["seed"]),
                      sample_index=int(row["sample_index"]), finish_reason=row["finish_reason"] or "stop")


def _as_list(value: Any) -> list:
    """RunLog decodes arrays (binary or legacy JSON) to lists; None (not logged) serves as empty."""
    return [] if value is None else list(value)
