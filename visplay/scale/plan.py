"""The ``--dry-run`` plan: what a recipe would run where on a box of N GPUs, and whether it fits, without weights.

``visplay reproduce qwen-vl-3b --dry-run --gpus 8`` plans the paper's 8-GPU box on any machine. The planner asks,
it does not know: the backend plugin describes the model (``visplay_model_facts``: counts, bytes, per-token
figures, from a local config.json or built-in facts), the sampler plugins say which engines need GPUs of their own
(``visplay_engine_needs``), and every plugin reports its share of the memory (``visplay_footprint``: weights,
gradients, optimizer state, reference model, activations, engine KV budgets, snapshot sizes). This module checks
the inputs, places the processes (visplay/scale/placement.py), adds the items up per GPU and refuses
(RecipeError, exit 2) a plan that cannot fit, naming the recipe key that shrinks the largest item.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from visplay.config import RecipeError
from visplay.scale.placement import Placement, plan_placement, training_processes, visible_gpu_count

if TYPE_CHECKING:  # pragma: no cover
    from visplay.context import RunContext
    from visplay.types import Footprint, MemoryItem

NOT_GIVEN = "__not_given__"
"""Placeholder for ``model.path`` / ``data.images`` in a dry run that was not given them (see dry_run_overrides):
plugins answer from built-in facts instead, and the input check skips the key."""
PATH_KEYS = ("model.path", "data.images")


def dry_run_overrides(overrides: list[str]) -> list[str]:
    """The overrides a dry run loads a recipe with: ``model.path`` and ``data.images`` may be left out
    (placeholders that :func:`dry_run` reports as not given); the user's overrides still win."""
    return [*(f"{key}={NOT_GIVEN}" for key in PATH_KEYS), *overrides]


def check_inputs(ctx: RunContext) -> list[str]:
    """Every plugin checks the local files its settings name; 'not given' lines for what a dry run may skip."""
    skip = frozenset(key for key in PATH_KEYS if str(_select(ctx.recipe, key)) == NOT_GIVEN)
    checked = [f"checked: {line}" for line in ctx.hooks.check_inputs(skip)]
    return checked + [f"not given: {key} (needed to run, not to plan)" for key in sorted(skip)]


def _select(recipe: Any, key: str) -> Any:
    section, _, leaf = key.partition(".")
    return recipe[section].get(leaf)


# --- the plan ----------------------------------------------------------------------------------------------------


def plan_lines(recipe: Any) -> list[str]:
    """The run's shape: iterations, steps, batch sizes and generation counts (upper bounds) per iteration."""
    q, r = recipe.questioner, recipe.reasoner
    q_gen = q.steps * q.images_per_step * q.group_size
    r_set = r.set_images * r.questions_per_image
    r_gen = r.steps * r.questions_per_step * r.group_size
    return [
        f"recipe {recipe.name} (variant {recipe.variant}, seed {recipe.seed}): {recipe.iterations} iteration(s)",
        f"questioner: {q.steps} steps x {q.images_per_step} images x G={q.group_size} questions "
        f"(max {q.sampling.max_new_tokens} tokens); m={q.votes} reasoner votes per valid question",
        f"  per iteration: <= {q_gen} questions, <= {q_gen * q.votes} vote answers",
        f"reasoner set: {r.set_images} images x {r.questions_per_image} question(s), m={r.votes} votes each "
        f"(<= {r_set * r.votes} answers)",
        f"reasoner: {r.steps} steps x {r.questions_per_step} questions x {r.group_size} answers "
        f"(max {r.sampling.max_new_tokens} tokens); <= {r_gen} rollouts per iteration",
    ]


