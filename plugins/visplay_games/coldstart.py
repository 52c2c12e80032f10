"""Cold start (G1's perception-enhanced cold start): SFT of both roles on game states before self-play.

Pairs are made from fresh states (the ``coldstart`` seed path, disjoint from the training and held-out pools):
- questioner: its real prompt -> a templated question in the recipe variant's output format;
- reasoner: its real prompt for a templated question -> ``<think>`` + the start of the state description +
  ``</think>`` + ``\\boxed{gold answer}``; plus "Describe the image." -> the state description (perception).
The prompts are exactly the loop's: they are obtained by calling the loop's own question-generation and
answer-sampling hooks with a sampler that records prompts and generates nothing.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

from visplay.api import AskedQuestion, Generation, ImageRecord, NoAnswerError, Prompt, SamplingParams
from visplay_games.core import QA, GameState
from visplay_games.options import GamesOptions

log = logging.getLogger("visplay.games")
DESCRIBE = "Describe the image."
# Used only when no plugin answers the prompt hooks (e.g. the games plugin on its own in tests).
FALLBACK_QUESTIONER = "Look at the image and ask one question about it that has a short, checkable answer."
FALLBACK_REASONER = "{question}\nThink inside <think></think>, then give the final answer in \\boxed{{}}."
THINK_CHARS = 16  # keeps the reasoner target inside the tiny recipe's short response budget
LOSS_TABLE = "cold_start_losses"
LOSS_COLUMNS = {"role": str, "step": int, "loss": float}


class RecordingSampler:
    """A Sampler that generates nothing and remembers the prompts it was asked for."""

    def __init__(self) -> None:
        self.prompts: list[Prompt] = []

    def sample(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams]) -> list[list[Generation]]:
        self.prompts.extend(prompts)
        return [[Generation(prompt=p, text="", token_ids=[], logprobs=[], seed=sp.seed, sample_index=j)
                 for j in range(sp.n)] for p, sp in zip(prompts, params)]


def loop_prompts(ctx: Any, records: Sequence[ImageRecord], questions: Sequence[str]) -> tuple[list, list]:
    """The questioner's prompt per image and the reasoner's prompt per (image, question), as the loop makes them."""
    seeds = [0] * len(records)
    try:
        gens = ctx.hooks.generate_questions(RecordingSampler(), list(records), 1, seeds)
        q_prompts = [g[0].prompt for g in gens]
    except NoAnswerError:
        q_prompts = [Prompt(user=FALLBACK_QUESTIONER, image=r) for r in records]
    try:
        asked = [AskedQuestion(record, question) for record, question in zip(records, questions)]
        gens = ctx.hooks.sample_answers(RecordingSampler(), asked, 1, seeds, purpose="rollout")
        r_prompts = [g[0].prompt for g in gens]
    except NoAnswerError:
        r_prompts = [Prompt(user=FALLBACK_REASONER.format(question=q), image=r) for r, q in zip(records, questions)]
    return q_prompts, r_prompts


def _qtype(answer: str) -> str:
    return "numerical" if answer.replace(".", "", 1).lstrip("-").isdigit() else "multiple choice"


def questioner_target(variant: str, qa: QA) -> str:
    """A templated question in the variant's questioner format (PAPER.md: validity)."""
    try:  # the algorithm helper's formatter, when it offers one, is the authority on the format
        from visplay_algorithm.api import format_question  # type: ignore[import-not-found]
    except ImportError:
        format_question = None
    if format_question is not None:
        return format_question(variant, qa.question, _qtype(qa.answer), qa.answer)
    if variant == "released":
        return f"<type>{_qtype(qa.answer)}</type><question>{qa.question}</question><answer>{qa.answer}</answer>"
    return f"<question>{qa.question}</question>"


def reasoner_target(state: GameState, qa: QA, think_chars: int = THINK_CHARS) -> str:
    """``<think>`` + the start of the state description + ``</think>`` + ``\\boxed{answer}``."""
    think = state.description[:think_chars].rstrip()
    try:  # the algorithm helper's formatter is the authority on the reasoner's format
        from visplay_algorithm.api import reasoner_target as formatted  # type: ignore[import-not-found]
    except ImportError:
        return f"<think>{think}</think>\\boxed{{{qa.answer}}}"
    return formatted(think, qa.answer)


