"""Gold evaluation: the reasoner scored on held-out game states, and the run's silver labels checked against
the game engine (the paper's Table 2 analysis, automatic and per iteration).

Held-out accuracy: each held-out question is answered ``eval_votes`` times through the run's own hooks
(``visplay_sample_answers``, ``visplay_extract_answers``, ``visplay_answer_key``); the majority answer is scored
against gold. Silver accuracy: every silver label of the iteration whose question the engine can parse (a templated
question, e.g. after the cold start taught the questioner the templates) is compared with the engine's answer.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from visplay.api import ImageRecord
from visplay_games.core import QA, GameState, answers_match
from visplay_games.generators import answer

EVAL_TABLE = "gold_eval"
EVAL_COLUMNS = {"key": str, "iteration": int, "image_id": str, "game": str, "difficulty": int, "kind": str,
                "category": str, "question": str, "gold": str, "answers": str, "majority": str,
                "confidence": float, "correct": int, "sample_accuracy": float, "greedy": str,
                "greedy_correct": int}
SILVER_TABLE = "gold_silver"
SILVER_COLUMNS = {"question_key": str, "iteration": int, "phase": str, "image_id": str, "game": str, "kind": str,
                  "question": str, "silver_label": str, "gold": str, "confidence": float, "correct": int,
                  "kept": int}


@dataclass(frozen=True)
class EvalItem:
    state: GameState
    record: ImageRecord
    qa: QA


def eval_items(pool: Sequence[tuple[GameState, ImageRecord]], per_image: int) -> list[EvalItem]:
    """``per_image`` QA pairs per held-out image, rotating through its pairs so every kind gets asked. The
    rotation counts the images of each game separately: pools cycle through the games, so a rotation by pool
    position would ask every image of a game the same kinds whenever the number of games and of its pairs share
    a factor."""
    items = []
    seen: Counter[str] = Counter()
    for gs, record in pool:
        j = seen[gs.game]
        seen[gs.game] += 1
        for k in range(min(per_image, len(gs.qa))):
            items.append(EvalItem(gs, record, gs.qa[(j * per_image + k) % len(gs.qa)]))
    return items


def majority(answers: Sequence[str | None], keys: Sequence[str | None]) -> tuple[str | None, float]:
    """The most common non-None key's first answer, and its share of all m answers (ties: first seen)."""
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return None, 0.0
    best = max(counts.values())
    winner = next(k for k in keys if k is not None and counts[k] == best)
    return answers[list(keys).index(winner)], best / len(keys)


