"""What every run-log table, view and column means: the one source of docs/runlog.md's table list and of the
datasette metadata file written beside each run.db (``datasette runs/<name>/run.db -m runs/<name>/datasette.json``).

``python -m visplay.log.schema_docs`` prints the markdown that docs/runlog.md holds between its ``tables`` markers;
a test checks the page, these docs and the real schema agree column for column.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# {table: (one row per ..., {column: meaning})}; columns in schema order.
TABLE_DOCS: dict[str, tuple[str, dict[str, str]]] = {
    "runs": ("run", {
        "run_id": "unique id of the run", "name": "the recipe's name", "status": "running / finished / stopped "
                  "(SIGINT or SIGTERM, event run_stopped) / failed (an error, event run_failed); a run killed "
                  "outright (SIGKILL, power loss) stays running: the report then says no process holds it",
        "created_at": "start (unix seconds)", "finished_at": "end (unix seconds)", "seed": "root seed",
        "variant": "paper or released", "recipe_yaml": "the resolved recipe", "recipe_sha256": "hash of recipe_yaml",
        "visplay_version": "package version", "git_commit": "checkout commit, if any", "python": "Python version",
        "platform": "OS and machine", "torch": "torch version", "transformers": "transformers version",
        "vllm": "vLLM version, if installed", "device": "where the models ran",
    }),
    "plugins": ("registered plugin, in registration order (hook call order is in `visplay plugins`)", {
        "position": "registration order", "name": "plugin name", "distribution": "package that provides it",
        "version": "its version", "hooks": "JSON list of the hooks it implements",
    }),
    "images": ("image, by content", {
        "image_id": "sha256 of the decoded RGB PNG", "source": "path or generator", "width": "pixels",
        "height": "pixels", "png": "PNG bytes for generated images, NULL for user files", "meta": "JSON",
    }),
    "generations": ("sampled response: question, vote or rollout", {
        "key": "row key (see Row keys)", "iteration": "self-play iteration", "phase": "engine phase",
        "step": "step in the phase", "role": "questioner or reasoner", "kind": "question / vote / rollout",
        "image_id": "the image (images.image_id)", "parent_key": "the question of a vote or rollout (questions.key)",
        "sample_index": "index in its group", "seed": "request seed passed to the sampler",
        "prompt": "its prompt (prompts.prompt)", "text": "the sampled text",
        "token_ids": "BLOB: int32 ids (decoded: RunLog, vp_json(), the generations_json view)",
        "logprobs": "BLOB: sampling log-probs, float32 (NULL for votes unless log.vote_logprobs)",
        "finish_reason": "stop / length",
        "digest": "sha256 of [text, token_ids] as compact JSON; replay checks it (NULL before schema 5)",
    }),
    "prompts": ("distinct prompt", {
        "prompt": "128 bits of sha256 over [system, user] as JSON, hex", "system": "system prompt",
        "user": "user prompt",
    }),
    "questions": ("questioner generation, parsed", {
        "key": "row key (= its generation's key, or a gold question's)", "iteration": "self-play iteration",
        "phase": "questioner or reasoner_set", "step": "step in the phase", "image_id": "the image",
        "grp": "GRPO group (prompt)", "valid": "1 when the parser accepted it", "qtype": "question type, if stated",
        "question": "question text", "stated_answer": "the questioner's own answer (logged, never a label)",
        "parse_reason": "why it is invalid, or ok / gold",
    }),
    "labels": ("voted question", {
        "question_key": "questions.key", "iteration": "self-play iteration", "phase": "questioner or reasoner_set",
        "m": "votes cast", "answers": "JSON list of the m extracted answers",
        "answer_keys": "JSON list of their canonical keys", "silver_label": "majority answer",
        "silver_key": "its canonical key", "confidence": "share of votes for the silver label",
    }),
    "filters": ("question of the reasoner's set, invalid ones included", {
        "question_key": "questions.key", "iteration": "self-play iteration", "keep": "1 if kept for training",
        "reason": "kept, gold, invalid_question, or the first rejecting filter's reason",
        "producer": "the plugin whose decision it is (the first rejecting one; every deciding plugin for a kept "
                    "question; engine for the core's own)",
    }),
    "answers": ("vote answer (frozen reasoner) or reasoner rollout", {
        "key": "row key (= its generation's key)", "question_key": "questions.key", "iteration": "self-play iteration",
        "phase": "questioner / reasoner_set (votes) or reasoner (rollouts)", "step": "step in the phase",
        "grp": "GRPO group", "extracted": "final answer extracted from the text (NULL: none)",
        "answer_key": "its canonical key", "silver_key": "the silver label's key it is scored against",
    }),
    "rewards": ("(scored item, component)", {
        "key": "question key (questioner) or rollout key (reasoner)", "component": "`total` is the combined scalar",
        "iteration": "self-play iteration", "role": "questioner or reasoner", "step": "training step",
        "value": "component value",
        "producer": "the plugin that returned the component (for total: the one that combined)",
    }),
    "advantages": ("training rollout", {
        "key": "question or rollout key", "iteration": "self-play iteration", "role": "questioner or reasoner",
        "step": "training step", "grp": "GRPO group", "reward": "total reward", "advantage": "normalised advantage",
    }),
    "dropped_groups": ("group an optimizer left out of its update", {
        "grp": "GRPO group (advantages.grp)", "iteration": "self-play iteration", "role": "questioner or reasoner",
        "step": "training step", "rollouts": "its rollouts", "reward": "the reward all of them got",
        "producer": "the optimizer that dropped it (plugins.grpo.drop_zero_variance: every reward equal)",
    }),
    "metrics": ("(iteration, phase, step, name)", {
        "iteration": "self-play iteration", "phase": "engine phase", "step": "step in the phase",
        "name": "slashes, e.g. reward/mean, actor/kl, questions/valid_frac, gold/accuracy", "value": "the number",
    }),
    "checkpoints": ("saved model state", {
        "name": "questioner_v{i}, reasoner_v{i}, or per-step state", "iteration": "self-play iteration",
        "role": "questioner or reasoner", "step": "training step", "path": "folder, relative to the run",
        "files": "JSON {file: sha256}",
    }),
    "steps": ("committed engine step", {
        "iteration": "self-play iteration", "phase": "engine phase", "step": "step in the phase",
        "committed_at": "unix seconds (its row number is the global step of the metrics sinks)",
    }),
    "events": ("something worth knowing", {
        "id": "order of recording", "iteration": "where it happened", "phase": "engine phase",
        "step": "step in the phase", "level": "info / warning / error",
        "kind": "image_skipped, empty_reasoner_set, run_resumed, run_stopped, run_failed, plugin_error, ...", "source": "who recorded it",
        "message": "what happened", "payload": "JSON details",
    }),
}

# Views (created by the run log's migrations) join a question with everything decided about it.
VIEW_DOCS: dict[str, tuple[str, dict[str, str]]] = {
    "generations_json": ("generation with its prompt text and decoded arrays (needs the vp_* functions)", {
        "key": "generations.key", "iteration": "self-play iteration", "phase": "engine phase",
        "step": "step in the phase", "role": "questioner or reasoner", "kind": "question / vote / rollout",
        "image_id": "the image", "parent_key": "the question of a vote or rollout", "sample_index": "index in its group",
        "seed": "request seed", "prompt_system": "system prompt", "prompt_user": "user prompt",
        "text": "the sampled text", "token_ids": "JSON list", "logprobs": "JSON list (NULL when not stored)",
        "tokens": "number of tokens", "finish_reason": "stop / length",
    }),
    "question_outcomes": ("question, with its silver label, filter decision and questioner reward", {
        "key": "questions.key", "iteration": "self-play iteration", "phase": "questioner or reasoner_set",
        "step": "step in the phase", "image_id": "the image", "valid": "parsed as a question",
        "qtype": "question type", "question": "question text", "parse_reason": "why invalid, or ok",
        "m": "votes cast", "votes": "JSON list of the extracted vote answers", "silver_label": "majority answer",
        "confidence": "share of votes for it", "keep": "filter decision (reasoner_set questions)",
        "filter_reason": "why", "reward": "questioner total reward (questioner-phase questions)",
    }),
    "question_votes": ("vote of the frozen reasoner, beside its question", {
        "vote_key": "answers.key", "question_key": "questions.key", "iteration": "self-play iteration",
        "phase": "questioner or reasoner_set", "question": "question text", "extracted": "the vote's answer",
        "answer_key": "its canonical key", "silver_key": "the silver label's key",
        "agrees": "1 when the vote is the silver label", "text": "the full sampled text",
    }),
    "reasoner_rollouts": ("reasoner training rollout with its reward", {
        "key": "answers.key", "iteration": "self-play iteration", "step": "reasoner step",
        "question_key": "questions.key", "question": "question text", "silver_label": "the label it is scored on",
        "extracted": "its answer", "reward": "total reward", "advantage": "normalised advantage",
        "text": "the full sampled text",
    }),
}


# Tables the core declares only when they are used (``visplay eval``: visplay/eval/run.py; docs/evaluation.md).
OPTIONAL_TABLE_DOCS: dict[str, tuple[str, dict[str, str]]] = {
    "eval_items": ("benchmark item answered by one model under one judge (visplay eval)", {
        "key": "<eval_id>/<benchmark>/<index>", "eval_id": "<model label>/<judge>[@<protocol>]",
        "benchmark": "benchmark name", "idx": "index in the benchmark", "item_id": "the benchmark's own id",
        "image_id": "the image (images.image_id)", "kind": "multiple_choice or open", "question": "question text",
        "options": "JSON list of the options (multiple choice)", "letters": "JSON list of their letters",
        "reference": "the benchmark's answer", "prompt_user": "the prompt the model saw", "seed": "request seed",
        "response": "the model's response", "finish_reason": "stop / length", "extracted": "the extracted answer",
        "correct": "1 when the judge accepted it", "reason": "why not (empty_response, no_boxed_answer, ...)",
        "judge": "the judge that decided", "judge_prompt": "the judge model's prompt, if any",
        "verdict": "the judge model's reply, if any",
    }),
    "eval_scores": ("(eval_id, benchmark) score", {
        "eval_id": "eval_items.eval_id", "benchmark": "benchmark name", "title": "its display name",
        "model": "the model label", "iteration": "self-play iteration of the checkpoint (NULL: base model)",
        "checkpoint": "checkpoint folder", "judge": "the judge", "n": "items", "correct": "items judged correct",
        "accuracy": "percent", "no_answer": "items without an extracted answer",
    }),
}


def markdown_tables() -> str:
    """The table list of docs/runlog.md (tables, then views)."""
    lines = ["| table | one row per | columns |", "|---|---|---|"]
    for name, (row, columns) in TABLE_DOCS.items():
        lines.append(f"| `{name}` | {row} | " + ", ".join(f"{c} ({d})" for c, d in columns.items()) + " |")
    lines += ["", "| view | one row per | columns |", "|---|---|---|"]
    for name, (row, columns) in VIEW_DOCS.items():
        lines.append(f"| `{name}` | {row} | " + ", ".join(f"{c} ({d})" for c, d in columns.items()) + " |")
    return "\n".join(lines)


# What datasette shows for a row when another table links to it (its ``label_column``): an image by its source, not
# its hash; a question by its text; a prompt by its user text.
LABEL_COLUMNS = {"images": "source", "questions": "question", "prompts": "user"}


def plugin_table_docs(pm: Any) -> dict[str, tuple[str, dict[str, str]]]:
    """The plugins' ``visplay_table_docs``, merged in call order (a core table's docs are never replaced)."""
    out: dict[str, tuple[str, dict[str, str]]] = {}
    for result in pm.hook.visplay_table_docs():
        for name, (row, columns) in (result or {}).items():
            if name not in TABLE_DOCS and name not in VIEW_DOCS:
                out.setdefault(str(name), (str(row), {str(c): str(d) for c, d in columns.items()}))
    return out


def datasette_metadata(database: str = "run", plugin_docs: dict[str, tuple[str, dict[str, str]]] | None = None
                       ) -> dict[str, Any]:
    """Datasette's metadata: a title, descriptions of every table, view and column (the core's, those of the
    optional core tables and of the plugins' tables), and the label column of the tables others link to."""
    docs = {**TABLE_DOCS, **VIEW_DOCS, **OPTIONAL_TABLE_DOCS, **(plugin_docs or {})}
    tables = {name: {"description": f"one row per {row}", "columns": dict(columns)}
              for name, (row, columns) in docs.items()}
    for name, column in LABEL_COLUMNS.items():
        tables[name]["label_column"] = column
    return {"title": "visplay run log", "description": "docs/runlog.md explains every table",
            "databases": {database: {"tables": tables}}}


def write_datasette_metadata(db_path: str | Path, plugin_docs: dict[str, tuple[str, dict[str, str]]] | None = None
                             ) -> Path:
    """``datasette.json`` beside a run.db (its database name in datasette is the file's stem)."""
    db_path = Path(db_path)
    from visplay.files import write_file

    return write_file(db_path.parent / "datasette.json",
                      json.dumps(datasette_metadata(db_path.stem, plugin_docs), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(markdown_tables() + "\n")