def dry_run(ctx: RunContext, visible: int | None = None, gpu_memory_gib: float = 80.0,
            nproc: int | None = None) -> str:
    """Validate what was given and describe the run on ``visible`` GPUs of ``gpu_memory_gib`` each, without
    loading a model. Raises RecipeError (exit 2) for a bad path, an impossible placement or a plan that cannot fit.
    """
    recipe = ctx.recipe
    lines = ["dry run: nothing loaded", *plan_lines(recipe), *check_inputs(ctx)]
    facts = ctx.hooks.model_facts()
    placement = plan_placement(ctx, visible)
    procs = training_processes(ctx, placement, nproc)
    if placement.mode != "cpu" and procs > len(placement.training_gpus):
        raise RecipeError(f"--nproc/distributed.nproc={procs} training processes but only "
                          f"{len(placement.training_gpus)} training GPU(s) {placement.training_gpus}")
    lines.append(f"model: {recipe.model.backend} {facts.model_type} {_count(facts.parameters)} parameters (text "
                 f"{_count(facts.text_parameters)}, vision {_count(facts.vision_parameters)}), dtype "
                 f"{recipe.model.dtype}, trainable {_count(facts.trainable_parameters)}; config from {facts.source}")
    lines.append(f"placement: {placement.describe()}")
    lines += _process_lines(recipe, placement, procs)
    parts = ctx.hooks.footprint(facts, placement, procs, gpu_memory_gib)
    lines += [line for _, part in parts for line in part.lines]
    memory = memory_table(parts)
    lines.append(checkpoint_line(recipe, memory))
    lines.append(f"memory per GPU (GiB, {gpu_memory_gib:g} GiB GPUs; activations: the largest training forward):")
    for where, items in memory.items():
        if not where.startswith(("disk/", "host/")):
            lines.append(f"  {where}: " + ", ".join(f"{i.name} {i.gib:.2f}" for i in items)
                         + f", total {_total(items):.2f}")
    for where, items in memory.items():
        if where.startswith("host/"):
            lines.append(f"host memory per process (GiB), {where[5:]}: " + ", ".join(
                f"{i.name} {i.gib:.2f}" for i in items) + f", total {_total(items):.2f}")
    lines += _sleep_lines(memory, placement, gpu_memory_gib, ctx)
    problems = [p for _, part in parts for p in part.problems]
    problems += fit_problems(recipe, memory, placement, procs, gpu_memory_gib, ctx)
    if problems:
        raise RecipeError("the plan does not fit:\n  " + "\n  ".join(problems) + "\n" + "\n".join(lines))
    lines.append(_fits_line(memory, placement, gpu_memory_gib))
    return "\n".join(lines)


def plan_for_box(session: Any, recipe: Any, overrides: list[str], visible: int | None = None,
                 gpu_memory_gib: float = 80.0, nproc: int | None = None) -> str:
    """:func:`dry_run` of ``recipe`` with ``overrides``; when the recipe as given does not place or fit on the box,
    the plugins' choices for it (``visplay_plan_choices``, keys the user set excepted) are tried in turn and the
    first that fits is planned, named on the plan's first line. Raises the recipe's own RecipeError if none fits."""
    given = dry_run_overrides(list(overrides))
    cfg = session.load_recipe(recipe, given)
    ctx = session.context(cfg, cfg.run_dir)
    try:
        return dry_run(ctx, visible, gpu_memory_gib, nproc)
    except RecipeError as exc:
        refused = exc
    user_keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    box = visible if visible is not None else visible_gpu_count()
    tried = []
    for choice in ctx.hooks.plan_choices(box):
        if any(o.split("=", 1)[0] in user_keys for o in choice):
            continue
        try:
            chosen = session.load_recipe(recipe, [*given, *choice])
            # the recipe's own run_dir: the checks (a sink's folder) look there, never in the current folder
            text = dry_run(session.context(chosen, chosen.run_dir), visible, gpu_memory_gib, nproc)
        except RecipeError as exc:
            lines = str(exc).splitlines()
            first = f"{lines[0]} {lines[1].strip()}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
            tried.append(f"{' '.join(choice)}: {first}")
            continue
        why = str(refused).splitlines()[0]
        return (f"chose: {' '.join(choice)} for {box} GPU(s) of {gpu_memory_gib:g} GiB; give them to run this layout "
                f"(the recipe as given: {why})\n" + text)
    if tried:
        raise RecipeError(f"{refused}\nalso tried for {box} GPU(s) of {gpu_memory_gib:g} GiB, none fits:\n  "
                          + "\n  ".join(tried)) from refused
    raise refused


def memory_table(parts: list[tuple[str, Footprint]]) -> dict[str, list[MemoryItem]]:
    """{where: items} in the order the plugins reported them (``training`` first)."""
    table: dict[str, list[MemoryItem]] = defaultdict(list)
    for _, part in parts:
        for item in part.items:
            table[item.where].append(item)
    return dict(sorted(table.items(), key=lambda kv: (kv[0] != "training", kv[0])))


def _total(items: list[MemoryItem]) -> float:
    return sum(i.gib for i in items)


def checkpoint_line(recipe: Any, memory: dict[str, list[MemoryItem]]) -> str:
    every, keep = recipe.checkpoint.every, recipe.checkpoint.keep
    cadence = "every step" if int(every) == 1 else f"every {every} steps"
    snapshot = _total(memory.get("disk/snapshot", []))
    weights = _total(memory.get("disk/weights", []))
    return (f"checkpoints: {cadence}, the newest {keep} kept; {_size(snapshot)} per snapshot (weights + optimizer "
            f"state), {_size(weights)} per role per iteration (weights)")


def _size(gib: float) -> str:
    return f"{gib:.1f} GiB" if gib >= 0.1 else f"{gib * 1024:.1f} MiB"


# --- fit checks --------------------------------------------------------------------------------------------------


