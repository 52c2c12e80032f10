"""How a run ends when it does not finish: stopped by a signal, or failed with an error.

SIGINT (Ctrl-C) and SIGTERM (what SLURM and Kubernetes send on preemption) are handled alike: the step in progress
is abandoned (its transaction rolls back and its checkpoint, if any, stays an uncommitted temporary directory, as
after a crash), the run is marked ``stopped`` with a ``run_stopped`` event, and :class:`RunStopped` carries the
exact resume command and the conventional exit status (128 + the signal number: 130, 143) up to the CLI. An
exception from the loop (a plugin crash) marks the run ``failed`` with a ``run_failed`` event holding the error
and its traceback, then propagates unchanged. A second signal during that short cleanup is not caught again:
SIGTERM then ends the process at once, which the run log survives as it survives SIGKILL.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from visplay.log.status import resume_command, shown_status

__all__ = ["HANDLED_SIGNALS", "LIFECYCLE_EVENTS", "RunStopped", "recorded", "resume_command", "shown_status",
           "stop_on_signals"]

log = logging.getLogger("visplay.loop.lifecycle")

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Events of a run's life rather than of its computation: a resumed run logs them on top of the uninterrupted one's.
LIFECYCLE_EVENTS = ("run_resumed", "run_stopped", "run_failed")


class RunStopped(KeyboardInterrupt):
    """The run was stopped by a signal; it is resumable with :attr:`resume`.

    A KeyboardInterrupt, so code that handles Ctrl-C handles SIGTERM the same way.
    """

    def __init__(self, signum: int, run_dir: str | Path | None = None, where: str = ""):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.run_dir, self.where = signum, run_dir, where

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum

    @property
    def resume(self) -> str | None:
        return resume_command(self.run_dir) if self.run_dir is not None else None

    def message(self) -> str:
        """What the CLI prints: what stopped, where, and how to go on."""
        where = f" during {self.where}" if self.where else ""
        text = f"stopped by {self.signal_name}{where}; every committed step is kept"
        return f"{text}; continue with `{self.resume}`" if self.resume else text


@contextlib.contextmanager
def stop_on_signals(run_dir: str | Path) -> Iterator[None]:
    """For the block, SIGINT and SIGTERM raise :class:`RunStopped` (for ``run_dir``) in the main thread; a plain
    KeyboardInterrupt from the block becomes one too. Outside the main thread signals cannot be handled in Python,
    so only the conversion applies. The previous handlers are back after the first signal and after the block."""
    previous: dict[int, Any] = {}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        previous.clear()

    def handler(signum: int, frame: Any) -> None:
        restore()  # a second signal during the cleanup is not caught again
        raise RunStopped(signum, run_dir)

    if threading.current_thread() is threading.main_thread():
        for signum in HANDLED_SIGNALS:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    except RunStopped as exc:
        exc.run_dir = exc.run_dir if exc.run_dir is not None else run_dir
        raise
    except KeyboardInterrupt as exc:
        raise RunStopped(signal.SIGINT, run_dir) from exc
    finally:
        restore()


@contextlib.contextmanager
def recorded(runlog: Any, ctx: Any) -> Iterator[None]:
    """Record in ``runlog`` how the block ends when it does not return: ``stopped`` (a signal) or ``failed``
    (any other exception), with an event at the step the engine was in. The exception propagates."""
    try:
        yield
    except KeyboardInterrupt as exc:
        stopped = exc if isinstance(exc, RunStopped) else RunStopped(signal.SIGINT, ctx.run_dir)
        stopped.where = _mark(runlog, ctx, "stopped", "run_stopped", "info", f"stopped by {stopped.signal_name}",
              {"signal": stopped.signal_name, "resume": resume_command(stopped.run_dir or ctx.run_dir)})
        if stopped is not exc:
            raise stopped from exc
        raise
    except Exception as exc:
        _mark(runlog, ctx, "failed", "run_failed", "error", f"{type(exc).__name__}: {exc}",
              {"error": type(exc).__name__, "message": str(exc), "resume": resume_command(ctx.run_dir),
               "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-20000:]})
        if hasattr(exc, "add_note"):  # Python >= 3.11: printed under the traceback
            exc.add_note(f"visplay: the run is marked failed in {runlog.path} (event run_failed); once the cause "
                         f"is fixed, `{resume_command(ctx.run_dir)}` continues from the last committed step")
        raise


def _where(ctx: Any) -> str:
    """The step the engine was in, as the progress bar names it (empty before the loop starts)."""
    from visplay.loop.progress import PHASE_TITLES

    if not ctx.phase:
        return ""
    at = f"iteration {ctx.iteration} " if ctx.iteration else ""
    return f"{at}{PHASE_TITLES.get(ctx.phase, ctx.phase)} step {ctx.step}"


def _mark(runlog: Any, ctx: Any, status: str, kind: str, level: str, message: str, payload: dict) -> str:
    """Set ``runs.status`` and log the event (at the engine's step, saying whether that step had committed) in one
    transaction; a log that cannot be written (the disk is full: maybe why the run failed) is reported, and the
    original error still propagates. Returns where it happened, in words."""
    at = (ctx.iteration, ctx.phase, ctx.step) if ctx.phase else (None, None, None)
    committed = at in runlog.done_steps() if ctx.phase else None
    where = f"{_where(ctx)} ({'after its commit' if committed else 'not committed'})" if ctx.phase else ""
    message += f" during {where}" if where else ""
    on_event, runlog.on_event = runlog.on_event, None  # the CLI says it (or the traceback does), not a warning line
    try:
        with runlog.transaction():
            if runlog.run() is not None:
                runlog.set_run(status=status, finished_at=time.time())
            runlog.event(kind, message, level=level, source="engine", iteration=at[0], phase=at[1], step=at[2],
                         payload={**payload, "step_committed": committed})
    except Exception as exc:  # noqa: BLE001  (the run's own error matters more than this one)
        log.warning("could not mark the run %s in %s: %s", status, runlog.path, exc)
    finally:
        runlog.on_event = on_event
    return where
