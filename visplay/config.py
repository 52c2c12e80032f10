"""Recipes: the structured schema (nested dataclasses) and the loader.

Load order (as in EasyR1): schema defaults -> recipe YAML -> ``key=value`` overrides -> variant defaults ->
validation. Unknown keys, wrong types and missing required values raise :class:`RecipeError`, which names the file
(or the command-line override) and the dotted key, and suggests the closest valid key; the CLI exits with status 2.
Each field's docstring (the string under it) is its documentation: ``visplay recipe --explain`` prints them.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import inspect
import logging
import sys
import textwrap
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    GrammarParseError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

log = logging.getLogger("visplay.config")

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
    """Image source plugin: ``procedural`` (built in), ``games`` (visual games), ``folder`` or ``parquet``."""
    images: str | None = None
    """Folder of images or a parquet file with an ``images`` column (sources ``folder`` / ``parquet``)."""
    num_images: int = 64
    """Pool size for generated sources (``procedural``, ``games``)."""
    max_images: int | None = None
    """Use at most this many images from a folder or parquet file (in sorted order); None: all."""
    resize: str = "fixed"
    """``fixed`` (size x size, the paper), ``pixels`` (min/max pixels, the released code) or ``none``."""
    size: int = 224
    """Side length for ``resize: fixed``."""
    min_pixels: int = 262144
    """Lower pixel bound for ``resize: pixels`` (released: 262144)."""
    max_pixels: int = 4194304
    """Upper pixel bound for ``resize: pixels`` (released: 4194304)."""
    max_file_mb: float = 64.0
    """Files larger than this are skipped (logged as events)."""
    max_decode_pixels: int = 100_000_000
    """Images with more pixels than this are skipped before decoding (decompression-bomb guard)."""
    image_cache: int = 256
    """Decoded images kept in memory (an LRU); the pool itself holds only ids, sources and sizes, and decodes
    pixels on demand (~150 kB per 224 px image)."""


@dataclass
class FilterConfig:
    band: list[float] | None = None
    """Inclusive confidence band [low, high] for the reasoner's set; None: the variant's (paper 0.25-0.75,
    released 0.3-0.8)."""
    released_skip_rules: bool | None = None
    """Also apply the released code's extra skip rules (docs/algorithm.md); None: the variant's (released: on)."""


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
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Sampling settings for answers."""
    filter: FilterConfig = field(default_factory=FilterConfig)
    """Which voted questions enter the training set."""


@dataclass
class RewardConfig:
    combine: str | None = None
    """Combination rule for the scalar reward: ``paper``, ``released`` or ``weighted``; None: the variant's."""
    weights: dict[str, float] = field(default_factory=dict)
    """Extra components (e.g. from a third-party plugin) weighted into the total: {component: weight}."""
    diversity_lambda: float = 1.0
    """lambda of the diversity penalty (released: 1)."""
    diversity_scope: str | None = None
    """Cluster the questions of ``image`` (paper) or of the whole ``batch`` (released); None: the variant's."""
    bleu_threshold: float = 0.5
    """Agglomerative clustering distance threshold on 1 - BLEU."""
    none_as_vote: bool | None = None
    """A missing \\boxed{} counts as the vote "None" (the released code's behaviour); None: the variant's
    (released: on, paper: off)."""
    format_weight: float | None = None
    """Reasoner format reward weight (released: 0.1, accuracy 0.9); None: the variant's (paper: 0)."""


