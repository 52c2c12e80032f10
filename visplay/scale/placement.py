"""GPU placement, path checks and the ``--dry-run`` plan: what runs where, and roughly how much memory it needs.

The paper ran on 8 GPUs: 4 served the frozen reasoner through vLLM, 4 trained. Here the split is
``recipe.distributed.sampling_gpus`` / ``training_gpus`` (indices into the visible devices); left empty, it is
decided from what is visible: no GPU -> everything on CPU; one GPU -> shared by sampling and training; more -> the
first half samples (only if a role uses ``sampler: vllm``), the rest trains (the paper's 4 + 4 for 8). The plan is
validated against CUDA_VISIBLE_DEVICES / ``torch.cuda.device_count()`` and recorded in the run log as an event of
kind ``placement``.

Nothing here loads a model: parameter counts come from the model folder's config.json (or the tiny section of
the recipe), so ``visplay run <recipe> --dry-run`` works without weights.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from visplay.config import RecipeError

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GIB = 1024**3


# --- placement ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Which devices sample and which train. ``mode``: ``cpu``, ``shared`` (one GPU does both) or ``split``."""

    mode: str
    visible_gpus: int
    sampling_gpus: list[int] = field(default_factory=list)
    training_gpus: list[int] = field(default_factory=list)
    samplers: dict[str, str] = field(default_factory=dict)
    engine_gpus: dict[str, list[int]] = field(default_factory=dict)
    """GPUs of each role's vLLM engine: with two engines and >= 2 sampling GPUs each gets half, else they share."""

    def describe(self) -> str:
        roles = ", ".join(f"{r}: {s}" for r, s in self.samplers.items())
        if self.mode == "cpu":
            return f"cpu (no GPU visible); samplers {roles}"
        engines = "".join(f"; {r} engine on {g}" for r, g in self.engine_gpus.items())
        return (f"{self.mode} over {self.visible_gpus} visible GPU(s): sampling on {self.sampling_gpus or 'none'}, "
                f"training on {self.training_gpus}; samplers {roles}{engines}")


