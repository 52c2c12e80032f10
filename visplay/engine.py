"""The self-play engine: PAPER.md's loop, step by step, through hooks, into the run log.

Iteration i = 1..K:
  1. train questioner_i against the frozen reasoner_{i-1}      (phase ``questioner``,   steps 0..S_q-1)
  2. build the reasoner's set: questioner_i asks, reasoner_{i-1} votes, filters keep   (``reasoner_set``)
  3. train reasoner_i on the kept questions and silver labels  (phase ``reasoner``,     steps 0..S_r-1)
  4. checkpoint questioner_v{i}/reasoner_v{i}; ``visplay_iteration_end``                (phase ``eval``)
Before iteration 1 of a fresh run: ``visplay_run_start`` (phase ``cold_start``), then both roles are saved as v0.

Every step commits atomically with its ``steps`` row, so the first step without one is where ``resume`` goes on;
the training role's weights and optimizer state are checkpointed at every step (visplay/checkpoints.py), so the
resumed run continues bit-exactly. The step bodies live in visplay/phases.py.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from statistics import fmean
from typing import Any

from omegaconf import DictConfig

from visplay import phases
from visplay.checkpoints import Roles, state_name, version_name
from visplay.config import ROLES, RecipeError, load_recipe
from visplay.context import RunContext
from visplay.plugins import get_plugin_manager
from visplay.progress import Progress, summary_line
from visplay.runlog import RunLog
from visplay.runsetup import RunExistsError, is_rank0, join_process_group, open_run, prepare_run_dir

__all__ = ["RunExistsError", "SelfPlay", "cli_resume", "cli_run", "iteration_summary", "run_recipe"]

log = logging.getLogger("visplay.engine")

Step = tuple[int, str, int]
PHASE_ORDER = ("cold_start", "questioner", "reasoner_set", "reasoner", "eval")


# --- the run -----------------------------------------------------------------------------------------------------


def run_recipe(recipe: DictConfig | str | Path, *, run_dir: str | Path | None = None, db_path: str | Path | None = None,
               extra_plugins: Iterable[Any] = (), overwrite: bool = False, resume: bool = False, quiet: bool = False,
               start: Step | None = None, stop: Step | None = None) -> Path:
    """Run (or resume) a recipe; return the path of its run.db.

    :param recipe: a loaded recipe, or a recipe name/path.
    :param run_dir: where run.db, checkpoints/ and report/ go (default: ``recipe.run_dir``).
    :param db_path: the run log (default: ``<run_dir>/run.db``).
    :param extra_plugins: plugin objects registered after the entry-point ones (tests, replay).
    :param overwrite: delete an existing run directory first (fresh runs only).
    :param resume: continue the run in ``run_dir`` from its first uncommitted step.
    :param start: treat every step before this (iteration, phase, step) as done (its checkpoints must exist).
    :param stop: return after committing this step (inclusive); the run is then left resumable.
    """
    cfg = recipe if isinstance(recipe, DictConfig) else load_recipe(str(recipe))
    run_dir = Path(run_dir or cfg.run_dir)
    db_path = Path(db_path or run_dir / "run.db")
    if resume:
        if not db_path.is_file():
            raise RecipeError(f"{db_path}: no run log to resume (start it with `visplay run`)")
    elif is_rank0():
        prepare_run_dir(run_dir, db_path, overwrite)
    shadow = join_process_group(cfg, run_dir, db_path, resume)
    if shadow is not None:  # a rank other than 0 runs the same loop in a private copy of the run
        run_dir, db_path, quiet = shadow, shadow / "run.db", True
    pm = get_plugin_manager(extra=tuple(extra_plugins))
    try:
        with RunLog(db_path, create=True) as runlog:
            ctx = RunContext(recipe=cfg, pm=pm, run_dir=run_dir, log=runlog)
            pool = open_run(ctx, resumed=resume)
            progress = Progress(quiet=quiet, iterations=cfg.iterations, silent=shadow is not None)
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

    def __init__(self, ctx: RunContext, pool: Any, progress: Progress, start: Step | None, stop: Step | None):
        # a plain list: the ImageSource protocol promises only len/iter, the engine also indexes
        self.ctx, self.pool, self.progress = ctx, list(pool), progress
        self.cfg = ctx.recipe
        self.roles = Roles(ctx)
        self.images_by_id = {record.image_id: record for record in self.pool}
        self.done = ctx.log.done_steps()
        self.start, self.stop = start, stop
        self.keep_states = os.environ.get("VISPLAY_KEEP_STATES", "") not in ("", "0")

    def run(self) -> bool:
        """PAPER.md's loop. Returns False when it stopped at ``stop`` before the end."""
        try:
            self.cold_start()
            self.end_iteration(0)  # the starting models are evaluated too (e.g. gold accuracy after the cold start)
            for i in range(1, self.cfg.iterations + 1):
                self.train_questioner(i)  # 1. questioner_i against the frozen reasoner_{i-1}
                self.build_reasoner_set(i)  # 2. questioner_i asks, reasoner_{i-1} votes, the filters keep
                self.train_reasoner(i)  # 3. reasoner_i on the kept questions and their silver labels
                self.end_iteration(i)  # 4. <role>_v{i} are checkpointed; plugins evaluate the iteration
                self.progress.say(summary_line(i, self.cfg.iterations, iteration_summary(self.ctx.log, i)))
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
                metrics = _merge_metrics(self.ctx.call("visplay_run_start", questioner=questioner,
                                                       reasoner=reasoner))
                saved = {role: self.roles.save(role, version_name(role, 0), with_optimizer=False) for role in ROLES}
                for role, (tmp, files) in saved.items():
                    self.roles.commit(tmp, version_name(role, 0), role, 0, 0, self._with_hash(role, files))
                self.ctx.log.metrics(0, "cold_start", 0, metrics)
            self._committed(0, "cold_start", 0, metrics)

    def train_questioner(self, i: int) -> None:
        for s in self.steps(i, "questioner", self.cfg.questioner.steps):
            self.commit_training("questioner", i, s,
                                 phases.questioner_step(self.ctx, self.roles, self.pool, self.images_by_id))

    def build_reasoner_set(self, i: int) -> None:
        chunks = self.reasoner_set_chunks(i)
        for s in self.steps(i, "reasoner_set", len(chunks)):
            self.commit(i, "reasoner_set", s,
                        phases.reasoner_set_step(self.ctx, self.roles, chunks[s], self.images_by_id))

    def train_reasoner(self, i: int) -> None:
        kept = self.kept_set(i)  # read back from the log, so a resumed run trains on the very same set
        size = self.cfg.reasoner.questions_per_step
        for s in self.steps(i, "reasoner", self.cfg.reasoner.steps):
            batch = phases.reasoner_batches(self.ctx, kept, s, size)
            self.commit_training("reasoner", i, s, phases.reasoner_step(self.ctx, self.roles, batch,
                                                                        self.images_by_id))

    def end_iteration(self, i: int) -> None:
        for _ in self.steps(i, "eval", 1):
            questioner = self.roles.frozen("questioner", version_name("questioner", i))
            reasoner = self.roles.frozen("reasoner", version_name("reasoner", i))
            with self.ctx.log.step(i, "eval", 0):  # plugin rows (e.g. gold evaluations) commit with the step
                metrics = _merge_metrics(self.ctx.call("visplay_iteration_end", iteration=i, questioner=questioner,
                                                       reasoner=reasoner))
                self.ctx.log.metrics(i, "eval", 0, metrics)
            self._committed(i, "eval", 0, metrics)

    # --- steps ----------------------------------------------------------------------------------------------

    def steps(self, iteration: int, phase: str, total: int) -> Iterator[int]:
        """The phase's uncommitted steps, with the context set and the progress bar advanced; raises _Stopped
        once the ``stop`` step is committed."""
        todo = [s for s in range(total) if not self.is_done((iteration, phase, s))]
        self.progress.phase(iteration, phase, total, total - len(todo))
        for s in todo:
            self.ctx.at(iteration, phase, s)
            yield s
            self.progress.advance()
            if self.stop is not None and (iteration, phase, s) == tuple(self.stop):
                raise _Stopped

    def commit_training(self, role: str, i: int, s: int, result: phases.StepResult) -> None:
        """Commit a training step of ``role``: its rows and its checkpoint, in one transaction."""
        last = s == self.cfg[role].steps - 1
        name = version_name(role, i) if last else state_name(role, i, s)
        self.roles.trained(role, i, s, name)
        tmp, files = self.roles.save(role, name, with_optimizer=True)
        with self.ctx.log.step(i, role, s):
            self._write(result)
            self.roles.commit(tmp, name, role, i, s, self._with_hash(role, files))
        if not self.keep_states:
            self.roles.prune_states(role, None if last else name)
        self._committed(i, role, s, result.metrics)

    def commit(self, i: int, phase: str, s: int, result: phases.StepResult) -> None:
        with self.ctx.log.step(i, phase, s):
            self._write(result)
        self._committed(i, phase, s, result.metrics)

    def is_done(self, step: Step) -> bool:
        if step in self.done:
            return True
        return self.start is not None and _order(step) < _order(tuple(self.start))

    # --- helpers ------------------------------------------------------------------------------------------

    def reasoner_set_chunks(self, i: int) -> list[list[Any]]:
        """The set's images (a seeded permutation of the pool, cycled to ``set_images``) in step-sized chunks."""
        import numpy as np

        n, size = self.cfg.reasoner.set_images, max(1, self.cfg.questioner.images_per_step)
        order = np.random.default_rng(self.ctx.seed_for(i, "reasoner_set", "images")).permutation(len(self.pool))
        images = [self.pool[int(order[k % len(order)])] for k in range(n)]
        return [images[k:k + size] for k in range(0, n, size)]

    def kept_set(self, i: int) -> list[dict[str, Any]]:
        runlog = self.ctx.log
        kept = {r["question_key"]: r["reason"] for r in runlog.rows("filters", "iteration = ? and keep = 1", [i])}
        labels = {r["question_key"]: r for r in runlog.rows("labels", "iteration = ? and phase = 'reasoner_set'", [i])}
        questions = [q for q in runlog.rows("questions", "iteration = ? and phase = 'reasoner_set'", [i])
                     if q["key"] in kept]
        questions.sort(key=lambda q: phases.key_order(q["key"]))
        return [{"key": q["key"], "image_id": q["image_id"], "question": q["question"],
                 "silver_label": labels[q["key"]]["silver_label"], "silver_key": labels[q["key"]]["silver_key"],
                 "gold": labels[q["key"]]["silver_label"] if kept[q["key"]] == "gold" else None}
                for q in questions]

    def _write(self, result: phases.StepResult) -> None:
        for table, rows in result.rows.items():
            self.ctx.log.insert(table, rows)
        self.ctx.log.metrics(self.ctx.iteration, self.ctx.phase, self.ctx.step, result.metrics)

    def _with_hash(self, role: str, files: dict[str, str]) -> dict[str, str]:
        policy = self.roles.policies[role]
        if hasattr(policy, "weights_sha256"):
            files = {**files, "weights_sha256": policy.weights_sha256()}
        return files

    def _committed(self, i: int, phase: str, s: int, metrics: dict[str, float]) -> None:
        self.done.add((i, phase, s))
        self.ctx.at(i, phase, s).call("visplay_log_metrics", iteration=i, phase=phase, step=s, metrics=metrics)


