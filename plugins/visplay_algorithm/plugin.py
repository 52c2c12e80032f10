"""visplay algorithm plugin: the VisPlay method (paper and released variants) as hook implementations.

Settings: the plugin's own section ``plugins.algorithm`` (visplay_algorithm/options.py: rewards, the filter band,
prompt texts, each with its variant default), the recipe's ``variant``, and the core's ``questioner.sampling`` and
``reasoner.sampling``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from visplay.api import (
    AnswerItem,
    FilterDecision,
    ParsedQuestion,
    Prompt,
    QuestionItem,
    SamplingParams,
    Vote,
    hookimpl,
    majority_vote,
    plugin_section,
)
from visplay_algorithm import prompts, released_prompts
from visplay_algorithm.answer_key import canonical_key
from visplay_algorithm.diversity import cluster_shares
from visplay_algorithm.options import AlgorithmOptions, FilterOptions
from visplay_algorithm.parsing import extract_answer, parse_question, reasoner_format_ok, spacing_edit
from visplay_algorithm.released_grader import (
    released_accuracy,
    released_answer,
    released_boxed,
    released_equivalent,
    released_format_ok,
    released_key,
)
from visplay_algorithm.rewards import (
    QUESTIONER_COMPONENTS,
    REASONER_COMPONENTS,
    combine_questioner,
    combine_reasoner,
    uncertainty,
)

RELEASED_VOTE_SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": 40}
"""How the released code samples votes (start_vllm_server.py:51-58, evaluate.py:98-105); rollouts use the recipe's."""
_load_templates = released_prompts.cached_loader()


@hookimpl
def visplay_recipe_sections() -> dict[str, type]:
    return {"algorithm": AlgorithmOptions}


@hookimpl
def visplay_names() -> dict[str, list[str]]:
    return {"reward_component": [*QUESTIONER_COMPONENTS, *REASONER_COMPONENTS]}


@hookimpl
def visplay_add_commands(subparsers: Any) -> dict[str, Any]:
    return released_prompts.add_command(subparsers)


def _options(ctx: Any) -> AlgorithmOptions:
    return plugin_section(ctx.recipe, "algorithm")


def _params(section: Any, n: int, seed: int, **override: float) -> SamplingParams:
    values = {"temperature": section.temperature, "top_p": section.top_p, "top_k": section.top_k,
              "max_new_tokens": section.max_new_tokens, **override}
    return SamplingParams(n=int(n), temperature=float(values["temperature"]), top_p=float(values["top_p"]),
                          top_k=int(values["top_k"]), max_new_tokens=int(values["max_new_tokens"]), seed=int(seed))


def _templates(options: AlgorithmOptions) -> dict[str, str] | None:
    folder = options.prompt_dir
    return _load_templates(folder) if folder else None


def _check_seeds(what: str, items: Sequence[Any], seeds: Sequence[int]) -> None:
    if len(items) != len(seeds):
        raise ValueError(f"{what}: {len(items)} inputs but {len(seeds)} seeds (one seed per input)")


# --- 1. question generation and 2. answer sampling ----------------------------------------------------------------


@hookimpl
def visplay_generate_questions(ctx, sampler, images, n, seeds):
    """G questioner samples per image with the variant's prompt and ``questioner.sampling`` settings; the
    reasoner set's (phase ``reasoner_set``) with ``plugins.algorithm.set_sampling`` over them."""
    _check_seeds("visplay_generate_questions", images, seeds)
    options = _options(ctx)
    templates = _templates(options)
    if templates is not None:
        system, user = released_prompts.released_prompt_texts(templates, "question", ctx.phase)
    else:
        system, user = prompts.questioner_texts(ctx.variant)
        system = system if options.questioner_system is None else options.questioner_system
        user = user if options.questioner_user is None else options.questioner_user
    batch = [Prompt(user=user, image=image, system=system) for image in images]
    override = options.set_sampling.overrides() if ctx.phase == "reasoner_set" else {}
    params = [_params(ctx.recipe.questioner.sampling, n, seed, **override) for seed in seeds]
    return sampler.sample(batch, params)


