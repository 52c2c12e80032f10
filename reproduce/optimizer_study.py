"""The optimizer study (issue 24): the paper's self-play on the tiny recipe with four optimizers of the grpo menu.

    python reproduce/optimizer_study.py --out runs/optimizer_study [--seeds 0 1 2] [--jobs 1] [--docs docs/algorithm.md]
        [--arms grpo,dr_grpo,gspo,dapo]
    python reproduce/optimizer_study.py --out reproduce/optimizer_study --table-only --docs docs/algorithm.md  # JSON

Arms (reproduce/games_study.py's ARMS; every other setting is the default tiny recipe, ``variant=paper``):
- ``grpo``: today's optimizer (group-normalised advantages, dual-clip PPO loss, token_mean);
- ``dr_grpo``: Dr.GRPO (Liu et al. 2025): ``norm_adv_by_std=false`` (r - group mean) and
  ``loss_agg=seq_mean_token_sum_norm`` (token sums over rollouts x the generation budget), as verl and TRL name it;
- ``gspo``: GSPO (Zheng et al. 2025): ``policy_loss=gspo`` (the sequence-level ratio) with the GSPO paper's clip
  range 3e-4 / 4e-4 (TRL's GSPO documentation uses the same ``epsilon=3e-4, epsilon_high=4e-4``);
- ``dapo``: DAPO's dynamic sampling, its filter half (Yu et al. 2025: groups whose rewards are all equal leave
  the update; no refill) with its clip-higher ``clip_high=0.28``.
No setting was tuned on any seed: the arms are the sources' published settings. Each run is one process with one
torch thread, ``--jobs`` at a time. The gains are paired (the same 300 held-out questions before and after), as in
reproduce/collapse_study.py, whose runner and table this script shares; ``<out>/optimizer.json`` keeps every run's
numbers and the table in docs/algorithm.md (between the ``optimizer-study`` markers) is made from it alone.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARMS = ("grpo", "dr_grpo", "gspo", "dapo")
BEGIN, END = "<!-- optimizer-study:begin -->", "<!-- optimizer-study:end -->"


def collapse_study():
    spec = importlib.util.spec_from_file_location("collapse_study", HERE / "collapse_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    return collapse_study().study_main(argv, doc=__doc__, arms=ARMS, markers=(BEGIN, END),
                                       json_name="optimizer.json", default_out="runs/optimizer_study",
                                       default_seeds=[0, 1, 2])


if __name__ == "__main__":
    sys.exit(main())
