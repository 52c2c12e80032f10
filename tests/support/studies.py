"""A finished study run as reproduce/collapse_study.py and optimizer_study.py read it: a run log with the gold
questions' pass@1 at the start (iteration 0) and after iteration 3, and the run's result.json."""

from __future__ import annotations

import json
from pathlib import Path

from visplay.log.runlog import RunLog


def fake_study_run(folder: Path, arm: str, seed: int, before: list[float], after: list[float],
                   silver: list[float]) -> None:
    folder.mkdir(parents=True)
    with RunLog(folder / "run.db", create=True) as log:
        log.declare_table("gold_eval", {"key": str, "iteration": int, "sample_accuracy": float}, pk="key")
        log.insert("gold_eval", [{"key": f"i{it}/gold/{j:04d}", "iteration": it, "sample_accuracy": v}
                                 for it, values in ((0, before), (3, after)) for j, v in enumerate(values)])
    ev = {"0": {"gold/sample_accuracy": sum(before) / len(before)}}
    for i in (1, 2, 3):
        ev[str(i)] = {"gold/sample_accuracy": sum(after) / len(after), "gold/silver_accuracy": silver[i - 1]}
    (folder / "result.json").write_text(json.dumps({"arm": arm, "seed": seed, "eval": ev, "overrides": []}))
