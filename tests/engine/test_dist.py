"""The engine under torchrun (2 CPU processes, gloo): rank 0's run log equals a single process's, resume included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.engine import comparable_rows

pytestmark = [pytest.mark.dist, pytest.mark.slow]

SCRIPT = Path(__file__).parent.parent / "support" / "engine.py"


def _launch(cwd: Path, nproc: int, *args: str, kill: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "VISPLAY_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    env.pop("VISPLAY_TEST_KILL", None)
    if kill:
        env["VISPLAY_TEST_KILL"] = kill
    cmd = [sys.executable, str(SCRIPT), *args]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               *cmd[1:]]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_two_processes_match_one_and_resume(tmp_path):
    single, double, killed = (tmp_path / n for n in ("single", "double", "killed"))
    for folder in (single, double, killed):
        folder.mkdir()
    assert _launch(single, 1, "run", "runs/x").returncode == 0
    expected = comparable_rows(single / "runs/x/run.db")
    done = _launch(double, 2, "run", "runs/x")
    assert done.returncode == 0, done.stderr[-2000:]
    assert comparable_rows(double / "runs/x/run.db") == expected
    assert done.stdout.count("iteration 2/2") == 1  # only rank 0 prints
    crashed = _launch(killed, 2, "run", "runs/x", kill="1:reasoner:0:commit")
    assert crashed.returncode != 0
    resumed = _launch(killed, 2, "resume", "runs/x")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert comparable_rows(killed / "runs/x/run.db") == expected
