"""The work of one engine step, for each phase of PAPER.md's loop, done through the typed hooks only.

Each function computes a step and returns a :class:`StepResult`: the run-log rows it produced (table -> rows,
made by visplay.log.rows) and its metrics. Nothing is written here; the engine writes a step's rows, its
checkpoint and its ``steps`` row in one transaction. Row keys come from visplay.keys; seeds are derived from
those keys, so a row's randomness is named by the row.

The data's way through a step: images -> questions (``generate_questions``, ``parse_question``) -> votes of the
frozen reasoner (``sample_answers``, ``extract_answers``, ``answer_key``) -> silver labels and confidences
(visplay.loop.votes) -> filter decisions or reward components and their combination -> advantages and the update
(the optimizer).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import TYPE_CHECKING, Any

import numpy as np

from visplay.keys import Position, sample_key, vote_key
from visplay.log import rows
from visplay.loop.checkpoints import version_name
from visplay.loop.votes import majority_vote
from visplay.plugins import PluginError
from visplay.types import (
    AnswerItem,
    AskedQuestion,
    ImageRecord,
    Optimizer,
    Policy,
    Prompt,
    QuestionItem,
    Rollout,
    Sampler,
)

if TYPE_CHECKING:  # pragma: no cover
    from visplay.context import RunContext
    from visplay.log.runlog import KeptQuestion
    from visplay.loop.checkpoints import Roles


@dataclass
class StepResult:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    metrics: dict[str, float] = field(default_factory=dict)
    # wall-clock seconds of the step's parts (``timing_s/<part>``, EasyR1's names): they go to the metrics sinks,
    # never to the run log, whose rows must be identical across reruns (docs/metrics.md)
    timing: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, part: str) -> Iterator[None]:
        """Add the wall-clock seconds of the block to ``timing["timing_s/<part>"]``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            key = f"timing_s/{part}"
            self.timing[key] = self.timing.get(key, 0.0) + time.perf_counter() - started

    def add(self, more: dict[str, list[dict[str, Any]]]) -> None:
        for table, new in more.items():
            self.rows[table].extend(new)


def _std(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1, as torch's ``std``, the optimizer's ``reward/std``); 0 for one value."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _mean(values: Sequence[float]) -> float:
    return fmean(values) if values else 0.0


def _here(ctx: RunContext) -> Position:
    return Position(ctx.iteration, ctx.phase, ctx.step)


# --- shared pieces ---------------------------------------------------------------------------------------------


def sample_images(ctx: RunContext, pool: Sequence[ImageRecord], n: int) -> list[ImageRecord]:
    """``n`` distinct images of the pool (with replacement only when the pool is smaller than ``n``)."""
    rng = np.random.default_rng(ctx.seed_for(ctx.iteration, ctx.phase, ctx.step, "images"))
    picks = rng.choice(len(pool), size=n, replace=n > len(pool))
    return [pool[int(k)] for k in picks]


def ask(ctx: RunContext, sampler: Sampler, images: list[ImageRecord], n: int, out: StepResult) -> list[QuestionItem]:
    """The questioner writes ``n`` questions per image; each generation is parsed."""
    at = _here(ctx)
    groups = [at.group(p) for p in range(len(images))]
    seeds = [ctx.seed_for("generate", group) for group in groups]
    gens = ctx.hooks.generate_questions(sampler, images, n, seeds)
    items = []
    for image, group, seed, samples in zip(images, groups, seeds, gens):
        for g, gen in enumerate(samples):
            item = QuestionItem(key=sample_key(group, g), image_id=image.image_id, group=group, generation=gen,
                                parsed=ctx.hooks.parse_question(gen.text))
            items.append(item)
            out.add(rows.item_rows(at, item, seed))
    return items