def visible_gpu_count() -> int:
    """GPUs this process can see: CUDA_VISIBLE_DEVICES when set, else ``torch.cuda.device_count()``."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return len([d for d in env.split(",") if d.strip() and d.strip() != "-1"])
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def plan_placement(recipe: Any, visible: int | None = None) -> Placement:
    """Decide and validate the placement for ``recipe`` given ``visible`` GPUs (default: count them).

    Raises RecipeError naming ``distributed.sampling_gpus`` / ``distributed.training_gpus`` when an index is
    not visible, listed twice, or when the two sets overlap on a multi-GPU machine.
    """
    visible = visible_gpu_count() if visible is None else visible
    samplers = {role: str(recipe.sampler[role]) for role in ("questioner", "reasoner")}
    uses_vllm = "vllm" in samplers.values()
    sampling = [int(i) for i in recipe.distributed.sampling_gpus]
    training = [int(i) for i in recipe.distributed.training_gpus]
    if visible == 0:
        if sampling or training:
            raise RecipeError(f"distributed.sampling_gpus={sampling} / training_gpus={training} name GPUs, but none "
                              "is visible (CUDA_VISIBLE_DEVICES / torch.cuda.device_count() is 0)")
        return Placement("cpu", 0, [], [], samplers)
    if not sampling and not training:
        sampling, training = _default_split(visible, uses_vllm)
    elif not training:
        training = [i for i in range(visible) if i not in sampling] or list(sampling)
    elif not sampling and uses_vllm:
        sampling = [i for i in range(visible) if i not in training] or list(training)
    for key, ids in (("sampling_gpus", sampling), ("training_gpus", training)):
        bad = [i for i in ids if not 0 <= i < visible]
        if bad:
            raise RecipeError(f"distributed.{key}: GPU index(es) {bad} not visible (visible: 0..{visible - 1}; "
                              "check CUDA_VISIBLE_DEVICES)")
        if len(set(ids)) != len(ids):
            raise RecipeError(f"distributed.{key}: GPU listed twice in {ids}")
    overlap = sorted(set(sampling) & set(training))
    if overlap and visible > 1:
        raise RecipeError(f"distributed.sampling_gpus and training_gpus overlap on {overlap}; with {visible} GPUs "
                          "give each role its own devices (sharing one GPU is only the single-GPU default)")
    nproc = int(recipe.distributed.nproc)
    if nproc > len(training):
        raise RecipeError(f"distributed.nproc={nproc} training processes but only {len(training)} training GPU(s) "
                          f"{training}")
    mode = "shared" if overlap or not sampling and visible == 1 else "split"
    sampling = sampling if uses_vllm else []
    engines = _engine_gpus(recipe, samplers, sampling, shared_with_training=bool(overlap))
    return Placement(mode, visible, sampling, training, samplers, engines)


def _engine_gpus(recipe: Any, samplers: dict[str, str], sampling: list[int],
                 shared_with_training: bool) -> dict[str, list[int]]:
    """Split the sampling GPUs between the vLLM engines and check tensor parallelism and memory shares fit."""
    roles = [r for r, s in samplers.items() if s == "vllm"]
    if not roles or not sampling:
        return {}
    if len(roles) == 2 and len(sampling) >= 2:
        half = len(sampling) // 2
        engines = {roles[0]: sampling[:half], roles[1]: sampling[half:]}
    else:
        engines = {r: list(sampling) for r in roles}
    vllm = recipe.plugins.vllm
    tp = int(vllm.tensor_parallel_size) * int(vllm.pipeline_parallel_size)
    for role, gpus in engines.items():
        if tp > len(gpus):
            raise RecipeError(f"plugins.vllm.tensor_parallel_size={vllm.tensor_parallel_size} needs {tp} GPUs per "
                              f"engine, but the {role} engine has {gpus} (distributed.sampling_gpus)")
    sharing = max(sum(1 for g in engines.values() if gpu in g) for gpu in sampling) + int(shared_with_training)
    if sharing * float(vllm.gpu_memory_utilization) > 0.95:
        raise RecipeError(f"plugins.vllm.gpu_memory_utilization={vllm.gpu_memory_utilization}: {sharing} users share "
                          f"a GPU (engines {', '.join(roles)}{' and training' if shared_with_training else ''}); "
                          f"their shares must add up to <= 0.95")
    return engines


def _default_split(visible: int, uses_vllm: bool) -> tuple[list[int], list[int]]:
    if visible == 1:
        return ([0] if uses_vllm else []), [0]
    if not uses_vllm:
        return [], list(range(visible))
    half = visible // 2
    return list(range(half)), list(range(half, visible))


def training_device(recipe: Any, placement: Placement | None = None, local_rank: int = 0) -> str:
    """The torch device a training process should use: ``recipe.model.device`` on CPU or when it names a GPU
    index explicitly; for plain ``cuda``, the training GPU of this local rank (e.g. ``cuda:4`` on the paper's
    8-GPU split, so training does not land on a sampling GPU)."""
    device = str(recipe.model.device)
    if device != "cuda":
        return device
    placement = placement or plan_placement(recipe)
    if not placement.training_gpus:
        return device
    if local_rank >= len(placement.training_gpus):
        raise RecipeError(f"local rank {local_rank} has no training GPU (distributed.training_gpus="
                          f"{placement.training_gpus})")
    return f"cuda:{placement.training_gpus[local_rank]}"


def log_placement(log: Any, placement: Placement) -> None:
    """Record the placement in the run log (event kind ``placement``; payload = the Placement as a dict)."""
    log.event("placement", placement.describe(), level="info", source="visplay.scale.placement", payload=asdict(placement))


def cuda_visible_devices(gpus: list[int]) -> str:
    """The CUDA_VISIBLE_DEVICES value that restricts a process to ``gpus`` (indices into the visible list)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    physical = [d.strip() for d in env.split(",")] if env else [str(i) for i in range(max(gpus, default=-1) + 1)]
    return ",".join(physical[i] for i in gpus)


