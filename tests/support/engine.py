"""Small real stand-in plugins for engine tests: a unigram "VLM", a REINFORCE optimizer and a toy algorithm.

They live in visplay.testing (public, for plugin authors too) and fill every hook the engine calls with real (if
tiny) behaviour: seeded sampling, log-probs, an Adam update of a logits tensor, safetensors checkpoints. That makes
the engine's determinism and resume testable in seconds without the models and algorithm plugins. This module
adds a crash switch and the subprocess driver. Run as a script to drive the engine in a subprocess:

    python tests/support/engine.py run RUN_DIR [key=value ...]
    python tests/support/engine.py resume RUN_DIR

``VISPLAY_TEST_KILL=iteration:phase:step:where[:how]`` makes the process SIGKILL itself at that step, ``where`` being
``sample`` (mid-step, before the commit) or ``commit`` (right after the step committed); ``how`` is ``KILL``
(default), ``TERM`` or ``INT`` (the signal it sends itself), or ``crash`` (a plugin raises RuntimeError).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from visplay.hookspecs import hookimpl
from visplay.testing import (  # noqa: F401  (re-exported for the engine tests)
    ANSWERS,
    STANDIN_OVERRIDES,
    VOCAB,
    Reinforce,
    StandinAlgorithm,
    StandinModels,
    UnigramPolicy,
    UnigramSampler,
)

# what the driven process exits with for each ``how`` of VISPLAY_TEST_KILL
EXIT_STATUS = {"KILL": -signal.SIGKILL, "TERM": 128 + signal.SIGTERM, "INT": 128 + signal.SIGINT, "crash": 1}


class Killer:
    """SIGKILLs this process at ``VISPLAY_TEST_KILL=iteration:phase:step:where`` (a real crash, no cleanup), or sends
    it SIGTERM/SIGINT, or raises from a plugin (``...:where:TERM``, ``:INT``, ``:crash``)."""

    plugin_name = "standin_killer"

    def __init__(self, spec: str | None):
        self.at, self.how = None, "KILL"
        if spec:
            it, phase, step, where, *how = spec.split(":")
            self.at, self.how = (int(it), phase, int(step), where), (how or ["KILL"])[0]

    def _maybe(self, ctx: Any, where: str) -> None:
        if self.at != (ctx.iteration, ctx.phase, ctx.step, where):
            return
        if self.how == "crash":
            raise RuntimeError(f"standin plugin crashed at {ctx.iteration}:{ctx.phase}:{ctx.step}")
        os.kill(os.getpid(), getattr(signal, f"SIG{self.how}"))
        time.sleep(5)  # a caught signal's handler raises here, before the hook returns (SIGKILL never gets here)

    @hookimpl(tryfirst=True)
    def visplay_sample_answers(self, ctx, sampler, questions, n, seeds, purpose):
        self._maybe(ctx, "sample")

    @hookimpl
    def visplay_log_metrics(self, ctx, iteration, phase, step, metrics):
        self._maybe(ctx, "commit")


def standin_plugins(kill: str | None = None) -> tuple[Any, ...]:
    import visplay_images.plugin as images

    return (images, StandinModels(), StandinAlgorithm(), Killer(kill))


def standin_recipe(run_dir: Path, extra: list[str] = ()):
    from visplay.config import load_recipe

    return load_recipe("tiny", [*STANDIN_OVERRIDES, f"run_dir={run_dir}", *extra], plugins=standin_plugins())


def comparable_rows(db_path: Path) -> dict[str, list[tuple]]:
    """Every table's rows, timestamps and the resume event left out, for run-to-run equality."""
    from visplay.log.runlog import VOLATILE_COLUMNS, RunLog
    from visplay.loop.lifecycle import LIFECYCLE_EVENTS

    out = {}
    with RunLog(db_path, readonly=True) as log:
        for table in log.tables():
            if table.startswith("sqlite_"):
                continue
            rows = log.rows(table)
            if table == "events":  # a resumed run's extra events: its resumes, stops and failures
                rows = [r for r in rows if r["kind"] not in LIFECYCLE_EVENTS]
                rows = [{k: v for k, v in r.items() if k != "id"} for r in rows]
            out[table] = [tuple(sorted((k, v) for k, v in r.items() if k not in VOLATILE_COLUMNS)) for r in rows]
    return out


def main(argv: list[str]) -> int:
    os.environ["VISPLAY_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    torch.set_num_threads(1)
    from visplay.loop.engine import run_recipe

    command, run_dir, overrides = argv[0], Path(argv[1]), argv[2:]
    plugins = standin_plugins(os.environ.get("VISPLAY_TEST_KILL"))
    try:
        if command == "run":
            run_recipe(standin_recipe(run_dir, overrides), extra_plugins=plugins, quiet=True)
        else:
            from visplay.config import load_recipe

            run_recipe(load_recipe(str(run_dir / "recipe.yaml"), plugins=plugins), run_dir=run_dir, resume=True,
                       extra_plugins=plugins, quiet=True)
    except KeyboardInterrupt as exc:  # as the CLI does: lifecycle.RunStopped says what to do next
        print(exc.message(), file=sys.stderr)
        return exc.exit_status
    print(json.dumps({"done": str(run_dir)}))
    return 0


def drive(cwd: Path, *args: str, kill: str | None = None) -> subprocess.CompletedProcess:
    """Run this module as a script (``run RUN_DIR ...`` / ``resume RUN_DIR``) in a fresh process; ``kill`` arms
    VISPLAY_TEST_KILL for it."""
    env = {**os.environ, "VISPLAY_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    env.pop("VISPLAY_TEST_KILL", None)
    if kill:
        env["VISPLAY_TEST_KILL"] = kill
    return subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _expected_exit(kill: str) -> int:
    parts = kill.split(":")
    return EXIT_STATUS[parts[4] if len(parts) > 4 else "KILL"]


def kill_and_resume(cwd: Path, kills: list[str], *run_args: str) -> Path:
    """``run runs/x *run_args`` killed at ``kills[0]``, ``resume`` killed at each further point, then a resume to the
    end (each kill must land: the process ends with the status of its ``how``); returns the run log's path."""
    first = drive(cwd, "run", "runs/x", *run_args, kill=kills[0])
    assert first.returncode == _expected_exit(kills[0]), first.stderr
    for kill in kills[1:]:
        again = drive(cwd, "resume", "runs/x", kill=kill)
        assert again.returncode == _expected_exit(kill), again.stderr
    final = drive(cwd, "resume", "runs/x")
    assert final.returncode == 0, final.stderr
    return cwd / "runs/x/run.db"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
