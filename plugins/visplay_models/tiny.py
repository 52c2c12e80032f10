"""The embedded default model: a tiny Qwen2.5-VL (or Qwen2-VL) built in-process, with no downloads.

``build_tiny_model(tiny_cfg, seed)`` trains a byte-level BPE tokenizer on a small built-in corpus (with Qwen's special
tokens at fixed ids and a Qwen-style chat template), initialises a small model from the seed, and writes a plain
Hugging Face model folder with ``save_pretrained`` (config, safetensors weights, tokenizer, preprocessor config).
Any tool that reads a HF model folder (transformers, vLLM) can load it. Folders are cached on disk, keyed by a hash
of (tiny config, seed, FORMAT_VERSION); the build is deterministic, so a cache hit and a rebuild give the same bits.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
# A family whose build changed after it first landed gets its own version here, so a cached folder of the older
# build is not reused; the other families' cache keys stay as they were (gemma3 2: Gemma's newline tokens).
FAMILY_FORMATS = {"gemma3": 2}

# Qwen's special tokens, at fixed ids 0..6 (the real Qwen vocabulary puts them after 151642; only their strings and
# roles matter to the model code, which reads the ids from the config).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
SPECIAL_IDS = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
# plugins.models.tiny.architecture: the Qwen mrope families (built here) and the others (tiny_families.py).
ARCHITECTURES = ("qwen2_5_vl", "qwen2_vl", "qwen3_vl", "idefics3", "gemma3")
# plugins.models.tiny.architecture -> the transformers class its folder is built with (the Qwen-VL families)
QWEN_CLASSES = {"qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration", "qwen2_vl": "Qwen2VLForConditionalGeneration",
                "qwen3_vl": "Qwen3VLForConditionalGeneration"}
QWEN3_PATCH = 16  # Qwen3-VL's patch size (Qwen2/2.5-VL: 14), merged 2 x 2 as theirs

# Qwen-style chat template: an optional system turn, user content as a list of {type: image|text} parts (or a
# string), and the assistant generation prompt. No default system prompt, so the tiny prompt stays short.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_WORDS = """
what which how many where who why when is are the a an of in on at to from with and or not this that these those
image picture shows show there it its color colour shape number count total sum difference largest smallest
question answer type think reason step first then so therefore final because value equal more less than
multiple choice numerical regression yes no true false none option options
tile tiles row rows column columns move moves left right up down top bottom middle center corner board grid cell
cells game score merge swap match pair pairs path empty full next after before same different
red green blue yellow orange purple black white gray grey brown pink cyan
circle square triangle rectangle star line lines dot dots bar bars chart plot axis label labels point points
small large big tiny long short wide narrow height width area angle side sides
one two three four five six seven eight nine ten zero half double
you your i we they he she can could should would will do does did have has had be been
please describe look at carefully give put your final answer in boxed
"""

_SENTENCES = [
    "<question>How many red circles are in the image?</question>",
    "<type>numerical</type><question>What is the sum of the tiles in the top row?</question><answer>8</answer>",
    "<type>multiple choice</type><question>Which shape is left of the blue square? A. circle B. star</question>"
    "<answer>A</answer>",
    "<type>regression</type><question>What is the height of the largest bar?</question><answer>3.5</answer>",
    "<think>The top row has 2 and 2 and 4, so the total is 8.</think> The answer is \\boxed{8}.",
    "<think>Count the dots: one, two, three.</think> \\boxed{3}",
    "Move the tile left, then up. Merge the pair in row 2, column 3.",
    "The answer is \\boxed{A}. The answer is \\boxed{B}. The answer is \\boxed{C}. The answer is \\boxed{D}.",
    "x = 12 + 7 = 19, y = 3 * 4 = 12, z = 100 / 5 = 20, 0.5 + 1.25 = 1.75",
    "\\frac{1}{2} \\times \\sqrt{4} = 1, a^2 + b^2 = c^2",
]


def corpus() -> list[str]:
    """The fixed training corpus of the tiny tokenizer (deterministic; no randomness involved)."""
    words = _WORDS.split()
    lines = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    lines += [w.capitalize() + "?" for w in words]
    lines += [" ".join(str(n) for n in range(k, k + 20)) for k in range(0, 200, 20)]
    lines += [f"\\boxed{{{n}}}" for n in range(20)]
    return lines + _SENTENCES * 4


def train_tokenizer(vocab_size: int, specials: tuple[str, ...] = SPECIAL_TOKENS, eos: str = "<|im_end|>",
                    pad: str = "<|endoftext|>", chat_template: str = CHAT_TEMPLATE, bos: str | None = None,
                    **named: Any) -> Any:
    """A byte-level BPE trained on :func:`corpus`, ``specials`` at ids 0.., wrapped in PreTrainedTokenizerFast;
    ``named``: the family's named special tokens (Gemma 3: ``extra_special_tokens={"boi_token": ...}``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + len(specials) + 16:
        raise ValueError(f"plugins.models.tiny.vocab_size must be >= {256 + len(specials) + 16}, got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=1, special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    for idx, text in enumerate(specials):
        if tok.token_to_id(text) != idx:  # the trainer places specials first; this guards that assumption
            raise RuntimeError(f"tokenizer: special token {text} got id {tok.token_to_id(text)}, expected {idx}")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=eos, pad_token=pad, bos_token=bos,
        unk_token=None, model_max_length=32768, **named,
    )
    fast.chat_template = chat_template
    return fast