class _Stopped(Exception):
    """The ``stop`` step was committed: the run returns early, resumable."""


def _order(step: Step) -> tuple[int, int, int]:
    return step[0], PHASE_ORDER.index(step[1]), step[2]


def _merge_metrics(results: list[dict[str, float]] | None) -> dict[str, float]:
    merged: dict[str, float] = {}
    for result in results or []:
        merged.update({k: float(v) for k, v in result.items()})
    return merged


def iteration_summary(runlog: RunLog, i: int) -> dict[str, float | None]:
    """The numbers of an iteration's summary line, read back from the log (so they survive a resume)."""
    def metric(phase: str, name: str) -> float | None:
        values = [r["value"] for r in runlog.rows("metrics", "iteration = ? and phase = ? and name = ?",
                                                   [i, phase, name])]
        return fmean(values) if values else None

    labels = runlog.rows("labels", "iteration = ? and phase = 'reasoner_set'", [i])
    filters = runlog.rows("filters", "iteration = ?", [i])
    kept = sum(r["keep"] for r in filters)
    evals = {r["name"]: r["value"] for r in runlog.rows("metrics", "iteration = ? and phase = 'eval'", [i])}
    return {
        "questioner_reward": metric("questioner", "reward/mean"),
        "confidence": fmean(r["confidence"] for r in labels) if labels else None,
        "kept": kept, "set_size": len(filters), "kept_frac": kept / len(filters) if filters else None,
        "reasoner_reward": metric("reasoner", "reward/mean"),
        # gold metrics come from a verifiable image source (e.g. the games plugin); absent otherwise
        "gold_pass1": evals.get("gold/sample_accuracy"), "gold_pass1_se": evals.get("gold/sample_accuracy_se"),
        "gold_maj": evals.get("gold/accuracy"), "gold_maj_se": evals.get("gold/accuracy_se"),
        "gold_votes": evals.get("gold/votes"),
        "silver_accuracy": evals.get("gold/silver_accuracy"),
        "silver_accuracy_se": evals.get("gold/silver_accuracy_se"),
    }


