"""Progress for humans: a tqdm bar per phase (stderr) and one summary line per iteration (stdout).

``quiet`` turns the bars off (CI); summary lines still print because they are results, not decoration.
"""

from __future__ import annotations

import sys
from typing import Any

PHASE_TITLES = {"cold_start": "cold start", "questioner": "train questioner", "reasoner_set": "build reasoner set",
                "reasoner": "train reasoner", "eval": "evaluate"}


class Progress:
    """Owns at most one open bar at a time."""

    def __init__(self, *, quiet: bool = False, iterations: int = 0, silent: bool = False):
        self.quiet = quiet or silent
        self.silent = silent  # not even summary lines (ranks other than 0 of a multi-process run)
        self.iterations = iterations
        self._bar: Any = None

    def phase(self, iteration: int, phase: str, total: int, done: int = 0) -> None:
        """Open the bar for a phase; ``done`` steps were already committed (resume)."""
        self.close()
        if self.quiet:
            return
        from tqdm import tqdm

        where = f"iter {iteration}/{self.iterations} " if iteration else ""
        self._bar = tqdm(total=total, initial=done, desc=f"{where}{PHASE_TITLES.get(phase, phase)}",
                         unit="step", file=sys.stderr, dynamic_ncols=True, leave=True)

    def advance(self, postfix: dict[str, float] | None = None) -> None:
        if self._bar is None:
            return
        if postfix:
            self._bar.set_postfix({k: f"{v:.3g}" for k, v in postfix.items()}, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def say(self, line: str) -> None:
        """A result line on stdout (kept clear of an open bar)."""
        self.close()
        if not self.silent:
            print(line, flush=True)


def summary_line(iteration: int, iterations: int, s: dict[str, float | None]) -> str:
    """``iteration 1/2: questioner reward 0.41 | confidence 0.63 | kept 5/16 (31%) | reasoner reward 0.50``."""
    def num(key: str) -> str:
        value = s.get(key)
        return "n/a" if value is None else f"{value:.3f}"

    parts = [f"questioner reward {num('questioner_reward')}", f"mean confidence {num('confidence')}",
             f"kept {int(s.get('kept') or 0)}/{int(s.get('set_size') or 0)}"
             + (f" ({100 * s['kept_frac']:.0f}%)" if s.get("kept_frac") is not None else ""),
             f"reasoner reward {num('reasoner_reward')}"]
    def with_se(key: str) -> str:
        se = s.get(f"{key}_se")
        return num(key) + ("" if se is None else f"\u00b1{se:.3f}")

    # only verifiable sources (the games plugin) report these: pass@1 = mean accuracy of the sampled answers,
    # maj@m = accuracy of their majority, each with its standard error over the held-out questions
    if s.get("gold_pass1") is not None:
        parts.append(f"gold pass@1 {with_se('gold_pass1')}")
    if s.get("gold_maj") is not None:
        votes = f"@{int(s['gold_votes'])}" if s.get("gold_votes") else ""
        parts.append(f"maj{votes} {with_se('gold_maj')}")
    if s.get("silver_accuracy") is not None:
        parts.append(f"silver-label accuracy {with_se('silver_accuracy')}")
    return f"iteration {iteration}/{iterations}: " + " | ".join(parts)
