"""Helpers of the fault suite (tests/faults/): small stand-in runs, a pausing plugin, file tampering.

Run as a script, like tests/engine_fixtures.py, with a pause: ``VISPLAY_TEST_PAUSE=DIR`` makes the run write
``DIR/paused`` (holding its pid) after its first committed step and wait until ``DIR/go`` exists, so a test can
start a second process against the same run while the first is provably alive and mid-run.
``VISPLAY_TEST_PAUSE_AT=1,3`` pauses after each of those commits (counted in this process) instead; each pause also
writes ``DIR/paused-<n>`` and consumes ``DIR/go``, so a test can let the run commit a few steps and stop it again.
``VISPLAY_TEST_PRUNE_KILL=<point>`` SIGKILLs the run at one point of its first snapshot prune (:data:`PRUNE_POINTS`).

    PYTHONPATH=tests python tests/support/faults.py run|resume RUN_DIR [key=value ...]
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from support.engine import standin_plugins, standin_recipe

from visplay.hookspecs import hookimpl
from visplay.testing import StandinModels, UnigramPolicy


class Pauser:
    """After the first committed step: say so (with this pid) and wait for the test's go-ahead."""

    plugin_name = "faults_pauser"

    def __init__(self, folder: str | None, at: str | None = None):
        self.folder = Path(folder) if folder else None
        self.at = {int(n) for n in (at or "1").split(",")}
        self.commits = 0

    @hookimpl
    def visplay_log_metrics(self, ctx: Any, iteration: int, phase: str, step: int, metrics: dict) -> None:
        self.commits += 1
        if self.folder is None or self.commits not in self.at:
            return
        (self.folder / f"paused-{self.commits}").write_text(str(os.getpid()))
        (self.folder / "paused").write_text(str(os.getpid()))
        deadline = time.monotonic() + 120
        while not (self.folder / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        (self.folder / "go").unlink(missing_ok=True)


class PaddedPolicy(UnigramPolicy):
    """A stand-in policy whose checkpoint also holds 1 MB of padding: a checkpoint larger than the run log."""

    def save(self, directory: str) -> dict[str, str]:
        import torch
        from safetensors.torch import save_file

        files = super().save(directory)
        save_file({"pad": torch.zeros(256 * 1024)}, str(Path(directory) / "pad.safetensors"))
        return {**files, "pad.safetensors": hashlib.sha256((Path(directory) / "pad.safetensors").read_bytes())
                .hexdigest()}


class PaddedModels(StandinModels):
    """``model.backend=standin`` with PaddedPolicy (replaces StandinModels)."""

    @hookimpl
    def visplay_load_policy(self, ctx: Any, role: str, init_from: str | None) -> Any:
        policy = super().visplay_load_policy(ctx, role, init_from)
        return PaddedPolicy(role, policy.logits.detach()) if policy is not None else None


def padded_plugins() -> tuple[Any, ...]:
    return tuple(PaddedModels() if isinstance(p, StandinModels) else p for p in standin_plugins())


def stand_in_run(run_dir: Path, *extra: str, plugins: tuple[Any, ...] | None = None, **kw: Any) -> Path:
    """A whole (or, with ``stop``, partial) stand-in run in this process; returns its run.db."""
    from visplay.loop.engine import run_recipe

    return run_recipe(standin_recipe(run_dir, list(extra)), extra_plugins=plugins or standin_plugins(), quiet=True,
                      **kw)


def resume_in_process(run_dir: Path, **kw: Any) -> Path:
    from visplay.config import load_recipe
    from visplay.loop.engine import run_recipe

    plugins = standin_plugins()
    return run_recipe(load_recipe(str(run_dir / "recipe.yaml"), plugins=plugins), run_dir=run_dir, resume=True,
                      extra_plugins=plugins, quiet=True, **kw)


def same_computation(a: dict, b: dict) -> bool:
    """comparable_rows equal in every table but ``runs`` (its recipe names the run's own directory) and
    ``plugins`` (which test plugins the process registered)."""
    def strip(rows: dict) -> dict:
        return {k: v for k, v in rows.items() if k not in ("runs", "plugins")}

    return strip(a) == strip(b)


def flip_byte(path: Path, offset: int = -1) -> None:
    """Change one byte of ``path`` (the last by default): the file's size and name stay, its content does not."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def copy_db(run_db: Path, tmp_path: Path) -> Path:
    """A consistent copy of a run log (``vacuum into``) at ``tmp_path/orig/run.db``, to tamper with."""
    from visplay.log.runlog import RunLog

    target = tmp_path / "orig" / "run.db"
    target.parent.mkdir()
    with RunLog(run_db, readonly=True) as log:
        log.db.execute(f"vacuum into '{target}'")
    return target


def sql(db: Path, *statements: str) -> None:
    """Edit a database behind visplay's back (what a user with the sqlite3 shell can do)."""
    conn = sqlite3.connect(db)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


# Where ``VISPLAY_TEST_PRUNE_KILL`` SIGKILLs the run while it prunes an old step snapshot (Roles.prune_states):
# before the rename out of state/, after it, halfway through deleting the renamed folder, after deleting it (before
# the empty trash folder is removed).
PRUNE_POINTS = ("before_rename", "renamed", "half_deleted", "deleted")


def arm_prune_kill(point: str) -> None:
    """SIGKILL this process (no cleanup runs) at ``point`` of the first snapshot prune."""
    import shutil

    from visplay.loop.checkpoints import TRASH

    if point not in PRUNE_POINTS:
        raise ValueError(f"VISPLAY_TEST_PRUNE_KILL={point!r}; known: {', '.join(PRUNE_POINTS)}")
    real_rename, real_rmtree = Path.rename, shutil.rmtree

    def die(at: str) -> None:
        if at == point:
            os.kill(os.getpid(), signal.SIGKILL)

    def rename(self: Path, target: Any) -> Any:
        pruning = TRASH in Path(target).parts
        if pruning:
            die("before_rename")
        result = real_rename(self, target)
        if pruning:
            die("renamed")
        return result

    def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        pruning = TRASH in Path(path).parts and Path(path).parent.name == TRASH  # one pruned snapshot
        if pruning and point == "half_deleted":
            next(f for f in sorted(Path(path).rglob("*")) if f.is_file()).unlink()
            die("half_deleted")
        real_rmtree(path, *args, **kwargs)
        if pruning:
            die("deleted")

    Path.rename, shutil.rmtree = rename, rmtree  # this process only: it is killed before anything else runs


def main(argv: list[str]) -> int:
    os.environ["VISPLAY_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    import torch

    torch.set_num_threads(1)
    from visplay.config import RecipeError, load_recipe
    from visplay.log.runlog import RunLogError
    from visplay.loop.engine import run_recipe
    from visplay.plugins import PluginError

    command, run_dir, overrides = argv[0], Path(argv[1]), argv[2:]
    models = padded_plugins() if os.environ.get("VISPLAY_TEST_PAD") else standin_plugins()
    plugins = (*models, Pauser(os.environ.get("VISPLAY_TEST_PAUSE"), os.environ.get("VISPLAY_TEST_PAUSE_AT")))
    if os.environ.get("VISPLAY_TEST_PRUNE_KILL"):
        arm_prune_kill(os.environ["VISPLAY_TEST_PRUNE_KILL"])
    if os.environ.get("VISPLAY_TEST_FSIZE"):  # a file-size limit: writes beyond it fail as on a full disk
        limit = int(os.environ["VISPLAY_TEST_FSIZE"])
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an EFBIG error instead of a killing signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        if command == "run":
            run_recipe(standin_recipe(run_dir, overrides), extra_plugins=plugins, quiet=True)
        else:
            run_recipe(load_recipe(str(run_dir / "recipe.yaml"), plugins=plugins), run_dir=run_dir, resume=True,
                       extra_plugins=plugins, quiet=True)
    except (RecipeError, PluginError, RunLogError) as exc:  # as visplay.cli.main reports them
        print(f"visplay: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
