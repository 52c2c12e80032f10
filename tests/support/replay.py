"""Shared helpers for tests/test_replay_*.py: small run logs written through RunLog (the only SQL writer)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

from visplay.hookspecs import hookimpl
from visplay.log.runlog import RunLog

RECIPE_YAML = "name: hand\nseed: 7\nrun_dir: runs/hand\niterations: 1\n"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def question_key(step: int, prompt: int, sample: int) -> str:
    return f"i1/questioner/s{step}/p{prompt}/g{sample}"


def build_log(path: Path, *, reward_shift: float = 0.0, run_dir: str = "runs/hand", steps: int = 2,
              host: str = "host-a", extra_generation: bool = False) -> Path:
    """A hand-built, internally consistent run log: 1 iteration, ``steps`` questioner steps, 2 prompts x 2 samples,
    3 votes per question. ``reward_shift`` moves one reward of the last step (a controlled divergence)."""
    with RunLog(path, create=True) as log:
        log.set_run(run_id=f"{host}-run", name="hand", status="finished", created_at=1.0, seed=7,
                    variant="paper", recipe_yaml=RECIPE_YAML.replace("runs/hand", run_dir), platform=host)
        for step in range(steps):
            with log.step(1, "questioner", step):
                _write_step(log, step, reward_shift if step == steps - 1 else 0.0, extra_generation)
    return path


def _write_step(log: RunLog, step: int, reward_shift: float, extra_generation: bool) -> None:
    gens, questions, labels, rewards, advantages = [], [], [], [], []
    for p in range(2):
        for g in range(2):
            key = question_key(step, p, g)
            gens.append(_generation(key, step, p, g, kind="question", text=f"<question>q{p}{g}?</question>",
                                    seed=question_seed(step, p)))
            for v in range(3):
                gens.append(_generation(f"{key}/v{v}", step, p, v, kind="vote", text=f"\\boxed{{{(v + g) % 2}}}",
                                        parent=key, seed=vote_seed(step, p, g)))
            questions.append({"key": key, "iteration": 1, "phase": "questioner", "step": step, "image_id": f"img{p}",
                              "grp": f"i1/questioner/s{step}/p{p}", "valid": 1, "qtype": "numerical",
                              "question": f"q{p}{g}?", "stated_answer": None, "parse_reason": "ok"})
            confidence = 2 / 3
            labels.append({"question_key": key, "iteration": 1, "phase": "questioner", "m": 3,
                           "answers": [str((v + g) % 2) for v in range(3)], "answer_keys": None,
                           "silver_label": str(g % 2), "silver_key": str(g % 2), "confidence": confidence})
            total = 1 - abs(2 * confidence - 1)
            if (p, g) == (1, 1):
                total += reward_shift
            rewards += [{"key": key, "component": "uncertainty", "iteration": 1, "role": "questioner", "step": step,
                         "value": 1 - abs(2 * confidence - 1)},
                        {"key": key, "component": "total", "iteration": 1, "role": "questioner", "step": step,
                         "value": total}]
            advantages.append({"key": key, "iteration": 1, "role": "questioner", "step": step,
                               "grp": f"i1/questioner/s{step}/p{p}", "reward": total, "advantage": 0.1 * g - 0.05})
    if extra_generation:
        gens.append(_generation(question_key(step, 9, 0), step, 9, 0, kind="question", text="extra",
                                seed=question_seed(step, 9)))
    log.insert("generations", gens)
    log.insert("questions", questions)
    log.insert("labels", labels)
    log.insert("rewards", rewards)
    log.insert("advantages", advantages)
    log.metrics(1, "questioner", step, {"loss": 0.5 / (step + 1), "reward/mean": 1 / 3})
    log.insert("checkpoints", [{"name": f"i1/questioner/s{step}", "iteration": 1, "role": "questioner",
                                "step": step, "path": None, "files": {"weights_sha256": f"{step:064x}"}}])


def question_seed(step: int, prompt: int) -> int:
    """The request seed of the questioner's prompt ``prompt`` at ``step`` in :func:`build_log`."""
    return 1000 * step + 10 * prompt + 1


def vote_seed(step: int, prompt: int, sample: int) -> int:
    """The request seed of the votes on question (step, prompt, sample) in :func:`build_log`."""
    return 1000 * step + 100 + 10 * prompt + sample


def _generation(key: str, step: int, prompt: int, sample: int, *, kind: str, text: str, seed: int,
                parent: str | None = None) -> dict[str, Any]:
    return {"key": key, "iteration": 1, "phase": "questioner", "step": step,
            "role": "reasoner" if kind == "vote" else "questioner", "kind": kind, "image_id": f"img{prompt}",
            "parent_key": parent, "sample_index": sample, "seed": seed,
            "prompt_system": "sys", "prompt_user": f"user {prompt}", "text": text,
            "token_ids": [prompt, sample, len(text)], "logprobs": [-0.5, -0.25 * (sample + 1), -1.0 / 3],
            "finish_reason": "stop"}


