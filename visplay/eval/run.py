"""``visplay eval``: a model folder or a run's reasoner on local benchmark files, judged reproducibly.

Flow: resolve what to evaluate (a model folder through backend ``hf``, or a run directory: its reasoner checkpoint
of the highest iteration, or ``--iteration N``; 0 is the base model) -> load the policy and its sampler through the
model hooks -> for each benchmark, prompt every item with the released solver instruction (answer in
``\\boxed{}``), generate greedily in batches -> judge through the ``visplay_judge`` hook (``rule`` by default) ->
write one row per item (``eval_items``: prompt, response, extracted answer, verdict, judge prompt and reply) and one
per benchmark (``eval_scores``) into the run log, or into ./eval.db when no run is given. Evaluations are keyed by
``eval_id = <model label>/<judge>``; re-running one replaces its rows, :func:`rejudge` re-scores stored responses
with another judge without generating again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig
from PIL import Image

from visplay.config import plugin_options
from visplay.context import RunContext
from visplay.eval.benchmarks import (
    CHOICE_LETTERS,
    BenchmarkItem,
    BenchmarkSpec,
    image_id,
    iter_items,
    option_letters_in,
    resolve_names,
)
from visplay.eval.protocol import EvalProtocol, Presentation, protocol_supports
from visplay.log.runlog import RunLog
from visplay.session import PluginSession
from visplay.types import IMAGE_TAG, ImageRecord, Prompt, SamplingParams

if TYPE_CHECKING:  # pragma: no cover
    from visplay.eval.compare import Comparison

log = logging.getLogger("visplay.eval.run")


EVAL_ITEMS = {
    "key": str, "eval_id": str, "benchmark": str, "idx": int, "item_id": str, "image_id": str, "kind": str,
    "question": str, "options": str, "letters": str, "reference": str, "prompt_user": str, "seed": int,
    "response": str, "finish_reason": str, "extracted": str, "correct": int, "reason": str, "judge": str,
    "judge_prompt": str, "verdict": str,
}
EVAL_SCORES = {
    "eval_id": str, "benchmark": str, "title": str, "model": str, "iteration": int, "checkpoint": str,
    "judge": str, "n": int, "correct": int, "accuracy": float, "no_answer": int,
}
NO_ANSWER_REASONS = ("empty_response", "no_boxed_answer")


class EvalError(Exception):
    """What to evaluate cannot be resolved (no such folder, no checkpoint, no plugin for a backend)."""


def declare_tables(runlog: RunLog) -> None:
    """Create the eval plugin's tables (documented in docs/evaluation.md) if missing."""
    runlog.declare_table("eval_items", EVAL_ITEMS, pk="key")
    runlog.declare_table("eval_scores", EVAL_SCORES, pk=("eval_id", "benchmark"))


# --- what to evaluate ----------------------------------------------------------------------------------------


@dataclass
class EvalTarget:
    """A resolved model to evaluate: its recipe, checkpoint (None: the recipe's base model) and where to log."""

    label: str
    recipe: DictConfig
    init_from: str | None
    iteration: int | None
    checkpoint: str | None
    run_dir: Path
    db_path: Path


def _run_target(session: PluginSession, db_path: Path, recipe: str | None, overrides: Sequence[str],
                iteration: int | None, db_arg: str | None) -> EvalTarget:
    from omegaconf import OmegaConf

    run_dir = db_path.parent
    with RunLog(db_path, readonly=True) as runlog:
        run = runlog.run() or {}
        # ``state/...`` rows are the engine's mid-phase resume states (removed once a phase ends), not versions
        checkpoints = [c for c in runlog.checkpoint_rows(role="reasoner")
                       if not str(c["name"]).startswith("state/")]
    if recipe:
        cfg = session.load_recipe(recipe, list(overrides))
    elif run.get("recipe_yaml"):  # the run's own recipe, checked again in memory (old keys move to their plugins)
        cfg = session.load_recipe(OmegaConf.create(run["recipe_yaml"]), list(overrides))
    else:
        raise EvalError(f"{db_path}: the run has no recipe recorded; pass --recipe")
    if iteration is not None:
        checkpoints = [c for c in checkpoints if c["iteration"] == iteration]
    if not checkpoints:
        if iteration == 0:  # the base model, which every run can rebuild from its recipe
            return EvalTarget("base", cfg, None, 0, None, run_dir, Path(db_arg or db_path))
        which = f"iteration {iteration}" if iteration is not None else "any iteration"
        raise EvalError(f"{db_path}: no reasoner checkpoint for {which} in table checkpoints")
    chosen = checkpoints[-1]
    path = Path(chosen["path"])
    if not path.is_absolute() and not path.exists():
        path = run_dir / path
    if not path.is_dir():
        raise EvalError(f"{db_path}: checkpoint {chosen['name']!r} points to {path}, which is not a folder")
    label = "base" if chosen["iteration"] == 0 else f"iter{chosen['iteration']}"
    return EvalTarget(label, cfg, str(path), int(chosen["iteration"]), chosen["name"], run_dir,
                      Path(db_arg or db_path))


