"""Benchmark (pytest-benchmark, skipped by default): writing a paper iteration's generations to the run log.

Run: ``pytest tests/benchmarks/test_runlog_bench.py --benchmark-enable -p no:cacheprovider``.

What is written: a stated fraction of one paper iteration. A paper iteration (PAPER.md: 20 questioner steps over a
rollout batch of 512 images x 8 questions, each valid question voted m = 10 times) has 81,920 question generations
and 819,200 vote generations. One round here writes 1/160 of that: 512 questions and 5,120 votes, in the engine's
unit of commit (one transaction). Lengths are drawn with a fixed seed: questions 64-2048 tokens (the questioner's
budget; mean ~700), votes 100-500 tokens ("a few hundred"); ~4 characters of text per token; the questioner's
prompt (~250 tokens) is shared, each question's votes share one prompt; log-probs are float32 values, as samplers
produce them.

Formats: ``json`` is schema 1's write path (every column through sqlite_utils ``insert_all``, arrays as JSON text,
prompts inline, votes' log-probs kept); ``binary`` is RunLog today (arrays as BLOBs, prompts once, votes' log-probs
off: the default); ``binary_vote_logprobs`` is RunLog with ``log.vote_logprobs: true``; ``binary_whole_step`` is
the default plus the step's other rows (questions, labels, 5,120 vote answers, 4 reward rows and an advantage per
question) in the same transaction, i.e. everything the engine logs for those generations.

Reported per format (``extra_info``): rows/s, bytes per generation (database file after a WAL checkpoint, divided
by rows), bytes per token of the id and log-prob cells alone, MB per paper iteration (that times 901,120 generations), and the logging time as a share of the modelled
GPU sampling time of the same generations: tokens / (1,200 tokens/s/GPU x 4 sampling GPUs), EasyR1's published
per-GPU throughput on the paper's 4 sampling GPUs. The machine is shared: quote medians and same-run ratios.
"""

from __future__ import annotations

import json
import random
import sqlite3
import struct
from pathlib import Path

import pytest
import sqlite_utils

from visplay.log.runlog import _V1_GENERATIONS, RunLog

QUESTIONS, VOTES_PER_QUESTION = 512, 10
FRACTION = 81_920 / QUESTIONS  # rounds per paper iteration
GENERATIONS_PER_ITERATION = 81_920 * (1 + VOTES_PER_QUESTION)
GPU_TOKENS_PER_SECOND = 1_200 * 4
WORDS = ("the", "bar", "chart", "shows", "value", "of", "axis", "count", "red", "circle", "total", "between", "two",
         "largest", "answer", "is", "therefore", "\\boxed{12}", "left", "image")