# --- paths -------------------------------------------------------------------------------------------------------


def validate_paths(recipe: Any) -> list[str]:
    """Check the local files a recipe needs, before anything is loaded; return what was checked.

    Raises RecipeError with the recipe's ``setup`` text (what to download, where to put it, how to pass it) when
    ``model.path`` (backend ``hf``) is not a model folder with a config.json, or ``data.images`` (sources
    ``folder``/``parquet``) does not exist.
    """
    checked = []
    hint = f"\n{recipe.setup.strip()}" if recipe.get("setup") else ""
    if recipe.model.backend == "hf":
        path = recipe.model.path
        if not path:
            raise RecipeError(f"model.path is required for model.backend=hf{hint}")
        folder = Path(str(path)).expanduser()
        if not (folder / "config.json").is_file():
            what = "does not exist" if not folder.exists() else "has no config.json (not a model folder)"
            raise RecipeError(f"model.path={folder} {what}{hint}")
        checked.append(f"model.path {folder} (config.json found)")
    if recipe.data.source in ("folder", "parquet"):
        images = recipe.data.images
        if not images:
            raise RecipeError(f"data.images is required for data.source={recipe.data.source}{hint}")
        target = Path(str(images)).expanduser()
        if not target.exists():
            raise RecipeError(f"data.images={target} does not exist{hint}")
        checked.append(f"data.images {target}")
    return checked


# --- parameter counts from config.json ---------------------------------------------------------------------------


def read_model_config(recipe: Any) -> dict[str, Any]:
    """The model's config as a dict: config.json of ``model.path`` (backend hf) or the tiny section."""
    if recipe.model.backend == "hf":
        path = Path(str(recipe.model.path)).expanduser() / "config.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RecipeError(f"model.path: cannot read {path}: {exc}") from exc
    tiny = recipe.plugins.models.tiny
    return {
        "model_type": tiny.architecture, "vocab_size": tiny.vocab_size, "hidden_size": tiny.hidden_size,
        "num_hidden_layers": tiny.num_layers, "num_attention_heads": tiny.num_heads,
        "num_key_value_heads": tiny.num_kv_heads, "intermediate_size": tiny.intermediate_size,
        "tie_word_embeddings": True,
        "vision_config": {"hidden_size": tiny.vision_hidden_size, "embed_dim": tiny.vision_hidden_size,
                          "depth": tiny.vision_depth, "num_heads": tiny.vision_heads,
                          "intermediate_size": 2 * tiny.vision_hidden_size, "mlp_ratio": 2,
                          "out_hidden_size": tiny.hidden_size, "patch_size": 14, "temporal_patch_size": 2,
                          "spatial_merge_size": 2, "in_chans": 3},
    }


def _text(cfg: dict[str, Any]) -> dict[str, Any]:
    # transformers 5 writes the language model's keys under text_config; hub config.json files have them flat.
    return {**cfg, **cfg.get("text_config", {})}


def count_parameters(cfg: dict[str, Any]) -> dict[str, int]:
    """{"text": n, "vision": n, "total": n} for a Qwen2-VL / Qwen2.5-VL config (MiMo-VL uses Qwen2.5-VL).

    Counted from the layer shapes of transformers' implementation (q/k/v biases, untied or tied lm_head, the
    vision patch embedding, blocks and patch merger); tests check it against a meta-device instantiation.
    """
    t = _text(cfg)
    h, layers, inter, vocab = t["hidden_size"], t["num_hidden_layers"], t["intermediate_size"], t["vocab_size"]
    heads, kv = t["num_attention_heads"], t.get("num_key_value_heads", t["num_attention_heads"])
    head_dim = t.get("head_dim") or h // heads
    attn = h * heads * head_dim + heads * head_dim + 2 * (h * kv * head_dim + kv * head_dim) + heads * head_dim * h
    per_layer = attn + 3 * h * inter + 2 * h
    text = vocab * h + layers * per_layer + h + (0 if t.get("tie_word_embeddings", False) else vocab * h)
    vision = _vision_parameters(cfg.get("model_type", "qwen2_5_vl"), cfg.get("vision_config", {}), h)
    return {"text": text, "vision": vision, "total": text + vision}


