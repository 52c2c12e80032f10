"""Reward math of both variants as pure functions over plain numbers (PAPER.md, "Rewards").

Questioner (paper Eq. for r_unc, r_div and the final reward; released ``cot_val.compute_score``):
  r_unc  = 1 - |2c - 1|                       (paper)      min(c, 1 - c)                 (released)
  r_div  = lambda * |C_k| / N                 (C_k: the question's BLEU cluster among N questions)
  total  = valid * max(0, r_unc - r_div)      (paper)      r_unc - r_div if valid else -1 - r_div (released)
Reasoner:
  total  = (1 - w_f) * accuracy + w_f * format   (paper: w_f = 0, binary match; released: w_f = 0.1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

QUESTIONER_COMPONENTS = ("uncertainty", "diversity", "validity")
REASONER_COMPONENTS = ("accuracy", "format")
COMBINE_RULES = ("paper", "released", "weighted")


def uncertainty(confidence: float, variant: str) -> float:
    """r_unc for a confidence c in [0, 1]: paper 1 - |2c - 1| (peak 1 at c = 0.5), released min(c, 1 - c)."""
    if variant == "released":
        return min(confidence, 1.0 - confidence)
    return 1.0 - abs(2.0 * confidence - 1.0)


def combine_questioner(rule: str, unc: Sequence[float], div: Sequence[float], valid: Sequence[float],
                       weights: Mapping[str, float] | None = None) -> list[float]:
    """The questioner's scalar reward per item under ``rule`` (``paper``, ``released`` or ``weighted``).

    ``weighted``: sum of weight * component with defaults uncertainty 1, diversity -1, validity 0, overridden by
    ``weights``.
    """
    if rule == "paper":
        return [v * max(0.0, u - d) if v else 0.0 for u, d, v in zip(unc, div, valid)]
    if rule == "released":
        return [(u - d) if v else (-1.0 - d) for u, d, v in zip(unc, div, valid)]
    if rule == "weighted":
        w = {"uncertainty": 1.0, "diversity": -1.0, "validity": 0.0, **(weights or {})}
        return [w["uncertainty"] * u + w["diversity"] * d + w["validity"] * v for u, d, v in zip(unc, div, valid)]
    raise ValueError(f"reward.combine must be one of {', '.join(COMBINE_RULES)}, got {rule!r}")


def combine_reasoner(rule: str, accuracy: Sequence[float], fmt: Sequence[float], format_weight: float,
                     weights: Mapping[str, float] | None = None) -> list[float]:
    """The reasoner's scalar reward: (1 - w_f) * accuracy + w_f * format (``paper``/``released``) or weighted."""
    if rule in ("paper", "released"):
        return [(1.0 - format_weight) * a + format_weight * f for a, f in zip(accuracy, fmt)]
    if rule == "weighted":
        w = {"accuracy": 1.0 - format_weight, "format": format_weight, **(weights or {})}
        return [w["accuracy"] * a + w["format"] * f for a, f in zip(accuracy, fmt)]
    raise ValueError(f"reward.combine must be one of {', '.join(COMBINE_RULES)}, got {rule!r}")
