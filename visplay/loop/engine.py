"""The self-play engine: PAPER.md's loop, step by step, through hooks, into the run log.

Iteration i = 1..K:
  1. train questioner_i against the frozen reasoner_{i-1}      (phase ``questioner``,   steps 0..S_q-1)
  2. build the reasoner's set: questioner_i asks, reasoner_{i-1} votes, filters keep   (``reasoner_set``)
  3. train reasoner_i on the kept questions and silver labels  (phase ``reasoner``,     steps 0..S_r-1)
  4. checkpoint questioner_v{i}/reasoner_v{i}; ``visplay_iteration_end``                (phase ``eval``)
Before iteration 1 of a fresh run: ``visplay_run_start`` (phase ``cold_start``), then both roles are saved as v0.

Every step commits atomically with its ``steps`` row, so the first step without one is where ``resume`` goes on;
the training role's weights and optimizer state are snapshotted every ``checkpoint.every`` steps
(visplay/loop/checkpoints.py), and a resume between snapshots recomputes the committed steps after the newest one
from the run log (``SelfPlay.catch_up``), so the resumed run continues bit-exactly. The step bodies live in visplay/loop/phases.py.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from statistics import fmean
from typing import Any

from omegaconf import DictConfig

from visplay.config import ROLES, RecipeError
from visplay.context import RunContext
from visplay.keys import rank
from visplay.loader import require_served
from visplay.log.runlog import KeptQuestion, RunLog, RunLogError
from visplay.log.schema_docs import plugin_table_docs, write_datasette_metadata
from visplay.loop import lifecycle, phases
from visplay.loop.checkpoints import Roles, state_name, version_name
from visplay.loop.progress import PHASE_TITLES, Progress, start_line, summary_line
from visplay.loop.runsetup import (
    RunExistsError,
    is_rank0,
    join_process_group,
    open_run,
    preflight,
    prepare_run_dir,
    run_lock,
)
from visplay.session import PluginSession
from visplay.types import ImageRecord

__all__ = ["RunExistsError", "SelfPlay", "iteration_summary", "resume_run_dir", "run_recipe", "start_run"]

log = logging.getLogger("visplay.loop.engine")

Step = tuple[int, str, int]


# --- the run -----------------------------------------------------------------------------------------------------


def run_recipe(recipe: DictConfig | str | Path, *, session: PluginSession | None = None,
               run_dir: str | Path | None = None, db_path: str | Path | None = None,
               extra_plugins: Iterable[Any] = (), overwrite: bool = False, resume: bool = False, quiet: bool = False,
               start: Step | None = None, stop: Step | None = None,
               plugin_names: Collection[str] | None = None, accept_changed_images: bool = False,
               skip_checks: Collection[str] = ()) -> Path:
    """Run (or resume) a recipe; return the path of its run.db.

    :param recipe: a loaded recipe, or a recipe name/path.
    :param session: the command's plugin session (default: a new one of the entry-point plugins, ``plugin_names``
        only, and ``extra_plugins``); the run uses its one plugin manager.
    :param run_dir: where run.db, checkpoints/ and report/ go (default: ``recipe.run_dir``).
    :param db_path: the run log (default: ``<run_dir>/run.db``).
    :param extra_plugins: plugin objects registered after the entry-point ones (tests, replay), without a session.
    :param overwrite: delete an existing run directory first (fresh runs only).
    :param resume: continue the run in ``run_dir`` from its first uncommitted step.
    :param start: treat every step before this (iteration, phase, step) as done (its checkpoints must exist).
    :param stop: return after committing this step (inclusive); the run is then left resumable.
    :param plugin_names: load only these entry-point plugins (replay: the set the original run logged).
    :param accept_changed_images: on resume, continue although the image pool differs from the logged one.
    :param skip_checks: recipe keys (or sections) ``visplay_check_inputs`` leaves unchecked (replay: the sinks).
    """
    session = session or PluginSession(extra=tuple(extra_plugins), only=plugin_names)
    cfg = session.recipe(recipe)  # checked against this session's plugins (their sections and names)
    run_dir = Path(run_dir or cfg.run_dir)
    db_path = Path(db_path or run_dir / "run.db")
    require_served(cfg, session.declared, f"recipe {cfg.name!r}")
    preflight(cfg)
    # the files the plugins' settings name (model, images, metrics sinks): refused before anything is created or
    # resumed, so a run never fails at its first step for a missing package or an unwritable folder
    session.context(cfg, run_dir).hooks.check_inputs(frozenset(skip_checks))
    if resume:
        if not db_path.is_file():
            raise RecipeError(f"{db_path}: no run log to resume (start it with `visplay run`)")
    elif is_rank0():
        prepare_run_dir(run_dir, db_path, overwrite)
    shadow = join_process_group(session.context(cfg, run_dir), run_dir, db_path, resume)
    real_run_dir = run_dir
    if shadow is not None:  # a rank other than 0 runs the same loop in a private copy of the run
        run_dir, db_path, quiet = shadow, shadow / "run.db", True
    try:
        with contextlib.ExitStack() as stack:
            # SIGINT/SIGTERM abandon the step in progress and raise lifecycle.RunStopped with the resume command
            stack.enter_context(lifecycle.stop_on_signals(real_run_dir))
            if shadow is None:  # one writer per run directory, for the run's whole life (rank 0 holds it)
                stack.enter_context(run_lock(run_dir))
            runlog = stack.enter_context(RunLog(db_path, create=True))
            if shadow is None:
                # `datasette run.db -m datasette.json` documents every column, the plugins' tables' too
                write_datasette_metadata(db_path, plugin_table_docs(session.pm))
            progress = Progress(quiet=quiet, iterations=cfg.iterations, silent=shadow is not None)
            runlog.on_event = progress.on_event  # warnings (skipped images, empty sets...) reach the terminal
            ctx = session.context(cfg, run_dir, log=runlog, progress=progress)
            pool = open_run(ctx, resumed=resume, accept_changed_images=accept_changed_images)
            with lifecycle.recorded(runlog, ctx):  # runs.status = stopped / failed, with an event, if it ends early
                finished = SelfPlay(ctx, pool, progress, start, stop).run()
            if finished:
                runlog.set_run(status="finished", finished_at=time.time())
    finally:
        if shadow is not None:
            shutil.rmtree(shadow, ignore_errors=True)
    return db_path


# --- the loop ----------------------------------------------------------------------------------------------------


class SelfPlay:
    """Runs the schedule of steps, skipping committed ones, each step in one run-log transaction."""

    def __init__(self, ctx: RunContext, pool: Iterable[ImageRecord], progress: Progress, start: Step | None,
                 stop: Step | None):
        # a plain list: the ImageSource protocol promises only len/iter, the engine also indexes
        self.ctx, self.pool, self.progress = ctx, list(pool), progress
        self.cfg = ctx.recipe
        self.roles = Roles(ctx)
        self.images_by_id = {record.image_id: record for record in self.pool}
        self.done = ctx.log.done_steps()
        self.start, self.stop = start, stop
        self.keep_states = os.environ.get("VISPLAY_KEEP_STATES", "") not in ("", "0")
        self._rewards: list[float] = []  # this phase's step rewards, for the bar's running mean
        self._step_started = time.perf_counter()  # when the step in progress began (its ``timing_s/step``)

    def run(self) -> bool:
        """PAPER.md's loop. Returns False when it stopped at ``stop`` before the end."""
        try:
            self.cold_start()
            self.end_iteration(0)  # the starting models are evaluated too (e.g. gold accuracy after the cold start)
            if (line := start_line(self.ctx.hooks.summary_fields(0))) is not None:
                self.progress.say(line)
            for i in range(1, self.cfg.iterations + 1):
                self.train_questioner(i)  # 1. questioner_i against the frozen reasoner_{i-1}
                self.build_reasoner_set(i)  # 2. questioner_i asks, reasoner_{i-1} votes, the filters keep
                self.train_reasoner(i)  # 3. reasoner_i on the kept questions and their silver labels
                self.end_iteration(i)  # 4. <role>_v{i} are checkpointed; plugins evaluate the iteration
                self.progress.say(summary_line(i, self.cfg.iterations, iteration_summary(self.ctx.log, i),
                                               self.ctx.hooks.summary_fields(i)))
        except _Stopped:
            return False
        finally:
            self.progress.close()
        return True

    # --- phases ---------------------------------------------------------------------------------------------

    def cold_start(self) -> None:
        for _ in self.steps(0, "cold_start", 1):
            questioner = self.roles.policy("questioner", None)
            reasoner = self.roles.policy("reasoner", None)
            # inside the step: rows the plugin writes (e.g. cold-start data) commit with the step, or not at all
            with self.ctx.log.step(0, "cold_start", 0):
                metrics = self.ctx.hooks.run_start(questioner, reasoner)
                saved = {role: self.roles.save(role, version_name(role, 0), with_optimizer=False) for role in ROLES}
                for role, (tmp, files) in saved.items():
                    self.roles.commit(tmp, version_name(role, 0), role, 0, 0, self._with_hash(role, files))
                self.ctx.log.metrics(0, "cold_start", 0, metrics)
            self._committed(0, "cold_start", 0, metrics)

    def train_questioner(self, i: int) -> None:
        for s in self.steps(i, "questioner", self.cfg.questioner.steps):
            self.catch_up("questioner", i, s)
            self.commit_training("questioner", i, s, self.training_step("questioner", i, s))

    def build_reasoner_set(self, i: int) -> None:
        chunks = self.reasoner_set_chunks(i)
        for s in self.steps(i, "reasoner_set", len(chunks)):
            self.commit(i, "reasoner_set", s,
                        phases.reasoner_set_step(self.ctx, self.roles, chunks[s], self.images_by_id))

    def train_reasoner(self, i: int) -> None:
        kept = self.kept_set(i)  # read back from the log, so a resumed run trains on the very same set
        if not kept and not all(self.is_done((i, "reasoner", s)) for s in range(self.cfg.reasoner.steps)):
            asked = len(self.ctx.log.filters_of(i))
            self.progress.warn(f"empty_reasoner_set/i{i}", f"iteration {i}: the filters kept 0 of {asked} questions; "
                               f"reasoner training is skipped (reasoner_v{i} = reasoner_v{i - 1})", limit=1)
        for s in self.steps(i, "reasoner", self.cfg.reasoner.steps):
            self.catch_up("reasoner", i, s, kept)
            self.commit_training("reasoner", i, s, self.training_step("reasoner", i, s, kept))

    def training_step(self, role: str, i: int, s: int, kept: list[KeptQuestion] | None = None) -> phases.StepResult:
        """Step ``s`` of ``role``'s training in iteration ``i`` (the context must be at that step)."""
        if role == "questioner":
            return phases.questioner_step(self.ctx, self.roles, self.pool, self.images_by_id)
        batch = phases.reasoner_batches(self.ctx, kept or [], s, self.cfg.reasoner.questions_per_step)
        return phases.reasoner_step(self.ctx, self.roles, batch, self.images_by_id)

    def end_iteration(self, i: int) -> None:
        for _ in self.steps(i, "eval", 1):
            questioner = self.roles.frozen("questioner", version_name("questioner", i))
            reasoner = self.roles.frozen("reasoner", version_name("reasoner", i))
            with self.ctx.log.step(i, "eval", 0):  # plugin rows (e.g. gold evaluations) commit with the step
                metrics = self.ctx.hooks.iteration_end(i, questioner, reasoner)
                self.ctx.log.metrics(i, "eval", 0, metrics)
            self._committed(i, "eval", 0, metrics)

    # --- steps ----------------------------------------------------------------------------------------------

    def steps(self, iteration: int, phase: str, total: int) -> Iterator[int]:
        """The phase's uncommitted steps, with the context set and the progress bar advanced; raises _Stopped
        once the ``stop`` step is committed."""
        todo = [s for s in range(total) if not self.is_done((iteration, phase, s))]
        self.progress.phase(iteration, phase, total, total - len(todo))
        log.info("iteration %d %s: %d step(s), %d already committed", iteration, PHASE_TITLES.get(phase, phase),
                 total, total - len(todo))  # -v: a line per phase and per step
        self._rewards: list[float] = []
        for s in todo:
            self.ctx.at(iteration, phase, s)
            self._step_started = time.perf_counter()
            yield s
            # the running mean of this phase's step rewards (steps run in this process)
            self.progress.advance({"reward": fmean(self._rewards)} if self._rewards else None)
            if self.stop is not None and (iteration, phase, s) == tuple(self.stop):
                raise _Stopped

    def commit_training(self, role: str, i: int, s: int, result: phases.StepResult) -> None:
        """Commit a training step of ``role``: its rows, and every ``checkpoint.every`` steps (and at the phase's
        last step, as ``<role>_v<i>``: the model without optimizer state) its snapshot, in one transaction."""
        last = s == self.cfg[role].steps - 1
        snapshot = last or (s + 1) % self.cfg.checkpoint.every == 0
        name = version_name(role, i) if last else state_name(role, i, s)
        self.roles.trained(role, i, s, name)
        saved = None
        if snapshot:
            with result.timed("save_checkpoint"):
                # the phase's last step writes the model alone: ``<role>_v<i>`` is a folder to hand to other tools
                # (lmms-eval, from_pretrained), and its optimizer state is never read (each iteration starts a
                # fresh optimizer on it, as the released code restarts training per iteration)
                saved = self.roles.save(role, name, with_optimizer=not last)
        with self.ctx.log.step(i, role, s):
            self._write(result)
            if saved is not None:
                self.roles.commit(saved[0], name, role, i, s, self._with_hash(role, saved[1]))
        if saved is not None and not self.keep_states:
            self.roles.prune_states(role, None if last else self.cfg.checkpoint.keep)
        self._committed(i, role, s, result.metrics, result.timing)

    def catch_up(self, role: str, i: int, s: int, kept: list[KeptQuestion] | None = None) -> None:
        """Before step ``s``: when the state after step s-1 is neither live nor on disk (a resume between
        snapshots), load the newest snapshot and recompute the committed steps after it from the run log.

        The log is the write-ahead log: the replay's log server serves those steps' logged generations, the ordinary
        plugins recompute rewards and updates, and nothing is written again. Each recomputed step's advantages and
        metrics must equal the logged ones bit for bit, else the resume stops and says where.
        """
        previous = state_name(role, i, s - 1)
        if s == 0 or self.roles.holds_weights(role, i, previous) or self.roles.path(previous).is_dir():
            return
        start = self.roles.newest_snapshot(role, i, before=s - 1)
        if any((i, role, u) not in self.done for u in range(start + 1, s)):
            return  # skipped by ``start``, not logged: nothing to recompute from (the trainer names the missing state)
        from visplay.loop.serve import ReplayPlugin  # what replay serves the logged generations with

        plugin = ReplayPlugin(self.ctx.log)
        self.ctx.pm.register(plugin, name="visplay-resume-from-log")
        try:
            for u in range(start + 1, s):
                self.ctx.at(i, role, u)
                result = self.training_step(role, i, u, kept)
                self.roles.trained(role, i, u, state_name(role, i, u))
                self._check_recomputed(role, i, u, result)
        finally:
            self.ctx.pm.unregister(plugin)
            self.ctx.at(i, role, s)
        self.ctx.log.event("steps_recomputed", f"{role} steps {start + 1}..{s - 1} of iteration {i} recomputed from "
                           f"the run log after snapshot step {start}", level="info", source="engine",
                           payload={"role": role, "iteration": i, "snapshot_step": start, "steps": s - 1 - start})

    def _check_recomputed(self, role: str, i: int, u: int, result: phases.StepResult) -> None:
        """A recomputed step must reproduce its logged advantages and metrics: bit for bit on CPU; a GPU's
        reduction order may move them slightly (RECOMPUTE_TOLERANCE, relative), which is logged as a warning."""
        logged = {r["key"]: r["advantage"] for r in self.ctx.log.step_rows("advantages", i, role, u)}
        recomputed = {r["key"]: r["advantage"] for r in result.rows.get("advantages", [])}
        metrics = {r["name"]: r["value"] for r in self.ctx.log.step_rows("metrics", i, role, u)
                   if not r["name"].startswith("time/")}
        # a metric this version adds that the logged step lacks (a run started before it) is not a disagreement
        new_metrics = {k: float(v) for k, v in result.metrics.items() if not k.startswith("time/") and k in metrics}
        for what, a, b in (("advantages", logged, recomputed), ("metrics", metrics, new_metrics)):
            differing = sorted(k for k in set(a) | set(b) if repr(a.get(k)) != repr(b.get(k)))
            if not differing:
                continue
            far = [k for k in differing if not _close(a.get(k), b.get(k))]
            where = f"recomputing {role} step {u} of iteration {i} from the run log gave different {what}"
            if far:
                column = "advantage" if what == "advantages" else "value"
                more = f" (and {len(far) - 1} more)" if len(far) > 1 else ""
                raise RecomputedStepMismatch(
                    f"{self.ctx.log.path}: {where}: {what}[{far[0]}].{column} is {a.get(far[0])!r} in the run log, "
                    f"{b.get(far[0])!r} recomputed{more}. The run log was edited after the run, or the run's "
                    f"plugins changed since the step was logged, so resuming would silently continue from other "
                    f"weights. Restore the run log from a copy (or undo the edit, or install the plugins the run "
                    f"used) and resume again, or start the run over with `visplay run <recipe> --overwrite`.")
            self.ctx.log.event("recomputed_step_differs", f"{where} within {RECOMPUTE_TOLERANCE} (relative): "
                               f"{differing[:3]}", source="engine", payload={"role": role, "step": u, "what": what})

    def commit(self, i: int, phase: str, s: int, result: phases.StepResult) -> None:
        with self.ctx.log.step(i, phase, s):
            self._write(result)
        self._committed(i, phase, s, result.metrics, result.timing)

    def is_done(self, step: Step) -> bool:
        if step in self.done:
            return True
        return self.start is not None and _order(step) < _order(tuple(self.start))

    # --- helpers ------------------------------------------------------------------------------------------

    def reasoner_set_chunks(self, i: int) -> list[list[ImageRecord]]:
        """The set's images (a seeded permutation of the pool, or with ``reasoner.set_order: first`` the pool in
        its order, cycled to ``set_images``) in step-sized chunks."""
        import numpy as np

        n, size = self.cfg.reasoner.set_images, max(1, self.cfg.questioner.images_per_step)
        order = np.arange(len(self.pool)) if self.cfg.reasoner.set_order == "first" else \
            np.random.default_rng(self.ctx.seed_for(i, "reasoner_set", "images")).permutation(len(self.pool))
        images = [self.pool[int(order[k % len(order)])] for k in range(n)]
        return [images[k:k + size] for k in range(0, n, size)]

    def kept_set(self, i: int) -> list[KeptQuestion]:
        return self.ctx.log.kept_set(i)

    def _write(self, result: phases.StepResult) -> None:
        for table, rows in result.rows.items():
            self.ctx.log.insert(table, rows)
        self.ctx.log.metrics(self.ctx.iteration, self.ctx.phase, self.ctx.step, result.metrics)

    def _with_hash(self, role: str, files: dict[str, str]) -> dict[str, str]:
        return {**files, "weights_sha256": self.roles.held[role].policy.weights_sha256()}

    def _committed(self, i: int, phase: str, s: int, metrics: dict[str, float],
                   timing: dict[str, float] | None = None) -> None:
        """After a step's commit: the bar, the metric checks and the sinks (``visplay_log_metrics``), which also get
        the step's wall-clock ``timing_s/*`` (its parts, and ``timing_s/step`` from its start to its commit)."""
        timing = {**(timing or {}), "timing_s/step": time.perf_counter() - self._step_started}
        log.info("iteration %d %s step %d committed in %.1f s%s", i, PHASE_TITLES.get(phase, phase), s,
                 timing["timing_s/step"], f", reward/mean {metrics['reward/mean']:.3f}" if "reward/mean" in metrics
                 else "")
        self.done.add((i, phase, s))
        self.progress.check_metrics(i, phase, s, metrics)  # NaN/inf, a high share of invalid questions
        if "reward/mean" in metrics and math.isfinite(metrics["reward/mean"]):
            self._rewards.append(metrics["reward/mean"])
        self.ctx.at(i, phase, s).hooks.log_metrics(i, phase, s, metrics, timing)