def _vision_parameters(model_type: str, v: dict[str, Any], text_hidden: int) -> int:
    if not v:
        return 0
    patch = v.get("in_chans", v.get("in_channels", 3)) * v.get("temporal_patch_size", 2) * v.get("patch_size", 14) ** 2
    merge = v.get("spatial_merge_size", 2) ** 2
    if model_type == "qwen2_vl":
        dim = v.get("embed_dim", 1280)
        mlp = int(dim * v.get("mlp_ratio", 4))
        block = 2 * 2 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + (dim * mlp + mlp) + (mlp * dim + dim)
        merger = 2 * dim + (dim * merge) ** 2 + dim * merge + dim * merge * v.get("hidden_size", text_hidden) \
            + v.get("hidden_size", text_hidden)
        return patch * dim + v["depth"] * block + merger
    dim, mlp = v.get("hidden_size", 1280), v.get("intermediate_size", 3420)
    out = v.get("out_hidden_size", text_hidden)
    block = 2 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + 2 * (dim * mlp + mlp) + (mlp * dim + dim)
    merger = dim + (dim * merge) ** 2 + dim * merge + dim * merge * out + out
    return patch * dim + v["depth"] * block + merger


def kv_bytes_per_token(cfg: dict[str, Any], dtype_bytes: int) -> int:
    """KV-cache bytes per token: 2 (K and V) x layers x kv heads x head_dim x dtype bytes."""
    t = _text(cfg)
    head_dim = t.get("head_dim") or t["hidden_size"] // t["num_attention_heads"]
    return 2 * t["num_hidden_layers"] * t.get("num_key_value_heads", t["num_attention_heads"]) * head_dim * dtype_bytes


def lora_parameters(cfg: dict[str, Any], lora: Any) -> int:
    """Adapter parameters r x (in + out) for each text-layer projection named in ``lora.target_modules``."""
    t = _text(cfg)
    h, inter = t["hidden_size"], t["intermediate_size"]
    heads, kv = t["num_attention_heads"], t.get("num_key_value_heads", t["num_attention_heads"])
    head_dim = t.get("head_dim") or h // heads
    shapes = {"q_proj": (h, heads * head_dim), "k_proj": (h, kv * head_dim), "v_proj": (h, kv * head_dim),
              "o_proj": (heads * head_dim, h), "gate_proj": (h, inter), "up_proj": (h, inter),
              "down_proj": (inter, h)}
    per_layer = sum(int(lora.r) * (i + o) for name, (i, o) in shapes.items() if name in str(lora.target_modules))
    return per_layer * t["num_hidden_layers"]


# --- memory estimate and the plan --------------------------------------------------------------------------------


