"""The evaluation's item pages of ``visplay report``: one HTML page per eval id (``<label>/<judge>@<protocol>``),
written beside index.html, with one section per benchmark listing every ``eval_items`` row (key, question, image
ids, response, extracted and reference answer, correct, reason, the judge's prompt and reply) and, where the eval
plugin stored them, the ``judge_verdicts`` rows of each judged item's exact prompt. The report's evaluation table
and paper comparison link each score to its section, so a number can be traced to the verdicts behind it.

Rows come from :func:`visplay.report.build.collect` (the report's one read transaction); this module only shapes
and renders them. Long texts show their first :data:`SHOWN_CHARS` characters, the whole text in a <details>.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

SHOWN_CHARS = 240  # a response or prompt longer than this is folded (its whole text one click away)
PAGE_PREFIX = "items-"


def _safe(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:limit]


def page_name(eval_id: str) -> str:
    """The file name of an eval id's page: readable, and unique (a hash) where two ids differ only in odd characters."""
    digest = hashlib.sha256(eval_id.encode("utf-8")).hexdigest()[:8]
    return f"{PAGE_PREFIX}{_safe(eval_id)}-{digest}.html"


def anchor(benchmark: str) -> str:
    return "bench-" + _safe(benchmark, 80)


def items_link(eval_id: str, benchmark: str) -> str:
    """Where a score's items are listed (relative to index.html)."""
    return f"{page_name(eval_id)}#{anchor(benchmark)}"


def _text(value: Any) -> dict[str, Any]:
    """A cell of text: the shown head, and the whole text when it was cut."""
    text = "" if value is None else str(value)
    cut = len(text) > SHOWN_CHARS
    return {"head": text[:SHOWN_CHARS] + ("\u2026" if cut else ""), "full": text if cut else None}


def _verdicts_by_prompt(verdicts: Sequence[dict]) -> dict[str, list[dict]]:
    """{sha256 of the prompt: judge_verdicts rows} (the table's key: plugins/visplay_eval/verdicts.py)."""
    out: dict[str, list[dict]] = defaultdict(list)
    for v in verdicts:
        out[str(v.get("prompt_sha"))].append(v)
    return out


def _item(row: dict, stored: dict[str, list[dict]]) -> dict[str, Any]:
    prompt = row.get("judge_prompt")
    calls = []
    if prompt:
        sha = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
        calls = [{"judge": v.get("judge"), "judge_id": v.get("judge_id"), "status": v.get("status"),
                  "attempts": v.get("attempts"), "served_model": v.get("served_model"), "reply": _text(v.get("reply")),
                  "errors": _text(v.get("errors") if v.get("errors") not in (None, "", "[]") else "")}
                 for v in stored.get(sha, []) if v.get("prompt") == prompt]
    return {"key": row["key"], "item_id": row.get("item_id"), "question": _text(row.get("prompt_user") or row.get("question")),
            "image_ids": [i for i in str(row.get("image_id") or "").split(",") if i],
            "response": _text(row.get("response")), "extracted": _text(row.get("extracted")),
            "reference": _text(row.get("reference")), "correct": bool(row.get("correct")),
            "reason": row.get("reason") or "", "judge_prompt": _text(prompt) if prompt else None,
            "verdict": _text(row.get("verdict")) if row.get("verdict") is not None else None, "calls": calls}


def item_pages(eval_items: Sequence[dict], eval_scores: Sequence[dict], verdicts: Sequence[dict],
               render: Any) -> dict[str, str]:
    """{file name: HTML} for each eval id with items; ``render(template, **context)`` renders a template."""
    stored = _verdicts_by_prompt(verdicts)
    scores = {(s["eval_id"], s["benchmark"]): s for s in eval_scores}
    grouped: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in sorted(eval_items, key=lambda r: (r["eval_id"], r["benchmark"], r.get("idx") or 0, r["key"])):
        grouped[row["eval_id"]][row["benchmark"]].append(row)
    pages = {}
    for eval_id, benchmarks in grouped.items():
        sections = [{"benchmark": b, "anchor": anchor(b), "score": scores.get((eval_id, b)),
                     "rows": [_item(r, stored) for r in rows]} for b, rows in benchmarks.items()]
        pages[page_name(eval_id)] = render("items.html.j2", eval_id=eval_id, sections=sections)
    return pages