class RecomputedStepMismatch(RunLogError):
    """A step recomputed from the run log on resume does not reproduce its logged advantages or metrics."""


class _Stopped(Exception):
    """The ``stop`` step was committed: the run returns early, resumable."""


# How far a recomputed value may move (relative) before a resume refuses to go on: GPU kernels do not reproduce
# their reductions bit for bit; a changed plugin or a tampered log moves values much further.
RECOMPUTE_TOLERANCE = 1e-3


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return False
    return abs(a - b) <= RECOMPUTE_TOLERANCE * max(1.0, abs(a), abs(b))


def _order(step: Step) -> tuple[int, int, int]:
    return rank(step)


def iteration_summary(runlog: RunLog, i: int) -> dict[str, float | None]:
    """The core numbers of an iteration's summary line, read back from the log (so they survive a resume);
    plugins add their own through ``visplay_summary_fields``."""
    def metric(phase: str, name: str) -> float | None:
        values = runlog.metric_values(name, iteration=i, phase=phase)
        return fmean(values) if values else None

    labels = runlog.labels_of(i)
    filters = runlog.filters_of(i)
    kept = sum(r["keep"] for r in filters)
    return {
        "questioner_reward": metric("questioner", "reward/mean"),
        "confidence": fmean(r["confidence"] for r in labels) if labels else None,
        "kept": kept, "set_size": len(filters), "kept_frac": kept / len(filters) if filters else None,
        "reasoner_reward": metric("reasoner", "reward/mean"),
    }


