"""Recipes: the core's structured schema (nested dataclasses), the section protocol of plugins, and small helpers.

A recipe is the core's schema (this file) plus one section per plugin at ``plugins.<name>``, declared by the plugin
through ``visplay_recipe_sections`` (see :class:`SectionProtocol`). The core's schema holds only what the core reads:
the loop's shape (iterations, steps, batch sizes, votes, sampling), which plugin serves each role (``model.backend``,
``data.source``, ``sampler.<role>``, ``optimizer.name``), placement, evaluation, logging and checkpoints. Every
setting of the method itself (rewards, the reasoner set's filter, the optimizer's loss, image decoding...) lives in the plugin
that reads it.

Loading (schema -> YAML -> overrides -> legacy keys -> variant defaults -> validation) is visplay/loader.py, driven
by a :class:`visplay.session.PluginSession`; :func:`load_recipe` here is the one-call convenience. Unknown keys,
wrong types and missing required values raise :class:`RecipeError`, which names the file (or the command-line
override) and the dotted key, and suggests the closest valid key; the CLI exits with status 2. Each field's
docstring (the string under it) is its documentation: ``visplay recipe --explain`` prints them.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import inspect
import textwrap
import weakref
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from omegaconf import MISSING, DictConfig, OmegaConf

VARIANTS = ("paper", "released")
ROLES = ("questioner", "reasoner")


class RecipeError(Exception):
    """A recipe problem the user must fix. ``str(err)`` names the file and the dotted key."""

    exit_code = 2


# --- schema ----------------------------------------------------------------------------------------------------


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    """Sampling temperature (released config: 1.0)."""
    top_p: float = 0.99
    """Nucleus sampling mass (released config: 0.99)."""
    top_k: int = 0
    """Top-k cut-off; 0 disables it."""
    max_new_tokens: int = 64
    """Longest response in tokens (released: questioner 2048, reasoner 4096)."""


@dataclass
class ModelConfig:
    backend: str = "tiny"
    """Model backend plugin: ``tiny`` (built in-process, no download; sized by ``plugins.models.tiny``) or ``hf``
    (a local transformers folder). LoRA: ``plugins.models.lora``."""
    path: str | None = None
    """Local model folder for backend ``hf`` (e.g. /models/Qwen2.5-VL-3B-Instruct). Never downloaded."""
    dtype: str = "float32"
    """Weights dtype: float32, bfloat16 or float16."""
    device: str = "cpu"
    """Torch device for training and HF sampling: cpu, cuda, cuda:N."""
    trust_remote_code: bool = False
    """Allow model code shipped inside the model folder (only when the architecture needs it)."""


@dataclass
class DataConfig:
    source: str = "procedural"
    """Image source plugin, by the name a source answers to (built in: ``procedural``, ``folder``, ``parquet``
    from the images plugin, whose decoding settings are ``plugins.images``; ``games`` from the games plugin)."""
    images: str | None = None
    """Folder of images or a parquet file with an ``images`` column (sources ``folder`` / ``parquet``)."""
    num_images: int = 64
    """Pool size for generated sources (``procedural``, ``games``)."""


@dataclass
class QuestionerConfig:
    steps: int = 20
    """GRPO steps per iteration (paper: 20 for 3B, 10 for 7B; released scripts 40 / 20)."""
    images_per_step: int = 8
    """Images (prompts) per rollout batch (released: 512)."""
    group_size: int = 8
    """G: questions sampled per image (released rollout n: 8)."""
    votes: int = 10
    """m: reasoner answers per question for the questioner's reward (released: 10)."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Sampling settings for question generation."""


@dataclass
class ReasonerConfig:
    steps: int = 20
    """GRPO steps per iteration."""
    questions_per_step: int = 8
    """Questions (prompts) per rollout batch."""
    group_size: int = 8
    """Answers sampled per question during training (rollout n)."""
    votes: int = 9
    """m: answers per question when building silver labels (released: 9)."""
    set_images: int = 64
    """Images the questioner writes questions for when building the reasoner's training set."""
    questions_per_image: int = 1
    """Questions generated per image for the reasoner's set."""
    set_order: str = "shuffled"
    """Which ``set_images`` images of the pool the set asks about: ``shuffled`` (a fresh seeded permutation of the
    pool each iteration) or ``first`` (the pool's first images, the same ones every iteration: the released
    scripts' 1,000 images, solver_train.sh:11 with question_generate.py's first ``num_samples`` rows)."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Sampling settings for answers. Which voted questions enter the set is the filter plugins' choice (the
    algorithm plugin's: ``plugins.algorithm.filter``)."""