# --- command line --------------------------------------------------------------------------------------------------


def cli_run(args: Any) -> int:
    """``visplay run`` / ``visplay reproduce``: load and validate the recipe, then run it."""
    cfg = load_recipe(args.recipe, list(args.overrides or []))
    if getattr(args, "dry_run", False):
        try:
            from visplay import placement
        except ImportError:
            print("visplay: --dry-run is not available (visplay.placement is missing)", file=sys.stderr)
            return 1
        print(placement.dry_run(cfg))
        return 0
    _validate_paths(cfg)  # before any relaunch: a missing model path is one clear error, not one per process
    nproc = args.nproc if getattr(args, "nproc", None) is not None else cfg.distributed.nproc
    if nproc > 1 and "LOCAL_RANK" not in os.environ:
        try:
            from visplay import distributed
        except ImportError:
            print(f"visplay: --nproc {nproc} is not available (visplay.distributed is missing); run with --nproc 1",
                  file=sys.stderr)
            return 1
        return int(distributed.relaunch_under_torchrun(sys.argv[1:], nproc))
    run_dir = Path(cfg.run_dir)
    started = time.time()
    db_path = run_recipe(cfg, run_dir=run_dir, overwrite=args.overwrite, quiet=args.quiet)
    if is_rank0():
        _finish(cfg, run_dir, db_path, time.time() - started)
    return 0


