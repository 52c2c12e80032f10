"""The core recipe's value rules: every range, enum and cross-field rule of the core's own keys.

``recipe_problems(cfg)`` returns {dotted key: problem} for a merged, resolved recipe of the core sections;
visplay/loader.py turns them into one RecipeError naming the file and each key (exit 2) before any run directory
exists. This file knows no plugin's settings or vocabulary: plugin sections (``plugins.<name>``) check themselves in
their dataclass's ``validate()``, with the value helpers here (``int_at_least``, ``number_in``, ``one_of``, public
so that every message reads alike). Names that a plugin serves (``model.backend``, ``data.source``,
``sampler.<role>``, ``optimizer.name``, ``eval.judge``) are checked against what the installed plugins declare
(``visplay_names``; loader.validate_names). Whether a GPU exists is checked by
``visplay.loop.runsetup.preflight`` before anything is created (a GPU recipe must still load and dry-run on a
laptop).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

Problems = dict[str, str]

DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
RUN_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
MAX_NAME_LENGTH = 100  # well under the 255-byte file-name limit once suffixes like "-rank3-..." are added
SET_ORDERS = ("shuffled", "first")  # reasoner.set_order (visplay/config.py ReasonerConfig)
SEED_MAX = 2**63 - 1  # seeds are stored in SQLite INTEGER columns (signed 64-bit)


# --- value helpers ---------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def int_at_least(value: Any, low: int) -> str | None:
    """None when ``value`` is an integer >= low, else the problem."""
    if not _is_int(value):
        return f"must be an integer, got {value!r}"
    return f"must be >= {low}, got {value!r}" if value < low else None


def optional_int_at_least(value: Any, low: int) -> str | None:
    return None if value is None else int_at_least(value, low)


def number_in(value: Any, low: float | None = None, high: float | None = None, *, low_open: bool = False,
              high_open: bool = False) -> str | None:
    """None when ``value`` is a finite number within the bounds (closed unless ``*_open``), else the problem."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        return f"must be in {span}, got {value!r}"
    return None


def one_of(value: Any, choices: tuple[str, ...]) -> str | None:
    return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"


def _collect(prefix: str, checks: dict[str, str | None]) -> Problems:
    return {f"{prefix}{key}": why for key, why in checks.items() if why is not None}


# --- sections ----------------------------------------------------------------------------------------------------


def run_problems(cfg: Any) -> Problems:
    problems = _collect("", {
        "seed": int_at_least(cfg.seed, 0) or (f"must be <= {SEED_MAX} (a signed 64-bit integer), got {cfg.seed}"
                                              if cfg.seed > SEED_MAX else None),
        "iterations": int_at_least(cfg.iterations, 1),
        "name": name_problem(cfg.name),
    })
    run_dir_problem = path_problem(cfg.run_dir)
    if run_dir_problem:
        problems["run_dir"] = run_dir_problem
    return problems


def name_problem(name: Any) -> str | None:
    """A run name is one file name: no separators, no ``..``, printable, not too long."""
    name = str(name)
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long; at most {MAX_NAME_LENGTH}"
    if not RUN_NAME_PATTERN.match(name):
        return (f"must be a name, not a path: letters, digits and . _ + - (not starting with . or -), got "
                f"{name!r}; set run_dir to choose where the run goes")
    return None


def path_problem(run_dir: Any) -> str | None:
    """A run directory is a folder (or not there yet) whose nearest existing ancestor is a folder."""
    path = Path(str(run_dir))
    too_long = [part for part in path.parts if len(part.encode()) > 255]
    if too_long:
        return f"a folder name of {len(too_long[0].encode())} bytes is longer than file systems allow (255)"
    try:
        if path.exists() and not path.is_dir():
            return f"{path} exists and is not a folder"
        for parent in path.parents:
            if parent.exists():
                return None if parent.is_dir() else f"{parent} (a parent of {path}) is not a folder"
    except OSError as exc:  # e.g. a path longer than PATH_MAX
        return f"cannot be used as a folder ({exc.strerror})"
    return None


def sampling_problems(prefix: str, sampling: Any) -> Problems:
    return _collect(prefix, {
        "temperature": number_in(sampling.temperature, 0.0),
        "top_p": number_in(sampling.top_p, 0.0, 1.0, low_open=True),
        "top_k": int_at_least(sampling.top_k, 0),
        "max_new_tokens": int_at_least(sampling.max_new_tokens, 1),
    })


