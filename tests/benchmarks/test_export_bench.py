"""Benchmark (pytest-benchmark, skipped by default): peak memory of ``visplay export --format parquet`` on a run log
of one paper iteration's generations.

Run: ``pytest tests/benchmarks/test_export_bench.py --benchmark-enable -p no:cacheprovider -s``.

The log: 1,000,000 ``generations`` rows in a paper iteration's proportions (PAPER.md: each question voted m = 10
times, so 1 question per 10 votes), written through RunLog's schema with one ``executemany`` per 50,000 rows from a
pool of pre-encoded arrays (``visplay.log.arrays`` format) so the log builds in seconds rather than hours: questions
64-2048 tokens (mean ~700) with float32 log-probs, votes 100-500 tokens without (``log.vote_logprobs`` off, the
default); ~4 characters of text per token; each question's votes share one prompt. The export runs as its own
process (``visplay export RUN --format parquet --tables generations -q``) and its peak resident set size is read from
the kernel's accounting of that child (``os.wait4``'s ru_maxrss), so nothing of the pytest process is counted. The
issue's bound is 500 MB; the log itself is several GB.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from array import array
from pathlib import Path

import pytest

from visplay.log.runlog import TABLES, RunLog, prompt_ref

GENERATIONS = 1_000_000
VOTES_PER_QUESTION = 10
POOL = 256  # distinct arrays and texts per kind, cycled (a pool, not one value: Parquet must not see a constant)
PEAK_MB = 500


def _arrays(rng: random.Random, low: int, high: int, mean: int | None) -> list[tuple[bytes, bytes, str]]:
    """(ids blob, float32 log-prob blob, text) per pool entry."""
    out = []
    for _ in range(POOL):
        n = min(high, max(low, int(rng.gauss(mean, 400)))) if mean else rng.randint(low, high)
        ids = b"i" + array("i", [rng.randrange(151_936) for _ in range(n)]).tobytes()
        lps = b"f" + array("f", [-rng.expovariate(2.0) for _ in range(n)]).tobytes()
        out.append((ids, lps, "x" * (4 * n)))
    return out


def build_log(path: Path, generations: int = GENERATIONS) -> int:
    """The synthetic log described above; returns its size in bytes."""
    rng = random.Random(0)
    questions, votes = _arrays(rng, 64, 2048, 700), _arrays(rng, 100, 500, None)
    columns = list(TABLES["generations"]["columns"])
    insert = f"INSERT INTO generations ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    with RunLog(path, create=True) as log:
        conn = log.db.conn
        system = "You are a careful visual reasoner. " * 8
        rows, prompts = [], []
        for n in range(generations):
            q, v = divmod(n, VOTES_PER_QUESTION + 1)
            key = f"i1/questioner/s{q // 4096}/p{q % 4096 // 8}/g{q % 8}"
            if v == 0:
                ids, lps, text = questions[q % POOL]
                user = "Ask a question about this image."
                row = (key, 1, "questioner", 0, "questioner", "question", f"{q % 4096:064x}", None, q % 8, n,
                       prompt_ref(system, user), text, ids, lps, "stop", None)
            else:
                ids, _, text = votes[(n * 7) % POOL]
                user = f"question {q}: how many red circles are there?"
                row = (f"{key}/v{v - 1}", 1, "questioner", 0, "reasoner", "vote", f"{q % 4096:064x}", key, v - 1, n,
                       prompt_ref(system, user), text, ids, None, "stop", None)
                if v == 1:
                    prompts.append((prompt_ref(system, user), system, user))
            rows.append(row)
            if len(rows) == 50_000:
                _flush(conn, insert, rows, prompts)
        _flush(conn, insert, rows, prompts)
        conn.execute("INSERT OR IGNORE INTO prompts VALUES (?, ?, ?)",
                     (prompt_ref(system, "Ask a question about this image."), system,
                      "Ask a question about this image."))
        log.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


def _flush(conn, insert: str, rows: list, prompts: list) -> None:
    with conn:
        conn.execute("BEGIN")
        conn.executemany("INSERT OR IGNORE INTO prompts VALUES (?, ?, ?)", prompts)
        conn.executemany(insert, rows)
    rows.clear()
    prompts.clear()


def export_peak(run_dir: Path, out: Path) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one ``visplay export`` process."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "visplay.cli", "export", str(run_dir), "--format", "parquet",
                             "--tables", "generations", "--out", str(out), "-q"], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, f"visplay export exited {proc.returncode}"
    return usage.ru_maxrss / 1024, time.perf_counter() - start  # ru_maxrss is KiB on Linux


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units and os.wait4 as on Linux")
def test_bench_export_of_a_million_generations_stays_under_500_mb(benchmark, tmp_path):
    import pyarrow.parquet as pq

    run_dir = tmp_path / "run"
    started = time.perf_counter()
    size = build_log(run_dir / "run.db")
    build_seconds = time.perf_counter() - started
    peaks: list[float] = []

    def export() -> None:
        peak, seconds = export_peak(run_dir, tmp_path / "pq")
        peaks.append(peak)
        benchmark.extra_info.setdefault("export_seconds", []).append(seconds)

    benchmark.pedantic(export, rounds=1, iterations=1)
    written = tmp_path / "pq" / "generations.parquet"
    meta = pq.ParquetFile(written).metadata
    info = {"generations": meta.num_rows, "run_db_mb": size / 1e6, "build_seconds": build_seconds,
            "peak_rss_mb": max(peaks), "parquet_mb": written.stat().st_size / 1e6, "row_groups": meta.num_row_groups}
    benchmark.extra_info.update(info)
    print("\nexport: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items()))
    assert meta.num_rows == GENERATIONS
    assert max(peaks) < PEAK_MB
