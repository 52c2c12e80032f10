"""Row builders for the core tables of the run log (visplay.log.runlog.TABLES; docs/runlog.md).

Each builder returns one row as a dict whose keys are the table's columns; the engine collects them per step and
the run log writes them in the step's transaction. Building a row anywhere else would let two places disagree on
a column, so every core row is made here.
"""

from __future__ import annotations

from typing import Any

from visplay.keys import Position, group_of
from visplay.log.runlog import generation_digest
from visplay.types import Generation, ParsedQuestion, QuestionItem, Vote


def generation_row(at: Position, key: str, role: str, kind: str, image_id: str | None, parent_key: str | None,
                   gen: Generation, seed: int, *, keep_logprobs: bool = True) -> dict[str, Any]:
    """A ``generations`` row; ``seed`` is the request seed passed to the sampling hook (replay matches on it).
    ``keep_logprobs=False`` leaves the log-probs out (votes, unless ``log.vote_logprobs``)."""
    return {
        "key": key, "iteration": at.iteration, "phase": at.phase, "step": at.step, "role": role, "kind": kind,
        "image_id": image_id, "parent_key": parent_key, "sample_index": gen.sample_index, "seed": seed,
        "prompt_system": gen.prompt.system, "prompt_user": gen.prompt.user, "text": gen.text,
        "token_ids": list(gen.token_ids),
        "logprobs": [float(x) for x in gen.logprobs] if keep_logprobs else None,
        "finish_reason": gen.finish_reason, "digest": generation_digest(gen.text, gen.token_ids),
    }


def question_row(at: Position, key: str, image_id: str, group: str, parsed: ParsedQuestion) -> dict[str, Any]:
    return {"key": key, "iteration": at.iteration, "phase": at.phase, "step": at.step, "image_id": image_id,
            "grp": group, "valid": int(parsed.valid), "qtype": parsed.qtype, "question": parsed.question,
            "stated_answer": parsed.stated_answer, "parse_reason": parsed.reason}


def label_row(at: Position, question_key: str, m: int, vote: Vote) -> dict[str, Any]:
    return {"question_key": question_key, "iteration": at.iteration, "phase": at.phase, "m": m,
            "answers": list(vote.answers), "answer_keys": list(vote.keys), "silver_label": vote.silver_label,
            "silver_key": vote.silver_key, "confidence": float(vote.confidence)}


def answer_row(at: Position, key: str, question_key: str, group: str, extracted: str | None, answer_key: str | None,
               silver_key: str | None) -> dict[str, Any]:
    return {"key": key, "question_key": question_key, "iteration": at.iteration, "phase": at.phase,
            "step": at.step, "grp": group, "extracted": extracted, "answer_key": answer_key, "silver_key": silver_key}


def filter_row(at: Position, question_key: str, keep: bool, reason: str, producer: str) -> dict[str, Any]:
    """``producer``: the plugin whose decision is logged (the first rejecting one), ``engine`` for the core's."""
    return {"question_key": question_key, "iteration": at.iteration, "keep": int(keep), "reason": reason,
            "producer": producer}


def reward_row(at: Position, key: str, component: str, role: str, value: float, producer: str) -> dict[str, Any]:
    return {"key": key, "component": component, "iteration": at.iteration, "role": role, "step": at.step,
            "value": value, "producer": producer}


def advantage_row(at: Position, key: str, role: str, group: str, reward: float, advantage: float) -> dict[str, Any]:
    return {"key": key, "iteration": at.iteration, "role": role, "step": at.step, "grp": group, "reward": reward,
            "advantage": advantage}


def dropped_group_row(at: Position, group: str, role: str, rollouts: int, reward: float,
                      producer: str) -> dict[str, Any]:
    """A ``dropped_groups`` row: a group the optimizer left out of its update."""
    return {"grp": group, "iteration": at.iteration, "role": role, "step": at.step, "rollouts": rollouts,
            "reward": reward, "producer": producer}


def event_row(at: Position, kind: str, message: str, *, level: str = "warning",
              source: str = "engine") -> dict[str, Any]:
    return {"iteration": at.iteration, "phase": at.phase, "step": at.step, "level": level, "kind": kind,
            "source": source, "message": message}


def gold_question_rows(at: Position, key: str, image_id: str, question: str, answer: str,
                       answer_key: str, producer: str) -> dict[str, list[dict[str, Any]]]:
    """The rows of one gold question a plugin supplied for the reasoner's set (label = gold, always kept)."""
    parsed = ParsedQuestion(valid=True, question=question, reason="gold")
    vote = Vote(answers=[], keys=[], silver_label=answer, silver_key=answer_key, confidence=1.0)
    return {"questions": [question_row(at, key, image_id, group_of(key), parsed)],
            "labels": [label_row(at, key, 0, vote)],
            "filters": [filter_row(at, key, True, "gold", producer)]}


def item_rows(at: Position, item: QuestionItem, seed: int) -> dict[str, list[dict[str, Any]]]:
    """A questioner generation's ``generations`` and ``questions`` rows."""
    return {"generations": [generation_row(at, item.key, "questioner", "question", item.image_id, None,
                                           item.generation, seed)],
            "questions": [question_row(at, item.key, item.image_id, item.group, item.parsed)]}
