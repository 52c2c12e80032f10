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
import textwrap
from dataclasses import dataclass, field, fields, is_dataclass
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
class TinyModelConfig:
    architecture: str = "qwen2_5_vl"
    """``qwen2_5_vl`` or ``qwen2_vl``: which transformers architecture the tiny model uses."""
    hidden_size: int = 128
    """Text hidden size; hidden_size / num_heads (head_dim) must be >= 32 for vLLM's CPU kernels."""
    num_layers: int = 2
    """Text decoder layers."""
    num_heads: int = 4
    """Text attention heads."""
    num_kv_heads: int = 2
    """Text key/value heads (grouped-query attention)."""
    intermediate_size: int = 256
    """Text MLP width."""
    vision_hidden_size: int = 64
    """Vision tower width."""
    vision_depth: int = 2
    """Vision tower blocks."""
    vision_heads: int = 2
    """Vision tower attention heads."""
    vocab_size: int = 1024
    """Byte-level BPE vocabulary size (special tokens included)."""
    cache_dir: str | None = None
    """Where built tiny models are cached, keyed by a hash of this section and the seed; None:
    $VISPLAY_CACHE/tiny, else ~/.cache/visplay/tiny."""


@dataclass
class LoraConfig:
    enabled: bool = False
    """Train LoRA adapters (peft) instead of all weights; the reference model is the adapter disabled."""
    r: int = 8
    """LoRA rank."""
    alpha: int = 16
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.0
    """LoRA dropout."""
    target_modules: str = r".*model\.language_model.*\.(q_proj|v_proj)"
    """Regex of module names that get adapters (default: the language model's q/v projections)."""


@dataclass
class ModelConfig:
    backend: str = "tiny"
    """Model backend plugin: ``tiny`` (built in-process, no download) or ``hf`` (a local transformers folder)."""
    path: str | None = None
    """Local model folder for backend ``hf`` (e.g. /models/Qwen2.5-VL-3B-Instruct). Never downloaded."""
    dtype: str = "float32"
    """Weights dtype: float32, bfloat16 or float16."""
    device: str = "cpu"
    """Torch device for training and HF sampling: cpu, cuda, cuda:N."""
    trust_remote_code: bool = False
    """Allow model code shipped inside the model folder (only when the architecture needs it)."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """Size of the embedded tiny model (backend ``tiny``)."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA settings."""


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


@dataclass
class FilterConfig:
    band: list[float] | None = None
    """Inclusive confidence band [low, high] for the reasoner's set; None: the variant's (paper 0.25-0.75,
    released 0.3-0.8)."""
    released_skip_rules: bool = False
    """Also apply the released code's extra skip rules (documented in docs/algorithm.md)."""


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
    none_as_vote: bool = False
    """Reproduce the released code's bug: a missing \\boxed{} counts as the vote "None". Off by default."""
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
    """Rollouts per optimizer update (global batch, released: 128); None: the whole rollout batch."""


@dataclass
class VllmConfig:
    gpu_memory_utilization: float = 0.45
    """Fraction of a GPU's memory the engine may take."""
    tensor_parallel_size: int = 1
    """GPUs per engine."""
    max_model_len: int = 2048
    """Context length of the engine."""
    enforce_eager: bool = True
    """Skip graph capture (needed on CPU; faster start-up)."""
    cpu_kvcache_gb: int = 1
    """KV-cache size on CPU (VLLM_CPU_KVCACHE_SPACE)."""


@dataclass
class SamplerConfig:
    questioner: str = "hf"
    """Sampler plugin for the questioner: ``hf`` or ``vllm``."""
    reasoner: str = "hf"
    """Sampler plugin for the reasoner: ``hf`` or ``vllm``."""
    vllm: VllmConfig = field(default_factory=VllmConfig)
    """vLLM engine settings."""


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
    """Judge plugin: ``rule`` (default), ``local`` (a model folder) or ``endpoint`` (OpenAI-compatible URL)."""
    judge_model: str | None = None
    """Model folder for the ``local`` judge."""
    judge_url: str | None = None
    """Base URL for the ``endpoint`` judge; nothing is contacted unless this is set."""
    max_new_tokens: int = 256
    """Response length for evaluation."""
    batch_size: int = 8
    """Prompts per generation batch."""
    limit: int | None = None
    """Evaluate at most this many items per benchmark."""


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
    plugins: dict[str, Any] = field(default_factory=dict)
    """Settings owned by plugins, one mapping per plugin name (e.g. ``plugins.games``); each plugin validates
    its own."""


# Values that depend on the variant (PAPER.md, "paper vs. released code"); used where the recipe says None.
VARIANT_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {"reasoner.filter.band": [0.25, 0.75], "reward.combine": "paper", "reward.diversity_scope": "image",
              "reward.format_weight": 0.0},
    "released": {"reasoner.filter.band": [0.3, 0.8], "reward.combine": "released",
                 "reward.diversity_scope": "batch", "reward.format_weight": 0.1},
}


# --- loading ---------------------------------------------------------------------------------------------------


def recipe_dirs() -> list[Path]:
    """Where recipe names are looked up: ./recipes, then the recipes/ folder beside the visplay package."""
    return [Path.cwd() / "recipes", Path(__file__).resolve().parent.parent / "recipes"]


