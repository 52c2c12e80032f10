"""Progress for humans: a tqdm bar per phase (stderr), warnings as they happen (stderr, also under ``-q``) and one
summary line per iteration (stdout).

``quiet`` turns the bars off (CI); warnings and summary lines still print because they are results, not
decoration. A plugin doing long work inside one engine step (the cold-start SFT, an evaluation) reports its own
step counts through ``RunContext.report_progress``, so the bar shows them instead of "0/1".
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from typing import Any

PHASE_TITLES = {"cold_start": "cold start", "questioner": "train questioner", "reasoner_set": "build reasoner set",
                "reasoner": "train reasoner", "eval": "evaluate"}
INVALID_WARN_SHARE = 0.5  # warn when more than this share of a step's questions did not parse
WARN_REPEAT = 3  # warnings of one kind printed before the rest are only counted (all are in the events table)


class Progress:
    """Owns at most one open bar at a time."""

    def __init__(self, *, quiet: bool = False, iterations: int = 0, silent: bool = False):
        self.quiet = quiet or silent
        self.silent = silent  # not even summary lines (ranks other than 0 of a multi-process run)
        self.iterations = iterations
        self._bar: Any = None
        self._sub = False  # the bar counts a plugin's own steps inside one engine step
        self._warned: Counter[str] = Counter()

    def phase(self, iteration: int, phase: str, total: int, done: int = 0) -> None:
        """Open the bar for a phase; ``done`` steps were already committed (resume)."""
        self.close()
        if self.quiet:
            return
        from tqdm import tqdm

        where = f"iter {iteration}/{self.iterations} " if iteration else ""
        self._bar = tqdm(total=total, initial=done, desc=f"{where}{PHASE_TITLES.get(phase, phase)}",
                         unit="step", file=sys.stderr, dynamic_ncols=True, leave=True)

    def substep(self, done: int, total: int, unit: str = "step", postfix: dict[str, float] | None = None) -> None:
        """A plugin's own progress inside the current engine step (e.g. SFT step 120 of 450)."""
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
        self._sub = False

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
        if self._bar is not None:
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
