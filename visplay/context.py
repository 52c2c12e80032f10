"""The run context handed to every hook: the recipe, the run log, seeds, and where the engine is."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visplay.hooks import Hooks
from visplay.seeding import PathPart, derive_seed

if TYPE_CHECKING:  # pragma: no cover
    import pluggy
    from omegaconf import DictConfig

    from visplay.log.runlog import RunLog


@dataclass
class RunContext:
    """What a hook may read. ``log`` is None outside a run (e.g. ``visplay eval`` without a run database).

    ``iteration``/``phase``/``step`` say where the engine is; phases are ``cold_start``, ``questioner``
    (questioner training), ``reasoner_set`` (building the reasoner's data), ``reasoner`` (reasoner training) and
    ``eval``.
    """

    recipe: DictConfig
    pm: pluggy.PluginManager
    run_dir: Path
    log: RunLog | None = None
    iteration: int = 0
    phase: str = ""
    step: int = 0
    progress: Any = None  # the terminal's Progress during a run (visplay/loop/progress.py); None elsewhere
    session: Any = None  # the visplay.session.PluginSession that built ``pm`` (None: a context made by hand)

    @property
    def variant(self) -> str:
        return self.recipe.variant

    @property
    def seed(self) -> int:
        return int(self.recipe.seed)

    def seed_for(self, *path: PathPart) -> int:
        """A seed for the draw named by ``path`` (see visplay.seeding)."""
        return derive_seed(self.seed, *path)

    @cached_property
    def hooks(self) -> Hooks:
        """The typed hook calls of this run (visplay.hooks): ``ctx.hooks.generate_questions(...)`` and so on."""
        return Hooks(self)

    def report_progress(self, done: int, total: int, unit: str = "step", **postfix: float) -> None:
        """Say how far long work inside one engine step is (a cold-start SFT step, evaluation items); the terminal's
        bar shows these counts. A no-op outside a run."""
        if self.progress is not None:
            self.progress.substep(done, total, unit, postfix or None)

    def with_overrides(self, overrides: list[str], **changes: Any) -> RunContext:
        """This context with ``key=value`` overrides applied to its recipe, checked against the same plugins (a
        judge model loaded through the model hooks, a greedy variant of the sampling settings...)."""
        from visplay import loader
        from visplay.session import declare

        declared = self.session.declared if self.session is not None else declare(self.pm)
        return replace(self, recipe=loader.load(self.recipe, overrides, declared), **changes)

    def at(self, iteration: int, phase: str, step: int) -> RunContext:
        self.iteration, self.phase, self.step = iteration, phase, step
        return self