@hookimpl
def visplay_sample_answers(ctx, sampler, questions, n, seeds, purpose):
    """n reasoner samples per (image, question): think, then ``\\boxed{}``; same prompt for votes and rollouts.

    ``released``: votes sample with top_k 40, top_p 1, temperature 1; with ``prompt_dir`` each purpose and phase
    has its released template (the vote's ``{qtype}`` is the question's own type, ``AskedQuestion.qtype``).
    """
    _check_seeds("visplay_sample_answers", questions, seeds)
    options = _options(ctx)
    templates = _templates(options)
    if templates is not None:
        texts = [released_prompts.released_prompt_texts(templates, purpose, ctx.phase, q.text, q.qtype or "")
                 for q in questions]
        batch = [Prompt(user=user, image=q.image, system=system) for q, (system, user) in zip(questions, texts)]
    else:
        system = prompts.REASONER_SYSTEM if options.reasoner_system is None else options.reasoner_system
        suffix = prompts.REASONER_SUFFIX if options.reasoner_suffix is None else options.reasoner_suffix
        batch = [Prompt(user=f"{q.text}{suffix}", image=q.image, system=system) for q in questions]
    override = RELEASED_VOTE_SAMPLING if ctx.variant == "released" and purpose == "vote" else {}
    params = [_params(ctx.recipe.reasoner.sampling, n, seed, **override) for seed in seeds]
    return sampler.sample(batch, params)


# --- parsing and answers ----------------------------------------------------------------------------------------


@hookimpl
def visplay_parse_question(ctx, text) -> ParsedQuestion:
    """Validity per variant (and, for ``released``, per phase); the stated answer is kept, never a label."""
    return parse_question(text, ctx.variant, ctx.phase)


@hookimpl
def visplay_extract_answers(ctx, texts) -> list[str | None]:
    """Last ``\\boxed{}`` of each text; None without one ("None" under ``reward.none_as_vote``).

    ``released``: mathruler's extraction (the last ``\\boxed{`` even if unclosed: then "None"); an empty box is
    None (skipped by the released vote loops).
    """
    none_as_vote = bool(_options(ctx).reward.none_as_vote)
    if ctx.variant == "released":
        return [released_answer(text, none_as_vote=none_as_vote) for text in texts]
    return [extract_answer(text, none_as_vote=none_as_vote) for text in texts]


@hookimpl
def visplay_answer_key(ctx, answer) -> str | None:
    """``paper``: the canonical key (visplay_algorithm.answer_key); ``released``: mathruler's normalisations.

    A tryfirst plugin can add rules.
    """
    if ctx.variant == "released":
        return released_key(answer)
    return canonical_key(answer)


@hookimpl
def visplay_vote(ctx, answers, keys) -> Vote | None:
    """``released``: distinct keys merged by the released pairwise test; confidence over all m samples in
    questioner training (start_vllm_server.py:240) and over the answered ones for the reasoner's set
    (evaluate.py:153, 200). ``paper``: the count of equal keys, a missing answer voting "None" under
    ``reward.none_as_vote``."""
    if ctx.variant != "released":
        return majority_vote(answers, keys, none_as_vote=bool(_options(ctx).reward.none_as_vote))
    denominator = "answered" if ctx.phase == "reasoner_set" else "samples"
    return majority_vote(answers, keys, equivalent=released_equivalent, denominator=denominator)


# --- 3. reward ------------------------------------------------------------------------------------------------


def diversity_penalties(questions: Sequence[str], scopes: Sequence[str], lam: float, threshold: float) -> list[float]:
    """lambda * |C_k| / N, clustering separately within each scope value (an image's group, or one batch)."""
    members: dict[str, list[int]] = {}
    for index, scope in enumerate(scopes):
        members.setdefault(scope, []).append(index)
    penalty = [0.0] * len(questions)
    for indices in members.values():
        shares = cluster_shares([questions[i] for i in indices], threshold)
        for i, share in zip(indices, shares):
            penalty[i] = lam * share
    return penalty


def questioner_components(ctx: Any, items: Sequence[QuestionItem]) -> dict[str, list[float]]:
    reward = _options(ctx).reward
    valid = [1.0 if item.parsed.valid else 0.0 for item in items]
    unc = [uncertainty(item.vote.confidence, ctx.variant) if item.parsed.valid and item.vote is not None else 0.0
           for item in items]
    # Invalid questions enter the clustering as "" (as in the released code); an empty question has BLEU 0 with
    # everything, so it is a singleton and only enlarges N.
    # The released reward clusters every parsed question text, voted on or not (cot_val.py:189-202).
    released = ctx.variant == "released"
    texts = [(item.parsed.question or "") if item.parsed.valid or released else "" for item in items]
    scopes = [item.group for item in items] if reward.diversity_scope == "image" else ["batch"] * len(items)
    div = diversity_penalties(texts, scopes, float(reward.diversity_lambda), float(reward.bleu_threshold))
    return {"uncertainty": unc, "diversity": div, "validity": valid}