def find_recipe(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise RecipeError(f"{path}: recipe file not found")
        return path
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


def load_recipe(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Schema -> YAML -> overrides -> variant defaults -> validation. Returns a resolved, read-only config."""
    path = find_recipe(str(name_or_path))
    schema = OmegaConf.structured(RecipeConfig)
    try:
        text = path.read_text()
        data = OmegaConf.create(text) if text.strip() else OmegaConf.create({})
    except Exception as exc:  # yaml's errors do not share a base class with OmegaConf's
        raise RecipeError(f"{path}: cannot parse recipe: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, DictConfig):
        raise RecipeError(f"{path}: a recipe is a mapping of keys, got a {type(data).__name__}")
    cfg = _merge(schema, data, where=str(path))
    _mark_required(cfg, data)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"command line: override {item!r} is not key=value")
        try:
            dot = OmegaConf.from_dotlist([item])
        except (OmegaConfBaseException, ValueError) as exc:
            raise RecipeError(f"command line: cannot parse override {item!r}: {exc}") from exc
        cfg = _merge(cfg, dot, where=f"command-line override {item!r}")
    _apply_variant_defaults(cfg, str(path))
    try:
        missing = sorted(OmegaConf.missing_keys(cfg))
    except OmegaConfBaseException as exc:
        raise RecipeError(f"{path}: {exc}") from exc
    if missing:
        setup = f"\n{cfg.setup.strip()}" if cfg.get("setup") else ""
        raise RecipeError(f"{path}: required key(s) missing: {', '.join(missing)} (set them in the recipe or as "
                          f"key=value on the command line){setup}")
    try:
        OmegaConf.resolve(cfg)
    except (OmegaConfBaseException, ValueError) as exc:
        raise RecipeError(f"{path}: {_describe(exc)}") from exc
    _validate(cfg, str(path))
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


def _merge(base: DictConfig, new: DictConfig, where: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, new)
    except (ConfigKeyError, ConfigAttributeError) as exc:
        key = _full_key(exc)
        hint = _closest(key, all_keys())
        raise RecipeError(f"{where}: unknown key {key!r}" + (f"; did you mean {hint!r}?" if hint else "")) from exc
    except (ValidationError, GrammarParseError, MissingMandatoryValue) as exc:
        raise RecipeError(f"{where}: key {_full_key(exc)!r}: {_describe(exc)}") from exc
    except OmegaConfBaseException as exc:
        raise RecipeError(f"{where}: {_describe(exc)}") from exc


def _full_key(exc: OmegaConfBaseException) -> str:
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    return str(key)


def _describe(exc: Exception) -> str:
    return str(exc).split("\n")[0]


def _closest(key: str, candidates: list[str]) -> str | None:
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if match:
        return match[0]
    leaf = key.rsplit(".", 1)[-1]
    leaves = [c for c in candidates if c.rsplit(".", 1)[-1] == leaf]
    return leaves[0] if len(leaves) == 1 else None


def all_keys(cls: type = RecipeConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the schema."""
    keys = []
    for f in fields(cls):
        dotted = f"{prefix}{f.name}"
        keys.append(dotted)
        sub = f.default_factory() if callable(f.default_factory) else None  # type: ignore[misc]
        if is_dataclass(sub):
            keys.extend(all_keys(type(sub), dotted + "."))
    return keys


def _apply_variant_defaults(cfg: DictConfig, where: str) -> None:
    variant = cfg.get("variant")
    if variant not in VARIANTS:
        raise RecipeError(f"{where}: key 'variant': must be one of {', '.join(VARIANTS)}, got {variant!r}")
    for key, value in VARIANT_DEFAULTS[variant].items():
        if OmegaConf.select(cfg, key) is None:
            OmegaConf.update(cfg, key, value, merge=False)


def _validate(cfg: DictConfig, where: str) -> None:
    def fail(key: str, why: str) -> None:
        raise RecipeError(f"{where}: key {key!r}: {why}")

    band = list(cfg.reasoner.filter.band)
    if len(band) != 2 or not (0.0 <= band[0] <= band[1] <= 1.0):
        fail("reasoner.filter.band", f"must be [low, high] with 0 <= low <= high <= 1, got {band}")
    for role in ROLES:
        section = cfg[role]
        for key in ("steps", "group_size", "votes"):
            if section[key] < 1:
                fail(f"{role}.{key}", f"must be >= 1, got {section[key]}")
        if section.sampling.temperature < 0:
            fail(f"{role}.sampling.temperature", "must be >= 0")
        if not 0 < section.sampling.top_p <= 1:
            fail(f"{role}.sampling.top_p", "must be in (0, 1]")
        if cfg.sampler[role] not in ("hf", "vllm"):
            fail(f"sampler.{role}", f"must be 'hf' or 'vllm', got {cfg.sampler[role]!r}")
    if cfg.iterations < 1:
        fail("iterations", "must be >= 1")
    if cfg.reward.diversity_scope not in ("image", "batch"):
        fail("reward.diversity_scope", "must be 'image' or 'batch'")
    if cfg.data.resize not in ("fixed", "pixels", "none"):
        fail("data.resize", "must be 'fixed', 'pixels' or 'none'")
    if cfg.model.dtype not in ("float32", "bfloat16", "float16"):
        fail("model.dtype", "must be float32, bfloat16 or float16")
    if cfg.model.backend == "tiny":
        tiny = cfg.model.tiny
        if tiny.hidden_size % tiny.num_heads or tiny.hidden_size // tiny.num_heads < 32:
            fail("model.tiny.hidden_size", "hidden_size / num_heads must be an integer >= 32 (vLLM CPU kernels)")
    if cfg.distributed.strategy not in ("ddp", "fsdp"):
        fail("distributed.strategy", "must be 'ddp' or 'fsdp'")


def recipe_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, sort_keys=True)


def recipe_sha256(cfg: DictConfig) -> str:
    return hashlib.sha256(recipe_yaml(cfg).encode()).hexdigest()


def plugin_options(cfg: DictConfig, plugin: str) -> dict[str, Any]:
    """A plugin's own settings (``plugins.<name>``) as a plain dict; empty when absent."""
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