def extract_and_key(ctx: RunContext, texts: list[str]) -> tuple[list[str | None], list[str | None]]:
    """Final answers of reasoner generations and their canonical vote keys."""
    answers = ctx.hooks.extract_answers(texts)
    return answers, [None if answer is None else ctx.hooks.answer_key(answer) or answer for answer in answers]


def vote(ctx: RunContext, sampler: Sampler, items: list[QuestionItem], images: dict[str, ImageRecord], m: int,
         out: StepResult) -> None:
    """The frozen reasoner answers each valid question ``m`` times; sets ``item.vote`` (silver label, confidence)."""
    valid = [item for item in items if item.parsed.valid]
    if not valid:
        return
    at = _here(ctx)
    questions = [AskedQuestion(images[item.image_id], item.parsed.question or "", item.parsed.qtype)
                 for item in valid]
    seeds = [ctx.seed_for("vote", item.key) for item in valid]
    gens = ctx.hooks.sample_answers(sampler, questions, m, seeds, purpose="vote")
    vote_logprobs = bool(ctx.recipe.log.vote_logprobs)  # nothing reads a vote's log-probs; they are most of the bytes
    for item, seed, samples in zip(valid, seeds, gens):
        answers, keys = extract_and_key(ctx, [g.text for g in samples])
        item.vote = ctx.hooks.vote(answers, keys) or majority_vote(answers, keys)
        out.rows["labels"].append(rows.label_row(at, item.key, m, item.vote))
        for j, (gen, answer, key) in enumerate(zip(samples, answers, keys)):
            vkey = vote_key(item.key, j)
            out.rows["generations"].append(rows.generation_row(at, vkey, "reasoner", "vote", item.image_id,
                                                               item.key, gen, seed, keep_logprobs=vote_logprobs))
            out.rows["answers"].append(rows.answer_row(at, vkey, item.key, item.key, answer, key,
                                                       item.vote.silver_key))


def score(ctx: RunContext, role: str, items: Sequence[QuestionItem] | Sequence[AnswerItem],
          out: StepResult) -> list[float]:
    """Named reward components from every reward plugin, combined into one scalar per item; all logged with the
    plugin that produced them."""
    at = _here(ctx)
    produced = ctx.hooks.reward_components(role, items)
    components = {name: values for name, (_, values) in produced.items()}
    combiner, totals = ctx.hooks.combine_rewards(role, components, items)
    for k, item in enumerate(items):
        for name, (producer, values) in sorted(produced.items()):
            out.rows["rewards"].append(rows.reward_row(at, item.key, name, role, values[k], producer))
        out.rows["rewards"].append(rows.reward_row(at, item.key, "total", role, totals[k], combiner))
    for name, values in components.items():
        out.metrics[f"reward/{name}/mean"] = _mean(values)
        out.metrics[f"reward/{name}/std"] = _std(values)  # TRL's rewards/<name>/std: a component that never varies
    out.metrics["reward/mean"] = _mean(totals)
    return totals


def update(ctx: RunContext, policy: Policy, optimizer: Optimizer, role: str,
           items: Sequence[QuestionItem] | Sequence[AnswerItem], totals: list[float], out: StepResult) -> None:
    """One policy update on the step's rollouts; logs each rollout's advantage and the optimizer's metrics."""
    at = _here(ctx)
    rollouts = [Rollout(key=item.key, group=item.group, prompt=item.generation.prompt,
                        token_ids=list(item.generation.token_ids), old_logprobs=list(item.generation.logprobs),
                        reward=total) for item, total in zip(items, totals)]
    result = optimizer.update(rollouts)
    name = ctx.recipe.optimizer.name
    for rollout in rollouts:
        if rollout.key not in result.advantages:
            raise PluginError(f"optimizer {name!r} returned no advantage for {rollout.key}")
        out.rows["advantages"].append(rows.advantage_row(at, rollout.key, role, rollout.group, rollout.reward,
                                                         float(result.advantages[rollout.key])))
    dropped_rows(at, name, role, rollouts, getattr(result, "dropped_groups", ()), out)
    out.metrics.update(finite_metrics(f"optimizer {name!r}", result.metrics))
    advantages = [float(result.advantages[r.key]) for r in rollouts]
    health = health_metrics(rollouts, advantages, int(ctx.recipe[role].sampling.max_new_tokens),
                            prompt_lengths(policy, rollouts))
    out.metrics.update({k: v for k, v in health.items() if k not in out.metrics})  # the optimizer's own come first