def build_pairs(ctx: Any, pool: Sequence[tuple[GameState, ImageRecord]], variant: str, describe: bool = True,
                think_chars: int = THINK_CHARS) -> dict[str, list[tuple[Prompt, str]]]:
    """SFT pairs per role. Image j contributes its QA pair number j mod len(qa) (so every kind appears), the
    question to the questioner and the answer to the reasoner."""
    chosen = [(gs, rec, gs.qa[j % len(gs.qa)]) for j, (gs, rec) in enumerate(pool) if gs.qa]
    records = [rec for _, rec, _ in chosen]
    q_prompts, r_prompts = loop_prompts(ctx, records, [qa.question for _, _, qa in chosen])
    questioner = [(p, questioner_target(variant, qa)) for p, (_, _, qa) in zip(q_prompts, chosen)]
    reasoner = [(p, reasoner_target(gs, qa, think_chars)) for p, (gs, _, qa) in zip(r_prompts, chosen)]
    if describe:
        reasoner += [(Prompt(user=DESCRIBE, image=rec, system=p.system), gs.description)
                     for p, (gs, rec, _) in zip(r_prompts, chosen)]
    return {"questioner": questioner, "reasoner": reasoner}


def check_questioner_targets(ctx: Any, pairs: Sequence[tuple[Prompt, str]]) -> int:
    """How many questioner targets the run's own question parser rejects (should be 0)."""
    bad = 0
    for _, text in pairs:
        parsed = ctx.hooks.parse_question(text)
        bad += int(not parsed.valid)
    return bad


def _default_sft(use_cache: bool) -> Callable[..., list[float]]:
    from visplay_models.api import cached_sft_train, sft_train  # the models plugin's SFT loop

    if not use_cache:
        return sft_train

    def cached(policy: Any, pairs: Any, *, on_step: Callable[[int, float], None] | None = None,
               **settings: Any) -> list[float]:
        # nothing about the cache goes to the run log: a cached and a fresh build must log identical rows
        losses, hit = cached_sft_train(policy, pairs, on_step=on_step, **settings)
        log.info("cold start: %s %s", "loaded from the cache" if hit else "trained and cached", settings)
        return losses

    return cached


def _role_steps(opts: GamesOptions, role: str) -> int:
    if role == "reasoner" and opts.cold_start_reasoner_steps is not None:
        return opts.cold_start_reasoner_steps
    return opts.cold_start_steps


def _report(ctx: Any, before: int, total: int, role: str, done: int, loss: float) -> None:
    if hasattr(ctx, "report_progress"):
        ctx.report_progress(before + done, total, "sft step", **{f"{role[0]}_loss": loss})


def cold_start(ctx: Any, policies: dict[str, Any], pool: Sequence[tuple[GameState, ImageRecord]],
               opts: GamesOptions, sft: Callable[..., list[float]] | None = None) -> dict[str, float]:
    """Run the SFT for each role in ``opts.cold_start_roles``; returns ``cold_start/...`` metrics and logs the
    per-step losses in the plugin table ``cold_start_losses``."""
    sft = sft or _default_sft(opts.cold_start_cache)
    pairs = build_pairs(ctx, pool, str(ctx.recipe.variant), opts.cold_start_describe, opts.cold_start_think_chars)
    metrics: dict[str, float] = {"cold_start/images": float(len(pool))}
    rejected = check_questioner_targets(ctx, pairs["questioner"])
    metrics["cold_start/questioner_targets_rejected"] = float(rejected)
    rows = []
    plan = {role: _role_steps(opts, role) for role in opts.cold_start_roles}
    total, before = sum(plan.values()), 0
    for role in opts.cold_start_roles:
        steps = plan[role]
        if steps <= 0:
            continue
        extra = {}
        if "on_step" in inspect.signature(sft).parameters:  # the bar counts SFT steps across both roles
            extra["on_step"] = functools.partial(_report, ctx, before, total, role)
        losses = sft(policies[role], pairs[role], steps=steps, lr=float(opts.cold_start_lr),
                     batch_size=opts.cold_start_batch_size, seed=ctx.seed_for("cold_start", role), **extra)
        before += steps
        losses = [float(x) for x in losses]
        rows += [{"role": role, "step": i, "loss": loss} for i, loss in enumerate(losses)]
        metrics[f"cold_start/{role}/pairs"] = float(len(pairs[role]))
        if losses:
            metrics[f"cold_start/{role}/loss_first"] = losses[0]
            metrics[f"cold_start/{role}/loss_last"] = losses[-1]
    if ctx.log is not None and rows:
        ctx.log.declare_table(LOSS_TABLE, LOSS_COLUMNS, pk=("role", "step"))
        ctx.log.insert(LOSS_TABLE, rows, replace=True)
    return metrics
