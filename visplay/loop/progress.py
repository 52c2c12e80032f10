"""Progress for humans: a tqdm bar per phase (stderr), warnings as they happen (stderr, also under ``-q``) and one
summary line per iteration (stdout).

``quiet`` turns the bars off (CI); warnings and summary lines still print because they are results, not
decoration. A plugin doing long work inside one engine step (the cold-start SFT, an evaluation) reports its own
step counts through ``RunContext.report_progress``, so the bar shows them instead of "0/1": a one-step phase's bar
opens at the plugin's first report (or when the step ends), never as ``0/1``. When stderr is not a terminal (a
log file, SLURM's output, CI) a bar is a plain line every tenth of its total (:class:`PlainBar`), not carriage
returns.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

PHASE_TITLES = {"cold_start": "cold start", "questioner": "train questioner", "reasoner_set": "build reasoner set",
                "reasoner": "train reasoner", "eval": "evaluate"}
INVALID_WARN_SHARE = 0.5  # warn when more than this share of a step's questions did not parse
WARN_REPEAT = 3  # warnings of one kind printed before the rest are only counted (all are in the events table)


class Progress:
    """Owns at most one open bar at a time."""

    def __init__(self, *, quiet: bool = False, iterations: int = 0, silent: bool = False, plain: bool | None = None):
        self.quiet = quiet or silent
        self.silent = silent  # not even summary lines (ranks other than 0 of a multi-process run)
        self.iterations = iterations
        self.plain = plain  # plain lines instead of tqdm bars; None: when stderr is not a terminal
        self._bar: Any = None
        self._pending: dict[str, Any] | None = None  # a one-step phase's bar, opened at its first count
        self._sub = False  # the bar counts a plugin's own steps inside one engine step
        self._warned: Counter[str] = Counter()

    def phase(self, iteration: int, phase: str, total: int, done: int = 0) -> None:
        """Open the bar for a phase; ``done`` steps were already committed (resume). A one-step phase's bar waits
        for the plugin's first count (``substep``) or the step's end, so it never shows ``0/1`` first."""
        self.close()
        if self.quiet:
            return
        where = f"iter {iteration}/{self.iterations} " if iteration else ""
        self._pending = {"total": total, "initial": done, "desc": f"{where}{PHASE_TITLES.get(phase, phase)}"}
        if total != 1 or done >= total:
            self._open()

    def _open(self, unit: str = "step") -> None:
        spec, self._pending = self._pending, None
        if spec is None:
            return
        plain = self.plain if self.plain is not None else not _is_terminal(sys.stderr)
        if plain:
            self._bar = PlainBar(**spec, unit=unit)
            return
        from tqdm import tqdm

        self._bar = tqdm(**spec, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=True)

    def substep(self, done: int, total: int, unit: str = "step", postfix: dict[str, float] | None = None) -> None:
        """A plugin's own progress inside the current engine step (e.g. SFT step 120 of 450)."""
        if self._pending is not None:  # the one-step phase's bar opens with the plugin's count
            self._pending.update(total=total, initial=0)
            self._open(unit)
            self._sub = True
        if self._bar is None:
            return
        if not self._sub or self._bar.total != total:
            self._bar.reset(total=total)
            self._bar.unit = unit
            self._sub = True
        self._bar.n = min(done, total)
        if postfix:
            self._bar.set_postfix(_fmt(postfix), refresh=False)
        self._bar.refresh()

    def advance(self, postfix: dict[str, float] | None = None) -> None:
        if self._pending is not None:  # a one-step phase that counted nothing of its own: shown once, done
            self._pending["initial"] = self._pending["total"]
            self._open()
            if postfix:
                self._bar.set_postfix(_fmt(postfix), refresh=False)
            self._bar.refresh() if not isinstance(self._bar, PlainBar) else self._bar.print_line()
            return
        if self._bar is None:
            return
        if postfix:
            self._bar.set_postfix(_fmt(postfix), refresh=False)
        if self._sub:  # the engine step ends: the plugin's count is complete
            self._bar.n = self._bar.total
            self._bar.refresh()
            return
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._pending, self._sub = None, False

    def say(self, line: str) -> None:
        """A result line on stdout (kept clear of an open bar)."""
        self.close()
        if not self.silent:
            print(line, flush=True)

    def warn(self, key: str, message: str, limit: int = WARN_REPEAT) -> None:
        """A warning on stderr as it happens, bars or not; after ``limit`` with the same key the rest are only
        counted (every one is in the run log's events table)."""
        if self.silent:
            return
        self._warned[key] += 1
        count = self._warned[key]
        if count > limit + 1 or (count == limit + 1 and limit == 1):
            return
        if count == limit + 1:
            message = f"further '{key}' warnings are not printed (the run log has the details)"
        line = f"warning: {message}"
        if self._bar is not None and not isinstance(self._bar, PlainBar):
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def on_event(self, event: dict[str, Any]) -> None:
        """A run-log event (RunLog.on_event): warnings and errors reach the terminal."""
        if event.get("level") in ("warning", "error"):
            iteration = event.get("iteration")
            where = _where(iteration, event.get("phase"), event.get("step"))
            # a step-level event repeats every step of a phase: once per iteration says it
            key, limit = (f"{event.get('kind')}/i{iteration}", 1) if iteration is not None else (event.get("kind"),
                                                                                                  WARN_REPEAT)
            self.warn(str(key), f"{where}{event.get('message')}", limit)

    def check_metrics(self, iteration: int, phase: str, step: int, metrics: dict[str, float]) -> None:
        """Warn about NaN/inf values and a high share of invalid questions in a committed step's metrics."""
        where = _where(iteration, phase, step)
        for name, value in sorted(metrics.items()):
            if not math.isfinite(value):
                self.warn(f"nonfinite/{name}/i{iteration}/{phase}", f"{where}{name} is {value}", limit=1)
        valid = metrics.get("questions/valid_frac")
        if valid is not None and 1 - valid > INVALID_WARN_SHARE:
            self.warn(f"invalid_questions/i{iteration}/{phase}",  # once per phase of an iteration
                      f"{where}{100 * (1 - valid):.0f}% of the questions did not parse "
                      f"(threshold {100 * INVALID_WARN_SHARE:.0f}%)", limit=1)