def dropped_rows(at: Position, name: str, role: str, rollouts: Sequence[Rollout], dropped: Sequence[str],
                 out: StepResult) -> None:
    """One ``dropped_groups`` row per group the optimizer left out of its update, in the order it names them."""
    members: dict[str, list[Rollout]] = defaultdict(list)
    for r in rollouts:
        members[r.group].append(r)
    for group in dropped:
        if group not in members:
            raise PluginError(f"optimizer {name!r} dropped group {group!r}, which is not in the step's rollouts")
        out.rows["dropped_groups"].append(rows.dropped_group_row(at, group, role, len(members[group]),
                                                                 float(members[group][0].reward), name))


def health_metrics(rollouts: Sequence[Rollout], advantages: Sequence[float], max_new_tokens: int,
                   prompt_tokens: Sequence[int] | None = None) -> dict[str, float]:
    """What tells a GRPO step is sick, under EasyR1's and TRL's names (docs/metrics.md):
    ``response_length/clip_ratio`` (share of responses as long as ``max_new_tokens``: truncated, EasyR1's
    definition), ``response_length/min``, ``frac_reward_zero_std`` (share of groups whose rewards are all equal:
    their advantages are 0, they teach nothing; TRL's name), ``advantage/min``, ``advantage/max`` and, given each
    rollout's prompt length in tokens, ``prompt_length/{mean,max,min}`` (EasyR1's ``compute_length_metrics``)."""
    lengths = [len(r.token_ids) for r in rollouts]
    groups: dict[str, list[float]] = defaultdict(list)
    for r in rollouts:
        groups[r.group].append(r.reward)
    out = {"response_length/clip_ratio": _mean([float(n >= max_new_tokens) for n in lengths]),
           "response_length/min": float(min(lengths)) if lengths else 0.0,
           "frac_reward_zero_std": _mean([float(max(g) - min(g) == 0) for g in groups.values()]),
           "advantage/min": min(advantages, default=0.0), "advantage/max": max(advantages, default=0.0)}
    if prompt_tokens:
        out.update({"prompt_length/mean": _mean([float(n) for n in prompt_tokens]),
                    "prompt_length/max": float(max(prompt_tokens)), "prompt_length/min": float(min(prompt_tokens))})
    return out


def prompt_lengths(policy: Policy, rollouts: Sequence[Rollout]) -> list[int] | None:
    """Each rollout's prompt in tokens (chat template and image tokens included), from a policy that counts them
    (``sequence_lengths``, as the HF backend's does); None from one that does not. Each distinct prompt is encoded
    once (a questioner group shares its image and instruction)."""
    count = getattr(policy, "sequence_lengths", None)
    if count is None or not rollouts:
        return None
    def key(prompt: Prompt) -> tuple[str | None, str, bool, tuple[str, ...]]:  # an ImageRecord (its meta) is unhashable
        return prompt.system, prompt.user, prompt.interleaved, tuple(r.image_id for r in prompt.images)

    distinct = {key(r.prompt): r.prompt for r in rollouts}
    tokens = dict(zip(distinct, count(list(distinct.values()), [[] for _ in distinct])))
    return [int(tokens[key(r.prompt)]) for r in rollouts]


def finite_metrics(source: str, metrics: dict[str, Any]) -> dict[str, float]:
    """An update's metrics as floats; a non-finite loss stops the step before anything is committed."""
    values = {str(k): float(v) for k, v in metrics.items()}
    bad = {k: v for k, v in values.items() if not np.isfinite(v)}
    if bad:
        raise PluginError(f"{source} produced non-finite metrics {bad}; the step was not committed (lower "
                          f"the optimizer's learning rate or check the rewards), and `visplay resume` retries it")
    return values