def role_problems(cfg: Any) -> Problems:
    q, r = cfg.questioner, cfg.reasoner
    problems = _collect("questioner.", {
        "steps": int_at_least(q.steps, 1), "images_per_step": int_at_least(q.images_per_step, 1),
        # GRPO normalises a reward within its group; EasyR1 refuses a group of one ("GRPO needs rollout.n > 1",
        # hiyouga/EasyR1 verl/trainer/core_algos.py:208)
        "group_size": int_at_least(q.group_size, 2), "votes": int_at_least(q.votes, 1),
    })
    problems |= _collect("reasoner.", {
        "steps": int_at_least(r.steps, 1), "questions_per_step": int_at_least(r.questions_per_step, 1),
        "group_size": int_at_least(r.group_size, 2), "votes": int_at_least(r.votes, 1),
        "set_images": int_at_least(r.set_images, 1), "questions_per_image": int_at_least(r.questions_per_image, 1),
        "set_order": one_of(r.set_order, SET_ORDERS),
    })
    for role in ("questioner", "reasoner"):
        problems |= sampling_problems(f"{role}.sampling.", cfg[role].sampling)
        problems |= _collect("sampler.", {role: _named(cfg.sampler[role], "a sampler plugin")})
    return problems


def _named(value: Any, what: str) -> str | None:
    """A plugin-served name must at least be a non-empty name (which names exist: loader.validate_names)."""
    return None if str(value).strip() else f"must name {what}, got ''"


def optimizer_problems(opt: Any) -> Problems:
    return _collect("optimizer.", {"name": _named(opt.name, "an optimizer plugin")})


def data_problems(data: Any) -> Problems:
    return _collect("data.", {"num_images": int_at_least(data.num_images, 1),
                              "source": _named(data.source, "an image source plugin")})


def model_problems(model: Any) -> Problems:
    problems = _collect("model.", {
        "dtype": one_of(model.dtype, ("float32", "bfloat16", "float16")),
        "device": device_problem(model.device),
        "backend": _named(model.backend, "a model backend plugin"),
    })
    return problems


def device_problem(device: Any) -> str | None:
    """``cpu``, ``mps``, ``cuda`` or ``cuda:N`` (whether that GPU exists is :func:`missing_device`'s question:
    a recipe for a GPU machine must still load, print and dry-run on a laptop)."""
    device = str(device)
    return None if DEVICE_PATTERN.match(device) else f"must be cpu, cuda or cuda:N, got {device!r}"


def missing_device(device: str) -> str | None:
    """Why ``device`` cannot be used on this machine (None: it can); checked before a run creates anything."""
    if not str(device).startswith("cuda"):
        return None
    count = _cuda_device_count()
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= count:
        return f"{device} does not exist on this machine ({count} CUDA device(s) visible)"
    return None


def _cuda_device_count() -> int:
    # No NVIDIA device node: no GPU, known without importing torch (seconds on a busy machine).
    if not any(Path("/dev").glob("nvidia[0-9]*")):
        return 0
    import torch

    return torch.cuda.device_count()


def distributed_problems(dist: Any) -> Problems:
    # the GPU lists are checked against each other and the machine by visplay.scale.placement
    return _collect("distributed.", {
        "nproc": int_at_least(dist.nproc, 0),  # 0: one process per training GPU
        "strategy": one_of(dist.strategy, ("ddp", "fsdp")),
        "backend": one_of(dist.backend, ("auto", "gloo", "nccl")),
    })


def eval_problems(ev: Any) -> Problems:
    return _collect("eval.", {
        "max_new_tokens": int_at_least(ev.max_new_tokens, 1),
        "batch_size": int_at_least(ev.batch_size, 1),
        "limit": optional_int_at_least(ev.limit, 1),
    })


def recipe_problems(cfg: Any) -> Problems:
    """Every problem of a merged, resolved recipe, in schema order: {dotted key: why}."""
    problems = run_problems(cfg)
    problems |= model_problems(cfg.model)
    problems |= data_problems(cfg.data)
    problems |= role_problems(cfg)
    problems |= optimizer_problems(cfg.optimizer)
    problems |= distributed_problems(cfg.distributed)
    problems |= eval_problems(cfg.eval)
    problems |= _collect("checkpoint.", {"every": int_at_least(cfg.checkpoint.every, 1),
                                         "keep": int_at_least(cfg.checkpoint.keep, 1)})
    return problems