@dataclass
class OptimizerConfig:
    name: str = "grpo"
    """Optimizer plugin name."""
    lr: float = 1e-6
    """AdamW learning rate (released: 1e-6)."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    clip_low: float = 0.2
    """PPO ratio clip below 1."""
    clip_high: float = 0.3
    """PPO ratio clip above 1."""
    dual_clip: float = 3.0
    """Dual-clip constant for negative advantages."""
    kl_coef: float = 1e-2
    """Coefficient of the KL term in the loss (0 disables the reference model)."""
    kl_type: str = "low_var_kl"
    """KL estimator: ``low_var_kl`` (k3, clamped to [-10, 10]), ``kl`` (k1) or ``mse`` (k2)."""
    adv_eps: float = 1e-6
    """epsilon in (r - mean) / (std + epsilon)."""
    micro_batch_size: int = 8
    """Rollouts per forward/backward (gradient accumulation over the update batch)."""
    update_batch_size: int | None = None
    """Prompts per optimizer update, as EasyR1's ``global_batch_size``: one update takes update_batch_size x
    group_size rollouts (released: 128 prompts = 1,024 rollouts, 4 updates per 512-prompt step); None: the whole
    rollout batch."""
    loss_agg: str | None = None
    """How the loss averages over an update batch: ``token_mean`` (every token weighs the same; EasyR1 HEAD) or
    ``seq_mean_token_mean`` (each rollout's token-mean, averaged over rollouts: the released fork's per-micro-batch
    mean at its scripts' micro-batch size 1); None: the variant's (paper token_mean, released
    seq_mean_token_mean)."""


@dataclass
class SamplerConfig:
    questioner: str = "hf"
    """Sampler for the questioner, by the name a sampler plugin answers to (built in: ``hf``, ``vllm``; vLLM
    engine settings: ``plugins.vllm``)."""
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
    max_new_tokens: int = 256
    """Response length for evaluation."""
    batch_size: int = 8
    """Prompts per generation batch."""
    limit: int | None = None
    """Evaluate at most this many items per benchmark."""


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
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Reward components and their combination."""
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    """Policy optimisation (both roles)."""
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


# Values that depend on the variant (PAPER.md, "paper vs. released code"); used where the recipe says None.
VARIANT_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {"reasoner.filter.band": [0.25, 0.75], "reward.combine": "paper", "reward.diversity_scope": "image",
              "reward.format_weight": 0.0, "reward.none_as_vote": False, "reasoner.filter.released_skip_rules": False,
              "optimizer.loss_agg": "token_mean"},
    "released": {"reasoner.filter.band": [0.3, 0.8], "reward.combine": "released",
                 "reward.diversity_scope": "batch", "reward.format_weight": 0.1, "reward.none_as_vote": True,
                 "reasoner.filter.released_skip_rules": True, "optimizer.loss_agg": "seq_mean_token_mean"},
}


# --- loading ---------------------------------------------------------------------------------------------------


def recipe_dirs() -> list[Path]:
    """Where recipe names are looked up: ./recipes first (a user's own recipes override), then the recipes
    shipped inside the package (visplay/data/recipes, found with importlib.resources, so a wheel install has them)."""
    from importlib import resources

    return [Path.cwd() / "recipes", Path(str(resources.files("visplay") / "data" / "recipes"))]


