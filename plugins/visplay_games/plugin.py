"""visplay games plugin: hook implementations (see visplay/hookspecs.py).

Roles in the loop: the ``games`` image source (truth to the ``gold_truth`` table, never to rewards), gold
evaluation after every iteration, the cold start before iteration 1, and verifiable reasoner rewards plus a
gold reasoner set when ``plugins.games.gold_reward`` is on. Settings: ``recipe.plugins.games`` (options.py).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from visplay.api import AskedQuestion, ImageRecord, hookimpl, plugin_section
from visplay_games import coldstart, gold, pools, rewards, tables
from visplay_games.core import GameState
from visplay_games.options import GamesOptions

# --- helpers ---------------------------------------------------------------------------------------------------


def options(ctx: Any) -> GamesOptions:
    return plugin_section(ctx.recipe, "games")


@hookimpl
def visplay_recipe_sections() -> dict[str, type]:
    return {"games": GamesOptions}


@hookimpl
def visplay_table_docs() -> dict[str, tuple[str, dict[str, str]]]:
    """The plugin's tables (gold_truth, gold_eval, gold_silver, cold_start_losses) for datasette.json."""
    return tables.TABLE_DOCS


@hookimpl
def visplay_names() -> dict[str, list[str]]:
    return {"image_source": [pools.SOURCE], "reward_component": list(rewards.COMPONENTS)}


def _uses_games(ctx: Any) -> bool:
    return ctx.recipe.data.source == pools.SOURCE


def train_pool(ctx: Any, opts: GamesOptions):
    return pools.train_pool(ctx.seed, opts, int(ctx.recipe.data.num_images), opts.image_size)


def states_by_id(ctx: Any, opts: GamesOptions) -> dict[str, GameState]:
    return {rec.image_id: gs for gs, rec in train_pool(ctx, opts)}


def key_fn(ctx: Any):
    return ctx.hooks.answer_key


def _log_truth(ctx: Any, split: str, pool) -> None:
    if ctx.log is None:
        return
    ctx.log.declare_table(pools.TRUTH_TABLE, pools.TRUTH_COLUMNS, pk="key")
    ctx.log.insert(pools.TRUTH_TABLE, pools.truth_rows(split, pool), replace=True)


# --- 1. image source -------------------------------------------------------------------------------------------


@hookimpl
def visplay_image_source(ctx: Any, name: str, options: dict[str, Any]) -> pools.GamesImageSource | None:
    if name != pools.SOURCE:
        return None
    opts = plugin_section(ctx.recipe, "games")  # `options` is the hook argument here
    n = int(options.get("num_images", 0))
    if n < 1:
        raise ValueError(f"data.num_images: the games source needs at least 1 image, got {n}")
    pool = pools.train_pool(ctx.seed, opts, n, opts.image_size)
    _log_truth(ctx, "train", pool)
    if opts.held_out:
        _log_truth(ctx, "heldout", pools.held_out_pool(opts, opts.image_size))
    return pools.GamesImageSource(pool)


# --- 2. gold evaluation ----------------------------------------------------------------------------------------


# the gold evaluation asks in this many chunks, so its bar moves (a request's answers depend only on its prompt and
# seed, never on the requests sent with it: visplay_models' sampler contract, vLLM's seeded sampling)
EVAL_PROGRESS_UPDATES = 20