# --- commands ------------------------------------------------------------------------------------------------------


def start_run(cfg: DictConfig, *, session: PluginSession, nproc: int | None, overwrite: bool, quiet: bool,
              argv: list[str]) -> int:
    """``visplay run``: relaunch under torchrun when more than one training process is asked for (``--nproc``,
    else ``distributed.nproc``; 0 = one per training GPU of the placement), else run the recipe and its report."""
    from visplay.scale import distributed, placement

    ctx = session.context(cfg, cfg.run_dir)
    ctx.hooks.check_inputs()  # before any relaunch: a missing model path is one clear error, not one per process
    nproc = placement.training_processes(ctx, requested=nproc)
    if nproc > 1 and "LOCAL_RANK" not in os.environ:
        return int(distributed.relaunch_under_torchrun(argv, nproc))
    run_dir = Path(cfg.run_dir)
    started = time.time()
    db_path = run_recipe(cfg, session=session, run_dir=run_dir, overwrite=overwrite, quiet=quiet)
    if is_rank0():
        _finish(cfg, run_dir, db_path, time.time() - started, session, quiet)
    return 0


def resume_run_dir(run_dir: Path, *, quiet: bool, accept_changed_images: bool = False,
                   session: PluginSession | None = None) -> int:
    """``visplay resume runs/<name>``: continue from the first step without a ``steps`` row."""
    session = session or PluginSession()
    recipe_file = run_dir / "recipe.yaml"
    if not (run_dir / "run.db").is_file() or not recipe_file.is_file():
        raise RecipeError(f"{run_dir}: not a visplay run directory (needs run.db and recipe.yaml)")
    # the log first: one a newer visplay wrote is refused for its version, not for a recipe key unknown here
    with RunLog(run_dir / "run.db", readonly=True) as runlog:
        row = runlog.run()
        done = len(runlog.done_steps())
    cfg = session.load_recipe(str(recipe_file))
    if row is not None and row.get("recipe_yaml"):
        cfg = _logged_recipe(session, cfg, row["recipe_yaml"], recipe_file)
    if row is not None and row["status"] == "finished":
        print(f"{run_dir} already finished; nothing to resume")
        return 0
    print(f"resuming {run_dir} after {done} committed steps", file=sys.stderr)
    started = time.time()
    db_path = run_recipe(cfg, session=session, run_dir=run_dir, resume=True, quiet=quiet,
                         accept_changed_images=accept_changed_images)
    if is_rank0():
        _finish(cfg, run_dir, db_path, time.time() - started, session, quiet)
    return 0