def question_metrics(items: list[QuestionItem], out: StepResult) -> None:
    voted = [item.vote.confidence for item in items if item.vote is not None]
    out.metrics["questions/valid_frac"] = _mean([float(item.parsed.valid) for item in items])
    out.metrics["votes/confidence_mean"] = _mean(voted)


# --- 1. questioner training step -------------------------------------------------------------------------------


def questioner_step(ctx: RunContext, roles: Roles, pool: Sequence[ImageRecord],
                    images_by_id: dict[str, ImageRecord]) -> StepResult:
    """Train questioner_i one step against the frozen reasoner_{i-1} (PAPER.md, loop step 1)."""
    cfg, out = ctx.recipe.questioner, StepResult()
    policy, optimizer = roles.trainer("questioner", ctx.iteration, ctx.step)
    reasoner = roles.frozen_sampler("reasoner", version_name("reasoner", ctx.iteration - 1))
    images = sample_images(ctx, pool, cfg.images_per_step)
    with out.timed("gen"):
        items = ask(ctx, roles.sampler("questioner"), images, cfg.group_size, out)
    with out.timed("vote"):
        vote(ctx, reasoner, items, images_by_id, cfg.votes, out)
    with out.timed("reward"):
        totals = score(ctx, "questioner", items, out)
    with out.timed("update"):
        update(ctx, policy, optimizer, "questioner", items, totals, out)
    question_metrics(items, out)
    return out


# --- 2. reasoner training-set step ------------------------------------------------------------------------------


def reasoner_set_step(ctx: RunContext, roles: Roles, images: list[ImageRecord],
                      images_by_id: dict[str, ImageRecord]) -> StepResult:
    """questioner_i asks about a chunk of images, reasoner_{i-1} votes, the filters decide (loop step 2)."""
    cfg, out = ctx.recipe.reasoner, StepResult()
    gold = ctx.hooks.reasoner_questions(ctx.iteration, images)
    if gold is not None:
        return gold_set_step(ctx, *gold, out)
    questioner = roles.frozen_sampler("questioner", version_name("questioner", ctx.iteration))
    reasoner = roles.frozen_sampler("reasoner", version_name("reasoner", ctx.iteration - 1))
    with out.timed("gen"):
        items = ask(ctx, questioner, images, cfg.questions_per_image, out)
    with out.timed("vote"):
        vote(ctx, reasoner, items, images_by_id, cfg.votes, out)
    voted = [item for item in items if item.vote is not None]
    decisions = {item.key: (False, "invalid_question", "engine") for item in items if item.vote is None}
    with out.timed("filter"):
        decisions.update(filter_questions(ctx, voted))
    at = _here(ctx)
    for item in items:
        out.rows["filters"].append(rows.filter_row(at, item.key, *decisions[item.key]))
    question_metrics(items, out)
    kept = sum(keep for keep, _, _ in decisions.values())
    out.metrics["set/kept"] = float(kept)
    out.metrics["set/kept_frac"] = kept / len(items) if items else 0.0
    return out


def gold_set_step(ctx: RunContext, producer: str, triples: list[tuple[ImageRecord, str, str]],
                  out: StepResult) -> StepResult:
    """A plugin supplied (image, question, gold answer) triples: they form the set as is (label = gold)."""
    at = _here(ctx)
    for k, (image, question, answer) in enumerate(triples):
        out.add(rows.gold_question_rows(at, sample_key(at.group(k), 0), image.image_id, question, answer,
                                        ctx.hooks.answer_key(answer) or answer, producer))
    out.rows["events"].append(rows.event_row(at, "gold_reasoner_set", f"{len(triples)} gold questions from "
                                             f"visplay_reasoner_questions (plugin {producer!r})", level="info"))
    out.metrics["set/kept"] = float(len(triples))
    out.metrics["set/kept_frac"] = 1.0
    return out


