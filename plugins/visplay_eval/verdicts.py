"""Every model-judge verdict on file, keyed by (judge identity, exact prompt): re-judging reads it first.

The table ``judge_verdicts`` is the eval plugin's own (``RunLog.declare_table``) in the log the evaluation writes to
(the run's run.db, or ./eval.db), beside ``eval_items``; it is created on first use, so older logs load unchanged.
A row's ``prompt`` is the exact text stored in ``eval_items.judge_prompt`` (``[system] ...\\n[user] ...``) and
``prompt_sha`` its sha256, so an item's verdict links to the call that produced it. ``judge_id`` is the first 16 hex
digits of the sha256 of ``identity``, the canonical JSON of everything that decides a reply (for ``local``: the
model folder, the sha256 of its files, sampler, dtype, greedy decoding and length; for ``endpoint``: the URL, the
model name and the sampling settings sent). Only ``status = 'ok'`` rows answer a lookup; a failed call is kept for
the audit (attempts, HTTP status, errors) and asked again next time. Without a run log nothing is stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from visplay_eval.endpoint import CallOutcome

TABLE = "judge_verdicts"
COLUMNS = {
    "judge_id": str, "prompt_sha": str, "judge": str, "identity": str, "prompt": str, "reply": str, "status": str,
    "attempts": int, "http_status": int, "latency_s": float, "errors": str, "served_model": str,
}


def shown_prompt(system: str | None, user: str) -> str:
    """The prompt as ``eval_items.judge_prompt`` stores it."""
    return f"[system] {system}\n[user] {user}" if system is not None else f"[user] {user}"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def judge_id(identity: dict[str, Any]) -> str:
    """The short stable name of a judge identity."""
    return sha256(json.dumps(identity, sort_keys=True, ensure_ascii=False))[:16]


_FOLDER_DIGESTS: dict[tuple[Any, ...], str] = {}  # a judge folder is hashed once per process while unchanged


def folder_digest(folder: str | Path) -> str:
    """sha256 over every file of a model folder (relative path and bytes, sorted): the weights, config,
    tokenizer and chat template that decide a local judge's replies."""
    root = Path(folder).resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    stamp = (str(root), *((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if stamp not in _FOLDER_DIGESTS:
        digest = hashlib.sha256()
        for path in files:
            digest.update(str(path.relative_to(root)).encode("utf-8") + b"\0")
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        _FOLDER_DIGESTS[stamp] = digest.hexdigest()
    return _FOLDER_DIGESTS[stamp]


class VerdictCache:
    """The stored verdicts of one judge identity in ``log`` (a RunLog, or None: nothing stored)."""

    def __init__(self, log: Any, identity: dict[str, Any]) -> None:
        self.log, self.identity, self.judge_id = log, identity, judge_id(identity)
        if log is not None:
            log.declare_table(TABLE, COLUMNS, pk=("judge_id", "prompt_sha"))

    def lookup(self, prompts: Sequence[str]) -> dict[str, str]:
        """{prompt: reply} of the prompts already answered by this judge."""
        if self.log is None or not prompts:
            return {}
        by_sha = {sha256(p): p for p in prompts}
        rows = self.log.rows_in(TABLE, "prompt_sha", list(by_sha))
        return {by_sha[r["prompt_sha"]]: r["reply"] for r in rows
                if r["judge_id"] == self.judge_id and r["status"] == "ok" and r["prompt"] == by_sha[r["prompt_sha"]]}

    def store(self, prompts: Sequence[str], outcomes: Sequence[CallOutcome]) -> None:
        """Record each call's outcome (a later success replaces a failed row)."""
        if self.log is None or not prompts:
            return
        identity = json.dumps(self.identity, sort_keys=True, ensure_ascii=False)
        rows = [{"judge_id": self.judge_id, "prompt_sha": sha256(p), "judge": self.identity.get("judge"),
                 "identity": identity, "prompt": p, "reply": o.reply, "status": o.status, "attempts": o.attempts,
                 "http_status": o.http_status, "latency_s": o.latency_s, "errors": o.errors,
                 "served_model": o.served_model} for p, o in zip(prompts, outcomes)]
        with self.log.transaction():
            self.log.insert(TABLE, rows, replace=True)