class Parts:
    """Progress of a command made of known parts (``visplay report``, ``visplay export``): a bar of parts done over
    the total on stderr, titled with the part in progress (off a terminal, a plain line per part, or per tenth of
    them past ten), nothing under ``quiet``; each part is also logged at INFO when it starts (``-v``).

    ``with parts.part("plots"): ...`` counts one part done when the block ends.
    """

    def __init__(self, title: str, total: int, *, quiet: bool = False, plain: bool | None = None):
        self.title, self.total = title, total
        self._progress = Progress(quiet=quiet, plain=plain)
        self._progress.phase(0, title, total)
        if self._progress._bar is not None:
            self._progress._bar.unit = "part"
        self.done = 0

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        logging.getLogger("visplay.progress").info("%s: %s (%d/%d)", self.title, name, self.done + 1, self.total)
        bar = self._progress._bar
        if bar is not None:
            bar.set_description(f"{self.title}: {name}", refresh=False)
        yield
        self.done += 1
        self._progress.advance()

    def close(self) -> None:
        self._progress.close()


class PlainBar:
    """The part of tqdm's interface Progress uses, printing a plain line on stderr each time the count passes
    another tenth of the total (and at the end): ``iter 1/3 evaluate: 60/300 question (20%) 42s, reward=0.41``.
    For logs that are not terminals, where a tqdm bar is one long line of carriage returns."""

    PARTS = 10

    def __init__(self, *, total: int, initial: int = 0, desc: str = "", unit: str = "step"):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.postfix = ""
        self._printed = initial  # the count last printed (nothing is printed for steps a resume found done)
        self._started = time.monotonic()

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def reset(self, total: int) -> None:
        self.total, self.n, self._printed, self._started = total, 0, 0, time.monotonic()

    def set_postfix(self, postfix: dict[str, str], refresh: bool = True) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in postfix.items())

    def update(self, k: int = 1) -> None:
        self.n += k
        self.refresh()

    def refresh(self) -> None:
        every = max(1, math.ceil(self.total / self.PARTS)) if self.total else 1
        if self.n != self._printed and (self.n >= self.total or self.n // every > self._printed // every):
            self.print_line()

    def print_line(self) -> None:
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        postfix = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}{share} {time.monotonic() - self._started:.0f}s"
              f"{postfix}", file=sys.stderr, flush=True)
        self._printed = self.n

    def close(self) -> None:
        if self.n != self._printed:
            self.print_line()


def counting_bar(total: int, desc: str, *, unit: str = "item", quiet: bool = False, plain: bool | None = None) -> Any:
    """A bar counting ``total`` things outside the engine's phases (``visplay eval``'s items): tqdm on a terminal, a
    :class:`PlainBar` line per tenth off one (``plain`` None: decided by stderr), None when ``quiet``."""
    if quiet:
        return None
    if plain if plain is not None else not _is_terminal(sys.stderr):
        return PlainBar(total=total, desc=desc, unit=unit)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=True)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or odd stream
        return False


def _fmt(postfix: dict[str, float]) -> dict[str, str]:
    return {k: f"{v:.3g}" for k, v in postfix.items()}


def _where(iteration: Any, phase: Any, step: Any) -> str:
    if iteration is None and phase is None:
        return ""
    return f"[iter {iteration} {PHASE_TITLES.get(phase, phase)} step {step}] "


Fields = dict[str, float | tuple[float, float] | str]


def _num(value: float | tuple[float, float] | str | None) -> str:
    if isinstance(value, tuple):  # (value, standard error)
        return f"{value[0]:.3f}\u00b1{value[1]:.3f}"
    return "n/a" if value is None else value if isinstance(value, str) else f"{value:.3f}"


def _field_parts(fields: Fields | None) -> list[str]:
    """The plugins' own fields (``visplay_summary_fields``) as ``label value`` texts, in their order."""
    return [f"{label} {_num(value)}" for label, value in (fields or {}).items()]


def start_line(fields: Fields | None) -> str | None:
    """``start (questioner_v0, reasoner_v0): gold pass@1 0.409±0.019 | maj@8 0.470±0.029``: the plugins' fields for
    the starting models (after any cold start), so each iteration's line can be read against them; None when no
    plugin gives any."""
    return "start (questioner_v0, reasoner_v0): " + " | ".join(_field_parts(fields)) if fields else None


def summary_line(iteration: int, iterations: int, s: dict[str, float | None], fields: Fields | None = None) -> str:
    """``iteration 1/2: questioner reward 0.41 | mean confidence 0.63 | kept 5/16 (31%) | reasoner reward 0.50``,
    then the plugins' own fields (``visplay_summary_fields``), e.g. ``gold accuracy 0.208``."""
    parts = [f"questioner reward {_num(s.get('questioner_reward'))}", f"mean confidence {_num(s.get('confidence'))}",
             f"kept {int(s.get('kept') or 0)}/{int(s.get('set_size') or 0)}"
             + (f" ({100 * s['kept_frac']:.0f}%)" if s.get("kept_frac") is not None else ""),
             f"reasoner reward {_num(s.get('reasoner_reward'))}"]
    parts += _field_parts(fields)
    return f"iteration {iteration}/{iterations}: " + " | ".join(parts)