def filter_questions(ctx: RunContext, items: list[QuestionItem]) -> dict[str, tuple[bool, str, str]]:
    """Keep a question iff no filter plugin rejects it; the first rejecting plugin's reason is kept.

    Returns {question key: (keep, reason, producer)}; a kept question's producer is every deciding plugin.
    """
    if not items:
        return {}
    voters = ctx.hooks.filter_questions(items)
    everyone = ",".join(plugin for plugin, _ in voters) or "engine"
    decisions = {item.key: (True, "kept", everyone) for item in items}
    for plugin, per_item in voters:
        for item, decision in zip(items, per_item):
            if decisions[item.key][0] and not decision.keep:
                decisions[item.key] = (False, decision.reason, plugin)
    return decisions


# --- 3. reasoner training step ----------------------------------------------------------------------------------


def reasoner_step(ctx: RunContext, roles: Roles, batch: list[KeptQuestion],
                  images_by_id: dict[str, ImageRecord]) -> StepResult:
    """Train reasoner_i one step on kept questions; reward = agreement with the silver label (loop step 3)."""
    cfg, out = ctx.recipe.reasoner, StepResult()
    policy, optimizer = roles.trainer("reasoner", ctx.iteration, ctx.step)
    at = _here(ctx)
    if not batch:  # nothing survived the filters: the reasoner stays as it is this step, and the log says why
        out.rows["events"].append(rows.event_row(at, "empty_reasoner_set", "no question was kept for the "
                                                 "reasoner's set; step skipped"))
        out.metrics["set/empty"] = 1.0
        return out
    groups = [at.group(k) for k in range(len(batch))]
    questions = [AskedQuestion(images_by_id[q.image_id], q.question, q.qtype) for q in batch]
    seeds = [ctx.seed_for("rollout", group) for group in groups]
    with out.timed("gen"):
        gens = ctx.hooks.sample_answers(roles.sampler("reasoner"), questions, cfg.group_size, seeds,
                                        purpose="rollout")
    items: list[AnswerItem] = []
    for q, group, seed, samples in zip(batch, groups, seeds, gens):
        answers, keys = extract_and_key(ctx, [g.text for g in samples])
        for j, (gen, answer, key) in enumerate(zip(samples, answers, keys)):
            item = AnswerItem(key=sample_key(group, j), question_key=q.key, group=group, generation=gen,
                              extracted=answer, answer_key=key, silver_label=q.silver_label,
                              silver_key=q.silver_key, gold=q.gold)
            items.append(item)
            out.rows["generations"].append(rows.generation_row(at, item.key, "reasoner", "rollout", q.image_id,
                                                               q.key, gen, seed))
            out.rows["answers"].append(rows.answer_row(at, item.key, q.key, group, answer, key, q.silver_key))
    with out.timed("reward"):
        totals = score(ctx, "reasoner", items, out)
    with out.timed("update"):
        update(ctx, policy, optimizer, "reasoner", items, totals, out)
    out.metrics["answers/silver_match_frac"] = _mean([float(i.answer_key is not None and i.answer_key == i.silver_key)
                                                     for i in items])
    return out


def reasoner_batches(ctx: RunContext, kept: list[KeptQuestion], step: int, size: int) -> list[KeptQuestion]:
    """Step ``step``'s questions: the kept set in a seeded order, a fresh permutation per pass over it."""
    if not kept:
        return []
    per_epoch = len(kept)
    picks = []
    for position in range(step * size, (step + 1) * size):
        epoch, index = divmod(position, per_epoch)
        order = np.random.default_rng(ctx.seed_for(ctx.iteration, "reasoner", "order", epoch)).permutation(per_epoch)
        picks.append(kept[int(order[index])])
    return picks

