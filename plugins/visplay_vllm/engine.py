"""One in-process ``vllm.LLM`` per role, started once and kept up to date by pushing weights into it.

Start-up costs ~20 s on CPU (minutes for a 7B model on a GPU), so an engine lives for the whole run (and is
reused by later runs in the same process when the architecture is the same): after each optimizer update the
trainer's weights are written to one safetensors file and loaded into the live engine with
``llm.collective_rpc(reload_weights_from_files, args=(paths,))``, then the prefix, encoder and multimodal caches are
reset (a stale encoder cache fails the next request with "Encoder cache miss"; a stale prefix cache would serve
old KV blocks).

On CPU the engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, executor ``uni``): start-up measured
10 s instead of 80 s here, and the RPC function is called directly. On GPUs it runs in its own processes on the
sampling GPUs of the placement (CUDA_VISIBLE_DEVICES is set while the engine spawns), and the RPC function is
pickled by reference, which vLLM allows only with VLLM_ALLOW_INSECURE_SERIALIZATION=1.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("visplay.vllm")


def reload_weights_from_files(worker: Any, paths: list[str]) -> int:
    """Runs inside each vLLM worker: load checkpoint-format safetensors files into the live model.

    Must be a top-level function of an importable module (vLLM pickles it by reference). Returns the tensor count.
    """
    from safetensors import safe_open

    def tensors():
        for path in paths:
            with safe_open(path, framework="pt", device="cpu") as f:
                for name in f.keys():  # noqa: SIM118 - safe_open has no items()
                    yield name, f.get_tensor(name)

    count = 0

    def counted():
        nonlocal count
        for item in tensors():
            count += 1
            yield item

    worker.reload_weights(weights_iterator=counted(), is_checkpoint_format=True)
    return count


def state_dict_for_push(policy: Any) -> dict[str, Any]:
    """The policy's full weights in checkpoint format (LoRA merged), tied tensors written once."""
    model = policy.model
    if getattr(policy, "lora", False):
        from visplay_models.checkpoint import merged_lora_state_dict

        state = merged_lora_state_dict(model)
    else:
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        state = inner.state_dict()
    out, seen = {}, set()
    for name, tensor in state.items():
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if key in seen:  # tied embeddings: safetensors refuses shared storage; vLLM re-ties them itself
            continue
        seen.add(key)
        out[name] = tensor.detach().to("cpu").contiguous()
    return out


def _is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


class VllmEngine:
    """A vLLM engine for one role, built from a saved copy of a policy (see the module docstring)."""

    def __init__(self, role: str, policy: Any, *, dtype: str, max_model_len: int, enforce_eager: bool, seed: int,
                 gpu_memory_utilization: float = 0.45, tensor_parallel_size: int = 1, cpu_kvcache_gb: int = 1,
                 gpus: list[int] | None = None, executor: str | None = None, pipeline_parallel_size: int = 1):
        self.role = role
        self.workdir = Path(tempfile.mkdtemp(prefix=f"visplay-vllm-{role}-"))
        self.model_dir = self.workdir / "model"
        policy.save(self.model_dir)
        self.loaded_tag: str | None = None
        self.pushes = 0
        self.cpu = _is_cpu_platform()
        executor = executor or ("uni" if self.cpu else "mp")
        _configure_environment(self.cpu, executor, cpu_kvcache_gb)
        from vllm import LLM

        kwargs: dict[str, Any] = dict(
            model=str(self.model_dir), dtype=dtype, enforce_eager=enforce_eager, max_model_len=max_model_len,
            seed=seed, limit_mm_per_prompt={"image": 1}, tensor_parallel_size=tensor_parallel_size,
            pipeline_parallel_size=pipeline_parallel_size, distributed_executor_backend=executor,
        )
        if not self.cpu:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        with _visible_devices(None if self.cpu else gpus):
            self.llm = LLM(**kwargs)
        log.info("vLLM engine for %s started from %s", role, self.model_dir)

    def push(self, policy: Any, tag: str) -> None:
        """Load ``policy``'s current weights into the live engine and reset its caches."""
        from safetensors.torch import save_file

        path = self.workdir / "push.safetensors"
        save_file(state_dict_for_push(policy), str(path))
        counts = self.llm.collective_rpc(reload_weights_from_files, args=([str(path)],))
        path.unlink(missing_ok=True)
        self.reset_caches()
        self.loaded_tag = tag
        self.pushes += 1
        log.info("pushed weights %s into the %s engine (%s tensors)", tag[:12], self.role, counts)

    def reset_caches(self) -> None:
        self.llm.reset_prefix_cache()
        engine = self.llm.llm_engine
        if hasattr(engine, "reset_encoder_cache"):
            engine.reset_encoder_cache()
        self.llm.reset_mm_cache()

    def generate(self, requests: list[dict[str, Any]], params: list[Any]) -> list[Any]:
        return self.llm.generate(requests, params, use_tqdm=False)

    def shutdown(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            with contextlib.suppress(Exception):
                llm.llm_engine.engine_core.shutdown()
            del llm
            gc.collect()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _configure_environment(cpu: bool, executor: str, cpu_kvcache_gb: int) -> None:
    """Set vLLM's environment before the engine starts (vLLM reads these when the engine is built)."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    if cpu:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(int(cpu_kvcache_gb))
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")  # vLLM keeps a core free by default
    if executor == "uni":
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine core runs in this process
    else:
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # the RPC function travels pickled


@contextlib.contextmanager
def _visible_devices(gpus: list[int] | None):
    """Restrict the engine's spawned processes to ``gpus`` (indices into the visible devices)."""
    if not gpus:
        yield
        return
    from visplay.scale.placement import cuda_visible_devices

    old = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices(gpus)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = old