def estimate_memory(recipe: Any, cfg: dict[str, Any], placement: Placement,
                    gpu_memory_gib: float = 80.0) -> dict[str, dict[str, float]]:
    """Per-GPU memory (GiB) per role, from parameter counts only (activations are not included).

    training: weights P*b + grads T*b + AdamW moments 2*T*b (torch keeps them in the parameter dtype) + a frozen
    reference copy P*b when the KL term is on and LoRA is off (with LoRA the reference is the adapter disabled);
    FSDP divides all of it by the training processes (distributed.nproc), DDP replicates it. sampling (per vLLM engine): weights
    P*b / tensor_parallel_size, the KV-cache budget gpu_memory_utilization * GPU memory - weights, and how many
    full-length (max_model_len) sequences that budget holds (KV bytes per token / tensor_parallel_size).
    """
    b = DTYPE_BYTES[str(recipe.model.dtype)]
    total = count_parameters(cfg)["total"]
    trainable = lora_parameters(cfg, recipe.plugins.models.lora) if recipe.plugins.models.lora.enabled else total
    reference = total if recipe.optimizer.kl_coef > 0 and not recipe.plugins.models.lora.enabled else 0
    shards = max(int(recipe.distributed.nproc), 1) if recipe.distributed.strategy == "fsdp" else 1
    train = {"weights": total * b, "grads": trainable * b, "adamw": 2 * trainable * b, "reference": reference * b}
    out: dict[str, dict[str, float]] = {"training": {k: v / shards / GIB for k, v in train.items()}}
    out["training"]["total"] = sum(out["training"].values())
    vllm = recipe.plugins.vllm
    kv_token = kv_bytes_per_token(cfg, b) / int(vllm.tensor_parallel_size)  # heads are split across TP ranks
    for role, name in placement.samplers.items():
        if name != "vllm":
            continue
        weights = total * b / int(vllm.tensor_parallel_size) / GIB
        budget = max(float(vllm.gpu_memory_utilization) * gpu_memory_gib - weights, 0.0)
        out[f"sampling/{role}"] = {
            "weights": weights, "kv_budget": budget,
            "kv_per_sequence": kv_token * int(vllm.max_model_len) / GIB,
            "full_length_sequences": budget * GIB // (kv_token * int(vllm.max_model_len)),
            "total": weights + budget,
        }
    return out


def updates_per_step(prompts: int, update_batch: int | None) -> int:
    """AdamW updates in one GRPO step: ceil(prompts per step / update batch in prompts); 1 without one."""
    return 1 if not update_batch else -(-int(prompts) // int(update_batch))


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
        f"  updates per step: questioner {updates_per_step(q.images_per_step, opt.update_batch_size)} "
        f"(of {q.images_per_step * q.group_size} rollouts), reasoner "
        f"{updates_per_step(r.questions_per_step, opt.update_batch_size)} (of {r.questions_per_step * r.group_size})",
        f"training: {recipe.distributed.nproc} process(es), {recipe.distributed.strategy}, "
        f"backend {recipe.distributed.backend}",
    ]


def dry_run(recipe: Any, visible: int | None = None, gpu_memory_gib: float = 80.0) -> str:
    """Validate paths and placement and describe the run without loading a model (``visplay run --dry-run``).

    Raises RecipeError (exit 2) for a missing/invalid path or an impossible placement.
    """
    checked = validate_paths(recipe)
    cfg = read_model_config(recipe)
    params = count_parameters(cfg)
    placement = plan_placement(recipe, visible)
    lines = ["dry run: nothing loaded", *plan_lines(recipe)]
    lines += [f"checked: {c}" for c in checked]
    lines.append(f"model: {recipe.model.backend} {cfg.get('model_type', '?')} {_count(params['total'])} "
                 f"parameters (text {_count(params['text'])}, vision {_count(params['vision'])}), "
                 f"dtype {recipe.model.dtype}, lora {'on' if recipe.plugins.models.lora.enabled else 'off'}")
    lines.append(f"placement: {placement.describe()}")
    lines.append(f"memory estimate per GPU (GiB, {gpu_memory_gib:g} GiB GPUs, activations not included):")
    for role, parts in estimate_memory(recipe, cfg, placement, gpu_memory_gib).items():
        detail = ", ".join(f"{k} {v:.2f}" if k != "full_length_sequences" else f"{k} {int(v)}"
                           for k, v in parts.items())
        lines.append(f"  {role}: {detail}")
        if role == "training" and placement.mode != "cpu" and parts["total"] > 0.8 * gpu_memory_gib:
            lines.append(f"  warning: training needs {parts['total']:.0f} GiB per GPU before activations; consider "
                         "plugins.models.lora.enabled=true or distributed.strategy=fsdp with more processes")
    return "\n".join(lines)


def _count(n: int) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e8 else f"{n / 1e6:.2f}M"
