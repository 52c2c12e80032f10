"""The work of one engine step, for each phase of PAPER.md's loop, done through hooks only.

Each function computes a step and returns a :class:`StepResult`: the run-log rows it produced (table -> rows) and
its metrics. Nothing is written here; the engine writes a step's rows, its checkpoint and its ``steps`` row in one
transaction. Row keys follow docs/runlog.md: ``i{it}/{phase}/s{step}/p{prompt}/g{sample}`` for generations and
questions, ``{question_key}/v{j}`` for vote answers. Seeds are derived from those keys, so a row's randomness is
named by the row.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

import numpy as np

from visplay.loop.votes import majority_vote
from visplay.plugins import PluginError
from visplay.types import AnswerItem, Generation, ImageRecord, ParsedQuestion, QuestionItem, Rollout


@dataclass
class StepResult:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    metrics: dict[str, float] = field(default_factory=dict)


def _mean(values: list[float]) -> float:
    return fmean(values) if values else 0.0


# --- shared pieces ---------------------------------------------------------------------------------------------


def sample_images(ctx: Any, pool: Any, n: int) -> list[ImageRecord]:
    """``n`` distinct images of the pool (with replacement only when the pool is smaller than ``n``)."""
    rng = np.random.default_rng(ctx.seed_for(ctx.iteration, ctx.phase, ctx.step, "images"))
    picks = rng.choice(len(pool), size=n, replace=n > len(pool))
    return [pool[int(k)] for k in picks]


def _check_shape(hook: str, result: Any, outer: int, inner: int) -> list[list[Generation]]:
    if result is None:
        raise PluginError(f"no plugin answered {hook} (see `visplay plugins`)")
    if len(result) != outer or any(len(group) != inner for group in result):
        shape = [len(group) for group in result]
        raise PluginError(f"{hook} returned groups of sizes {shape}; expected {outer} groups of {inner}")
    return result


def generation_row(ctx: Any, key: str, role: str, kind: str, image_id: str | None, parent_key: str | None,
                   gen: Generation, seed: int) -> dict[str, Any]:
    """A ``generations`` row; ``seed`` is the request seed passed to the sampling hook (replay matches on it).

    Votes' log-probs are stored only with ``log.vote_logprobs`` (nothing reads them; they are most of the bytes).
    """
    keep_logprobs = kind != "vote" or bool(ctx.recipe.log.vote_logprobs)
    return {
        "key": key, "iteration": ctx.iteration, "phase": ctx.phase, "step": ctx.step, "role": role, "kind": kind,
        "image_id": image_id, "parent_key": parent_key, "sample_index": gen.sample_index, "seed": seed,
        "prompt_system": gen.prompt.system, "prompt_user": gen.prompt.user, "text": gen.text,
        "token_ids": list(gen.token_ids), "logprobs": [float(x) for x in gen.logprobs] if keep_logprobs else None,
        "finish_reason": gen.finish_reason,
    }


def ask(ctx: Any, sampler: Any, images: list[ImageRecord], n: int, out: StepResult) -> list[QuestionItem]:
    """The questioner writes ``n`` questions per image; each generation is parsed."""
    groups = [f"i{ctx.iteration}/{ctx.phase}/s{ctx.step}/p{p}" for p in range(len(images))]
    seeds = [ctx.seed_for("generate", group) for group in groups]
    gens = _check_shape("visplay_generate_questions",
                        ctx.call("visplay_generate_questions", sampler=sampler, images=images, n=n, seeds=seeds),
                        len(images), n)
    items = []
    for image, group, seed, samples in zip(images, groups, seeds, gens):
        for g, gen in enumerate(samples):
            parsed = ctx.call("visplay_parse_question", text=gen.text)
            if parsed is None:
                parsed = ParsedQuestion(valid=False, reason="no plugin parses questions")
            item = QuestionItem(key=f"{group}/g{g}", image_id=image.image_id, group=group, generation=gen,
                                parsed=parsed)
            items.append(item)
            out.rows["generations"].append(generation_row(ctx, item.key, "questioner", "question", image.image_id,
                                                          None, gen, seed))
            out.rows["questions"].append({
                "key": item.key, "iteration": ctx.iteration, "phase": ctx.phase, "step": ctx.step,
                "image_id": image.image_id, "grp": group, "valid": int(parsed.valid), "qtype": parsed.qtype,
                "question": parsed.question, "stated_answer": parsed.stated_answer, "parse_reason": parsed.reason,
            })
    return items


def extract_and_key(ctx: Any, texts: list[str]) -> tuple[list[str | None], list[str | None]]:
    """Final answers of reasoner generations and their canonical vote keys."""
    answers = ctx.call("visplay_extract_answers", texts=texts)
    if answers is None or len(answers) != len(texts):
        raise PluginError("visplay_extract_answers: no plugin answered, or it returned the wrong number of answers")
    keys = []
    for answer in answers:
        key = None if answer is None else ctx.call("visplay_answer_key", answer=answer)
        keys.append(answer if key is None else key)
    return answers, keys


def vote(ctx: Any, sampler: Any, items: list[QuestionItem], images: dict[str, ImageRecord], m: int,
         out: StepResult) -> None:
    """The frozen reasoner answers each valid question ``m`` times; sets ``item.vote`` (silver label, confidence)."""
    valid = [item for item in items if item.parsed.valid]
    if not valid:
        return
    questions = [(images[item.image_id], item.parsed.question or "") for item in valid]
    seeds = [ctx.seed_for("vote", item.key) for item in valid]
    gens = _check_shape("visplay_sample_answers",
                        ctx.call("visplay_sample_answers", sampler=sampler, questions=questions, n=m, seeds=seeds,
                                 purpose="vote"), len(valid), m)
    none_as_vote = bool(ctx.recipe.reward.none_as_vote)
    for item, seed, samples in zip(valid, seeds, gens):
        answers, keys = extract_and_key(ctx, [g.text for g in samples])
        item.vote = majority_vote(answers, keys, none_as_vote=none_as_vote)
        out.rows["labels"].append({
            "question_key": item.key, "iteration": ctx.iteration, "phase": ctx.phase, "m": m,
            "answers": list(item.vote.answers), "answer_keys": list(item.vote.keys),
            "silver_label": item.vote.silver_label, "silver_key": item.vote.silver_key,
            "confidence": float(item.vote.confidence),
        })
        for j, (gen, answer, key) in enumerate(zip(samples, answers, keys)):
            vkey = f"{item.key}/v{j}"
            out.rows["generations"].append(generation_row(ctx, vkey, "reasoner", "vote", item.image_id, item.key,
                                                          gen, seed))
            out.rows["answers"].append({
                "key": vkey, "question_key": item.key, "iteration": ctx.iteration, "phase": ctx.phase,
                "step": ctx.step, "grp": item.key, "extracted": answer, "answer_key": key,
                "silver_key": item.vote.silver_key,
            })


def score(ctx: Any, role: str, items: list[Any], out: StepResult) -> list[float]:
    """Named reward components from every reward plugin, combined into one scalar per item; all logged."""
    components: dict[str, list[float]] = {}
    for result in ctx.call("visplay_reward_components", role=role, items=items) or []:
        for name, values in result.items():
            if name in components:
                raise PluginError(f"reward component {name!r} is returned by two plugins: "
                                  f"{', '.join(_component_owners(ctx, role, items, name))}")
            if len(values) != len(items):
                raise PluginError(f"reward component {name!r} has {len(values)} values for {len(items)} items")
            components[name] = [float(v) for v in values]
    totals = ctx.call("visplay_combine_rewards", role=role, components=components, items=items)
    if totals is None or len(totals) != len(items):
        raise PluginError(f"visplay_combine_rewards: no plugin combined the {role} rewards "
                          f"(components: {sorted(components)})")
    totals = [float(t) for t in totals]
    for k, item in enumerate(items):
        for name, values in [*sorted(components.items()), ("total", totals)]:
            out.rows["rewards"].append({"key": item.key, "component": name, "iteration": ctx.iteration,
                                        "role": role, "step": ctx.step, "value": values[k]})
    for name, values in components.items():
        out.metrics[f"reward/{name}/mean"] = _mean(values)
    out.metrics["reward/mean"] = _mean(totals)
    return totals


def _component_owners(ctx: Any, role: str, items: list[Any], name: str) -> list[str]:
    caller = ctx.pm.hook.visplay_reward_components
    owners = []
    for impl in reversed(caller.get_hookimpls()):
        result = impl.function(**{a: {"ctx": ctx, "role": role, "items": items}[a] for a in impl.argnames})
        if result and name in result:
            owners.append(impl.plugin_name)
    return owners


def update(ctx: Any, optimizer: Any, role: str, items: list[Any], totals: list[float], out: StepResult) -> None:
    """One policy update on the step's rollouts; logs each rollout's advantage and the optimizer's metrics."""
    rollouts = [Rollout(key=item.key, group=item.group, prompt=item.generation.prompt,
                        token_ids=list(item.generation.token_ids), old_logprobs=list(item.generation.logprobs),
                        reward=total) for item, total in zip(items, totals)]
    result = optimizer.update(rollouts)
    for rollout in rollouts:
        if rollout.key not in result.advantages:
            raise PluginError(f"optimizer {ctx.recipe.optimizer.name!r} returned no advantage for {rollout.key}")
        out.rows["advantages"].append({"key": rollout.key, "iteration": ctx.iteration, "role": role,
                                       "step": ctx.step, "grp": rollout.group, "reward": rollout.reward,
                                       "advantage": float(result.advantages[rollout.key])})
    out.metrics.update({k: float(v) for k, v in result.metrics.items()})