def resolve_target(model: str, *, recipe: str | None = None, overrides: Sequence[str] = (),
                   iteration: int | None = None, db: str | None = None,
                   session: PluginSession | None = None) -> EvalTarget:
    """A run directory or run.db (its reasoner checkpoint) or a model folder (backend ``hf``)."""
    session = session or PluginSession()
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".db":
        return _run_target(session, path, recipe, overrides, iteration, db)
    if path.is_dir() and (path / "run.db").is_file():
        return _run_target(session, path / "run.db", recipe, overrides, iteration, db)
    if not path.is_dir():
        raise EvalError(f"{model}: neither a model folder nor a run directory (no such folder)")
    if iteration is not None:
        raise EvalError(f"{model}: --iteration applies to a run directory, not a model folder")
    cfg = session.load_recipe(recipe or "tiny", [*overrides, "model.backend=hf", f"model.path={path.resolve()}"])
    return EvalTarget(path.resolve().name, cfg, None, None, None, Path.cwd(), Path(db or "eval.db"))


def load_sampler(ctx: RunContext, target: EvalTarget) -> Any:
    """The reasoner policy of ``target`` and its sampler, through the model hooks."""
    policy = ctx.hooks.load_policy("reasoner", target.init_from)
    return ctx.hooks.make_sampler("reasoner", policy)


# --- generation and judging ----------------------------------------------------------------------------------


def fit_image(image: Image.Image, data: dict[str, Any]) -> Image.Image:
    """Resize a benchmark image the way the recipe resizes training images (the images plugin's settings,
    ``plugins.images``: resize, size, min_pixels, max_pixels; its defaults when that plugin is absent)."""
    resize, size = data.get("resize", "fixed"), int(data.get("size", 224))
    if resize == "fixed":
        return image.resize((size, size), Image.BICUBIC)
    if resize == "pixels":
        low, high = int(data.get("min_pixels", 262144)), int(data.get("max_pixels", 4194304))
        pixels = image.width * image.height
        bound = high if pixels > high else low if pixels < low else 0
        if bound:
            scale = (bound / pixels) ** 0.5
            return image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))),
                                Image.BICUBIC)
    return image


def get_protocol(ctx: RunContext, name: str, specs: Sequence[BenchmarkSpec] = (),
                 judge: str | None = None) -> EvalProtocol:
    """The protocol named ``name`` (``eval.protocol``), checked to support every benchmark in ``specs`` when judged
    by ``judge``; a refusal gives the protocol's own reason where it has one (e.g. "pass --judge local")."""
    protocol = ctx.hooks.eval_protocol(name)
    if protocol is None:
        raise EvalError(f"eval.protocol={name}: no plugin provides this evaluation protocol "
                        f"(built in: visplay, released, lmms-eval)")
    refused = [(spec.name, protocol_supports(protocol, spec.name, judge)) for spec in specs]
    unsupported = [(benchmark, why) for benchmark, (ok, why) in refused if not ok]
    if unsupported:
        reasons = "; ".join(why for _, why in unsupported if why)
        raise EvalError(f"eval.protocol={name}: no prompt or scoring for benchmark(s) "
                        f"{', '.join(b for b, _ in unsupported)}" + (f" ({reasons})" if reasons else ""))
    return protocol