def score_items(items: Sequence[EvalItem], answers: Sequence[Sequence[str | None]],
                key_fn: Callable[[str], str | None], iteration: int,
                greedy: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
    """One ``gold_eval`` row per item from its m extracted answers (and its greedy answer, when given)."""
    rows = []
    for j, (item, item_answers) in enumerate(zip(items, answers)):
        keys = [key_fn(a) if a is not None else None for a in item_answers]
        top, confidence = majority(item_answers, keys)
        hits = [answers_match(a, item.qa.answer, item.qa.kind, key_fn) for a in item_answers]
        rows.append({
            "key": f"i{iteration}/gold/{j:04d}", "iteration": iteration, "image_id": item.record.image_id,
            "game": item.state.game, "difficulty": item.state.difficulty, "kind": item.qa.kind,
            "category": item.qa.category, "question": item.qa.question, "gold": item.qa.answer,
            "answers": list(item_answers), "majority": top, "confidence": confidence,
            "correct": int(answers_match(top, item.qa.answer, item.qa.kind, key_fn)),
            "sample_accuracy": sum(hits) / max(1, len(hits)),
        })
        if greedy is not None:
            rows[-1]["greedy"] = greedy[j]
            rows[-1]["greedy_correct"] = int(answers_match(greedy[j], item.qa.answer, item.qa.kind, key_fn))
    return rows


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean of per-question values (sample standard deviation / sqrt(n)). Per-question
    sample accuracies are averaged first, so the m answers to one question count as one observation (they are
    not independent); for 0/1 values this is the binomial sqrt(p(1-p)/(n-1))."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = _mean(values)
    return (sum((v - mean) ** 2 for v in values) / (n - 1) / n) ** 0.5


def gold_metrics(rows: Sequence[dict[str, Any]], band: Any = None) -> dict[str, float]:
    """``gold/accuracy`` (majority vs gold) overall and per game, kind, category and difficulty, plus per-sample
    accuracy, mean confidence, and the accuracy of the majorities whose confidence lies in the filter band (the
    silver labels the loop would keep; ``band``: the algorithm plugin's FilterOptions, whose ``keeps`` is the one
    inclusive test)."""
    if not rows:
        return {}
    correct = [float(r["correct"]) for r in rows]
    sampled = [r["sample_accuracy"] for r in rows]
    metrics = {"gold/accuracy": _mean(correct), "gold/accuracy_se": standard_error(correct),
               "gold/sample_accuracy": _mean(sampled), "gold/sample_accuracy_se": standard_error(sampled),
               # maj@m - pass@1 on the same questions: self-play can only help when this is positive
               "gold/vote_margin": _mean(correct) - _mean(sampled),
               "gold/vote_margin_se": standard_error([c - s for c, s in zip(correct, sampled)]),
               "gold/confidence_mean": _mean([r["confidence"] for r in rows]),
               "gold/answered": _mean([float(r["majority"] is not None) for r in rows]),
               "gold/items": float(len(rows)), "gold/votes": float(max(len(r["answers"]) for r in rows))}
    groups: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        groups[f"gold/accuracy/{r['game']}"].append(r["correct"])
        groups[f"gold/accuracy/kind/{r['game']}/{r['kind']}"].append(r["correct"])
        groups[f"gold/accuracy/category/{r['category']}"].append(r["correct"])
        groups[f"gold/accuracy/difficulty/{r['difficulty']}"].append(r["correct"])
    metrics.update({name: _mean(v) for name, v in sorted(groups.items())})
    greedy = [float(r["greedy_correct"]) for r in rows if r.get("greedy_correct") is not None]
    if greedy:
        metrics["gold/greedy_accuracy"] = _mean(greedy)
        metrics["gold/greedy_accuracy_se"] = standard_error(greedy)
    if band is not None:
        kept = [r["correct"] for r in rows if band.keeps(r["confidence"])]
        metrics["gold/heldout_band_fraction"] = len(kept) / len(rows)
        if kept:
            metrics["gold/heldout_band_accuracy"] = _mean(kept)
    return metrics


def silver_rows(iteration: int, labels: Sequence[dict], questions: dict[str, dict], kept: dict[str, int],
                states: dict[str, GameState], key_fn: Callable[[str], str | None]) -> list[dict[str, Any]]:
    """``gold_silver`` rows: the iteration's silver labels whose question the game engine can parse."""
    rows = []
    for label in labels:
        q = questions.get(label["question_key"])
        gs = states.get(q["image_id"]) if q else None
        if gs is None or not q.get("question"):
            continue
        solved = answer(gs, q["question"])
        if solved is None:
            continue
        template, gold = solved
        rows.append({
            "question_key": label["question_key"], "iteration": iteration, "phase": label.get("phase"),
            "image_id": q["image_id"], "game": gs.game, "kind": template.kind, "question": q["question"],
            "silver_label": label.get("silver_label"), "gold": gold, "confidence": label.get("confidence"),
            "correct": int(answers_match(label.get("silver_label"), gold, template.kind, key_fn)),
            "kept": kept.get(label["question_key"]),
        })
    return rows


def silver_metrics(labels: Sequence[dict], rows: Sequence[dict[str, Any]], kept: dict[str, int]) -> dict[str, float]:
    """Silver-label accuracy against gold (parseable questions only), how many could be checked, the mean
    confidence of all silver labels and the kept fraction of the reasoner's set."""
    metrics: dict[str, float] = {"silver/labels": float(len(labels)), "gold/silver_checked": float(len(rows))}
    confidences = [lab["confidence"] for lab in labels if lab.get("confidence") is not None]
    if confidences:
        metrics["silver/confidence_mean"] = _mean(confidences)
    if kept:
        metrics["silver/kept_fraction"] = _mean([float(v) for v in kept.values()])
    if labels:
        metrics["gold/silver_checked_fraction"] = len(rows) / len(labels)
    if rows:
        metrics["gold/silver_accuracy"] = _mean([r["correct"] for r in rows])
        metrics["gold/silver_accuracy_se"] = standard_error([float(r["correct"]) for r in rows])
        kept_rows = [r["correct"] for r in rows if r["kept"]]
        if kept_rows:
            metrics["gold/silver_accuracy_kept"] = _mean(kept_rows)
        # per kind: where the collapse happens (docs/collapse.md); the kept rows are the ones the reasoner trains on
        groups: dict[str, list[int]] = defaultdict(list)
        for r in rows:
            groups[f"gold/silver_accuracy/kind/{r['game']}/{r['kind']}"].append(r["correct"])
            if r["kept"]:
                groups[f"gold/silver_accuracy_kept/kind/{r['game']}/{r['kind']}"].append(r["correct"])
        metrics.update({name: _mean(v) for name, v in sorted(groups.items())})
    return metrics


def silver_warning(metrics: dict[str, float], start: dict[str, float]) -> str | None:
    """The message when the iteration's silver labels are right less often than one sample of the starting
    reasoner (``start``: iteration 0's eval metrics): from there, training on them teaches wrong answers."""
    silver, floor = metrics.get("gold/silver_accuracy"), start.get("gold/sample_accuracy")
    if silver is None or floor is None or silver >= floor:
        return None
    worst = sorted((v, k.rsplit("kind/", 1)[1]) for k, v in metrics.items()
                   if k.startswith("gold/silver_accuracy/kind/"))[:3]
    return (f"silver-label accuracy {silver:.3f} is below the starting pass@1 {floor:.3f}: the reasoner is being "
            f"trained on labels worse than its own first guesses (lowest kinds: "
            + ", ".join(f"{kind} {v:.2f}" for v, kind in worst) + "; docs/collapse.md)")
