"""The weight-push side that runs inside each vLLM worker process.

``VllmEngine`` starts vLLM with ``worker_extension_cls="visplay_vllm.worker.WeightSync"``: vLLM mixes this class
into its worker class, so the trainer can call the methods below *by name* through ``llm.collective_rpc(...)``.
Only the name and plain arguments (a path) travel to the engine's processes, never a pickled function, so
``VLLM_ALLOW_INSECURE_SERIALIZATION`` is not needed.

The weights travel as one safetensors file in shared memory (``/dev/shm`` when present): the trainer (rank 0)
writes the FSDP-gathered state once, every worker of the engine (one per tensor-parallel rank) maps it and loads
its own shard with ``reload_weights(..., is_checkpoint_format=True)``, which takes Hugging Face checkpoint names and
does vLLM's own fusing and sharding (qkv_proj, gate_up_proj, TP slices).

This module must import without vLLM (the hash below is shared with the trainer side and the tests).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any


def tensor_sha256(items: Iterable[tuple[str, Any]]) -> str:
    """sha256 over ``(name, tensor)`` pairs in name order: ``name:shape:dtype\\n`` then the raw bytes.

    The same canonical form as ``HFPolicy.weights_sha256`` (trainable weights, sorted by name), so without LoRA the
    hash of what an engine received equals the trainer's weight hash.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(items, key=lambda item: item[0]):
        hash_tensor(h, name, tensor)
    return h.hexdigest()


def hash_tensor(h: Any, name: str, tensor: Any) -> None:
    """Feed one named tensor into the running hash ``h`` (see :func:`tensor_sha256`)."""
    import torch

    t = tensor.detach().to("cpu").contiguous()
    h.update(f"{name}:{tuple(t.shape)}:{t.dtype}\n".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def read_safetensors(path: str) -> Iterator[tuple[str, Any]]:
    """(name, tensor) of a safetensors file in name order, read lazily (one tensor in memory at a time)."""
    from safetensors import safe_open

    with safe_open(path, framework="pt", device="cpu") as f:
        for name in sorted(f.keys()):  # noqa: SIM118 - safe_open has no items()
            yield name, f.get_tensor(name)


class WeightSync:
    """vLLM worker extension: load pushed weights and report their hash (called via ``collective_rpc``)."""

    def visplay_load_weights(self, path: str) -> dict[str, Any]:
        """Load the checkpoint-format safetensors file at ``path`` into the live model.

        Returns {"tensors": count, "sha256": tensor_sha256 of what was loaded}, computed while loading.
        """
        h, count = hashlib.sha256(), 0
        rename = self._visplay_rename()

        def tensors() -> Iterator[tuple[str, Any]]:
            nonlocal count
            for name, tensor in read_safetensors(path):  # name order: the hash is built while loading
                hash_tensor(h, name, tensor)  # under the trainer's name, so it equals the trainer's hash
                count += 1
                yield rename(name), tensor

        self.reload_weights(weights_iterator=tensors(), is_checkpoint_format=True)  # type: ignore[attr-defined]
        self._visplay_retie()
        self.visplay_sha256 = h.hexdigest()
        return {"tensors": count, "sha256": self.visplay_sha256}

    def _visplay_rename(self) -> Any:
        """The family's renaming for vLLM (visplay_vllm/names.py), from the loaded model's config; identity if none."""
        from visplay_vllm.names import ADAPTERS

        model = self.model_runner.get_model()  # type: ignore[attr-defined]
        model_type = getattr(getattr(model, "config", None), "model_type", "")
        return ADAPTERS.get(model_type, lambda name: name)

    def _visplay_retie(self) -> None:
        """Tied embeddings (the 3B): a checkpoint holds one tensor for embed_tokens and lm_head, and vLLM's in-place
        reload puts the lm_head's *old* tensor back ("Failed to load weights"), un-tying it; point the head at the
        new embedding again (measured: log-probs off by ~20 nats after a push without this)."""
        model = self.model_runner.get_model()  # type: ignore[attr-defined]
        config = model.config if hasattr(model, "config") else None
        text = getattr(config, "text_config", config)
        if not (getattr(text, "tie_word_embeddings", False) or getattr(config, "tie_word_embeddings", False)):
            return
        embeds = [m for n, m in model.named_modules() if n.endswith("embed_tokens") and hasattr(m, "weight")]
        for name, module in model.named_modules():
            if name.endswith("lm_head") and hasattr(module, "weight") and embeds:
                module.weight = embeds[0].weight
                method = getattr(module, "quant_method", None)  # CPU: re-pack the head's GEMM from the new weight
                if method is not None and hasattr(method, "process_weights_after_loading"):
                    method.process_weights_after_loading(module)

    def visplay_weights_sha256(self) -> str | None:
        """The hash of the weights this worker last loaded through :meth:`visplay_load_weights` (None: none yet)."""
        return getattr(self, "visplay_sha256", None)