@dataclass
class OptimizerConfig:
    name: str = "grpo"
    """Optimizer plugin, by the name it answers to (built in: ``grpo``, whose settings are ``plugins.grpo``)."""


@dataclass
class SamplerConfig:
    questioner: str = "hf"
    """Sampler for the questioner, by the name a sampler plugin answers to (built in: ``hf`` from the models
    plugin, ``vllm`` from the vllm plugin, whose engine settings are ``plugins.vllm``)."""
    reasoner: str = "hf"
    """Sampler for the reasoner (as ``questioner``)."""


@dataclass
class DistributedConfig:
    nproc: int = 1
    """Training processes (torchrun --nproc-per-node); 0: one per training GPU of the placement (the paper
    recipes: 4 on 8 GPUs), 1 without GPUs."""
    strategy: str = "ddp"
    """``ddp`` or ``fsdp``."""
    backend: str = "auto"
    """torch.distributed backend: ``auto`` (nccl on GPU, gloo on CPU), ``gloo`` or ``nccl``."""
    sampling_gpus: list[int] = field(default_factory=list)
    """GPU indices that serve sampling engines (paper on 8 GPUs: 4); empty: decided by placement."""
    training_gpus: list[int] = field(default_factory=list)
    """GPU indices that train (paper on 8 GPUs: 4)."""


@dataclass
class EvalConfig:
    benchmarks: list[str] = field(default_factory=list)
    """Benchmarks for ``visplay eval`` (mmmu, mm-vet, realworldqa, visnumbench, mathverse, math-vision,
    hallusionbench, mmstar)."""
    data: str | None = None
    """Folder with the benchmark files."""
    judge: str = "rule"
    """Judge plugin: ``rule`` (default), ``local`` (a model folder) or ``endpoint`` (OpenAI-compatible URL); the
    judges' own settings are under ``plugins.eval``."""
    protocol: str = "visplay"
    """Evaluation protocol: prompts, image handling, answer extraction and scoring (``visplay``: the rule protocol,
    ``released``: the released VisPlay evaluation, ``lmms-eval``: lmms-eval's tasks; docs/evaluation.md)."""
    max_new_tokens: int = 256
    """Response length for evaluation."""
    batch_size: int = 8
    """Prompts per generation batch."""
    limit: int | None = None
    """Evaluate at most this many items per benchmark."""
    splits: dict[str, str] = field(default_factory=dict)
    """Which split to read per benchmark where its files or rows name splits (``{mmmu: dev}``); unset: the
    benchmark's default (MMMU: validation), else the only split present. Splits are never concatenated, and an
    unlabelled one (MMMU's test, answers ``?``) is refused (docs/evaluation.md)."""


@dataclass
class LogConfig:
    vote_logprobs: bool = False
    """Store the log-probs of the frozen reasoner's vote generations. Off by default: votes are ~80% of a paper
    iteration's tokens and nothing reads their log-probs (no update trains on votes; replay serves votes
    without them). Token ids and text are always stored."""


@dataclass
class CheckpointConfig:
    every: int = 1
    """Snapshot the training role's weights and optimizer state every N training steps (1: every step). The
    iteration's final ``<role>_v<i>`` is always written. A resumed run restarts from the newest snapshot and
    recomputes the steps after it from the run log, so the result is the same for any N."""
    keep: int = 1
    """How many step snapshots per role stay on disk (the newest ones); the run log keeps every snapshot's
    hashes. ``VISPLAY_KEEP_STATES=1`` keeps them all."""


