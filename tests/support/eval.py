"""Shared fixtures of the eval and report tests: synthetic benchmark files in each benchmark's published schema,
a scripted stand-in model plugin, and a small run log built through RunLog.

The stand-in sampler answers each prompt with a scripted response found by a tag written in the question (``[q:..]``),
so scoring can be checked on exact, hand-made responses. Images are generated in-test from derived seeds.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from visplay import testing
from visplay.hookspecs import hookimpl
from visplay.log.runlog import RunLog
from visplay.seeding import derive_seed


def make_image(tag: str, size: int = 24) -> Image.Image:
    """A small deterministic RGB image for ``tag``."""
    rng = np.random.default_rng(derive_seed(7, "eval-test-image", tag))
    return Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8), "RGB")


def png(tag: str, size: int = 24) -> bytes:
    buf = io.BytesIO()
    make_image(tag, size).save(buf, format="PNG")
    return buf.getvalue()


def _parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# Per benchmark: rows in the authors' schema, and scripted responses {tag: (response, expected correct)}.
def benchmark_rows() -> dict[str, list[dict]]:
    def struct(tag: str) -> list[dict]:
        return [{"bytes": png(tag), "path": None}]

    return {
        "mmmu": [
            {"id": "mmmu-0", "problem": "<image 1> [q:mmmu0] Which shape is drawn?", "answer": "B",
             "options": "['circle', 'square', 'triangle', 'star']", "question_type": "multiple-choice",
             "images": struct("mmmu0")},
            {"id": "mmmu-1", "problem": "<image 1> [q:mmmu1] How many sides?", "answer": "4",
             "options": "[]", "question_type": "open", "images": struct("mmmu1")},
        ],
        "mm-vet": [
            {"problem": "<image>[q:vet0] What colour is the car?", "answer": "red<OR>crimson", "images": struct("v0")},
            {"problem": "<image>[q:vet1] Name both fruits.", "answer": "apple<AND>pear", "images": struct("v1")},
        ],
        "visnumbench": [
            {"problem": "[q:num0] Estimate the count.\nA. 3\nB. 7\nC. 12\nD. 20", "answer": "C",
             "images": struct("n0")},
            {"problem": "[q:num1] Which is longer?\n(A) left\n(B) right", "answer": "A", "images": struct("n1")},
        ],
        "hallusionbench": [
            {"problem": "[q:hal0] Is the sky green in this image?", "answer": "no", "images": struct("h0")},
            {"problem": "[q:hal1] Is there a cat?", "answer": "1", "images": struct("h1")},
        ],
        "mmstar": [
            {"index": 0, "problem": "[q:star0] What is shown?\nA. dog\nB. cat\nC. bird\nD. fish", "answer": "D",
             "image": base64.b64encode(png("s0")).decode()},
        ],
        "MLLM_test": [
            {"file_name": "realWorldQA", "problem": "[q:rw0] Which way is the road turning?\nA. left\nB. right",
             "answer": "B", "images": struct("rw0")},
            {"file_name": "mathverse", "problem": "[q:mv0] Find x.", "answer": "3.5", "images": struct("mv0")},
            {"file_name": "mathvision", "problem": "[q:mvis0] What is the area?", "answer": "\\frac{1}{2}",
             "images": struct("mvis0")},
            {"file_name": "clevr_count_70k", "problem": "[q:clevr] count", "answer": "3", "images": struct("c")},
        ],
    }


# Scripted responses and whether the rule judge must call each correct (hand-checked).
RESPONSES: dict[str, tuple[str, bool]] = {
    "mmmu0": ("The shape has four equal sides. \\boxed{B}", True),
    "mmmu1": ("A square has \\boxed{4.0} sides", True),
    "vet0": ("It is \\boxed{Crimson}.", True),
    "vet1": ("I see \\boxed{an apple}", False),  # <AND>: both parts needed
    "num0": ("\\boxed{(B) 7}", False),
    "num1": ("answer: A", False),  # malformed: no box
    "hal0": ("\\boxed{No, it is blue}", True),
    "hal1": ("\\boxed{maybe}", False),  # not yes/no
    "star0": ("\\boxed{fish}", True),  # option text maps to D
    "rw0": ("\\boxed{B", False),  # unclosed box
    "mv0": ("so x = \\boxed{3.50}", True),
    "mvis0": ("\\boxed{\\frac{1}{2}}", True),
}
EXPECTED_ACCURACY = {"mmmu": 100.0, "mm-vet": 50.0, "visnumbench": 0.0, "hallusionbench": 50.0, "mmstar": 100.0,
                     "realworldqa": 0.0, "mathverse": 100.0, "math-vision": 100.0}


def write_benchmarks(root: Path) -> Path:
    """All eight benchmarks under ``root`` in the layouts the authors used (per-set folders, a combined file)."""
    rows = benchmark_rows()
    _parquet(root / "MMMU" / "data" / "test-00000-of-00001.parquet", rows["mmmu"])
    _parquet(root / "mm-vet" / "test.parquet", rows["mm-vet"])
    _parquet(root / "visnumbench" / "data" / "test-00000-of-00001.parquet", rows["visnumbench"])
    _parquet(root / "hallusionbench" / "data" / "test-00000-of-00001.parquet", rows["hallusionbench"])
    _parquet(root / "MLLM_test" / "test.parquet", rows["MLLM_test"])
    (root / "MMStar.jsonl").write_text("\n".join(json.dumps(r) for r in rows["mmstar"]) + "\n")
    return root


# --- a scripted stand-in for the models plugin ---------------------------------------------------------------


def ScriptedSampler(responses: dict[str, str] | None = None, default: str = "no") -> testing.ScriptedSampler:  # noqa: N802
    """visplay.testing's ScriptedSampler answering RESPONSES[tag] (tag from ``[q:tag]`` in the prompt), else
    ``default``."""
    table = responses if responses is not None else {k: v[0] for k, v in RESPONSES.items()}

    def reply(prompt, sample_index):
        if "[q:" not in prompt.user:
            return default
        return table.get(prompt.user.split("[q:", 1)[1].split("]", 1)[0], default)

    return testing.ScriptedSampler(reply)


class StandInModels:
    """visplay_load_policy / visplay_make_sampler answering every backend with a ScriptedSampler."""

    def __init__(self, sampler: testing.ScriptedSampler | None = None):
        self.sampler = sampler or ScriptedSampler()
        self.loaded: list[tuple[str, str | None, str]] = []

    @hookimpl(tryfirst=True)
    def visplay_load_policy(self, ctx, role, init_from):
        self.loaded.append((role, init_from, ctx.recipe.model.backend))
        return testing.StandinPolicy(self.sampler, role)

    @hookimpl(tryfirst=True)
    def visplay_make_sampler(self, ctx, role, policy):
        return self.sampler


# --- a small run log ------------------------------------------------------------------------------------------


def build_run(run_dir: Path, *, iterations: int = 2, with_gold: bool = True) -> Path:
    """A run log with the rows an engine run writes (metrics, questions, labels, filters, rewards, images,
    checkpoints), built through RunLog. Returns the run.db path."""
    from visplay.config import load_recipe, recipe_yaml

    recipe = load_recipe("tiny", [f"iterations={iterations}"])
    db = run_dir / "run.db"
    rng = np.random.default_rng(derive_seed(3, "report-fixture"))
    with RunLog(db, create=True) as log:
        log.set_run(run_id="fixture", name="fixture", status="finished", seed=0, variant="paper",
                    recipe_yaml=recipe_yaml(recipe), visplay_version="0.1.0", device="cpu")
        for it in range(1, iterations + 1):
            _fixture_iteration(log, run_dir, it, rng, with_gold)
    return db


def _fixture_iteration(log: RunLog, run_dir: Path, it: int, rng: np.random.Generator, with_gold: bool) -> None:
    from visplay.types import ImageRecord

    for step in range(2):
        with log.step(it, "questioner", step):
            keys = [f"i{it}/questioner/s{step}/p0/g{g}" for g in range(4)]
            log.insert("rewards", [{"key": k, "component": "total", "iteration": it, "role": "questioner",
                                    "step": step, "value": float(rng.uniform(0, 1))} for k in keys])
            log.metrics(it, "questioner", step, {"reward/mean": float(rng.uniform(0, 1)),
                                                 "questions/valid_frac": 0.5 + 0.1 * step})
        with log.step(it, "reasoner", step):
            keys = [f"i{it}/reasoner/s{step}/p0/g{g}" for g in range(4)]
            log.insert("rewards", [{"key": k, "component": "total", "iteration": it, "role": "reasoner",
                                    "step": step, "value": float(g % 2)} for g, k in enumerate(keys)])
            log.metrics(it, "reasoner", step, {"reward/mean": 0.25 * (step + it), "loss": float(rng.normal())})
    with log.step(it, "reasoner_set", 0):
        for p in range(4):
            tag = f"img{it}-{p}"
            image = make_image(tag, 32)
            raw = png(tag, 32)
            import hashlib

            record = ImageRecord(image_id=hashlib.sha256(raw).hexdigest(), image=image, source="procedural",
                                 png=raw)
            log.upsert_image(record, store_bytes=True)
            key = f"i{it}/reasoner_set/s0/p{p}/g0"
            conf = [0.2, 0.4, 0.6, 1.0][p]
            log.insert("questions", [{"key": key, "iteration": it, "phase": "reasoner_set", "step": 0,
                                      "image_id": record.image_id, "grp": f"p{p}", "valid": 1,
                                      "qtype": "numerical", "question": f"How many squares in image {p}?",
                                      "stated_answer": "3", "parse_reason": "ok"}])
            answers = ["3", "3", "4", "5", "3"]
            log.insert("labels", [{"question_key": key, "iteration": it, "phase": "reasoner_set", "m": 5,
                                   "answers": answers, "answer_keys": answers, "silver_label": "3",
                                   "silver_key": "3", "confidence": conf}])
            keep = 0.25 <= conf <= 0.75
            log.insert("filters", [{"question_key": key, "iteration": it, "keep": int(keep),
                                    "reason": "kept" if keep else "confidence_band"}])
    with log.step(it, "eval", 0):
        if with_gold:
            log.metrics(it, "eval", 0, {"gold/accuracy": 0.3 + 0.1 * it, "gold/silver_accuracy": 0.7 - 0.05 * it,
                                        "gold/accuracy/2048": 0.1, "gold/items": 20.0})
    ckpt = run_dir / "checkpoints" / f"reasoner_v{it}"
    ckpt.mkdir(parents=True, exist_ok=True)
    log.insert("checkpoints", [{"name": f"reasoner_v{it}", "iteration": it, "role": "reasoner", "step": 1,
                                "path": str(ckpt), "files": {}}])


def add_eval_scores(db, accuracies):
    """eval_scores rows {iteration: {benchmark: accuracy}} as `visplay eval` writes them."""
    from visplay.eval.run import declare_tables

    with RunLog(db) as log:
        declare_tables(log)
        log.insert("eval_scores", [
            {"eval_id": f"iter{it}/rule", "benchmark": b, "title": b, "model": f"iter{it}", "iteration": it,
             "checkpoint": None, "judge": "rule", "n": 10, "correct": int(a // 10), "accuracy": a, "no_answer": 0}
            for it, scores in accuracies.items() for b, a in scores.items()])


# --- an OpenAI-compatible judge server on loopback ----------------------------------------------------------


class JudgeServer:
    """A minimal OpenAI-compatible chat-completions server on 127.0.0.1 (one thread per request): 'yes' when the
    model answer equals the reference. ``failures`` scripts the first attempts of every distinct prompt (an HTTP
    status such as 429 or 503, or "slow": held 1.5 s); ``delay`` holds every answered request that long, and
    ``max_in_flight`` is the most answered requests the server held at once."""

    def __init__(self, mode="ok", failures=(), delay=0.0):
        self.requests, self.mode, self.failures, self.delay = [], mode, list(failures), delay
        self.seen: dict[str, int] = {}
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                user = body["messages"][-1]["content"]
                with outer.lock:
                    outer.requests.append((self.path, dict(self.headers), body))
                    attempt = outer.seen[user] = outer.seen.get(user, 0) + 1
                if attempt <= len(outer.failures):
                    return self.fail(outer.failures[attempt - 1])
                with outer.lock:
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                time.sleep(outer.delay)
                with outer.lock:
                    outer.in_flight -= 1
                self.answer(body, user)

            def fail(self, failure):
                if failure == "slow":
                    time.sleep(1.5)
                    return None
                self.send_response(failure)
                if failure == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(f"scripted {failure}".encode())
                return None

            def answer(self, body, user):
                if outer.mode == "slow":
                    time.sleep(1.5)
                if outer.mode in ("error", "bad_request"):
                    self.send_response(500 if outer.mode == "error" else 400)
                    self.end_headers()
                    self.wfile.write(b"boom")
                    return
                if outer.mode == "one":  # the released judge's "return 1" reply, whatever the prompt
                    verdict = "1"
                elif outer.mode.startswith("reply:"):  # one scripted reply to every prompt ("reply:0.5")
                    verdict = outer.mode.removeprefix("reply:")
                else:
                    ref = user.split("Reference answer: ")[1].split("\n")[0]
                    got = user.split("Model answer: ")[1].split("\n")[0]
                    verdict = "yes" if ref == got else "No."
                reply = {"model": f"served-{body['model']}",
                         "choices": [{"message": {"role": "assistant", "content": verdict}}]}
                data = json.dumps(reply).encode() if outer.mode != "garbage" else b"<html>"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def patch_plugin_manager(monkeypatch, *plugins) -> None:
    """Make ``visplay.plugins.get_plugin_manager`` (as the CLI calls it) return only ``plugins`` and the eval
    plugin, without entry points."""
    import visplay_eval.plugin as eval_plugin

    import visplay.plugins

    original = visplay.plugins.get_plugin_manager
    monkeypatch.setenv("VISPLAY_PLUGIN_INDEX", "0")  # the index describes the installed plugins, not these
    monkeypatch.setattr(visplay.plugins, "get_plugin_manager",
                        lambda **_kw: original(autoload=False, extra=(*plugins, eval_plugin)))