# Recipe keys that describe a run without changing what it computes: editing them in recipe.yaml does not block
# a resume (the run log's recipe, which holds the original text, is the one resumed).
DESCRIPTIVE_KEYS = ("description", "setup")


def _logged_recipe(session: PluginSession, on_disk: DictConfig, logged_yaml: str, recipe_file: Path) -> DictConfig:
    """The run log's recipe, the authority on resume. ``recipe.yaml`` may differ from it only in descriptive keys
    (a warning); any other difference is refused naming the keys."""
    from omegaconf import OmegaConf

    from visplay.config import recipe_yaml
    from visplay.log.diff import recipe_changes

    logged = session.load_recipe(OmegaConf.create(logged_yaml))
    changed = [key for key, _, _ in recipe_changes(recipe_yaml(logged), recipe_yaml(on_disk))]
    semantic = [k for k in changed if k.split(".")[0] not in DESCRIPTIVE_KEYS]
    if semantic:
        shown = ", ".join(semantic[:8]) + (f" (+{len(semantic) - 8} more)" if len(semantic) > 8 else "")
        raise RecipeError(f"{recipe_file} differs from the recipe this run started with (its run log holds it) at "
                          f"{shown}; a resume continues the logged run unchanged. Restore those keys, or start a new "
                          f"run (or a what-if replay) with the changed recipe")
    if changed:
        print(f"note: {recipe_file}: {', '.join(changed)} edited since the run started; resuming with the run log's "
              f"recipe", file=sys.stderr)
    return logged