# --- model config ------------------------------------------------------------------------------------------------


def _tiny_dict(tiny_cfg: Any) -> dict[str, Any]:
    """The tiny section as a plain dict, without cache_dir (where a model is cached does not change it)."""
    if isinstance(tiny_cfg, Mapping):
        data = dict(tiny_cfg)
    else:
        try:
            from omegaconf import OmegaConf

            data = OmegaConf.to_container(tiny_cfg, resolve=True)  # type: ignore[assignment]
        except ValueError:
            from dataclasses import asdict

            data = asdict(tiny_cfg)
    data.pop("cache_dir", None)
    from visplay_models.options import TinyModelConfig

    merged = {**{k: v for k, v in TinyModelConfig().__dict__.items() if k != "cache_dir"}, **data}
    unknown = set(merged) - set(TinyModelConfig().__dict__)
    if unknown:
        raise ValueError(f"plugins.models.tiny: unknown key(s) {sorted(unknown)}")
    return merged


def _check(t: dict[str, Any]) -> None:
    arch = t["architecture"]
    if arch not in ARCHITECTURES:
        raise ValueError(f"plugins.models.tiny.architecture must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    if t["hidden_size"] % t["num_heads"] or t["hidden_size"] // t["num_heads"] < 32:
        raise ValueError("plugins.models.tiny.hidden_size / model.tiny.num_heads must be an integer >= 32 "
                         f"(got {t['hidden_size']} / {t['num_heads']})")
    if (t["hidden_size"] // t["num_heads"]) % 8:
        raise ValueError("model.tiny: head_dim (hidden_size / num_heads) must be a multiple of 8 (mrope sections)")
    if t["num_heads"] % t["num_kv_heads"]:
        raise ValueError("plugins.models.tiny.num_heads must be a multiple of model.tiny.num_kv_heads")
    if t["vision_hidden_size"] % t["vision_heads"] or (t["vision_hidden_size"] // t["vision_heads"]) % 4:
        raise ValueError("plugins.models.tiny.vision_hidden_size / vision_heads must be an integer multiple of 4")


def _mrope_section(head_dim: int) -> list[int]:
    """Temporal/height/width split of head_dim / 2 rotary frequencies, in Qwen's proportions (16, 24, 24 of 64)."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def _mrope_section_qwen3(head_dim: int) -> list[int]:
    """Qwen3-VL's interleaved split in its checkpoints' proportions (24, 20, 20 of 64)."""
    half = head_dim // 2
    t = half * 3 // 8
    h = (half - t) // 2
    return [t, h, half - t - h]


def _qwen3_vl_config(t: dict[str, Any], text: dict[str, Any], ids: dict[str, int]) -> Any:
    from transformers import Qwen3VLConfig

    head_dim = t["hidden_size"] // t["num_heads"]
    text = {**text, "head_dim": head_dim, "rope_parameters": {
        "rope_type": "default", "rope_theta": 10000.0, "mrope_section": _mrope_section_qwen3(head_dim),
        "mrope_interleaved": True}}
    # one DeepStack level, from the first vision block into the first decoder layer; a learned 8 x 8 position grid
    vision = dict(depth=t["vision_depth"], hidden_size=t["vision_hidden_size"], num_heads=t["vision_heads"],
                  intermediate_size=2 * t["vision_hidden_size"], out_hidden_size=t["hidden_size"],
                  patch_size=QWEN3_PATCH, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
                  deepstack_visual_indexes=[0])
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)


def model_config(tiny_cfg: Any) -> Any:
    """The transformers config of the tiny model described by ``tiny_cfg`` (recipe.plugins.models.tiny)."""
    t = _tiny_dict(tiny_cfg)
    _check(t)
    if t["architecture"] in ("idefics3", "gemma3"):
        from visplay_models import tiny_families

        return getattr(tiny_families, f"{t['architecture']}_config")(t)
    head_dim = t["hidden_size"] // t["num_heads"]
    text = dict(
        vocab_size=t["vocab_size"], hidden_size=t["hidden_size"], intermediate_size=t["intermediate_size"],
        num_hidden_layers=t["num_layers"], num_attention_heads=t["num_heads"],
        num_key_value_heads=t["num_kv_heads"], max_position_embeddings=4096, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "mrope_section": _mrope_section(head_dim)},
        bos_token_id=SPECIAL_IDS["<|endoftext|>"], eos_token_id=SPECIAL_IDS["<|im_end|>"],
        pad_token_id=SPECIAL_IDS["<|endoftext|>"], tie_word_embeddings=False,
    )
    ids = dict(
        image_token_id=SPECIAL_IDS["<|image_pad|>"], video_token_id=SPECIAL_IDS["<|video_pad|>"],
        vision_start_token_id=SPECIAL_IDS["<|vision_start|>"], vision_end_token_id=SPECIAL_IDS["<|vision_end|>"],
    )
    if t["architecture"] == "qwen3_vl":
        return _qwen3_vl_config(t, text, ids)
    if t["architecture"] == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        vision = dict(
            depth=t["vision_depth"], hidden_size=t["vision_hidden_size"], num_heads=t["vision_heads"],
            intermediate_size=2 * t["vision_hidden_size"], out_hidden_size=t["hidden_size"],
            fullatt_block_indexes=[t["vision_depth"] - 1], window_size=112, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2,
        )
        cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
    else:
        from transformers import Qwen2VLConfig

        vision = dict(
            depth=t["vision_depth"], embed_dim=t["vision_hidden_size"], hidden_size=t["hidden_size"],
            num_heads=t["vision_heads"], mlp_ratio=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
        )
        cfg = Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
    return cfg


# --- build and cache ---------------------------------------------------------------------------------------------


def cache_key(tiny_cfg: Any, seed: int) -> str:
    """sha256 (first 16 hex digits) of (tiny config without cache_dir, seed, FORMAT_VERSION, and the family's own
    build version where :data:`FAMILY_FORMATS` has one)."""
    tiny = _tiny_dict(tiny_cfg)
    key: dict[str, Any] = {"tiny": tiny, "seed": int(seed), "format": FORMAT_VERSION}
    if tiny.get("architecture") in FAMILY_FORMATS:
        key["family_format"] = FAMILY_FORMATS[tiny["architecture"]]
    blob = json.dumps(key, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir(tiny_cfg: Any = None) -> Path:
    """recipe.plugins.models.tiny.cache_dir, else $VISPLAY_CACHE/tiny, else ~/.cache/visplay/tiny."""
    explicit = None
    if tiny_cfg is not None:
        explicit = tiny_cfg.get("cache_dir") if isinstance(tiny_cfg, Mapping) or hasattr(tiny_cfg, "get") else \
            getattr(tiny_cfg, "cache_dir", None)
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("VISPLAY_CACHE"):
        return Path(os.environ["VISPLAY_CACHE"]) / "tiny"
    return Path.home() / ".cache" / "visplay" / "tiny"


def build_tiny_model(tiny_cfg: Any, seed: int, cache_dir: Path | str | None = None) -> Path:
    """Build (or reuse from the cache) the tiny model folder and return its path.

    :param tiny_cfg: recipe.plugins.models.tiny (DictConfig, dict or TinyModelConfig).
    :param seed: weight-initialisation seed (use ``derive_seed(root, "model", "tiny")``).
    :param cache_dir: parent folder of cached builds; None: :func:`default_cache_dir`.
    :return: ``<cache_dir>/<arch>-<key>``, a folder ``from_pretrained`` can load.
    """
    t = _tiny_dict(tiny_cfg)
    parent = Path(cache_dir) if cache_dir is not None else default_cache_dir(tiny_cfg)
    target = parent / f"{t['architecture']}-{cache_key(t, seed)}"
    if (target / "visplay_tiny.json").is_file():
        return target
    parent.mkdir(parents=True, exist_ok=True)
    # Build in a temporary sibling and rename: a concurrent or interrupted build never leaves a half folder.
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=parent))
    try:
        _write_model(t, int(seed), tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first; its folder is identical
            if not (target / "visplay_tiny.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_model(t: dict[str, Any], seed: int, folder: Path) -> None:
    if t["architecture"] not in QWEN_CLASSES:
        from visplay_models.tiny_families import write_family_model

        write_family_model(t, seed, folder)
        return
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    from visplay_models.processor import default_image_processor

    hf_logging.disable_progress_bar()  # the shard-writing bar is noise in logs and tests
    tokenizer = train_tokenizer(t["vocab_size"])
    cfg = model_config(t)
    cls = getattr(transformers, QWEN_CLASSES[t["architecture"]])
    # Initialise under a private generator state: fork_rng restores the global state afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(cfg)
    model.generation_config.eos_token_id = SPECIAL_IDS["<|im_end|>"]
    model.generation_config.pad_token_id = SPECIAL_IDS["<|endoftext|>"]
    from visplay_models.checkpoint import every_rank_writes

    with every_rank_writes(model):  # under torchrun each rank builds its own copy (the first rename wins)
        model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    if t["architecture"] == "qwen3_vl":  # 16-px patches, Qwen3-VL's normalisation (mean = std = 0.5)
        unit = QWEN3_PATCH * 2
        default_image_processor(min_pixels=4 * unit * unit, max_pixels=256 * unit * unit, patch_size=QWEN3_PATCH,
                                image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    else:
        default_image_processor().save_pretrained(folder)
    meta = {"format": FORMAT_VERSION, "seed": seed, "tiny": t,
            "parameters": sum(p.numel() for p in model.parameters())}
    (folder / "visplay_tiny.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
