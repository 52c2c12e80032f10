"""HFPolicy: a transformers image-text-to-text model in one role, and loading one from a local folder by capability
(any architecture ``AutoModelForImageTextToText`` knows; see :func:`check_model_dir`).

The reference model (for the KL term) is the role's weights *as loaded*: a frozen copy for full fine-tuning (loaded
again from the same folder the first time an optimizer asks for reference log-probs, so a run that needs none never
holds one), the adapter disabled under LoRA. Loading is offline (``local_files_only``) and never runs code from the folder unless
``recipe.model.trust_remote_code`` is true.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from visplay.api import Prompt, file_hashes
from visplay_models.checkpoint import every_rank_writes, portable_adapter_config, save_model, share_files
from visplay_models.forward import token_logprobs
from visplay_models.processor import VLProcessor
from visplay_models.sampler import HFSampler

# Families with multimodal rotary positions whose prompts the torchvision-free adapter (processor.py) encodes, and
# the class each is loaded with; any other image-text-to-text family goes through AutoProcessor / Auto class.
MROPE_MODEL_TYPES = {"qwen2_vl": "Qwen2VLForConditionalGeneration", "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
                     "qwen3_vl": "Qwen3VLForConditionalGeneration"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(Exception):
    """A model folder cannot be loaded; the message names the path and what is wrong."""


class HFPolicy:
    """A trainable model for one role (implements visplay.types.Policy)."""

    def __init__(self, model: Any, processor: VLProcessor, role: str, *, device: str | torch.device = "cpu",
                 keep_reference: bool = True, lora: bool = False, source: str = "",
                 reference_loader: Any = None, logprob_chunk_tokens: int | None = None,
                 state_format: str = "full", offload: bool = False):
        self.model = model
        self.processor = processor
        self.role = role
        self.device = torch.device(device)
        self.dtype = next(model.parameters()).dtype
        self.lora = lora
        self.source = source
        self.logprob_chunk_tokens = logprob_chunk_tokens  # tokens per head chunk in forward_stats (None: all)
        self.state_format, self.offload = state_format, offload  # plugins.models.fsdp (FSDP2 under torchrun only)
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        self.stop_ids: set[int] = {processor.im_end_id, *eos}
        # Without LoRA the reference is a frozen copy of the starting weights; with LoRA it is the adapter disabled.
        self._reference = None
        self._reference_loader = None if lora else reference_loader
        if keep_reference and not lora:
            self._reference = _frozen(copy.deepcopy(model))

    # --- Policy API ------------------------------------------------------------------------------------------------

    def sampler(self) -> HFSampler:
        """The HF sampler over the current weights (it reads ``self.model`` at each call)."""
        return HFSampler(self)

    def logprobs(self, prompts: Sequence[Prompt], responses: Sequence[Sequence[int]], *, grad: bool = False,
                 reference: bool = False, temperature: float = 1.0, micro_batch_size: int | None = None,
                 ) -> list[torch.Tensor]:
        """Teacher-forced per-token log-probs of each response (one (len,) float32 tensor per prompt).

        :param grad: keep the autograd graph (training); otherwise computed under no_grad.
        :param reference: use the frozen reference (starting weights, or the LoRA adapter disabled).
        :param temperature: scale logits by 1/T, as the sampler does when it reports log-probs (T <= 0: 1).
        :param micro_batch_size: rows per forward pass (None: all at once).
        """
        out, _ = self.forward_stats(prompts, responses, grad=grad, reference=reference, temperature=temperature,
                                    micro_batch_size=micro_batch_size)
        return out

    def forward_stats(self, prompts: Sequence[Prompt], responses: Sequence[Sequence[int]], *, grad: bool = False,
                      reference: bool = False, temperature: float = 1.0, micro_batch_size: int | None = None,
                      with_entropy: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """Like :meth:`logprobs`, also returning per-token entropies when ``with_entropy``."""
        if len(prompts) != len(responses):
            raise ValueError(f"logprobs: {len(prompts)} prompts but {len(responses)} responses")
        for i, r in enumerate(responses):
            if len(r) == 0:
                raise ValueError(f"logprobs: response {i} is empty")
        if reference and grad:
            raise ValueError("logprobs: the reference model is frozen (grad=True with reference=True)")
        encs = [self.processor.encode(p) for p in prompts]
        size = micro_batch_size or len(prompts) or 1
        lps: list[torch.Tensor] = []
        ents: list[torch.Tensor] = []
        with torch.set_grad_enabled(grad), self._reference_ctx(reference) as model:
            for start in range(0, len(prompts), size):
                lp, ent = token_logprobs(model, self.processor, encs[start:start + size],
                                         responses[start:start + size], temperature=temperature,
                                         with_entropy=with_entropy, device=self.device, dtype=self.dtype,
                                         chunk_tokens=self.logprob_chunk_tokens,
                                         min_chunks=self._head_calls(responses[start:start + size]))
                lps += lp
                ents += ent or []
        return lps, (ents if with_entropy else None)

    def _head_calls(self, responses: Sequence[Sequence[int]]) -> int:
        """Under FSDP with chunked log-probs: the most head chunks any rank needs for its current forward (each
        call of a sharded head is a collective, so every rank makes as many); else 0."""
        if not self.sharded or self.logprob_chunk_tokens is None:
            return 0
        from visplay.api import distributed

        mine = -(-sum(len(r) for r in responses) // self.logprob_chunk_tokens)
        return max(distributed.all_gather_objects(mine))

    def sequence_lengths(self, prompts: Sequence[Prompt], responses: Sequence[Sequence[int]]) -> list[int]:
        """Tokens of each prompt (chat template and image tokens included) plus its response: one row of a
        forward pass, which a token budget (plugins.grpo.max_tokens_per_micro_batch) groups by."""
        return [len(self.processor.encode(p).input_ids) + len(r) for p, r in zip(prompts, responses)]

    def _reference_ctx(self, reference: bool) -> Any:
        if not reference:
            return contextlib.nullcontext(self.model)
        if self.lora:
            @contextlib.contextmanager
            def disabled() -> Any:
                with self.model.disable_adapter():
                    yield self.model
            return disabled()
        if self._reference is None and self._reference_loader is not None:
            self._reference = _frozen(self._reference_loader())
            if self.sharded:
                from visplay.api import distributed

                distributed.parallelize(self._reference, "fsdp", is_transformer_block, offload=self._offload())
        if self._reference is None:
            raise ValueError("this policy keeps no reference model (loaded with keep_reference=False)")
        return contextlib.nullcontext(self._reference)

    def trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """(name, parameter) of every trainable weight, in a fixed (sorted) order."""
        return sorted(((n, p) for n, p in self.model.named_parameters() if p.requires_grad), key=lambda x: x[0])

    # --- FSDP (distributed.strategy: fsdp under torchrun) --------------------------------------------------------

    def shard(self) -> None:
        """Shard the model and its frozen reference over the training processes with FSDP2 (a no-op for one
        process). Every later gather (weights_sha256, save, full_state_dict) is a collective: all ranks call it."""
        from visplay.api import distributed

        if distributed.world_size() == 1:
            return
        if self.lora:
            raise ValueError("model.lora.enabled with distributed.strategy=fsdp is not supported (the adapter is "
                             "small: use distributed.strategy=ddp)")
        distributed.parallelize(self.model, "fsdp", is_transformer_block, offload=self._offload())
        if self._reference is not None:
            distributed.parallelize(self._reference, "fsdp", is_transformer_block, offload=self._offload())
        self.sharded = True

    sharded = False

    def _offload(self) -> Any:
        from visplay_models.dcp import offload_policy

        return offload_policy(self.offload, self.device)

    @property
    def sharded_state(self) -> bool:
        """Whether step snapshots are written shard by shard (FSDP2 with ``plugins.models.fsdp.state_format:
        sharded``); the optimizer then saves its state through :meth:`save_optimizer_state`."""
        return self.sharded and self.state_format == "sharded"

    def save_snapshot(self, directory: str | Path) -> dict[str, str]:
        """A step snapshot (``checkpoints/state/``): what :meth:`load_weights` needs to continue bit-exactly. With
        ``sharded_state`` each rank writes its shards into rank 0's ``directory/model`` (visplay_models/dcp.py),
        else the model folder of :meth:`save`. Returns {file: sha256} of this rank's ``directory``."""
        if not self.sharded_state:
            return self.save(directory)
        from visplay_models import dcp

        directory = Path(directory)
        dcp.write_marker(directory, self.role, {"source": Path(self.source).name, "lora": self.lora})
        dcp.save_model_state(self.model, directory / dcp.MODEL)
        return file_hashes(directory)

    def save_optimizer_state(self, optim: Any, directory: str | Path) -> dict[str, str]:
        """The torch optimizer ``optim`` (over this policy's parameters) shard by shard into rank 0's
        ``directory`` (``sharded_state`` only); {file: sha256} of this rank's ``directory``."""
        from visplay_models import dcp

        dcp.save_optimizer_state(self.model, optim, directory)
        return file_hashes(directory)

    def load_optimizer_state(self, optim: Any, directory: str | Path) -> None:
        """Restore what :meth:`save_optimizer_state` wrote (every rank its shards)."""
        from visplay_models import dcp

        dcp.load_optimizer_state(self.model, optim, directory)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The model's state dict with every FSDP shard gathered (``full_tensor()``, on every rank)."""
        return {name: (t.full_tensor() if type(t).__name__ == "DTensor" else t)
                for name, t in self.model.state_dict().items()}

    def weights_sha256(self) -> str:
        """sha256 over the names, shapes and bytes of all trainable weights (for replay checks)."""
        h = hashlib.sha256()
        for name, p in self.trainable_parameters():
            t = (p.full_tensor() if type(p).__name__ == "DTensor" else p).detach().to("cpu").contiguous()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}\n".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()

    def save(self, directory: str | Path) -> dict[str, str]:
        """Write a HF model folder (safetensors; LoRA merged) + processor files; return {file: sha256}.

        Under LoRA the adapter is also written to ``adapter/`` (peft, safetensors), so :meth:`load_weights` can
        restore the exact training state; the merged top-level folder is the export any tool can load.
        """
        directory = Path(directory)
        with every_rank_writes(self.model):
            if self.sharded:  # every rank gathers; each writes the full folder (ranks > 0 into throwaway copies)
                self.model.save_pretrained(directory, state_dict=self.full_state_dict(), safe_serialization=True)
            else:
                save_model(self.model, directory, lora=self.lora)
        if self.lora:
            self.model.save_pretrained(directory / "adapter", safe_serialization=True)
            portable_adapter_config(directory / "adapter", self.source)
        self.processor.save_pretrained(directory)
        # Only the source folder's name: the same run in two directories must save byte-identical checkpoints.
        (directory / "visplay_policy.json").write_text(json.dumps(
            {"role": self.role, "source": Path(self.source).name, "lora": self.lora}, indent=1, sort_keys=True))
        share_files(directory)
        return file_hashes(directory)

    def load_weights(self, directory: str | Path) -> None:
        """Load the trainable weights written by :meth:`save` into this policy, bit-exactly.

        The reference model is left as it is (the weights this policy was loaded with). Under LoRA the adapter
        (``adapter/``) is loaded onto the current base; otherwise every weight of the saved folder is copied in.
        """
        directory = Path(directory)
        from visplay_models import dcp

        if dcp.is_sharded_snapshot(directory):  # a step snapshot written by save_snapshot: each rank its shards
            dcp.load_model_state(self.model, directory / dcp.MODEL)
            return
        if self.lora:
            from peft.utils import set_peft_model_state_dict
            from safetensors.torch import load_file

            adapter_file = directory / "adapter" / "adapter_model.safetensors"
            if not adapter_file.is_file():
                raise ModelLoadError(f"{directory}: no LoRA adapter (adapter/adapter_model.safetensors)")
            result = set_peft_model_state_dict(self.model, load_file(str(adapter_file)))
            missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
            if missing:
                raise ModelLoadError(f"{adapter_file}: adapter keys do not match the model: {missing[:3]}")
            return
        saved, _ = load_hf_model(directory, dtype=_dtype_name(self.dtype), device="cpu")
        if self.sharded:  # each rank keeps its shard of the full tensors
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(self.model, saved.state_dict(), options=StateDictOptions(full_state_dict=True))
            return
        with torch.no_grad():
            self.model.load_state_dict(saved.state_dict(), strict=True)

    def train_mode(self) -> None:
        self.model.train()

    def eval_mode(self) -> None:
        self.model.eval()