def question_metrics(items: list[QuestionItem], out: StepResult) -> None:
    voted = [item.vote.confidence for item in items if item.vote is not None]
    out.metrics["questions/valid_frac"] = _mean([float(item.parsed.valid) for item in items])
    out.metrics["votes/confidence_mean"] = _mean(voted)


# --- 1. questioner training step -------------------------------------------------------------------------------


def questioner_step(ctx: Any, roles: Any, pool: Any, images_by_id: dict[str, ImageRecord]) -> StepResult:
    """Train questioner_i one step against the frozen reasoner_{i-1} (PAPER.md, loop step 1)."""
    cfg, out = ctx.recipe.questioner, StepResult()
    _, optimizer = roles.trainer("questioner", ctx.iteration, ctx.step)
    roles.frozen("reasoner", f"reasoner_v{ctx.iteration - 1}")
    images = sample_images(ctx, pool, cfg.images_per_step)
    items = ask(ctx, roles.sampler("questioner"), images, cfg.group_size, out)
    vote(ctx, roles.sampler("reasoner"), items, images_by_id, cfg.votes, out)
    totals = score(ctx, "questioner", items, out)
    update(ctx, optimizer, "questioner", items, totals, out)
    question_metrics(items, out)
    return out


# --- 2. reasoner training-set step ------------------------------------------------------------------------------