@dataclass
class RecipeConfig:
    name: str = MISSING
    """Run name; the run goes to ``run_dir``."""
    description: str = ""
    """One line about the recipe."""
    setup: str = ""
    """What the recipe needs from the user (downloads, where to put them, how to pass them); printed with the
    error when a required key such as model.path or data.images is missing or points nowhere."""
    seed: int = 0
    """Root seed: every random draw derives its own generator from it."""
    variant: str = "paper"
    """``paper`` (the paper's formulas) or ``released`` (the released code's)."""
    iterations: int = 3
    """K: self-play iterations (paper tables: 3)."""
    run_dir: str = "runs/${name}"
    """Where the run database, checkpoints and report go."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model both roles start from."""
    data: DataConfig = field(default_factory=DataConfig)
    """The unlabeled image pool."""
    questioner: QuestionerConfig = field(default_factory=QuestionerConfig)
    """Questioner training."""
    reasoner: ReasonerConfig = field(default_factory=ReasonerConfig)
    """Reasoner training-set construction and training."""
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    """Policy optimisation (both roles): which optimizer plugin; its settings are in its own section."""
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    """Sampling engines per role."""
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    """Multi-process training and GPU placement."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation settings."""
    log: LogConfig = field(default_factory=LogConfig)
    """What the run log stores beyond what replay needs."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """How often training state is written to disk."""
    plugins: dict[str, Any] = field(default_factory=dict)
    """Settings owned by plugins, one section per plugin (e.g. ``plugins.games``), declared by each plugin through
    ``visplay_recipe_sections`` and validated like the core's."""


# --- the section protocol of plugins --------------------------------------------------------------------------


class SectionProtocol(Protocol):
    """What a plugin's recipe section may declare besides its fields (a dataclass; everything here optional).

    - ``validate(self) -> dict[str, str]``: {key under the section: problem}, checked at load (exit 2).
    - ``legacy_keys``: {old dotted recipe key: key under this section ("" for the whole section)}; a recipe or a
      run log written before the setting moved here still loads (the value is moved, with one warning); the old
      and the new key both given is an error. Several sections may claim one old key (each gets the value).
    - ``variant_defaults``: {variant: {key under this section: value}}, applied where the section's value is None
      (PAPER.md's paper/released differences live with the plugin that implements them).
    - ``path_keys``: keys under this section that hold local paths (``~`` is expanded; ``$VAR`` is refused).
    """

    legacy_keys: ClassVar[dict[str, str]]
    variant_defaults: ClassVar[dict[str, dict[str, Any]]]
    path_keys: ClassVar[tuple[str, ...]]

    def validate(self) -> dict[str, str]: ...


CORE_PATH_KEYS = ("run_dir", "model.path", "data.images", "eval.data")
"""Core keys holding local paths; plugins add theirs through ``path_keys``."""


# --- helpers -----------------------------------------------------------------------------------------------------


def recipe_dirs() -> list[Path]:
    """Where recipe names are looked up: ./recipes first (a user's own recipes override), then the recipes
    shipped inside the package (visplay/data/recipes, found with importlib.resources, so a wheel install has them)."""
    from importlib import resources

    return [Path.cwd() / "recipes", Path(str(resources.files("visplay") / "data" / "recipes"))]


def find_recipe(name_or_path: str) -> Path:
    """A YAML path, or a recipe name looked up in :func:`recipe_dirs`. A folder is never taken for a recipe: a
    bare name is looked up by name even when ``./<name>/`` exists."""
    path = Path(name_or_path).expanduser()
    try:
        if path.is_file():
            return path
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise RecipeError(f"{name_or_path[:80]}...: not a recipe name or file ({exc.strerror})") from exc
    if path.suffix in (".yaml", ".yml") or "/" in name_or_path or name_or_path.startswith("."):
        raise RecipeError(f"{path}: " + ("is a directory, not a recipe file" if path.is_dir()
                                         else "recipe file not found"))
    for folder in recipe_dirs():
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for d in recipe_dirs() if d.is_dir() for p in d.glob("*.yaml")})
    hint = closest_key(name_or_path, known)
    raise RecipeError(
        f"no recipe named {name_or_path!r} (known: {', '.join(known) or 'none'})" + (f"; did you mean {hint!r}?"
                                                                                   if hint else "")
    )


def load_recipe(name_or_path: str | Path | DictConfig, overrides: list[str] | tuple[str, ...] = (), *,
                plugins: Iterable[Any] = (), only: Collection[str] | None = None,
                autoload: bool | None = None) -> DictConfig:
    """Load a recipe with a plugin session of its own (see :meth:`visplay.session.PluginSession.load_recipe`):
    the entry-point plugins (``only``: these names; ``autoload=False``: none) and ``plugins``."""
    from visplay.session import PluginSession

    return PluginSession(extra=tuple(plugins), only=only, autoload=autoload).load_recipe(name_or_path, overrides)


