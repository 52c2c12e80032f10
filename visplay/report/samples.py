"""The report's sample browser: chosen images followed across iterations.

For each chosen image: every iteration's questions about it (reasoner-set questions first), each with its m votes,
silver label and confidence, the filter decision, its reward components (questioner training questions), the gold
answer where a plugin table knows it (any table with ``question_key`` and ``gold`` columns, e.g. the games
plugin's ``gold_silver``), and the reasoner's training rollouts on it with their rewards. Read-only, from the core
tables; an old or partial log simply shows less.
"""

from __future__ import annotations

import base64
import json
from collections import Counter, defaultdict
from typing import Any

from visplay.log.runlog import RunLog

SAMPLE_IMAGES = 4  # images followed through the run
QUESTIONS_PER_ITERATION = 4  # per image and iteration (voted ones first)
ROLLOUTS_PER_QUESTION = 4
TEXT_LIMIT = 400  # characters of a raw generation shown


def choose_images(questions: list[dict], kept: set[str] = frozenset()) -> list[str]:
    """Images with questions in the most iterations, then the most kept questions (so the reasoner's rollouts
    show), then the most valid ones; ties by id: deterministic, and the browser shows votes, decisions and rollouts
    rather than only parse failures."""
    its: dict[str, set[int]] = defaultdict(set)
    score: Counter[tuple[str, str]] = Counter()
    for q in questions:
        if q["image_id"] is None:
            continue
        its[q["image_id"]].add(q["iteration"])
        score[(q["image_id"], "kept")] += q["key"] in kept
        score[(q["image_id"], "valid")] += bool(q["valid"])
    return sorted(its, key=lambda i: (-len(its[i]), -score[(i, "kept")], -score[(i, "valid")], i))[:SAMPLE_IMAGES]


def _gold_answers(runlog: RunLog, keys: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for table in runlog.tables():
        if table.startswith("sqlite_") or not {"question_key", "gold"} <= set(runlog.columns(table)):
            continue
        for row in runlog.rows_in(table, "question_key", keys, order_by="question_key"):
            if row.get("gold") is not None:
                out.setdefault(row["question_key"], str(row["gold"]))
    return out


def _question_view(q: dict, label: dict | None, filt: dict | None, rewards: dict[str, float],
                   gold: str | None, rollouts: list[dict], text: str | None) -> dict[str, Any]:
    votes = []
    if label:
        answers = json.loads(label["answers"] or "[]")
        keys = json.loads(label["answer_keys"] or "[]")
        votes = [{"answer": a, "silver": k is not None and k == label["silver_key"]} for a, k in zip(answers, keys)]
    return {
        "key": q["key"], "phase": q["phase"], "valid": bool(q["valid"]), "qtype": q["qtype"],
        "question": q["question"], "parse_reason": q["parse_reason"], "stated_answer": q["stated_answer"],
        "text": (text or "")[:TEXT_LIMIT] if not q["valid"] else None, "votes": votes,
        "silver_label": label["silver_label"] if label else None,
        "confidence": label["confidence"] if label else None,
        "filter": None if filt is None else {"keep": bool(filt["keep"]), "reason": filt["reason"]},
        "rewards": rewards, "gold": gold,
        "gold_agrees": None if gold is None or not label else str(label["silver_label"]) == gold,
        "rollouts": rollouts,
    }


def collect_samples(runlog: RunLog) -> list[dict[str, Any]]:
    """[{image_id, png (base64 or None), source, iterations: [{iteration, questions: [...]}]}] for the chosen images."""
    if not runlog.db["questions"].exists():
        return []
    questions = runlog.rows("questions", order_by="iteration, key")
    kept = {f["question_key"] for f in runlog.rows("filters") if f["keep"]}
    chosen = choose_images(questions, kept)
    if not chosen:
        return []
    picked = [q for q in questions if q["image_id"] in chosen]
    picked.sort(key=lambda q: (q["iteration"], q["key"] not in kept, q["phase"] != "reasoner_set", not q["valid"],
                               q["key"]))
    by_image: dict[str, dict[int, list[dict]]] = {i: defaultdict(list) for i in chosen}
    for q in picked:
        group = by_image[q["image_id"]][q["iteration"]]
        if len(group) < QUESTIONS_PER_ITERATION:
            group.append(q)
    keys = [q["key"] for groups in by_image.values() for group in groups.values() for q in group]
    if not keys:
        return []
    labels = {r["question_key"]: r for r in runlog.rows_in("labels", "question_key", keys)}
    filters = {r["question_key"]: r for r in runlog.rows_in("filters", "question_key", keys)}
    rewards: dict[str, dict[str, float]] = defaultdict(dict)
    for r in runlog.rows_in("rewards", "key", keys, order_by="key, component"):
        rewards[r["key"]][r["component"]] = r["value"]
    texts = {g["key"]: g["text"] for g in runlog.rows_in("generations", "key", keys)}
    rollouts = _rollouts(runlog, keys)
    gold = _gold_answers(runlog, keys)
    images = {r["image_id"]: r for r in runlog.rows_in("images", "image_id", chosen)}
    out = []
    for image_id in chosen:
        image = images.get(image_id) or {}
        iterations = [{"iteration": it, "questions": [
            _question_view(q, labels.get(q["key"]), filters.get(q["key"]), rewards.get(q["key"], {}),
                           gold.get(q["key"]), rollouts.get(q["key"], []), texts.get(q["key"]))
            for q in group]} for it, group in sorted(by_image[image_id].items())]
        out.append({"image_id": image_id, "source": image.get("source"),
                    "png": base64.b64encode(image["png"]).decode() if image.get("png") else None,
                    "iterations": iterations})
    return out


def _rollouts(runlog: RunLog, keys: list[str]) -> dict[str, list[dict]]:
    """The reasoner's training rollouts on these questions, each with its extracted answer and total reward."""
    answers = [a for a in runlog.rows_in("answers", "question_key", keys, order_by="key")
               if a["phase"] == "reasoner"]
    if not answers:
        return {}
    rkeys = [a["key"] for a in answers]
    totals = {r["key"]: r["value"] for r in runlog.rows_in("rewards", "key", rkeys)
              if r["component"] == "total"}
    texts = {g["key"]: g["text"] for g in runlog.rows_in("generations", "key", rkeys)}
    out: dict[str, list[dict]] = defaultdict(list)
    for a in answers:
        if len(out[a["question_key"]]) < ROLLOUTS_PER_QUESTION:
            out[a["question_key"]].append({
                "key": a["key"], "extracted": a["extracted"], "reward": totals.get(a["key"]),
                "agrees": a["answer_key"] is not None and a["answer_key"] == a["silver_key"],
                "text": (texts.get(a["key"]) or "")[:TEXT_LIMIT]})
    return out
