"""The ``collapse`` plugin: per-iteration signals of the silver-label collapse, and warnings when they move.

Self-play's failure mode (docs/collapse.md): the questioner's reward (peak at 50% agreement) cannot tell a hard
question from an unperceivable one, so the questioner drifts to kinds of question on which the reasoner's majority
has settled on one answer, and the reasoner is trained on confident, wrong silver labels. Nothing here uses gold
labels: after each iteration (``visplay_iteration_end``, after the other plugins' evaluations) the iteration's
reasoner set is read back from the run log and summarised as

- ``collapse/asked_share/<kind>`` and ``collapse/kept_share/<kind>``: each kind's share of the set's voted
  questions and of the kept ones (kinds: ``visplay_question_kinds``, else the silver label's form; kinds.py);
- ``collapse/kind_shift``: total variation between this iteration's asked kinds and iteration 1's (0 = the same
  mix, 1 = disjoint); ``collapse/kept_kind_shift`` the same for the kept questions;
- ``collapse/top_kept_share``: the largest kind's share of the kept questions;
- ``collapse/margin_{mean,p10,p50,p90}``: the vote margin (majority votes minus runner-up votes, over m) of the
  kept questions, and ``collapse/unanimous_frac``: the share of all voted questions whose m votes all agree;
- ``collapse/warnings``: how many warnings fired.

A warning is a run-log event (printed on the terminal, counted in the report's story): ``collapse_kind_shift``
when ``kind_shift`` passes ``plugins.collapse.kind_shift_warn``, ``collapse_concentration`` when one kind holds
more than ``plugins.collapse.concentration_warn`` of the kept questions. Gold-based signals (silver-label
accuracy per kind, and the warning when it falls below the starting pass@1) belong to the plugin that has gold:
visplay_games.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from visplay.api import hookimpl, number_in, plugin_section
from visplay_collapse.kinds import kinds_of, quantile, shares, total_variation, vote_margin

PHASE = "reasoner_set"


@dataclass
class CollapseOptions:
    """Signals of the silver-label collapse after each iteration (no gold labels used)."""

    signals: bool = True
    """Compute the ``collapse/*`` metrics and warnings after each iteration."""
    kind_shift_warn: float = 0.35
    """Warn when the kinds of the questions asked for the reasoner's set have moved this far (total variation,
    0..1) from iteration 1's mix."""
    concentration_warn: float = 0.5
    """Warn when one kind holds more than this share of the kept questions (sets of at least ``min_kept``)."""
    min_kept: int = 10
    """Kept questions below which the concentration warning stays silent (too few to say)."""

    def validate(self) -> dict[str, str]:
        checks = {"kind_shift_warn": number_in(self.kind_shift_warn, 0.0, 1.0),
                  "concentration_warn": number_in(self.concentration_warn, 0.0, 1.0)}
        if not isinstance(self.signals, bool):
            checks["signals"] = "must be true or false"
        if isinstance(self.min_kept, bool) or not isinstance(self.min_kept, int) or self.min_kept < 1:
            checks["min_kept"] = f"must be an integer >= 1, got {self.min_kept!r}"
        return {key: why for key, why in checks.items() if why is not None}


@hookimpl
def visplay_recipe_sections() -> dict[str, type]:
    return {"collapse": CollapseOptions}


def _keys(value: Any) -> list:
    return json.loads(value) if isinstance(value, str) else list(value or [])


def reasoner_set(ctx: Any, iteration: int) -> list[dict[str, Any]]:
    """The iteration's voted reasoner-set questions from the run log: image_id, question, silver_label,
    answer_keys, m, keep and kind, in key order."""
    log = ctx.log
    labels = log.labels_of(iteration, PHASE)
    if not labels:
        return []
    questions = {q["key"]: q for q in log.rows_matching("questions", iteration=iteration, phase=PHASE)}
    filters = log.filters_of(iteration)
    keep = {f["question_key"]: int(f["keep"]) for f in filters}
    gold = {f["question_key"] for f in filters if f["reason"] == "gold"}  # a plugin's gold set: nothing was voted
    rows = []
    for label in sorted(labels, key=lambda lab: lab["question_key"]):
        q = questions.get(label["question_key"])
        if q is None or label["question_key"] in gold or not label["m"]:
            continue
        rows.append({"key": label["question_key"], "image_id": q["image_id"], "question": q["question"],
                     "silver_label": label["silver_label"], "answer_keys": _keys(label["answer_keys"]),
                     "m": int(label["m"]), "keep": keep.get(label["question_key"], 0)})
    for row, kind in zip(rows, kinds_of(ctx, rows)):
        row["kind"] = kind
    return rows


def signals(rows: list[dict[str, Any]], first: list[dict[str, Any]]) -> dict[str, float]:
    """The ``collapse/*`` metrics of one iteration's set ``rows`` against iteration 1's ``first``."""
    if not rows:
        return {}
    kept = [r for r in rows if r["keep"]]
    asked, asked_first = shares([r["kind"] for r in rows]), shares([r["kind"] for r in first])
    kept_shares = shares([r["kind"] for r in kept])
    metrics = {f"collapse/asked_share/{k}": v for k, v in asked.items()}
    metrics.update({f"collapse/kept_share/{k}": v for k, v in kept_shares.items()})
    metrics["collapse/kind_shift"] = total_variation(asked, asked_first)
    first_kept = shares([r["kind"] for r in first if r["keep"]])
    if kept and first_kept:
        metrics["collapse/kept_kind_shift"] = total_variation(kept_shares, first_kept)
    metrics["collapse/kinds"] = float(len(asked))
    metrics["collapse/unanimous_frac"] = fmean(float(vote_margin(r["answer_keys"]) == r["m"]) for r in rows)
    if kept:
        margins = [vote_margin(r["answer_keys"]) / r["m"] for r in kept]
        metrics["collapse/top_kept_share"] = max(kept_shares.values())
        metrics["collapse/margin_mean"] = fmean(margins)
        for q in (10, 50, 90):
            metrics[f"collapse/margin_p{q}"] = quantile(margins, q / 100)
    return metrics


def warnings(metrics: dict[str, float], rows: list[dict[str, Any]], first: list[dict[str, Any]],
             opts: CollapseOptions, iteration: int) -> list[tuple[str, str]]:
    """(event kind, message) for each signal past its threshold."""
    out = []
    shift = metrics.get("collapse/kind_shift")
    if shift is not None and iteration > 1 and shift > opts.kind_shift_warn:
        now, then = shares([r["kind"] for r in rows]), shares([r["kind"] for r in first])
        grown = sorted((k for k in now if now[k] > then.get(k, 0.0)), key=lambda k: (then.get(k, 0.0) - now[k], k))[:3]
        moves = ", ".join(f"{k} {100 * then.get(k, 0.0):.0f}% -> {100 * now[k]:.0f}%" for k in grown)
        out.append(("collapse_kind_shift",
                    f"the questioner's kinds moved {shift:.2f} (total variation) from iteration 1's, past "
                    f"plugins.collapse.kind_shift_warn={opts.kind_shift_warn}: {moves}; silver labels on kinds it "
                    f"drifts to may be confidently wrong (docs/collapse.md)"))
    top = metrics.get("collapse/top_kept_share")
    kept = [r["kind"] for r in rows if r["keep"]]
    if top is not None and len(kept) >= opts.min_kept and top > opts.concentration_warn:
        kind = max(shares(kept).items(), key=lambda kv: (kv[1], kv[0]))[0]
        out.append(("collapse_concentration",
                    f"{100 * top:.0f}% of the {len(kept)} kept questions are of one kind ({kind}), past "
                    f"plugins.collapse.concentration_warn={opts.concentration_warn} (docs/collapse.md)"))
    return out


@hookimpl(trylast=True)  # after the evaluations of the other plugins (their rows are in the same step)
def visplay_iteration_end(ctx: Any, iteration: int, questioner: Any, reasoner: Any) -> dict[str, float] | None:
    opts: CollapseOptions = plugin_section(ctx.recipe, "collapse")
    if not opts.signals or ctx.log is None:
        return None
    rows = reasoner_set(ctx, iteration)
    first = rows if iteration == 1 else reasoner_set(ctx, 1)
    metrics = signals(rows, first)
    if not metrics:
        return None
    fired = warnings(metrics, rows, first, opts, iteration)
    for kind, message in fired:
        ctx.log.event(kind, message, level="warning", source="collapse")
    metrics["collapse/warnings"] = float(len(fired))
    return metrics