def find_recipe(name_or_path: str) -> Path:
    """A YAML path, or a recipe name looked up in :func:`recipe_dirs`. A folder is never taken for a recipe: a
    bare name is looked up by name even when ``./<name>/`` exists."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.suffix in (".yaml", ".yml") or "/" in name_or_path or name_or_path.startswith("."):
        raise RecipeError(f"{path}: " + ("is a directory, not a recipe file" if path.is_dir()
                                         else "recipe file not found"))
    for folder in recipe_dirs():
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for d in recipe_dirs() if d.is_dir() for p in d.glob("*.yaml")})
    hint = _closest(name_or_path, known)
    raise RecipeError(
        f"no recipe named {name_or_path!r} (known: {', '.join(known) or 'none'})" + (f"; did you mean {hint!r}?"
                                                                                   if hint else "")
    )


def load_recipe(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
                plugins: Iterable[Any] = (), only: Collection[str] | None = None) -> DictConfig:
    """Schema (the core's and the plugins' sections) -> YAML -> overrides -> variant defaults -> validation.

    :param plugins: plugin objects registered next to the entry-point plugins (their sections count too).
    :param only: the entry-point plugins to consult (default: every installed one; see get_plugin_manager).
    :return: a resolved, read-only config.
    """
    path = find_recipe(str(name_or_path))
    try:
        text = path.read_text()
        data = OmegaConf.create(text) if text.strip() else OmegaConf.create({})
    except Exception as exc:  # yaml's errors do not share a base class with OmegaConf's
        raise RecipeError(f"{path}: cannot parse recipe: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, DictConfig):
        raise RecipeError(f"{path}: a recipe is a mapping of keys, got a {type(data).__name__}")
    data = upgrade_legacy_keys(data, str(path))
    dots = [(item, _parse_override(item)) for item in overrides]
    sections = plugin_sections(plugins, only)
    absent = _absent_sections([(str(path), data), *((f"command-line override {item!r}", dot) for item, dot in dots)],
                              sections)
    schema_cls = recipe_schema(sections, absent)
    keys = all_keys(schema_cls, sections=sections)
    cfg = _merge(OmegaConf.structured(schema_cls), data, where=str(path), keys=keys)
    _mark_required(cfg, data)
    for item, dot in dots:
        cfg = _merge(cfg, dot, where=f"command-line override {item!r}", keys=keys, key=item.split("=", 1)[0])
    try:
        _apply_variant_defaults(cfg, str(path))
        missing = sorted(OmegaConf.missing_keys(cfg))
    except OmegaConfBaseException as exc:  # e.g. ${nonexistent.key} met while reading a key
        raise RecipeError(f"{path}: key {_full_key(exc)!r}: {_describe(exc)}") from exc
    if missing:
        setup = f"\n{cfg.setup.strip()}" if cfg.get("setup") else ""
        raise RecipeError(f"{path}: required key(s) missing: {', '.join(missing)} (set them in the recipe or as "
                          f"key=value on the command line){setup}")
    try:
        OmegaConf.resolve(cfg)
    except (OmegaConfBaseException, ValueError) as exc:
        raise RecipeError(f"{path}: key {_full_key(exc)!r}: {_describe(exc)}") from exc
    _expand_user(cfg)
    _validate(cfg, str(path))
    _validate_sections(cfg, sections, str(path))
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _mark_required(cfg: DictConfig, data: DictConfig, prefix: str = "") -> None:
    """Keep ``???`` from the recipe YAML: OmegaConf's merge ignores a MISSING value over a schema default, but a
    recipe writes ``model.path: ???`` to make a key required (an override then fills it)."""
    for key in data.keys():
        dotted = f"{prefix}{key}"
        if OmegaConf.is_missing(data, key):
            OmegaConf.update(cfg, dotted, MISSING, merge=False)
        elif isinstance(data[key], DictConfig):
            _mark_required(cfg, data[key], dotted + ".")


def _merge(base: DictConfig, new: DictConfig, where: str, keys: list[str] | None = None,
           key: str | None = None) -> DictConfig:
    """``key``: the dotted key being set (an override's), named when OmegaConf's error does not say."""
    try:
        return OmegaConf.merge(base, new)
    except (ConfigKeyError, ConfigAttributeError) as exc:
        key = _full_key(exc)
        known = keys if keys is not None else all_keys()
        hint = _closest(key, [k for k in known if k.count(".") == key.count(".")])
        parent = key.rpartition(".")[0]
        siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == parent and parent]
        tail = (f"; did you mean {hint!r}?" if hint else
                f" ({parent} has: {', '.join(siblings)})" if siblings else "")
        raise RecipeError(f"{where}: unknown key {key!r}{tail}") from exc
    except (ValidationError, GrammarParseError, MissingMandatoryValue) as exc:
        named = _full_key(exc)
        raise RecipeError(f"{where}: key {named if named != '?' else key or '?'!r}: {_describe(exc)}") from exc
    except OmegaConfBaseException as exc:
        raise RecipeError(f"{where}: {_describe(exc)}") from exc
    except TypeError as exc:  # OmegaConf: a list merged onto a mapping section (e.g. plugins=[1,2])
        named = key or ", ".join(sorted(k for k in new.keys() if OmegaConf.is_list(new[k])
                                        and OmegaConf.is_dict(base.get(k))))
        raise RecipeError(f"{where}: key {named or '?'!r}: a list where a mapping of keys is expected") from exc


def _full_key(exc: OmegaConfBaseException) -> str:
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    return str(key)


def _describe(exc: Exception) -> str:
    return str(exc).split("\n")[0]


def _closest(key: str, candidates: list[str]) -> str | None:
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


def _apply_variant_defaults(cfg: DictConfig, where: str) -> None:
    variant = cfg.get("variant")
    if variant not in VARIANTS:
        raise RecipeError(f"{where}: key 'variant': must be one of {', '.join(VARIANTS)}, got {variant!r}")
    for key, value in VARIANT_DEFAULTS[variant].items():
        if OmegaConf.select(cfg, key) is None:
            OmegaConf.update(cfg, key, value, merge=False)


def _validate(cfg: DictConfig, where: str) -> None:
    """Every rule of visplay/recipe_rules.py; all problems are reported at once, each naming its key."""
    from visplay.recipe_rules import recipe_problems

    problems = recipe_problems(cfg)
    if problems:
        raise RecipeError("\n".join(f"{where}: key {key!r}: {why}" for key, why in problems.items()))


# Keys holding local paths: ``~`` is expanded here, once, so every consumer sees the same absolute-home path.
PATH_KEYS = ("run_dir", "model.path", "plugins.models.tiny.cache_dir", "data.images", "eval.data",
             "plugins.eval.judge_model")


def _expand_user(cfg: DictConfig) -> None:
    for key in PATH_KEYS:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, str) and value.startswith("~"):
            OmegaConf.update(cfg, key, str(Path(value).expanduser()), merge=False)


def recipe_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, sort_keys=True)


def recipe_sha256(cfg: DictConfig) -> str:
    return hashlib.sha256(recipe_yaml(cfg).encode()).hexdigest()


def plugin_options(cfg: DictConfig, plugin: str) -> dict[str, Any]:
    """A plugin's own settings (``plugins.<name>``) as a plain dict; empty when absent (see plugin_section)."""
    value = cfg.plugins.get(plugin) if cfg.get("plugins") is not None else None
    return OmegaConf.to_container(value, resolve=True) if value is not None else {}


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


# --- sections owned by plugins ---------------------------------------------------------------------------------

# Keys that moved from the core recipe into a plugin's section: {old dotted key: new dotted key}. A recipe (or a
# run log's stored recipe) written before the move still loads.
LEGACY_KEYS = {
    "model.tiny": "plugins.models.tiny",
    "model.lora": "plugins.models.lora",
    "sampler.vllm": "plugins.vllm",
    "eval.judge_model": "plugins.eval.judge_model",
    "eval.judge_url": "plugins.eval.judge_url",
}


def plugin_sections(plugins: Iterable[Any] = (), only: Collection[str] | None = None) -> dict[str, type]:
    """{section name: dataclass} from every plugin's ``visplay_recipe_sections`` (entry points + ``plugins``)."""
    from visplay.hooks import call_each
    from visplay.plugins import get_plugin_manager

    pm = get_plugin_manager(extra=tuple(plugins), only=only)
    sections: dict[str, type] = {}
    owners: dict[str, str] = {}
    for plugin, declared in call_each(pm, "visplay_recipe_sections", {}):
        for name, section in dict(declared).items():
            if not (isinstance(section, type) and is_dataclass(section)):
                raise RecipeError(f"plugin {plugin!r}: recipe section {name!r} must be a dataclass type")
            if name in sections:
                raise RecipeError(f"recipe section plugins.{name} is declared by two plugins: {owners[name]}, {plugin}")
            sections[name], owners[name] = section, plugin
    return dict(sorted(sections.items()))


def recipe_schema(sections: dict[str, type], absent: Iterable[str] = ()) -> type:
    """The recipe schema with a typed ``plugins`` section per plugin, and an unchecked mapping for each section of
    a plugin that is not installed (``absent``)."""
    typed = [(name, section, field(default_factory=section)) for name, section in sections.items()]
    untyped = [(name, dict[str, Any], field(default_factory=dict)) for name in sorted(absent)]
    plugins_cls = make_dataclass("PluginsConfig", typed + untyped)
    return make_dataclass("Recipe", [("plugins", plugins_cls, field(default_factory=plugins_cls))],
                          bases=(RecipeConfig,))


def with_plugin_sections(cfg: DictConfig, plugins: Iterable[Any] = (),
                         only: Collection[str] | None = None) -> DictConfig:
    """``cfg`` checked against a plugin set that may declare sections it was loaded without (e.g. plugin objects a
    run registers by hand): unchanged when every declared section is there and typed, else the resolved recipe is
    loaded again with those plugins, so their sections get their defaults and checks."""
    import tempfile

    sections = plugin_sections(plugins, only)
    given = cfg.get("plugins") or {}
    if all(name in given and OmegaConf.get_type(given, name) is section for name, section in sections.items()):
        return cfg
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(recipe_yaml(cfg))
    try:
        return load_recipe(f.name, plugins=plugins, only=only)
    finally:
        Path(f.name).unlink(missing_ok=True)


def _parse_override(item: str) -> DictConfig:
    if "=" not in item:
        raise RecipeError(f"command line: override {item!r} is not key=value")
    try:
        return upgrade_legacy_keys(OmegaConf.from_dotlist([item]), f"command-line override {item!r}")
    except (OmegaConfBaseException, ValueError) as exc:
        raise RecipeError(f"command line: cannot parse override {item!r}: {exc}") from exc


def _absent_sections(sources: list[tuple[str, DictConfig]], sections: dict[str, type]) -> set[str]:
    """Plugin sections a recipe sets for plugins that are not installed: kept unchecked, with a warning; a name
    close to an installed plugin's section is a typo and an error."""
    absent: set[str] = set()
    for where, data in sources:
        given = data.get("plugins") if isinstance(data, DictConfig) else None
        for name in (given.keys() if isinstance(given, DictConfig) else []):
            if name in sections or name in absent:
                continue
            hint = difflib.get_close_matches(str(name), list(sections), n=1, cutoff=0.75)
            if hint:
                raise RecipeError(f"{where}: unknown key 'plugins.{name}'; did you mean 'plugins.{hint[0]}'?")
            log.warning("%s: no installed plugin declares plugins.%s; its settings are kept unchecked", where, name)
            absent.add(str(name))
    return absent


def plugin_section(cfg: DictConfig, name: str) -> Any:
    """A plugin's own section (``plugins.<name>``) as its dataclass instance (cached per loaded recipe)."""
    node = cfg.plugins.get(name) if "plugins" in cfg else None
    cache_key = (id(cfg), name)
    cached = _SECTIONS.get(cache_key)
    if cached is None or cached[0] is not cfg:
        section = OmegaConf.to_object(node) if node is not None else None
        if not is_dataclass(section):
            raise RecipeError(f"plugins.{name}: this recipe was loaded without the plugin that declares the section "
                              f"(load it with that plugin installed, or pass it: load_recipe(..., plugins=[...]))")
        cached = (cfg, section)
        _SECTIONS[cache_key] = cached
    return cached[1]


_SECTIONS: dict[tuple[int, str], tuple[DictConfig, Any]] = {}


def upgrade_legacy_keys(data: DictConfig, where: str) -> DictConfig:
    """Move keys that became plugin settings (LEGACY_KEYS) to their new place, with a warning."""
    container = OmegaConf.to_container(data, resolve=False)
    moved = False
    for old, new in LEGACY_KEYS.items():
        head, _, leaf = old.rpartition(".")
        parent = _dig(container, head.split("."))
        if not isinstance(parent, dict) or leaf not in parent:
            continue
        value = parent.pop(leaf)
        target = _dig(container, new.split(".")[:-1], create=True)
        existing = target.get(new.rsplit(".", 1)[1])
        if isinstance(existing, dict) and isinstance(value, dict):
            value = {**value, **existing}
        target[new.rsplit(".", 1)[1]] = value
        log.warning("%s: %s is now %s (a plugin's setting); moved", where, old, new)
        moved = True
    return OmegaConf.create(container) if moved else data


def _dig(tree: Any, path: list[str], create: bool = False) -> Any:
    for part in path:
        if not isinstance(tree, dict):
            return None
        if part not in tree and create:
            tree[part] = {}
        tree = tree.get(part)
    return tree


def _validate_sections(cfg: DictConfig, sections: dict[str, type], where: str) -> None:
    """Run each plugin section's own ``validate()``; a problem names the file and the dotted key."""
    for name in sections:
        section = plugin_section(cfg, name)
        check = getattr(section, "validate", None)
        for key, problem in (check() if callable(check) else {}).items():
            raise RecipeError(f"{where}: key 'plugins.{name}.{key}': {problem}")


def explain_docs(sections: dict[str, type]) -> dict[str, str]:
    """{dotted key: documentation} of the core schema and every plugin section, for ``recipe --explain``."""
    docs = field_docs()
    for name, section in sections.items():
        doc = inspect.getdoc(section) or ""
        if doc.startswith(f"{section.__name__}("):  # dataclass's generated signature: the module says more
            doc = inspect.getdoc(sys.modules.get(section.__module__)) or doc
        docs[f"plugins.{name}"] = " ".join(doc.split())
        docs.update(field_docs(section, f"plugins.{name}."))
    return docs