def _answers(ctx: Any, sampler: Any, items: Sequence[gold.EvalItem], n: int, seeds: list[int],
             done: int = 0, total: int | None = None) -> list[list]:
    """``n`` extracted answers per held-out item, through the run's own answer hooks, in chunks; after each chunk
    the bar shows ``done`` + the items answered so far, of ``total``."""
    out: list[list] = []
    size = max(1, -(-len(items) // EVAL_PROGRESS_UPDATES))
    for k in range(0, len(items), size):
        chunk = items[k:k + size]
        gens = ctx.hooks.sample_answers(sampler, [AskedQuestion(it.record, it.qa.question) for it in chunk], n,
                                        seeds[k:k + size], purpose="vote")
        extracted = ctx.hooks.extract_answers([g.text for per_item in gens for g in per_item])
        out += [extracted[j * n:(j + 1) * n] for j in range(len(chunk))]
        if hasattr(ctx, "report_progress"):
            ctx.report_progress(done + k + len(chunk), total or len(items), "question")
    return out


def greedy_context(ctx: Any) -> Any:
    """The context with the reasoner's sampling temperature at 0 (the samplers' greedy decoding)."""
    from omegaconf import OmegaConf

    recipe = copy.deepcopy(ctx.recipe)  # a copy keeps the typed sections the plugins read back
    OmegaConf.set_readonly(recipe, False)
    recipe.reasoner.sampling.temperature = 0.0
    OmegaConf.set_readonly(recipe, True)
    return dataclasses.replace(ctx, recipe=recipe)


def gold_eval(ctx: Any, iteration: int, sampler: Any, opts: GamesOptions) -> dict[str, float]:
    """Score ``sampler`` (the reasoner) on the held-out set and the iteration's silver labels against gold:
    maj@m (``eval_votes`` samples), pass@1 sampled (their mean) and, with ``eval_greedy``, pass@1 greedy."""
    held = pools.held_out_pool(opts, opts.image_size)
    items = gold.eval_items(held, opts.held_out_questions)
    metrics: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    if items:
        # the bar counts held-out questions (once per pass: sampled, then greedy), not the engine's one eval step
        total = len(items) * (2 if opts.eval_greedy else 1)
        seeds = [ctx.seed_for(iteration, "eval", "gold", j) for j in range(len(items))]
        answers = _answers(ctx, sampler, items, opts.eval_votes, seeds, 0, total)
        greedy = ([a[0] for a in _answers(greedy_context(ctx), sampler, items, 1, seeds, len(items), total)]
                  if opts.eval_greedy else None)
        rows = gold.score_items(items, answers, key_fn(ctx), iteration, greedy)
        metrics.update(gold.gold_metrics(rows, _filter_band(ctx)))
    if ctx.log is not None:
        if rows:
            ctx.log.declare_table(gold.EVAL_TABLE, gold.EVAL_COLUMNS, pk="key")
            ctx.log.insert(gold.EVAL_TABLE, rows, replace=True)
        if _uses_games(ctx):
            metrics.update(silver_eval(ctx, iteration, opts))
    return metrics


def _filter_band(ctx: Any) -> Any:
    """The algorithm plugin's filter (its ``keeps`` test), when that plugin is installed."""
    try:
        from visplay_algorithm.api import filter_options
    except ImportError:
        return None
    return filter_options(ctx.recipe)


def silver_eval(ctx: Any, iteration: int, opts: GamesOptions) -> dict[str, float]:
    """The Table 2 analysis: this iteration's silver labels (run log ``labels``) checked against the engine."""
    log = ctx.log
    labels = log.rows_matching("labels", iteration=iteration)
    if not labels:
        return {}
    questions = {q["key"]: q for q in log.rows_matching("questions", iteration=iteration)}
    filters = log.filters_of(iteration)
    gold_set = {f["question_key"] for f in filters if f["reason"] == "gold"}
    labels = [lab for lab in labels if lab["question_key"] not in gold_set]  # gold training: labels are gold
    if not labels:
        return {}
    kept = {f["question_key"]: int(f["keep"]) for f in filters if f["question_key"] not in gold_set}
    rows = gold.silver_rows(iteration, labels, questions, kept, states_by_id(ctx, opts), key_fn(ctx))
    if rows:
        log.declare_table(gold.SILVER_TABLE, gold.SILVER_COLUMNS, pk="question_key")
        log.insert(gold.SILVER_TABLE, rows, replace=True)
    metrics = gold.silver_metrics(labels, rows, kept)
    warning = gold.silver_warning(metrics, log.metrics_of(0, "eval")) if iteration > 0 else None
    if warning is not None:
        log.event("silver_below_start", warning, level="warning", source="games")
    return metrics


@hookimpl
def visplay_iteration_end(ctx: Any, iteration: int, questioner: Any, reasoner: Any) -> dict[str, float] | None:
    opts = options(ctx)
    enabled = opts.gold_eval if opts.gold_eval is not None else _uses_games(ctx)
    if not enabled or not opts.held_out:
        return None
    return gold_eval(ctx, iteration, reasoner.sampler(), opts)


@hookimpl
def visplay_question_kinds(ctx: Any, questions: Sequence[tuple[str, str]]) -> list[str | None] | None:
    """``<game>/<template kind>`` (e.g. ``2048/tile_at``) for each question the game engine can parse about a
    picture of this run's pool; None for the rest (free-form questions, other images)."""
    if not _uses_games(ctx):
        return None
    from visplay_games.generators import answer

    states = states_by_id(ctx, options(ctx))
    kinds: list[str | None] = []
    for image_id, question in questions:
        gs = states.get(image_id)
        solved = answer(gs, question) if gs is not None and question else None
        kinds.append(f"{gs.game}/{solved[0].kind}" if solved else None)
    return kinds


@hookimpl
def visplay_summary_fields(ctx: Any, iteration: int) -> dict[str, float | tuple[float, float]] | None:
    """pass@1 and maj@m of the reasoner on the held-out set and the accuracy of the iteration's silver labels, each
    with its standard error, for the console line and the report."""
    if ctx.log is None:
        return None
    metrics = ctx.log.metrics_of(iteration, "eval")
    fields = {}
    for name, label in SUMMARY_METRICS.items():
        if name in metrics:
            if name == "gold/accuracy" and metrics.get("gold/votes"):
                label = f"maj@{int(metrics['gold/votes'])}"
            se = metrics.get(f"{name}_se")
            fields[label] = metrics[name] if se is None else (metrics[name], se)
    return fields or None


SUMMARY_METRICS = {"gold/sample_accuracy": "gold pass@1", "gold/accuracy": "maj@m",
                   "gold/silver_accuracy": "silver-label accuracy"}
"""Metrics of this plugin shown in each iteration's summary line (with their standard errors), and their labels:
pass@1 = mean accuracy of the sampled answers, maj@m = accuracy of their majority."""


# --- 3. cold start ---------------------------------------------------------------------------------------------


@hookimpl
def visplay_run_start(ctx: Any, questioner: Any, reasoner: Any) -> dict[str, float] | None:
    opts = options(ctx)
    if opts.cold_start_steps <= 0 and not opts.cold_start_reasoner_steps:
        return None
    pool = pools.cold_start_pool(ctx.seed, opts, opts.image_size)
    _log_truth(ctx, "coldstart", pool)
    return coldstart.cold_start(ctx, {"questioner": questioner, "reasoner": reasoner}, pool, opts)


# --- 4. verifiable rewards and the gold reasoner set -----------------------------------------------------------


@hookimpl
def visplay_reasoner_questions(ctx: Any, iteration: int,
                               images: Sequence[ImageRecord]) -> list[tuple[ImageRecord, str, str]] | None:
    opts = options(ctx)
    if not opts.gold_reward:
        return None
    states = states_by_id(ctx, opts)
    rng = np.random.default_rng(ctx.seed_for(iteration, "games", "reasoner_questions"))
    out = []
    for record in images:
        gs = states.get(record.image_id)
        if gs is None or not gs.qa:
            continue  # not one of our images: nothing known about it
        picks = rng.permutation(len(gs.qa))[: opts.gold_questions_per_image]
        out += [(record, gs.qa[int(k)].question, gs.qa[int(k)].answer) for k in picks]
    if not out:
        raise ValueError("plugins.games.gold_reward: none of the reasoner-set images comes from the games "
                         "source (set data.source: games)")
    return out


@hookimpl
def visplay_reward_components(ctx: Any, role: str, items: Sequence[Any]) -> dict[str, list[float]] | None:
    if role != "reasoner" or not options(ctx).gold_reward:
        return None
    return rewards.reasoner_components(items, states_by_id(ctx, options(ctx)), key_fn(ctx))
