"""How a run's status reads: the resume command, and ``running`` told apart from killed (no process holds the lock).

Here, in the log's room, because the report reads it; the loop (visplay/loop/lifecycle.py) writes the statuses.
"""

from __future__ import annotations

import fcntl
import os
import shlex
from pathlib import Path

LOCK_NAME = "run.lock"  # held (flock) by the one process writing a run directory: visplay/loop/runsetup.run_lock


def resume_command(run_dir: str | Path) -> str:
    """The command that continues the run in ``run_dir`` (quoted for a POSIX shell)."""
    return f"visplay resume {shlex.quote(str(run_dir))}"


def shown_status(status: str | None, run_dir: str | Path) -> str:
    """``runs.status`` as a reader should see it: a ``running`` run whose ``run.lock`` no process holds was killed
    outright (SIGKILL, a lost node) and is said to be so. The lock is only tested (shared, non-blocking, released
    at once), never kept."""
    if status != "running":
        return str(status or "?")
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY)
    except OSError:  # no lock file (an older run, or a copied run.db): nothing to tell
        return status
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return status  # a live process holds it
    finally:
        os.close(fd)
    return f"running, but no process holds it (killed?): `{resume_command(run_dir)}` continues it"