def reasoner_set_step(ctx: Any, roles: Any, images: list[ImageRecord],
                      images_by_id: dict[str, ImageRecord]) -> StepResult:
    """questioner_i asks about a chunk of images, reasoner_{i-1} votes, the filters decide (loop step 2)."""
    cfg, out = ctx.recipe.reasoner, StepResult()
    gold = ctx.call("visplay_reasoner_questions", iteration=ctx.iteration, images=images)
    if gold is not None:
        return gold_set_step(ctx, gold, out)
    roles.frozen("questioner", f"questioner_v{ctx.iteration}")
    roles.frozen("reasoner", f"reasoner_v{ctx.iteration - 1}")
    items = ask(ctx, roles.sampler("questioner"), images, cfg.questions_per_image, out)
    vote(ctx, roles.sampler("reasoner"), items, images_by_id, cfg.votes, out)
    voted = [item for item in items if item.vote is not None]
    decisions = {item.key: (False, "invalid_question") for item in items if item.vote is None}
    decisions.update(filter_questions(ctx, voted))
    for item in items:
        keep, reason = decisions[item.key]
        out.rows["filters"].append({"question_key": item.key, "iteration": ctx.iteration, "keep": int(keep),
                                    "reason": reason})
    question_metrics(items, out)
    kept = sum(keep for keep, _ in decisions.values())
    out.metrics["set/kept"] = float(kept)
    out.metrics["set/kept_frac"] = kept / len(items) if items else 0.0
    return out


def gold_set_step(ctx: Any, triples: list[tuple[ImageRecord, str, str]], out: StepResult) -> StepResult:
    """A plugin supplied (image, question, gold answer) triples: they form the set as is (label = gold)."""
    for k, (image, question, answer) in enumerate(triples):
        key = f"i{ctx.iteration}/{ctx.phase}/s{ctx.step}/p{k}/g0"
        answer_key = ctx.call("visplay_answer_key", answer=answer) or answer
        out.rows["questions"].append({
            "key": key, "iteration": ctx.iteration, "phase": ctx.phase, "step": ctx.step, "image_id": image.image_id,
            "grp": key.rsplit("/", 1)[0], "valid": 1, "qtype": None, "question": question, "stated_answer": None,
            "parse_reason": "gold",
        })
        out.rows["labels"].append({
            "question_key": key, "iteration": ctx.iteration, "phase": ctx.phase, "m": 0, "answers": [],
            "answer_keys": [], "silver_label": answer, "silver_key": answer_key, "confidence": 1.0,
        })
        out.rows["filters"].append({"question_key": key, "iteration": ctx.iteration, "keep": 1, "reason": "gold"})
    out.rows["events"].append({"iteration": ctx.iteration, "phase": ctx.phase, "step": ctx.step, "level": "info",
                               "kind": "gold_reasoner_set", "source": "engine",
                               "message": f"{len(triples)} gold questions from visplay_reasoner_questions"})
    out.metrics["set/kept"] = float(len(triples))
    out.metrics["set/kept_frac"] = 1.0
    return out