def to_prompt(item: BenchmarkItem, shown: Presentation, data: Any) -> tuple[Prompt, str | None]:
    """A sampler prompt for a presentation, with every image it shows in its order, and the prompt's image ids
    (comma-separated; None without images). Images then one text (the ``visplay`` protocol, every training
    prompt) give an ordinary prompt; any other order (MMMU's images at their ``<image N>`` tags, ``released``'s
    text before the image) an interleaved one, :data:`visplay.types.IMAGE_TAG` where each image goes."""
    records = [ImageRecord(image_id=image_id(item.images[k]), image=fit_image(item.images[k], data),
                           source=item.source) for k in shown.images]
    ids = ",".join(r.image_id for r in records) or None
    texts = [p for p in shown.parts if isinstance(p, str)]
    if shown.parts == (*shown.images, *texts) and len(texts) == 1:
        return Prompt(user=texts[0], images=tuple(records), system=shown.system), ids
    return Prompt(user=shown.placeholder_text(IMAGE_TAG), images=tuple(records), system=shown.system,
                  interleaved=True), ids


def _report_dropped(ctx: RunContext, benchmark: str, dropped: list[str]) -> None:
    message = (f"{benchmark}: {len(dropped)} item(s) have images the protocol does not show (the protocol's "
               f"choice, documented in docs/evaluation.md), e.g. {', '.join(dropped[:5])}")
    log.warning(message)
    if ctx.log is not None:
        ctx.log.event(kind="eval_images_dropped", message=message, source="visplay.eval",
                      payload={"benchmark": benchmark, "items": dropped})


def generate(ctx: RunContext, sampler: Any, items: Sequence[BenchmarkItem], *, quiet: bool = True,
             protocol: EvalProtocol | None = None) -> list[dict]:
    """Greedy responses for ``items`` in batches of ``eval.batch_size``; one dict per item (prompt, response...).
    Unless ``quiet``, a bar on stderr counts the items answered (a plain line per tenth when it is not a terminal)."""
    from visplay.loop.progress import counting_bar

    cfg = ctx.recipe.eval
    protocol = protocol or get_protocol(ctx, "visplay")
    out: list[dict] = []
    dropped: list[str] = []
    batches = range(0, len(items), max(1, cfg.batch_size))
    bar = counting_bar(len(items), f"eval {items[0].benchmark if items else ''}", quiet=quiet or not items)
    for start in batches:
        batch = items[start:start + cfg.batch_size]
        shown = [protocol.present(item) for item in batch]
        dropped += [item.item_id for item, s in zip(batch, shown) if set(range(len(item.images))) - set(s.images)]
        prompts, image_ids = zip(*(to_prompt(item, s, plugin_options(ctx.recipe, "images"))
                                   for item, s in zip(batch, shown)))
        seeds = [ctx.seed_for("eval", item.benchmark, item.index) for item in batch]
        params = [SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=cfg.max_new_tokens, seed=s)
                  for s in seeds]
        generations = sampler.sample(list(prompts), params)
        for prompt, img, seed, gens in zip(prompts, image_ids, seeds, generations):
            out.append({"prompt_user": prompt.user, "image_id": img, "seed": seed, "response": gens[0].text,
                        "finish_reason": gens[0].finish_reason})
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    if dropped:
        _report_dropped(ctx, items[0].benchmark, dropped)
    return out


