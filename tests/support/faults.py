"""Helpers of the fault suite (tests/faults/): small stand-in runs, a pausing plugin, file tampering.

Run as a script, like tests/engine_fixtures.py, with a pause: ``VISPLAY_TEST_PAUSE=DIR`` makes the run write
``DIR/paused`` (holding its pid) after its first committed step and wait until ``DIR/go`` exists, so a test can
start a second process against the same run while the first is provably alive and mid-run.

    PYTHONPATH=tests python tests/support/faults.py run|resume RUN_DIR [key=value ...]
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from support.engine import standin_plugins, standin_recipe

from visplay.hookspecs import hookimpl


class Pauser:
    """After the first committed step: say so (with this pid) and wait for the test's go-ahead."""

    plugin_name = "faults_pauser"

    def __init__(self, folder: str | None):
        self.folder = Path(folder) if folder else None

    @hookimpl
    def visplay_log_metrics(self, ctx: Any, iteration: int, phase: str, step: int, metrics: dict) -> None:
        if self.folder is None:
            return
        (self.folder / "paused").write_text(str(os.getpid()))
        deadline = time.monotonic() + 120
        while not (self.folder / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.folder = None


def stand_in_run(run_dir: Path, *extra: str, **kw: Any) -> Path:
    """A whole (or, with ``stop``, partial) stand-in run in this process; returns its run.db."""
    from visplay.loop.engine import run_recipe

    return run_recipe(standin_recipe(run_dir, list(extra)), extra_plugins=standin_plugins(), quiet=True, **kw)


def resume_in_process(run_dir: Path, **kw: Any) -> Path:
    from visplay.config import load_recipe
    from visplay.loop.engine import run_recipe

    plugins = standin_plugins()
    return run_recipe(load_recipe(str(run_dir / "recipe.yaml"), plugins=plugins), run_dir=run_dir, resume=True,
                      extra_plugins=plugins, quiet=True, **kw)


def flip_byte(path: Path, offset: int = -1) -> None:
    """Change one byte of ``path`` (the last by default): the file's size and name stay, its content does not."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def sql(db: Path, *statements: str) -> None:
    """Edit a database behind visplay's back (what a user with the sqlite3 shell can do)."""
    conn = sqlite3.connect(db)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    os.environ["VISPLAY_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    import torch

    torch.set_num_threads(1)
    from visplay.config import load_recipe
    from visplay.loop.engine import run_recipe

    command, run_dir, overrides = argv[0], Path(argv[1]), argv[2:]
    plugins = (*standin_plugins(), Pauser(os.environ.get("VISPLAY_TEST_PAUSE")))
    if command == "run":
        run_recipe(standin_recipe(run_dir, overrides), extra_plugins=plugins, quiet=True)
    else:
        run_recipe(load_recipe(str(run_dir / "recipe.yaml"), plugins=plugins), run_dir=run_dir, resume=True,
                   extra_plugins=plugins, quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