def closest_key(key: str, candidates: list[str]) -> str | None:
    """The valid key a misspelled one most likely meant: a sibling with a similar name, a key elsewhere with a
    similar path, or the one key elsewhere with the same name."""
    parent, _, leaf = key.rpartition(".")
    siblings = {c.rpartition(".")[2]: c for c in candidates if c.rpartition(".")[0] == parent}
    match = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)
    if match:
        return siblings[match[0]]
    match = difflib.get_close_matches(key, [c for c in candidates if c.rpartition(".")[0] != parent], n=1,
                                      cutoff=0.8)
    if match:
        return match[0]
    leaves = [c for c in candidates if c.rsplit(".", 1)[-1] == leaf]
    return leaves[0] if len(leaves) == 1 else None


def all_keys(cls: type = RecipeConfig, prefix: str = "", *, sections: dict[str, type] | None = None) -> list[str]:
    """Every dotted key of the schema (with the plugins' sections when given)."""
    keys = []
    for f in fields(cls):
        dotted = f"{prefix}{f.name}"
        keys.append(dotted)
        sub = f.default_factory() if callable(f.default_factory) else None  # type: ignore[misc]
        if is_dataclass(sub):
            keys.extend(all_keys(type(sub), dotted + "."))
    for name, section in (sections or {}).items():
        keys += [f"plugins.{name}", *all_keys(section, f"plugins.{name}.")]
    return list(dict.fromkeys(keys))


def open_keys(cls: type, prefix: str = "") -> list[str]:
    """Keys of the schema whose values are free-form mappings (``dict`` fields): anything below them is allowed."""
    keys = []
    for f in fields(cls):
        sub = f.default_factory() if callable(f.default_factory) else None  # type: ignore[misc]
        if is_dataclass(sub):
            keys.extend(open_keys(type(sub), f"{prefix}{f.name}."))
        elif isinstance(sub, dict) or str(f.type).startswith("dict"):
            keys.append(f"{prefix}{f.name}")
    return keys


def field_docs(cls: type = RecipeConfig, prefix: str = "") -> dict[str, str]:
    """{dotted key: docstring} read from the schema's source (attribute docstrings)."""
    docs: dict[str, str] = {}
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[f"{prefix}{node.target.id}"] = " ".join(str(nxt.value.value).split())  # type: ignore[attr-defined]
    for f in fields(cls):
        if callable(f.default_factory):  # type: ignore[arg-type]
            sub = f.default_factory()  # type: ignore[misc]
            if is_dataclass(sub):
                docs.update(field_docs(type(sub), f"{prefix}{f.name}."))
    return docs


def recipe_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, sort_keys=True)


def recipe_sha256(cfg: DictConfig) -> str:
    return hashlib.sha256(recipe_yaml(cfg).encode()).hexdigest()


def plugin_options(cfg: DictConfig, plugin: str) -> dict[str, Any]:
    """A plugin's own settings (``plugins.<name>``) as a plain dict; empty when absent (see plugin_section)."""
    value = cfg.plugins.get(plugin) if cfg.get("plugins") is not None else None
    return OmegaConf.to_container(value, resolve=True) if value is not None else {}


def plugin_section(cfg: DictConfig, name: str) -> Any:
    """A plugin's own section (``plugins.<name>``) as its dataclass instance, converted once per loaded recipe."""
    sections = _SECTIONS.get(id(cfg))
    if sections is None or sections[0]() is not cfg:
        sections = (weakref.ref(cfg), {})
        _SECTIONS[id(cfg)] = sections
        weakref.finalize(cfg, _SECTIONS.pop, id(cfg), None)
    cache = sections[1]
    if name not in cache:
        node = cfg.plugins.get(name) if "plugins" in cfg else None
        section = OmegaConf.to_object(node) if node is not None else None
        if not is_dataclass(section):
            raise RecipeError(f"plugins.{name}: this recipe was loaded without the plugin that declares the section "
                              f"(load it with that plugin installed, or pass it: load_recipe(..., plugins=[...]))")
        cache[name] = section
    return cache[name]


# id(recipe) -> (a weak reference to it, {section name: dataclass instance}); an entry goes with its recipe
_SECTIONS: dict[int, tuple[weakref.ref, dict[str, Any]]] = {}
