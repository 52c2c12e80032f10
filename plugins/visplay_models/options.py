"""The models plugin's recipe section, ``plugins.models``: the tiny model's size, LoRA and training memory.

Declared through ``visplay_recipe_sections``, so the recipe loader validates these keys (unknown key, wrong type,
closest-key hint, exit 2) and ``visplay recipe --explain`` documents them from the docstrings below.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from visplay.api import optional_int_at_least


@dataclass
class TinyModelConfig:
    """Size of the embedded tiny model (``model.backend: tiny``), built in-process and cached by a hash of these
    values and the seed."""

    architecture: str = "qwen2_5_vl"
    """``qwen2_5_vl``, ``qwen2_vl``, ``qwen3_vl`` (16-px patches, DeepStack, interleaved mrope), ``idefics3``
    (SmolVLM's architecture, a Llama text model) or ``gemma3`` (SigLIP, 4 pooled image tokens, a Gemma 3 text
    model): which transformers architecture the tiny model uses."""
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

    def validate(self) -> dict[str, str]:
        problems = {}
        from visplay_models.tiny import ARCHITECTURES

        if self.architecture not in ARCHITECTURES:
            problems["architecture"] = f"must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}"
        if self.num_heads < 1 or self.hidden_size % self.num_heads or self.hidden_size // self.num_heads < 32:
            problems["hidden_size"] = "hidden_size / num_heads must be an integer >= 32 (vLLM CPU kernels)"
        elif (self.hidden_size // self.num_heads) % 8:
            problems["hidden_size"] = "head_dim (hidden_size / num_heads) must be a multiple of 8 (mrope sections)"
        if self.num_kv_heads < 1 or self.num_heads % self.num_kv_heads:
            problems["num_kv_heads"] = "num_heads must be a multiple of num_kv_heads"
        for key in ("num_layers", "intermediate_size", "vision_depth"):
            if getattr(self, key) < 1:
                problems[key] = f"must be >= 1, got {getattr(self, key)}"
        if self.vision_heads < 1 or self.vision_hidden_size % self.vision_heads \
                or (self.vision_hidden_size // self.vision_heads) % 4:
            problems["vision_hidden_size"] = "vision_hidden_size / vision_heads must be an integer multiple of 4"
        return problems


@dataclass
class LoraConfig:
    """LoRA through peft: adapters on the language model's projections; the reference model is the adapter
    disabled."""

    enabled: bool = False
    """Train LoRA adapters (peft) instead of all weights; the reference model is the adapter disabled."""
    r: int = 8
    """LoRA rank."""
    alpha: int = 16
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.0
    """LoRA dropout."""
    target_modules: str = r".*model\.language_model.*\.(q_proj|v_proj)"
    """Regex of module names that get adapters (default: the language model's q/v projections; for a family whose
    text model is not ``model.language_model``, e.g. Idefics3's ``model.text_model``, the same projections under
    the model's decoder)."""

    def validate(self) -> dict[str, str]:
        problems = {key: f"must be >= 1, got {getattr(self, key)}" for key in ("r", "alpha") if getattr(self, key) < 1}
        if not 0.0 <= self.dropout < 1.0:
            problems["dropout"] = f"must be in [0, 1), got {self.dropout}"
        return problems


STATE_FORMATS = ("full", "sharded")


@dataclass
class FsdpOptions:
    """How the FSDP2-sharded training state (``distributed.strategy: fsdp`` under several processes) is kept in
    memory and written to step snapshots; one training process ignores this section."""

    state_format: str = "full"
    """Step snapshots (``checkpoints/state/``) as ``full`` (every rank gathers the whole weights and AdamW moments
    and writes a model folder + optimizer.safetensors, as one process does) or ``sharded`` (each rank writes only
    its own shards through torch.distributed.checkpoint: no rank ever holds the whole state; the run directory must
    be on a filesystem every rank sees). Iteration checkpoints ``<role>_v<i>`` are model folders either way."""
    offload: bool = False
    """FSDP2 CPU offload (``CPUOffloadPolicy``): parameters, gradients and optimizer state live in host memory and
    each layer's parameters are copied to the GPU only for its forward and backward; the optimizer steps on the
    CPU. Frees their GPU memory at the cost of host-device copies and a CPU optimizer step."""

    def validate(self) -> dict[str, str]:
        if self.state_format not in STATE_FORMATS:
            return {"state_format": f"must be one of {', '.join(STATE_FORMATS)}, got {self.state_format!r}"}
        return {}


@dataclass
class ModelsOptions:
    """The models plugin (backends ``tiny`` and ``hf``, sampler ``hf``): the tiny model's size, LoRA and how the
    training forward saves memory (recomputation, chunked log-probs)."""

    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """Size of the embedded tiny model (backend ``tiny``)."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA settings (both backends)."""
    fsdp: FsdpOptions = field(default_factory=FsdpOptions)
    """FSDP2 training state: snapshot format and CPU offload (``distributed.strategy: fsdp``)."""
    plan_as: str | None = None
    """A hub id whose built-in facts (visplay_models/facts.py) plan a ``--dry-run`` when ``model.path`` is not
    given (the paper recipes name theirs); a local ``model.path`` always wins."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass instead of holding them: each text decoder layer and vision
    block keeps only its input (transformers' gradient checkpointing, non-reentrant; works with LoRA and FSDP2).
    Same gradients up to float rounding, about one more forward pass of compute; on in the GPU recipes."""
    logprob_chunk_tokens: int | None = None
    """Response tokens per chunk when the head turns hidden states into log-probs and entropies: each chunk's
    float32 logits are reduced (logit - logsumexp) and freed, and recomputed in the backward pass, so a
    micro-batch's full-vocabulary logits are never held at once; null: all tokens in one pass."""

    legacy_keys = {"model.tiny": "tiny", "model.lora": "lora"}
    path_keys = ("tiny.cache_dir",)

    def validate(self) -> dict[str, str]:
        problems = {**{f"tiny.{k}": v for k, v in self.tiny.validate().items()},
                    **{f"lora.{k}": v for k, v in self.lora.validate().items()},
                    **{f"fsdp.{k}": v for k, v in self.fsdp.validate().items()}}
        chunk = optional_int_at_least(self.logprob_chunk_tokens, 1)
        return {**problems, **({"logprob_chunk_tokens": chunk} if chunk else {})}