def cli_resume(args: Any) -> int:
    """``visplay resume runs/<name>``: continue from the first step without a ``steps`` row."""
    run_dir = Path(args.run_dir)
    recipe_file = run_dir / "recipe.yaml"
    if not (run_dir / "run.db").is_file() or not recipe_file.is_file():
        raise RecipeError(f"{run_dir}: not a visplay run directory (needs run.db and recipe.yaml)")
    cfg = load_recipe(str(recipe_file))
    with RunLog(run_dir / "run.db", readonly=True) as runlog:
        row = runlog.run()
        done = len(runlog.done_steps())
    if row is not None and row["status"] == "finished":
        print(f"{run_dir} already finished; nothing to resume")
        return 0
    print(f"resuming {run_dir} after {done} committed steps", file=sys.stderr)
    started = time.time()
    db_path = run_recipe(cfg, run_dir=run_dir, resume=True, quiet=args.quiet)
    if is_rank0():
        _finish(cfg, run_dir, db_path, time.time() - started)
    return 0


def _validate_paths(cfg: DictConfig) -> None:
    try:
        from visplay import placement
    except ImportError:
        return
    placement.validate_paths(cfg)


def _finish(cfg: DictConfig, run_dir: Path, db_path: Path, seconds: float) -> None:
    """Write the report when the report module exists, and say where everything went."""
    report_note = _write_report(run_dir)
    print(f"\nrun {cfg.name!r} finished in {seconds / 60:.1f} min ({math.ceil(seconds)} s)")
    print(f"  run log:     {db_path}")
    print(f"  checkpoints: {run_dir / 'checkpoints'}")
    print(f"  report:      {report_note}")
    print(f"  recipe:      {run_dir / 'recipe.yaml'}")
    print(f"  next:        visplay replay {db_path}   |   sqlite3 {db_path} 'select * from metrics'")


def _write_report(run_dir: Path) -> str:
    try:
        from visplay import report
    except ImportError:
        return "skipped (visplay.report is not installed)"
    write = getattr(report, "write_report", None)
    if write is None:
        return "skipped (visplay.report has no write_report)"
    try:
        out = write(run_dir)
    except Exception as exc:  # the run is done and logged; a report failure must not hide that
        log.warning("report failed: %s", exc)
        return f"failed ({type(exc).__name__}: {exc}); retry with `visplay report {run_dir}`"
    return str(out or run_dir / "report")
