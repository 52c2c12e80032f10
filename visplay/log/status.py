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


def lock_holder(run_dir: str | Path) -> str | None:
    """The pid (as the lock file holds it, ``?`` if unreadable) of the live process that holds ``run_dir``'s
    ``run.lock``; None when no process holds it (or there is no lock file). The lock is only tested (shared,
    non-blocking, released at once), never kept, and a planted link is not followed."""
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # no lock file (an older run, a copied run.db), a folder or a link: nobody holds it
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        except OSError:
            return None
        return None
    finally:
        os.close(fd)


def shown_status(status: str | None, run_dir: str | Path) -> str:
    """``runs.status`` as a reader should see it: a ``running`` run whose ``run.lock`` no process holds was killed
    outright (SIGKILL, a lost node) and is said to be so. The lock is only tested (shared, non-blocking, released
    at once), never kept."""
    if status != "running":
        return str(status or "?")
    if not (Path(run_dir) / LOCK_NAME).is_file() or lock_holder(run_dir) is not None:
        return status  # an older run or a copied run.db (nothing to tell), or a live process holds it
    return f"running, but no process holds it (killed?): `{resume_command(run_dir)}` continues it"