def _text(rng: random.Random, tokens: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(max(1, tokens * 4 // 5)))[: tokens * 4]


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def synthetic_iteration_fraction(seed: int = 0) -> tuple[list[dict], int]:
    """512 question generations and their 5,120 votes, as generation_row() builds them; and the token count."""
    rng = random.Random(seed)
    system = _text(rng, 150)
    questioner_user = _text(rng, 100)
    rows, tokens = [], 0
    for q in range(QUESTIONS):
        p, g = divmod(q, 8)
        key = f"i1/questioner/s0/p{p}/g{g}"
        n = min(2048, max(64, int(rng.gauss(700, 400))))
        rows.append(_row(rng, key, "questioner", "question", None, g, questioner_user, system, n))
        question = _text(rng, 60)
        for v in range(VOTES_PER_QUESTION):
            m = rng.randint(100, 500)
            rows.append(_row(rng, f"{key}/v{v}", "reasoner", "vote", key, v, question, system, m))
            tokens += m
        tokens += n
    return rows, tokens


def _row(rng: random.Random, key: str, role: str, kind: str, parent: str | None, index: int, user: str,
         system: str, n: int) -> dict:
    return {"key": key, "iteration": 1, "phase": "questioner", "step": 0, "role": role, "kind": kind,
            "image_id": f"{rng.getrandbits(256):064x}", "parent_key": parent, "sample_index": index,
            "seed": rng.getrandbits(62), "prompt_system": system, "prompt_user": user, "text": _text(rng, n),
            "token_ids": [rng.randrange(151_936) for _ in range(n)],
            "logprobs": [_f32(-rng.expovariate(2.0)) for _ in range(n)], "finish_reason": "stop"}


def _write_json(path: Path, rows: list[dict]) -> None:
    """Schema 1's RunLog.insert: JSON-encode list cells, sqlite_utils insert_all in batches of 500, one commit."""
    conn = sqlite3.connect(path, isolation_level=None)
    db = sqlite_utils.Database(conn)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db["generations"].create(_V1_GENERATIONS, pk="key", not_null=None)
    db["generations"].create_index(["iteration", "phase", "step"])
    encoded = [{k: json.dumps(v, sort_keys=True, separators=(",", ":")) if isinstance(v, list) else v
                for k, v in row.items()} for row in rows]
    with db.atomic():
        db["generations"].insert_all(encoded, batch_size=500)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _write_binary(path: Path, rows: list[dict], vote_logprobs: bool, others: dict[str, list[dict]] | None = None) -> None:
    with RunLog(path, create=True) as log:
        batch = rows if vote_logprobs else [{**r, "logprobs": None} if r["kind"] == "vote" else r for r in rows]
        with log.step(1, "questioner", 0):
            log.insert("generations", batch)
            for table, table_rows in (others or {}).items():  # the rest of the step, as the engine writes it
                log.insert(table, table_rows)
        log.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def step_rows(generations: list[dict]) -> dict[str, list[dict]]:
    """The other rows of the same questioner step: questions, labels, vote answers, 3 reward components + total,
    advantages (as visplay/loop/phases.py writes them)."""
    at = {"iteration": 1, "phase": "questioner", "step": 0}
    questions = [g for g in generations if g["kind"] == "question"]
    out: dict[str, list[dict]] = {"questions": [], "labels": [], "answers": [], "rewards": [], "advantages": []}
    for q in questions:
        key, group = q["key"], q["key"].rsplit("/", 1)[0]
        out["questions"].append({**at, "key": key, "image_id": q["image_id"], "grp": group, "valid": 1,
                                 "qtype": "numerical", "question": q["text"][:240], "stated_answer": "12",
                                 "parse_reason": "ok"})
        answers = [str(v % 3) for v in range(VOTES_PER_QUESTION)]
        out["labels"].append({"iteration": 1, "phase": "questioner", "question_key": key, "m": VOTES_PER_QUESTION, "answers": answers,
                              "answer_keys": answers, "silver_label": "0", "silver_key": "0", "confidence": 0.4})
        out["answers"] += [{**at, "key": f"{key}/v{v}", "question_key": key, "grp": key, "extracted": a,
                            "answer_key": a, "silver_key": "0"} for v, a in enumerate(answers)]
        for name, value in (("uncertainty", 0.8), ("diversity", -0.125), ("format", 1.0), ("total", 0.675)):
            out["rewards"].append({"key": key, "component": name, "iteration": 1, "role": "questioner", "step": 0,
                                   "value": value})
        out["advantages"].append({"key": key, "iteration": 1, "role": "questioner", "step": 0, "grp": group,
                                  "reward": 0.675, "advantage": 0.25})
    return out


def _empty_size(path: Path, fmt: str) -> int:
    """The size of the same database with no generations (schema pages), subtracted from the measurement."""
    if fmt == "json":
        _write_json(path, [])
    else:
        _write_binary(path, [], True)
    return path.stat().st_size


@pytest.mark.parametrize("fmt", ["json", "binary", "binary_vote_logprobs", "binary_whole_step"])
def test_bench_runlog_paper_iteration_fraction(benchmark, tmp_path, fmt):
    rows, tokens = synthetic_iteration_fraction()
    others = step_rows(rows)
    base = _empty_size(tmp_path / "empty.db", fmt)
    counter = {"n": 0}

    def target() -> Path:
        counter["n"] += 1
        return tmp_path / f"run{counter['n']}.db"

    def write() -> None:
        path = target()
        if fmt == "json":
            _write_json(path, rows)
        else:
            _write_binary(path, rows, vote_logprobs=fmt == "binary_vote_logprobs",
                          others=others if fmt == "binary_whole_step" else None)

    benchmark.pedantic(write, rounds=3, iterations=1)
    size = (tmp_path / f"run{counter['n']}.db").stat().st_size - base
    seconds = benchmark.stats.stats.median
    per_generation = size / len(rows)
    sampling_seconds = tokens / GPU_TOKENS_PER_SECOND
    info = {
        "generations": len(rows), "tokens": tokens, "rows_per_second": len(rows) / seconds,
        "bytes_per_generation": per_generation, "bytes_per_token": size / tokens,
        "mb_per_paper_iteration": per_generation * GENERATIONS_PER_ITERATION / 1e6,
        "logging_seconds_per_paper_iteration": seconds * FRACTION,
        "modelled_sampling_seconds_per_paper_iteration": sampling_seconds * FRACTION,
        "logging_share_of_sampling": seconds / sampling_seconds,
    }
    info["array_bytes_per_token"] = _array_bytes(tmp_path / f"run{counter['n']}.db", fmt, rows) / tokens
    benchmark.extra_info.update(info)
    print(f"\n{fmt}: " + ", ".join(f"{k}={v:.4g}" for k, v in info.items()))
    with RunLog(tmp_path / f"run{counter['n']}.db", readonly=True) if fmt != "json" else _nullcontext() as log:
        if log is not None:  # what was written decodes to what was given
            back = log.rows("generations", "key = ?", [rows[1]["key"]])[0]
            assert back["token_ids"] == rows[1]["token_ids"]
    assert info["logging_share_of_sampling"] < 0.03 or fmt == "json"


def _array_bytes(path: Path, fmt: str, rows: list[dict]) -> int:
    """Bytes of the token-id and log-prob cells alone (the issue's budget: <= 8 per token for both)."""
    if fmt == "json":
        return sum(len(json.dumps(r[c], separators=(",", ":"))) for r in rows for c in ("token_ids", "logprobs"))
    with RunLog(path, readonly=True) as log:
        sizes = log.db.execute("select sum(length(token_ids)), sum(ifnull(length(logprobs), 0)) from generations")
        return sum(sizes.fetchone())


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