def tamper(src: Path, dst: Path, sql: str, params: tuple = (), rows: int | None = 1) -> Path:
    """Copy a run database and change one value (``rows`` rows; None: any number) in the copy with raw SQL (the
    only SQL a test writes)."""
    dst.write_bytes(src.read_bytes())
    for suffix in ("-wal", "-shm"):
        side = Path(str(src) + suffix)
        if side.exists():
            Path(str(dst) + suffix).write_bytes(side.read_bytes())
    conn = sqlite3.connect(dst)
    try:
        changed = conn.execute(sql, params).rowcount
        conn.commit()
    finally:
        conn.close()
    assert changed == rows or (rows is None and changed > 0), f"tamper changed {changed} rows: {sql}"
    return dst


# --- real tiny runs ---------------------------------------------------------------------------------------------

# A tiny run in seconds: 1 iteration, 2 questioner steps, a 4-image reasoner set, 2 reasoner steps; the band keeps
# every voted question so the reasoner phase always has data.
TINY = ("iterations=1", "questioner.steps=2", "reasoner.steps=2", "questioner.images_per_step=2",
        "questioner.group_size=2", "questioner.votes=3", "reasoner.votes=3", "reasoner.set_images=4",
        "reasoner.questions_per_step=2", "reasoner.group_size=2", "data.num_images=8",
        "plugins.algorithm.filter.band=[0.0,1.0]",
        "questioner.sampling.max_new_tokens=24", "reasoner.sampling.max_new_tokens=16",
        # the games source stays (its plugin tables and gold evaluation are replayed too), at its cheapest
        "plugins.games.cold_start_steps=0", "plugins.games.cold_start_reasoner_steps=0", "plugins.games.held_out=2",
        "plugins.games.held_out_questions=1")


class EveryTextIsAQuestion:
    """Third-party-style parsing for tests: an untrained tiny model writes no tags and no \\boxed{}, so without this
    no question would be valid, no vote would have an answer and the reasoner phase would have no data."""

    @hookimpl(tryfirst=True)
    def visplay_parse_question(self, ctx, text):
        from visplay.types import ParsedQuestion

        return ParsedQuestion(valid=True, question=text[:40] or "empty?", qtype="numerical", reason="test parser")

    @hookimpl(tryfirst=True)
    def visplay_extract_answers(self, ctx, texts):
        # the parity of the text's length: random text agrees about half the time, so confidences vary
        return [str(len(t) % 2) for t in texts]


def tiny_recipe(run_dir: Path, *more: str):
    from visplay.config import load_recipe

    return load_recipe("tiny", [*TINY, f"run_dir={run_dir}", *more])


def make_run(run_dir: Path, *more: str, extra: tuple = ()) -> Path:
    """Run the tiny recipe (with the test parser) to the end; return its run.db."""
    import torch

    from visplay.loop.engine import run_recipe

    torch.set_num_threads(1)
    return run_recipe(tiny_recipe(run_dir, *more), run_dir=run_dir, extra_plugins=(EveryTextIsAQuestion(), *extra),
                      quiet=True)


# --- crash driver ------------------------------------------------------------------------------------------------


def crash_main(run_dir: str, spec: str) -> None:
    """Run or resume the tiny run in ``run_dir``, SIGKILLing this process at the point ``spec`` names:

    - ``insert:N``: right after the N-th RunLog.insert (inside an open step transaction: rows written, uncommitted);
    - ``commit:N``: right after the N-th checkpoint commit (directory renamed into place and its row inserted, the
      step's transaction still open);
    - ``save:N``: during the N-th checkpoint save (its largest file cut to half, nothing renamed or logged);
    - ``time:T``: T seconds after start, wherever the run is;
    - ``none``: no kill.
    """
    import os
    import signal
    import threading

    import torch

    from visplay.loop import checkpoints
    from visplay.loop.engine import run_recipe

    torch.set_num_threads(1)
    kind, _, arg = spec.partition(":")
    calls = {"n": 0}

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def counting(original, after):
        def wrapper(*args, **kwargs):
            result = original(*args, **kwargs)
            calls["n"] += 1
            if calls["n"] == int(arg):
                after(result)
                die()
            return result
        return wrapper

    if kind == "insert":
        RunLog.insert = counting(RunLog.insert, lambda result: None)
    elif kind == "commit":
        checkpoints.Roles.commit = counting(checkpoints.Roles.commit, lambda result: None)
    elif kind == "save":
        def tear(result):
            tmp, _ = result
            biggest = max((p for p in Path(tmp).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
            biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
        checkpoints.Roles.save = counting(checkpoints.Roles.save, tear)
    elif kind == "time":
        threading.Timer(float(arg), die).start()
    path = Path(run_dir)
    db = path / "run.db"
    resumable = False
    if db.is_file():
        with RunLog(db, readonly=True) as log:
            resumable = log.run() is not None
    recipe = tiny_recipe(path)
    run_recipe(recipe, run_dir=path, extra_plugins=(EveryTextIsAQuestion(),), quiet=True, resume=resumable,
               overwrite=not resumable)
    os._exit(0)  # a pending kill timer must not outlive the run


def crash_command(run_dir: Path, spec: str) -> list[str]:
    import sys

    here = str(Path(__file__).resolve().parents[1])
    code = (f"import sys; sys.path.insert(0, {here!r}); from support.replay import crash_main; "
            f"crash_main({str(run_dir)!r}, {spec!r})")
    return [sys.executable, "-c", code]