# --- loading -----------------------------------------------------------------------------------------------------


def is_transformer_block(module: Any) -> bool:
    """A text decoder layer or vision encoder block of any transformers family: the modules transformers marks as
    ``GradientCheckpointingLayer`` (Qwen2/2.5/3-VL decoder layers and vision blocks, Gemma 3's decoder layers and
    its SigLIP tower's encoder layers, Idefics3's Llama layers and vision encoder layers). These are the units FSDP
    shards one by one and the layers ``gradient_checkpointing_enable`` recomputes, so both follow the family."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return isinstance(module, GradientCheckpointingLayer)


def _frozen(model: Any) -> Any:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, d in DTYPES.items() if d == dtype)


def check_model_dir(path: str | Path, trust_remote_code: bool = False) -> str:
    """Validate a local model folder by capability; return its ``model_type``. Raises ModelLoadError naming the path.

    Accepted: a folder whose config.json names an architecture transformers can load as an image-text-to-text
    model (``AutoModelForImageTextToText``'s table), with ``*.safetensors`` weights. A config that needs code from
    the folder (``auto_map``) is accepted only with ``trust_remote_code``."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ModelLoadError(f"model path {str(folder)!r} does not exist (models are never downloaded: "
                             "point model.path at a local folder)")
    if not folder.is_dir():
        raise ModelLoadError(f"model path {str(folder)!r} is not a folder")
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise ModelLoadError(f"model path {str(folder)!r} is not a model folder: it has no config.json")
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{cfg_file}: cannot read config.json: {exc}") from exc
    model_type = cfg.get("model_type")
    if cfg.get("auto_map") and not trust_remote_code:
        raise ModelLoadError(f"{cfg_file}: model_type={model_type!r} needs code from the folder (config.json has "
                             "auto_map); set model.trust_remote_code=true only if you trust that code")
    if not cfg.get("auto_map"):
        _check_vision_language(cfg_file, model_type)
    model_type = str(model_type)
    if not any(folder.glob("*.safetensors")):
        raise ModelLoadError(f"model path {str(folder)!r} has no *.safetensors weights (pickled .bin weights are "
                             "not loaded)")
    return model_type


def check_model_config(path: str | Path, trust_remote_code: bool = False) -> str:
    """The checks of :func:`check_model_dir` a folder without weights can pass (a dry run plans from config.json
    alone): the architecture, remote code, and no pickled-only weights. Returns the ``model_type``."""
    folder = Path(path).expanduser()
    if any(folder.glob("*.bin")) and not any(folder.glob("*.safetensors")):
        raise ModelLoadError(f"model path {str(folder)!r} has only pickled *.bin weights, which are not loaded: "
                             "convert them to safetensors")
    try:
        return check_model_dir(folder, trust_remote_code)
    except ModelLoadError as exc:
        if "no *.safetensors" in str(exc):
            return str(json.loads((folder / "config.json").read_text()).get("model_type"))
        raise


def _check_vision_language(cfg_file: Path, model_type: Any) -> None:
    """Refuse a config whose architecture transformers cannot load as an image-text-to-text model."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    if model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return
    if model_type in CONFIG_MAPPING_NAMES:
        raise ModelLoadError(f"{cfg_file}: unsupported architecture model_type={model_type!r}: transformers has no "
                             "image-text-to-text class for it (a text-only model? visplay needs a vision-language "
                             "model, e.g. qwen2_5_vl, qwen3_vl, idefics3, gemma3)")
    raise ModelLoadError(f"{cfg_file}: unsupported architecture model_type={model_type!r}: unknown to the installed "
                         f"transformers {transformers.__version__}")


def model_class(model_type: str) -> Any:
    """The transformers class that loads ``model_type`` as an image-text-to-text model."""
    from transformers import AutoModelForImageTextToText

    if model_type in MROPE_MODEL_TYPES:  # the classes these families have always been loaded with
        import transformers

        return getattr(transformers, MROPE_MODEL_TYPES[model_type])
    return AutoModelForImageTextToText


def load_hf_model(path: str | Path, *, dtype: str = "float32", device: str = "cpu",
                  trust_remote_code: bool = False) -> tuple[Any, Any]:
    """Load model + processor adapter from a local folder (offline, safetensors only)."""
    if dtype not in DTYPES:
        raise ModelLoadError(f"model.dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    model_type = check_model_dir(path, trust_remote_code=trust_remote_code)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the per-tensor loading bar is noise in logs and tests
    try:
        model = model_class(model_type).from_pretrained(
            str(path), dtype=DTYPES[dtype], local_files_only=True, use_safetensors=True,
            trust_remote_code=trust_remote_code)
        processor = load_processor(path, model_type, model.config, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise ModelLoadError(f"model path {str(path)!r}: cannot load: {exc}") from exc
    return model.to(device), processor


def load_processor(path: str | Path, model_type: str, config: Any, trust_remote_code: bool = False) -> Any:
    """The prompt encoder of a model folder: the torchvision-free Qwen adapter for the mrope families, else the
    family's own processor (``AutoProcessor``) behind :class:`visplay_models.processor.FamilyProcessor`."""
    if model_type in MROPE_MODEL_TYPES:
        return VLProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    from visplay_models.processor import FamilyProcessor

    return FamilyProcessor.from_pretrained(path, config, trust_remote_code=trust_remote_code)


def load_policy(path: str | Path, role: str, *, dtype: str = "float32", device: str = "cpu",
                trust_remote_code: bool = False, lora_cfg: Any = None, keep_reference: bool | None = True,
                seed: int = 0, fsdp: bool = False, gradient_checkpointing: bool = False,
                logprob_chunk_tokens: int | None = None, state_format: str = "full", offload: bool = False) -> HFPolicy:
    """An HFPolicy from a local folder; with ``lora_cfg.enabled`` a fresh LoRA adapter (initialised from
    ``seed``) is attached; with ``fsdp`` under several processes the model and its reference are sharded (FSDP2).
    ``gradient_checkpointing`` recomputes the trained model's layer activations in the backward pass (see
    :func:`recompute_activations`); ``logprob_chunk_tokens``: see :func:`visplay_models.forward.selected_logprobs`;
    ``state_format`` and ``offload``: ``plugins.models.fsdp`` (options.py), used only when sharded.

    ``keep_reference``: True copies the starting weights now, False keeps no reference, None loads them from
    ``path`` again on first use (what a run does: only an optimizer with a KL term asks)."""
    model, processor = load_hf_model(path, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    from visplay_models.lora import setting

    lora = bool(lora_cfg is not None and setting(lora_cfg, "enabled", False))
    if lora:
        from visplay_models.lora import add_lora

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = add_lora(model, lora_cfg)
    if gradient_checkpointing:
        recompute_activations(model, lora)
    model.train()

    def reference() -> Any:
        return load_hf_model(path, dtype=dtype, device=device, trust_remote_code=trust_remote_code)[0]

    policy = HFPolicy(model, processor, role, device=device, keep_reference=bool(keep_reference), lora=lora,
                      source=str(path), reference_loader=reference if keep_reference is None else None,
                      logprob_chunk_tokens=logprob_chunk_tokens, state_format=state_format, offload=offload)
    if fsdp:
        policy.shard()
    return policy


def recompute_activations(model: Any, lora: bool) -> None:
    """Gradient checkpointing of every text decoder layer and vision block (transformers'
    ``gradient_checkpointing_enable``, non-reentrant ``torch.utils.checkpoint``): in training mode each layer keeps
    only its input and recomputes the rest in the backward pass. Non-reentrant checkpointing works inside FSDP2
    units (each recomputation gathers the layer's shard again) and keeps dropout's draws (the RNG state is replayed).
    Under LoRA the frozen embeddings' output is made to require grad (``enable_input_require_grads``), which
    reentrant checkpointing needs and non-reentrant tolerates, as peft's own recipes do."""
    from visplay_models.forward import inner_model

    hf = inner_model(model)
    hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora:
        hf.enable_input_require_grads()
