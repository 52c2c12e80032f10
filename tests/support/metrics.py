"""Reading a run's TensorBoard event files back with tensorboard's own reader and checking them against the log."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from visplay.log.runlog import RunLog


def accumulator(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every event, no sampling
    acc.Reload()
    return acc


def assert_tensorboard_equals_run_log(db: Path) -> int:
    """Every finite ``metrics`` row is the scalar ``<phase>/<name>`` at its step's global step and wall time
    (float32, as TensorBoard stores it). Returns how many scalars were checked."""
    acc = accumulator(db.parent / "tensorboard")
    with RunLog(db, readonly=True) as log:
        rows = [r for r in log.rows("metrics") if math.isfinite(r["value"])]
        clocks = {(r["iteration"], r["phase"], r["step"]): log.step_clock(r["iteration"], r["phase"], r["step"])
                  for r in log.rows("steps")}
    expected: dict[str, list[tuple[int, float, float]]] = {}
    for r in rows:
        clock = clocks[(r["iteration"], r["phase"], r["step"])]
        expected.setdefault(f"{r['phase']}/{r['name']}", []).append(
            (clock["global_step"], float(np.float32(r["value"])), clock["committed_at"]))
    assert set(expected) <= set(acc.Tags()["scalars"])
    for tag, points in expected.items():
        events = acc.Scalars(tag)
        assert [(e.step, e.value) for e in events] == sorted((s, v) for s, v, _ in points), tag
        assert [e.wall_time for e in events] == pytest.approx([w for _, _, w in sorted(points)], abs=1e-3)
    return len(rows)