def reasoner_components(items: Sequence[AnswerItem], variant: str = "paper") -> dict[str, list[float]]:
    if variant == "released":
        return released_reasoner_components(items)
    accuracy = [1.0 if item.answer_key is not None and item.answer_key == item.silver_key else 0.0 for item in items]
    fmt = [1.0 if reasoner_format_ok(item.generation.text) else 0.0 for item in items]
    return {"accuracy": accuracy, "format": fmt}


def released_reasoner_components(items: Sequence[AnswerItem]) -> dict[str, list[float]]:
    """cot_val_solver.py:77-92: on the spacing-edited response, grade_answer(extracted, silver label) and the
    strict format regex."""
    accuracy, fmt = [], []
    for item in items:
        answer = released_boxed(spacing_edit(item.generation.text))
        label = item.silver_label
        accuracy.append(0.0 if label is None else released_accuracy("None" if answer is None else answer, label))
        fmt.append(1.0 if released_format_ok(item.generation.text) else 0.0)
    return {"accuracy": accuracy, "format": fmt}


@hookimpl
def visplay_reward_components(ctx, role, items) -> dict[str, list[float]] | None:
    """questioner: uncertainty, diversity (the penalty, positive), validity; reasoner: accuracy, format."""
    if role == "questioner":
        return questioner_components(ctx, items)
    if role == "reasoner":
        return reasoner_components(items, ctx.variant)
    return None


def _extra_weights(ctx: Any, components: dict[str, list[float]]) -> dict[str, float]:
    """``reward.weights`` of this call's extra (non-built-in) components; a weight naming a component this role
    does not produce is the other role's (names are checked at load: AlgorithmOptions.validate)."""
    builtin = QUESTIONER_COMPONENTS + REASONER_COMPONENTS
    return {str(name): float(weight) for name, weight in (_options(ctx).reward.weights or {}).items()
            if str(name) in components and str(name) not in builtin}


@hookimpl
def visplay_combine_rewards(ctx, role, components, items) -> list[float] | None:
    """The recipe's rule (``reward.combine``) plus ``reward.weights`` x each extra (third-party) component."""
    builtin = QUESTIONER_COMPONENTS if role == "questioner" else REASONER_COMPONENTS if role == "reasoner" else None
    if builtin is None:
        return None
    for name, values in components.items():
        if len(values) != len(items):
            raise ValueError(f"reward component {name!r} has {len(values)} values for {len(items)} items")
    missing = [name for name in builtin if name not in components]
    if missing:
        raise ValueError(f"{role} reward: built-in component(s) {missing} missing (is the algorithm plugin "
                         f"blocked?)")
    reward = _options(ctx).reward
    rule = str(reward.combine)
    weights = {str(k): float(v) for k, v in (reward.weights or {}).items()}
    if role == "questioner":
        total = combine_questioner(rule, components["uncertainty"], components["diversity"], components["validity"],
                                   weights)
    else:
        total = combine_reasoner(rule, components["accuracy"], components["format"], float(reward.format_weight),
                                 weights)
    for name, weight in _extra_weights(ctx, components).items():
        total = [t + weight * v for t, v in zip(total, components[name])]
    return total


# --- 4. filtering -----------------------------------------------------------------------------------------------


def released_skip_reason(question: str, label: str) -> str | None:
    """The released evaluate.py/upload.py extra skip rules; None when none applies."""
    if "证明" in question:
        return "released skip rule: proof question ('证明')"
    if "box" in question.lower():
        return "released skip rule: question mentions 'box'"
    if "text" in label.lower():
        return "released skip rule: silver label contains 'text'"
    if label == "None":
        return "released skip rule: silver label is 'None'"
    return None


def filter_decision(item: QuestionItem, band: FilterOptions) -> FilterDecision:
    """Keep a question for the reasoner's set only if valid, voted, labelled and inside the confidence band."""
    if not item.parsed.valid:
        return FilterDecision(False, f"invalid question: {item.parsed.reason}")
    if item.vote is None:
        return FilterDecision(False, "no vote")
    label = item.vote.silver_label
    if label is None or not label.strip():
        return FilterDecision(False, "empty silver label")
    if band.released_skip_rules:
        reason = released_skip_reason(item.parsed.question or "", label)
        if reason:
            return FilterDecision(False, reason)
    c = item.vote.confidence
    if not band.keeps(c):
        low, high = float(band.band[0]), float(band.band[1])
        return FilterDecision(False, f"confidence {c:.4f} {'below' if c < low else 'above'} band [{low}, {high}]")
    return FilterDecision(True, "kept")


@hookimpl
def visplay_filter_questions(ctx, items) -> list[FilterDecision]:
    """Confidence band (inclusive), validity, empty labels, and optionally the released skip rules."""
    band = _options(ctx).filter
    return [filter_decision(item, band) for item in items]