def fit_problems(recipe: Any, memory: dict[str, list[MemoryItem]], placement: Placement, nproc: int,
                 gpu_memory_gib: float, ctx: RunContext) -> list[str]:
    """Why the plan cannot fit, each naming the key to change (empty: it fits)."""
    if placement.mode == "cpu":
        return []
    train = _total(memory.get("training", []))
    need = f"training needs {train:.1f} GiB per GPU"
    if placement.mode == "shared":
        update, sampling, asleep = _shared_peaks(memory, placement, gpu_memory_gib, ctx)
        if max(update, sampling) <= gpu_memory_gib:
            return []
        engines = sampling - _total([i for i in memory.get("training", []) if not i.transient])
        need += (f" beside {engines:.1f} GiB of sampling engines on the same GPU" if not asleep else
                 f" (update peak {update:.1f} GiB with the engines asleep, sampling peak {sampling:.1f} GiB)")
    elif train <= gpu_memory_gib:
        return []
    return [f"{need} of {gpu_memory_gib:g} GiB; change {_training_fix(recipe, memory, placement, nproc)}"]


def _shared_peaks(memory: dict[str, list[MemoryItem]], placement: Placement, gpu_memory_gib: float,
                  ctx: RunContext) -> tuple[float, float, float]:
    """On a GPU that training shares with the engines: (peak during an update, peak while sampling, GiB the
    sleeping engines free). An engine that sleeps (``EngineNeeds.sleeps``) holds nothing during the update; while
    sampling, training holds everything but its transient items (activations)."""
    train = memory.get("training", [])
    engines = [needs for role in placement.engine_gpus if (needs := ctx.hooks.engine_needs(role)) is not None]
    asleep = sum(n.memory_fraction * gpu_memory_gib for n in engines if n.sleeps)
    awake = sum(n.memory_fraction * gpu_memory_gib for n in engines if not n.sleeps)
    resident = _total([i for i in train if not i.transient])
    return _total(train) + awake, resident + awake + asleep, asleep


def _sleep_lines(memory: dict[str, list[MemoryItem]], placement: Placement, gpu_memory_gib: float,
                 ctx: RunContext) -> list[str]:
    if placement.mode != "shared":
        return []
    update, sampling, asleep = _shared_peaks(memory, placement, gpu_memory_gib, ctx)
    if not asleep:
        return [f"shared GPU: the engines keep their memory during the update (no sleep mode): peak "
                f"{update:.2f} GiB"]
    return [f"shared GPU: the engines sleep during the update (vLLM sleep mode level 1: weights to host memory, KV "
            f"cache freed), {asleep:.2f} GiB freed: update peak {update:.2f} GiB, sampling peak {sampling:.2f} GiB "
            f"(training state + engines, no activations)"]


def _training_fix(recipe: Any, memory: dict[str, list[MemoryItem]], placement: Placement, nproc: int) -> str:
    gpus = len(placement.training_gpus)
    if recipe.distributed.strategy != "fsdp":
        return f"distributed.strategy=fsdp (shards the training state over {max(nproc, gpus)} processes)"
    if nproc < gpus:
        return f"distributed.nproc=0 (one FSDP process per training GPU: {gpus})"
    fixable = [i for i in memory.get("training", []) if i.fix and not i.fix.startswith("distributed.")]
    if fixable:
        largest = max(fixable, key=lambda i: i.gib)
        return f"{largest.fix} ({largest.name} {largest.gib:.1f} GiB is the largest part that setting shrinks)"
    return "more training GPUs (distributed.training_gpus)"


def _fits_line(memory: dict[str, list[MemoryItem]], placement: Placement, gpu_memory_gib: float) -> str:
    if placement.mode == "cpu":
        return "fits: no GPU visible; pass --gpus N to plan a GPU box"
    train = _total(memory.get("training", []))
    if train <= 0.9 * gpu_memory_gib:
        return "fits: yes"
    fixable = [i for i in memory.get("training", []) if i.fix and not i.fix.startswith("distributed.")]
    hint = f"; {max(fixable, key=lambda i: i.gib).fix} shrinks the largest part" if fixable else ""
    return f"fits: yes, with under 10% to spare (training {train:.1f} of {gpu_memory_gib:g} GiB){hint}"


def _process_lines(recipe: Any, placement: Placement, procs: int) -> list[str]:
    strategy = recipe.distributed.strategy if procs > 1 else "single process"
    gpus = placement.training_gpus[:procs] if placement.training_gpus else ["cpu"] * procs
    lines = [f"training: {procs} process(es), {strategy}, backend {recipe.distributed.backend}; rank -> GPU "
             + ", ".join(f"{r}->{g}" for r, g in enumerate(gpus))]
    for role, engine_gpus in placement.engine_gpus.items():
        lines.append(f"engine {role}: sampler {placement.samplers[role]} in its own processes on GPU(s) "
                     f"{engine_gpus}, weights pushed after every {role} update")
    for role, sampler in placement.samplers.items():
        if role not in placement.engine_gpus:
            lines.append(f"sampler {role}: {sampler}" + ("" if placement.mode == "cpu"
                                                        else " (the training processes sample)"))
    return lines


def _count(n: int) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e8 else f"{n / 1e6:.2f}M"