def _finish(cfg: DictConfig, run_dir: Path, db_path: Path, seconds: float, session: PluginSession,
            quiet: bool = False) -> None:
    """Write the report and say where everything went."""
    report_note = _write_report(run_dir, session, quiet)
    print(f"\nrun {cfg.name!r} finished in {seconds / 60:.1f} min ({math.ceil(seconds)} s)")
    print(f"  run log:     {db_path}")
    print(f"  checkpoints: {run_dir / 'checkpoints'}")
    print(f"  report:      {report_note}")
    print(f"  recipe:      {run_dir / 'recipe.yaml'}")
    print(f"  next:        visplay replay {db_path}   |   sqlite3 {db_path} 'select * from metrics'")


def _write_report(run_dir: Path, session: PluginSession, quiet: bool = False) -> str:
    from visplay.loop.progress import Parts
    from visplay.report.build import REPORT_PARTS, write_report

    parts = Parts("report", len(REPORT_PARTS), quiet=quiet)  # the bar of `visplay report`, at the run's end
    try:
        out = write_report(run_dir, session=session, parts=parts)
    except Exception as exc:  # the run is done and logged; a report failure must not hide that
        log.warning("report failed: %s", exc)
        return f"failed ({type(exc).__name__}: {exc}); retry with `visplay report {run_dir}`"
    finally:
        parts.close()
    return str(out or run_dir / "report")