def filter_questions(ctx: Any, items: list[QuestionItem]) -> dict[str, tuple[bool, str]]:
    """Keep a question iff no filter plugin rejects it; the first rejecting plugin's reason is kept."""
    decisions = {item.key: (True, "kept") for item in items}
    if not items:
        return decisions
    for per_plugin in ctx.call("visplay_filter_questions", items=items) or []:
        if len(per_plugin) != len(items):
            raise PluginError(f"visplay_filter_questions returned {len(per_plugin)} decisions for {len(items)}")
        for item, decision in zip(items, per_plugin):
            if decisions[item.key][0] and not decision.keep:
                decisions[item.key] = (False, decision.reason)
    return decisions


# --- 3. reasoner training step ----------------------------------------------------------------------------------


def reasoner_step(ctx: Any, roles: Any, batch: list[dict[str, Any]],
                  images_by_id: dict[str, ImageRecord]) -> StepResult:
    """Train reasoner_i one step on kept questions; reward = agreement with the silver label (loop step 3)."""
    cfg, out = ctx.recipe.reasoner, StepResult()
    _, optimizer = roles.trainer("reasoner", ctx.iteration, ctx.step)
    if not batch:  # nothing survived the filters: the reasoner stays as it is this step, and the log says why
        out.rows["events"].append({"iteration": ctx.iteration, "phase": ctx.phase, "step": ctx.step,
                                   "level": "warning", "kind": "empty_reasoner_set", "source": "engine",
                                   "message": "no question was kept for the reasoner's set; step skipped"})
        out.metrics["set/empty"] = 1.0
        return out
    groups = [f"i{ctx.iteration}/{ctx.phase}/s{ctx.step}/p{k}" for k in range(len(batch))]
    questions = [(images_by_id[q["image_id"]], q["question"]) for q in batch]
    seeds = [ctx.seed_for("rollout", group) for group in groups]
    gens = _check_shape("visplay_sample_answers",
                        ctx.call("visplay_sample_answers", sampler=roles.sampler("reasoner"), questions=questions,
                                 n=cfg.group_size, seeds=seeds, purpose="rollout"), len(batch), cfg.group_size)
    items: list[AnswerItem] = []
    for q, group, seed, samples in zip(batch, groups, seeds, gens):
        answers, keys = extract_and_key(ctx, [g.text for g in samples])
        for j, (gen, answer, key) in enumerate(zip(samples, answers, keys)):
            item = AnswerItem(key=f"{group}/g{j}", question_key=q["key"], group=group, generation=gen,
                              extracted=answer, answer_key=key, silver_label=q["silver_label"],
                              silver_key=q["silver_key"], gold=q.get("gold"))
            items.append(item)
            out.rows["generations"].append(generation_row(ctx, item.key, "reasoner", "rollout", q["image_id"],
                                                          q["key"], gen, seed))
            out.rows["answers"].append({
                "key": item.key, "question_key": q["key"], "iteration": ctx.iteration, "phase": ctx.phase,
                "step": ctx.step, "grp": group, "extracted": answer, "answer_key": key,
                "silver_key": q["silver_key"],
            })
    totals = score(ctx, "reasoner", items, out)
    update(ctx, optimizer, "reasoner", items, totals, out)
    out.metrics["answers/silver_match_frac"] = _mean([float(i.answer_key is not None and i.answer_key == i.silver_key)
                                                     for i in items])
    return out


_KEY = re.compile(r"/s(\d+)/p(\d+)/g(\d+)$")


def key_order(key: str) -> tuple[int, int, int]:
    """Numeric (step, prompt, sample) of a row key, so s10 sorts after s2."""
    match = _KEY.search(key)
    return tuple(int(x) for x in match.groups()) if match else (0, 0, 0)  # type: ignore[return-value]


def reasoner_batches(ctx: Any, kept: list[dict[str, Any]], step: int, size: int) -> list[dict[str, Any]]:
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

