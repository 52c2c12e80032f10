"""The command-line helpers of the family tests (tests/models/test_families.py, test_gemma3.py): a one-iteration
self-play recipe at the smallest sizes, the real CLI in a subprocess, and the model types a run trained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SMALL = ["iterations=1", "questioner.steps=1", "questioner.images_per_step=2", "questioner.group_size=2",
         "questioner.votes=2", "reasoner.steps=1", "reasoner.set_images=2", "reasoner.votes=2",
         "reasoner.group_size=2", "reasoner.questions_per_step=2", "data.num_images=8", "plugins.games.image_size=48",
         "plugins.games.gold_reward=true", "plugins.games.held_out=0", "plugins.games.cold_start_steps=0",
         "plugins.games.cold_start_reasoner_steps=0"]


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.run([sys.executable, "-m", "visplay.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def trained_types(run: Path) -> dict[str, str]:
    """model_type of each role's trained checkpoint (v1 exists only after an update step)."""
    return {role: json.loads((run / "checkpoints" / f"{role}_v1" / "config.json").read_text())["model_type"]
            for role in ("questioner", "reasoner")}
