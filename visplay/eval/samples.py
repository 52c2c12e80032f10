"""Per-item records in lmms-eval's ``--log_samples`` shape (``visplay eval --samples-out FILE``) and re-scoring of
such records under another protocol (``visplay eval --rescore FILE``).

One JSON line per item, with lmms-eval's keys (``lmms_eval/evaluator.py`` ``logged_sample``): ``doc_id``, ``doc``
(the item without its images), ``target`` (the reference), ``arguments`` (the prompt text), ``resps`` (``[[text]]``),
``filtered_resps`` (``[text]``), ``doc_hash`` (sha256 of ``json.dumps(doc, indent=2, ensure_ascii=False)``) and
the metric, named as the lmms-eval task names it (``mmmu_acc``, ``average``, ``exact_match``, ``aAcc``,
``mathvision_standard_eval``;
``accuracy`` elsewhere) with the per-item 1.0 / 0.0; visplay adds ``benchmark``, ``protocol``, ``judge``,
``extracted``, ``reason``. Beside it, ``<FILE>.results.json`` holds the per-benchmark scores.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LMMS_METRICS = {"mmmu": "mmmu_acc", "mmstar": "average", "realworldqa": "exact_match", "hallusionbench": "aAcc",
                "math-vision": "mathvision_standard_eval"}


class SamplesError(Exception):
    """A samples file cannot be read; the message names the file and line."""


def metric_name(benchmark: str, protocol: str) -> str:
    return LMMS_METRICS.get(benchmark, "accuracy") if protocol == "lmms-eval" else "accuracy"


def doc_hash(doc: dict[str, Any]) -> str:
    """lmms-eval's ``doc_hash``: sha256 of the document as indented JSON."""
    return hashlib.sha256(json.dumps(doc, indent=2, ensure_ascii=False, default=str).encode("utf-8")).hexdigest()


def sample_record(row: dict[str, Any], protocol: str) -> dict[str, Any]:
    """One ``eval_items`` row as an lmms-eval sample record."""
    doc = {"id": row["item_id"], "question": row["question"], "options": json.loads(row["options"] or "[]"),
           "answer": row["reference"], "kind": row["kind"]}
    response = row["response"] or ""
    return {
        "doc_id": row["idx"], "doc": doc, "target": row["reference"], "arguments": row["prompt_user"],
        "resps": [[response]], "filtered_resps": [response], "doc_hash": doc_hash(doc),
        metric_name(row["benchmark"], protocol): float(row["correct"]),
        "benchmark": row["benchmark"], "protocol": protocol, "judge": row["judge"], "extracted": row["extracted"],
        "reason": row["reason"],
    }


def write_samples(path: str | Path, rows: Sequence[dict[str, Any]], scores: Sequence[dict[str, Any]],
                  protocol: str) -> tuple[Path, Path]:
    """Write the samples file and its ``.results.json``; returns both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(rows, key=lambda r: (r["benchmark"], r["idx"]))
    path.write_text("".join(json.dumps(sample_record(r, protocol), ensure_ascii=False) + "\n" for r in ordered),
                    encoding="utf-8")
    results = {"protocol": protocol, "results": {
        s["benchmark"]: {metric_name(s["benchmark"], protocol): s["accuracy"] / 100.0, "n": s["n"],
                         "correct": s["correct"], "eval_id": s["eval_id"]} for s in scores}}
    results_path = path.with_name(path.name + ".results.json")
    results_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path, results_path


def read_samples(path: str | Path, benchmark: str | None = None) -> list[dict[str, Any]]:
    """Records of a samples file (ours, or lmms-eval's with ``benchmark`` given); each has ``benchmark``, ``doc``,
    ``target`` and ``response``."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SamplesError(f"{path}: cannot read samples file: {exc}") from exc
    out = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            resps = record["resps"]
            response = resps[0][0] if isinstance(resps[0], list) else resps[0]
            name = record.get("benchmark") or benchmark
            if not name:
                raise KeyError("benchmark (pass --benchmarks for an lmms-eval file)")
            out.append({"benchmark": name, "doc_id": record["doc_id"], "doc": record.get("doc") or {},
                        "target": str(record["target"]), "response": str(response or "")})
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise SamplesError(f"{path}: line {no}: not a sample record ({type(exc).__name__}: {exc})") from exc
    if not out:
        raise SamplesError(f"{path}: no sample records")
    return out