def judge_items(ctx: RunContext, judge: str, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Verdicts from the judge plugin named ``judge`` (an error names the judge when no plugin has it)."""
    verdicts = ctx.hooks.judge(judge, list(items))
    if verdicts is None:
        raise EvalError(f"no plugin provides the judge {judge!r} (built in: rule, local, endpoint)")
    return verdicts


def _judge_input(item: BenchmarkItem, spec: BenchmarkSpec, key: str, response: str,
                 protocol: str = "visplay") -> dict[str, Any]:
    letters = [CHOICE_LETTERS[i] for i in range(len(item.options))] if item.options else \
        option_letters_in(item.prompt)
    return {"key": key, "benchmark": spec.name, "question": item.prompt, "answer": item.answer, "kind": item.kind,
            "options": item.options, "letters": letters, "alternatives": spec.alternatives, "response": response,
            "protocol": protocol, "raw_question": item.question, "meta": item.meta}


def _item_row(eval_id: str, judge: str, inp: dict, gen: dict, verdict: dict, idx: int, item_id: str) -> dict:
    return {
        "key": inp["key"], "eval_id": eval_id, "benchmark": inp["benchmark"], "idx": idx, "item_id": item_id,
        "image_id": gen.get("image_id"), "kind": inp["kind"], "question": inp["question"],
        "options": inp["options"], "letters": inp["letters"], "reference": inp["answer"],
        "prompt_user": gen.get("prompt_user"), "seed": gen.get("seed"), "response": inp["response"],
        "finish_reason": gen.get("finish_reason"), "extracted": verdict.get("extracted"),
        "correct": int(bool(verdict["correct"])), "reason": verdict.get("reason", ""), "judge": judge,
        "judge_prompt": verdict.get("prompt"), "verdict": verdict.get("verdict"),
    }


def score_row(eval_id: str, spec: BenchmarkSpec, target: EvalTarget | None, judge: str, rows: list[dict],
              verdicts: Sequence[dict] = ()) -> dict:
    """The ``eval_scores`` row of one benchmark (accuracy in percent, as in the paper's table). A verdict with a
    graded ``score`` in 0..1 (lmms-eval's MM-Vet) counts that score, as its task number is the mean score; any
    other counts 1 when correct, else 0. ``correct`` counts the fully correct items."""
    correct = sum(r["correct"] for r in rows)
    credit = [float(v["score"]) if v.get("score") is not None else float(r["correct"])
              for r, v in zip(rows, verdicts)] if verdicts else [float(r["correct"]) for r in rows]
    return {
        "eval_id": eval_id, "benchmark": spec.name, "title": spec.title,
        "model": target.label if target else eval_id.split("/")[0],
        "iteration": target.iteration if target else None, "checkpoint": target.checkpoint if target else None,
        "judge": judge, "n": len(rows), "correct": correct,
        "accuracy": round(100.0 * sum(credit) / len(rows), 4) if rows else 0.0,
        "no_answer": sum(r["reason"] in NO_ANSWER_REASONS for r in rows),
    }


def eval_id_of(label: str, judge: str, protocol: str) -> str:
    """``<label>/<judge>``, with ``@<protocol>`` after the judge unless the protocol is the default ``visplay``."""
    return f"{label}/{judge}" if protocol == "visplay" else f"{label}/{judge}@{protocol}"


OnBenchmark = Callable[[BenchmarkSpec, list[BenchmarkItem], list[dict]], None]
"""Called with each benchmark's items and their generations once they are judged (``--compare-protocols``)."""


def evaluate(ctx: RunContext, sampler: Any, target: EvalTarget, specs: Sequence[BenchmarkSpec], data_dir: str,
             *, judge: str = "rule", quiet: bool = True, protocol: str | None = None,
             on_benchmark: OnBenchmark | None = None) -> list[dict]:
    """Generate, judge and log every benchmark under ``protocol`` (default ``eval.protocol``); returns the
    ``eval_scores`` rows written."""
    protocol = protocol or ctx.recipe.eval.protocol
    shown_by = get_protocol(ctx, protocol, specs, judge)
    eval_id = eval_id_of(target.label, judge, protocol)
    scores = []
    for spec in specs:
        items = list(iter_items(spec, data_dir, limit=ctx.recipe.eval.limit, splits=dict(ctx.recipe.eval.splits)))
        gens = generate(ctx, sampler, items, quiet=quiet, protocol=shown_by)
        inputs = [_judge_input(item, spec, f"{eval_id}/{spec.name}/{item.index}", g["response"], protocol)
                  for item, g in zip(items, gens)]
        verdicts = judge_items(ctx, judge, inputs)
        rows = [_item_row(eval_id, judge, inp, g, v, it.index, it.item_id)
                for inp, g, v, it in zip(inputs, gens, verdicts, items)]
        score = score_row(eval_id, spec, target, judge, rows, verdicts)
        if ctx.log is not None:
            with ctx.log.transaction():
                ctx.log.insert("eval_items", rows, replace=True)
                ctx.log.insert("eval_scores", [score], replace=True)
        scores.append(score)
        if on_benchmark is not None:
            on_benchmark(spec, items, gens)
    return scores


def rejudge(ctx: RunContext, source_eval_id: str, judge: str) -> list[dict]:
    """Re-score the responses stored under ``source_eval_id`` with another judge (no generation), under the
    protocol they were scored with (``@<protocol>`` of the id); the new rows go under ``<label>/<judge>[@<protocol>]``.
    A model judge's verdicts on file are reused (plugins/visplay_eval/verdicts.py). Returns the new ``eval_scores``
    rows."""
    import json

    if ctx.log is None:
        raise EvalError("rejudge needs a run log")
    old_scores = ctx.log.rows_matching("eval_scores", eval_id=source_eval_id)
    if not old_scores:
        raise EvalError(f"{ctx.log.path}: no evaluation {source_eval_id!r} in table eval_scores")
    label = source_eval_id.split("/")[0]
    protocol = source_eval_id.partition("@")[2] or "visplay"
    new_id, scores = eval_id_of(label, judge, protocol), []
    for old in old_scores:
        spec = resolve_names([old["benchmark"]])[0]
        stored = sorted(ctx.log.rows_matching("eval_items", eval_id=source_eval_id, benchmark=old["benchmark"]),
                        key=lambda row: row["idx"])
        inputs = [{"key": f"{new_id}/{r['benchmark']}/{r['idx']}", "benchmark": r["benchmark"],
                   "question": r["question"], "answer": r["reference"], "kind": r["kind"],
                   "options": json.loads(r["options"] or "[]"), "letters": json.loads(r["letters"] or "[]"),
                   "alternatives": spec.alternatives, "response": r["response"] or "", "protocol": protocol}
                  for r in stored]
        verdicts = judge_items(ctx, judge, inputs)
        rows = [_item_row(new_id, judge, inp, r, v, r["idx"], r["item_id"])
                for inp, r, v in zip(inputs, stored, verdicts)]
        score = score_row(new_id, spec, None, judge, rows, verdicts)
        score.update(model=old["model"], iteration=old["iteration"], checkpoint=old["checkpoint"])
        with ctx.log.transaction():
            ctx.log.insert("eval_items", rows, replace=True)
            ctx.log.insert("eval_scores", [score], replace=True)
        scores.append(score)
    return scores


# --- command line --------------------------------------------------------------------------------------------


def format_scores(scores: Sequence[dict]) -> str:
    """A small text table of ``eval_scores`` rows."""
    lines = [f"{'benchmark':<16} {'n':>5} {'correct':>8} {'accuracy':>9} {'no answer':>10}"]
    for s in scores:
        lines.append(f"{s['title'] or s['benchmark']:<16} {s['n']:>5} {s['correct']:>8} {s['accuracy']:>8.2f}% "
                     f"{s['no_answer']:>10}")
    return "\n".join(lines)


def run_eval(model: str, *, benchmarks: str | Sequence[str] = (), data: str | None = None, judge: str | None = None,
             recipe: str | None = None, overrides: Sequence[str] = (), iteration: int | None = None,
             db: str | None = None, quiet: bool = True, session: PluginSession | None = None,
             protocol: str | None = None, samples_out: str | None = None, compare: Sequence[str] = (),
             comparisons: list[Comparison] | None = None) -> tuple[EvalTarget, str, list[dict[str, Any]]]:
    """Evaluate a model folder or a run's reasoner on local benchmark files; returns (target, judge, scores).
    With ``compare`` (protocol names), the same responses are also scored under each of them and the
    :class:`~visplay.eval.compare.Comparison` of each benchmark is appended to ``comparisons`` (not logged).

    Every benchmark file is checked before a model is loaded; errors are BenchmarkError / EvalError naming the
    file, row or setting.
    """
    session = session or PluginSession()
    target = resolve_target(model, recipe=recipe, overrides=list(overrides), iteration=iteration, db=db,
                            session=session)
    cfg = target.recipe
    specs = resolve_names(benchmarks or list(cfg.eval.benchmarks))
    data_dir = data or cfg.eval.data
    if not data_dir:
        raise EvalError("no benchmark folder: pass --data DIR or set eval.data")
    judge = judge or cfg.eval.judge
    for spec in specs:  # fail on a bad file before a model is loaded
        next(iter_items(spec, data_dir, limit=1, splits=dict(cfg.eval.splits)))
    with RunLog(target.db_path, create=True) as runlog:
        declare_tables(runlog)
        ctx = session.context(cfg, target.run_dir, log=runlog, iteration=target.iteration or 0, phase="eval")
        get_protocol(ctx, protocol or cfg.eval.protocol, specs, judge)  # an unknown protocol fails before loading a model
        for name in compare:
            get_protocol(ctx, name)
        if compare and comparisons is None:
            raise ValueError("run_eval(compare=...) needs a comparisons list to fill")
        sampler = load_sampler(ctx, target)

        from visplay.eval.compare import compare_under

        def compared(spec: BenchmarkSpec, items: list[BenchmarkItem], gens: list[dict]) -> None:
            def inputs(name: str) -> list[dict[str, Any]]:
                return [_judge_input(item, spec, f"compare@{name}/{spec.name}/{item.index}", g["response"], name)
                        for item, g in zip(items, gens)]

            shown = [{"index": it.index, "item_id": it.item_id, "reference": it.answer, "response": g["response"]}
                     for it, g in zip(items, gens)]
            comparisons.append(compare_under(ctx, judge, spec, shown, compare, inputs))  # type: ignore[union-attr]

        scores = evaluate(ctx, sampler, target, specs, data_dir, judge=judge, quiet=quiet, protocol=protocol,
                          on_benchmark=compared if compare else None)
        if samples_out:
            _write_samples(runlog, samples_out, scores, protocol or cfg.eval.protocol)
    return target, judge, scores


def _write_samples(runlog: RunLog, path: str, scores: Sequence[dict], protocol: str) -> None:
    from visplay.eval.samples import write_samples

    rows = [r for s in scores for r in runlog.rows_matching("eval_items", eval_id=s["eval_id"],
                                                             benchmark=s["benchmark"])]
    write_samples(path, rows, scores, protocol)


def record_input(record: dict[str, Any], spec: BenchmarkSpec, eval_id: str, protocol: str,
                  source: str) -> dict[str, Any]:
    """The judge input of one samples-file record (its doc's question, options, kind and question type); options
    written in the question (``A. ...`` lines, as in an lmms-eval MMStar doc) are read as the loader reads them."""
    from visplay.eval.benchmarks import inline_options, item_kind, parse_options

    doc, reference = record["doc"], record["target"]
    question = str(doc.get("question", ""))
    listed = parse_options(doc.get("options"))  # MMMU docs: "['a', 'b']"
    options = listed or inline_options(question)
    meta = {"raw_answer": reference, **({"question_type": doc["question_type"]} if doc.get("question_type") else {})}
    if options and not listed:
        meta["options_in_text"] = 1  # as the loader marks them (lmms-eval's MathVision reads no such options)
    item = BenchmarkItem(spec.name, int(record["doc_id"]), str(doc.get("id", record["doc_id"])), question, question,
                         reference, doc.get("kind") or item_kind(spec, reference, options, question), options, None,
                         source, meta=meta)
    return _judge_input(item, spec, f"{eval_id}/{spec.name}/{item.index}", record["response"], protocol)


def rescore(samples: str, *, protocol: str, judge: str = "rule", benchmark: str | None = None,
            recipe: str | None = None, overrides: Sequence[str] = (), db: str | None = None,
            samples_out: str | None = None,
            session: PluginSession | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Score the responses of a samples file (``--samples-out``, or lmms-eval's ``--log_samples`` with
    ``benchmark``) under ``protocol`` without generating; rows go to ``db`` (./eval.db) under
    ``rescored/<judge>@<protocol>``. Returns (eval_id, the ``eval_scores`` rows)."""
    from visplay.eval.samples import read_samples

    session = session or PluginSession()
    records = read_samples(samples, benchmark)
    cfg = session.load_recipe(recipe or "tiny", list(overrides))
    eval_id = f"rescored/{judge}@{protocol}"
    scores: list[dict] = []
    names = list(dict.fromkeys(r["benchmark"] for r in records))
    specs = resolve_names(names)
    # a protocol's refusal (a benchmark it cannot score, a judge it needs) before the eval database exists
    get_protocol(session.context(cfg, Path.cwd(), phase="eval"), protocol, specs, judge)
    with RunLog(Path(db or "eval.db"), create=True) as runlog:
        declare_tables(runlog)
        ctx = session.context(cfg, Path.cwd(), log=runlog, phase="eval")
        for spec, name in zip(specs, names):
            mine = [r for r in records if r["benchmark"] == name]
            inputs = [record_input(r, spec, eval_id, protocol, samples) for r in mine]
            gens = [{} for _ in mine]
            verdicts = judge_items(ctx, judge, inputs)
            rows = [_item_row(eval_id, judge, inp, g, v, int(r["doc_id"]), str(r["doc"].get("id", r["doc_id"])))
                    for inp, g, v, r in zip(inputs, gens, verdicts, mine)]
            score = score_row(eval_id, spec, None, judge, rows, verdicts)
            with runlog.transaction():
                runlog.insert("eval_items", rows, replace=True)
                runlog.insert("eval_scores", [score], replace=True)
            scores.append(score)
        if samples_out:
            _write_samples(runlog, samples_out, scores, protocol)
    return eval_id, scores

