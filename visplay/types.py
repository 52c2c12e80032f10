"""Plain data passed between the engine and plugins.

These are the nouns of the hook contracts (visplay/hookspecs.py). They hold no model code, so the core can import
them without importing torch or transformers. Lists are ordered and that order is part of the contract: a plugin
returns results in the order of its inputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image


# --- images ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRecord:
    """One unlabeled image.

    ``image_id`` is the sha256 of the decoded RGB image's PNG bytes, so the same picture has the same id whatever
    file it came from. ``png`` is kept for generated images (they exist nowhere else); for user files ``source`` is
    the path and ``png`` may be None. ``meta`` is free-form and is written to the run log with the image.
    """

    image_id: str
    image: Image.Image
    source: str
    png: bytes | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ImageSource(Protocol):
    """A finite, ordered pool of images. Iteration order is deterministic; ``pool[k]`` is the k-th image."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[ImageRecord]: ...

    def __getitem__(self, index: int) -> ImageRecord: ...


# --- prompts and generations ---------------------------------------------------------------------------------


IMAGE_TAG = "<image>"
"""Where an image goes in the user text of an ``interleaved`` :class:`Prompt`."""


@dataclass(frozen=True)
class Prompt:
    """A chat prompt: optional system text, user text and any number of images, in the order the model sees them.

    ``images`` holds every image; ``image`` is the first (or None). A one-image caller passes ``image=`` alone,
    which is the same prompt as ``images=(image,)``. Where the images go: by default all of them before the user
    text, in order (what every training prompt is); with ``interleaved=True`` the user text holds one
    :data:`IMAGE_TAG` per image and image k goes where the k-th tag is (an MMMU question with ``<image 1>`` ..
    ``<image 7>`` placeholders, as a protocol presents it). :meth:`parts` is that order for the processors.
    """

    user: str
    image: ImageRecord | None = None
    system: str | None = None
    images: tuple[ImageRecord, ...] = ()
    interleaved: bool = False

    def __post_init__(self) -> None:
        images = tuple(self.images)
        if self.image is not None and not images:
            images = (self.image,)
        elif self.image is not None and images[0] is not self.image:
            raise ValueError("Prompt: image= is the first of images=; pass one of the two")
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "image", images[0] if images else None)
        tags = self.user.count(IMAGE_TAG)
        if self.interleaved and tags != len(images):
            raise ValueError(f"Prompt: an interleaved prompt has one {IMAGE_TAG} per image in its user text; "
                             f"{len(images)} image(s) but {tags} tag(s)")

    def parts(self) -> list[str | int]:
        """The user turn in order: texts (str) and images (int: the position in ``images``). Not interleaved: the
        images, then the user text (even when empty, as the chat has always been built); interleaved: the text
        split at the tags, empty pieces left out."""
        if not self.interleaved:
            return [*range(len(self.images)), self.user]
        pieces = self.user.split(IMAGE_TAG)
        out: list[str | int] = []
        for k, piece in enumerate(pieces):
            if piece:
                out.append(piece)
            if k < len(self.images):
                out.append(k)
        return out


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``seed`` is the request seed; sample j of a request uses a generator derived from it."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    seed: int = 0


@dataclass
class Generation:
    """One sampled response to one prompt."""

    prompt: Prompt
    text: str
    token_ids: list[int]
    logprobs: list[float]
    seed: int
    sample_index: int = 0
    finish_reason: str = "stop"


@runtime_checkable
class Sampler(Protocol):
    """Samples responses. ``sample`` returns, per prompt, ``params[i].n`` generations in sample order."""

    def sample(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams]) -> list[list[Generation]]: ...


@runtime_checkable
class RefreshableSampler(Sampler, Protocol):
    """A sampler that holds its own copy of the weights (e.g. a vLLM engine): ``refresh`` pushes the policy's
    current weights into it after an update."""

    def refresh(self) -> None: ...


@runtime_checkable
class Policy(Protocol):
    """A model in one role (questioner or reasoner), as a model-backend plugin provides it: what the engine uses."""

    role: str

    def sampler(self) -> Sampler:
        """A sampler over the policy's current weights (used when no sampler plugin is configured)."""
        ...

    def save(self, directory: str) -> dict[str, str]:
        """Write the weights (safetensors) and return {relative file name: sha256}."""
        ...

    def load_weights(self, directory: str) -> None:
        """Overlay the trainable weights written by ``save`` on this policy, bit-exactly (mid-phase resume)."""
        ...

    def weights_sha256(self) -> str:
        """sha256 of the trainable weights (logged with every checkpoint; replay compares it)."""
        ...


@runtime_checkable
class TrainablePolicy(Policy, Protocol):
    """What a gradient-based optimizer (the grpo plugin) needs beyond :class:`Policy`.

    ``logprobs``/``forward_stats`` return per-token tensors for teacher-forced responses (see the models plugin's
    HFPolicy for the exact keyword arguments); ``trainable_parameters`` is a fixed-order list of (name, tensor);
    ``train_mode``/``eval_mode`` switch dropout and the like.
    """

    def logprobs(self, prompts: Sequence[Prompt], responses: Sequence[Sequence[int]], **kwargs: Any) -> list[Any]: ...

    def forward_stats(self, prompts: Sequence[Prompt], responses: Sequence[Sequence[int]],
                      **kwargs: Any) -> tuple[list[Any], list[Any] | None]: ...

    def trainable_parameters(self) -> list[tuple[str, Any]]: ...

    def train_mode(self) -> None: ...

    def eval_mode(self) -> None: ...


# --- the algorithm's nouns ---------------------------------------------------------------------------------


@dataclass
class ParsedQuestion:
    """What the questioner wrote, parsed. ``stated_answer`` is logged but never used as a label."""

    valid: bool
    question: str | None = None
    qtype: str | None = None
    stated_answer: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class AskedQuestion:
    """A question sent to the reasoner (``visplay_sample_answers``): its image, its text, and what the question-
    parsing hook said its type is (None when unknown, e.g. a gold question), so a prompt that depends on the type
    gets this question's own type."""

    image: ImageRecord
    text: str
    qtype: str | None = None


@dataclass
class Vote:
    """The reasoner's m answers to one question and their majority."""

    answers: list[str | None]  # extracted answers, None = no answer
    keys: list[str | None]  # canonical keys used for counting
    silver_label: str | None  # representative answer text of the majority key
    silver_key: str | None
    confidence: float  # majority count / m (unanswered samples count in m)


@dataclass
class QuestionItem:
    """One questioner generation with everything downstream of it: the unit the questioner's reward scores."""

    key: str
    image_id: str
    group: str  # generations of one prompt share a group (GRPO advantages are per group)
    generation: Generation
    parsed: ParsedQuestion
    vote: Vote | None = None  # None when the question is invalid (never sent to the reasoner)


@dataclass
class AnswerItem:
    """One reasoner generation for a question from the reasoner's training set."""

    key: str
    question_key: str
    group: str
    generation: Generation
    extracted: str | None
    answer_key: str | None
    silver_label: str | None
    silver_key: str | None
    gold: str | None = None  # only verifiable-reward plugins look at this; self-play rewards never do


@dataclass
class FilterDecision:
    keep: bool
    reason: str


@dataclass
class Rollout:
    """What an optimizer needs for one sampled response."""

    key: str
    group: str
    prompt: Prompt
    token_ids: list[int]
    old_logprobs: list[float]
    reward: float


@dataclass
class UpdateResult:
    """An optimizer step's outcome: per-rollout advantages, the step's scalar metrics, and the groups it left out
    of the update (DAPO's dynamic sampling; the engine logs them in ``dropped_groups``)."""

    advantages: dict[str, float]
    metrics: dict[str, float]
    dropped_groups: list[str] = field(default_factory=list)


@runtime_checkable
class Optimizer(Protocol):
    """What ``visplay_make_optimizer`` returns: turns rewards into advantages and updates the policy."""

    def update(self, rollouts: list[Rollout]) -> UpdateResult:
        """One policy update on a step's rollouts; deterministic given its inputs."""
        ...

    def save(self, directory: str) -> dict[str, str]:
        """Write the optimizer's state (safetensors/JSON, never pickle); return {file: sha256}."""
        ...

    def load(self, directory: str) -> None:
        """Restore the state written by ``save``."""
        ...


# --- planning (``--dry-run``): what plugins report of a recipe's needs ----------------------------------------


@dataclass(frozen=True)
class ModelFacts:
    """A model described without loading it (``visplay_model_facts``): counts, bytes and per-token figures."""

    model_type: str
    source: str  # where the facts came from, e.g. "model.path", "built-in facts of Qwen/Qwen2.5-VL-3B-Instruct"
    parameters: int
    text_parameters: int
    vision_parameters: int
    trainable_parameters: int  # all of them, or the LoRA adapters'
    dtype_bytes: int
    kv_bytes_per_token: int  # K and V of every layer, one token, at dtype_bytes
    activation_bytes_per_token: float  # held for the backward pass, per token of a training forward
    prompt_tokens: int  # the allowance per sequence for the chat template, the question and the image
    reference_bytes: int = 0  # a frozen copy of the starting weights (0 when the reference costs nothing: LoRA)
    activation_bytes_per_sequence: float = 0.0  # held per sequence whatever its length (its image's vision tower)
    activation_bytes_fixed: float = 0.0  # per training forward whatever its size (one chunk of log-prob logits)
    # With recomputation, the bytes of the one layer (per token) and one vision block (per sequence) recomputed at a
    # time in the backward pass. Non-zero: the backward runs them and the fixed chunk one after another, so an
    # optimizer counts the largest of the three once; 0: they are inside the figures above, which add up.
    activation_bytes_recomputed_per_token: float = 0.0
    activation_bytes_recomputed_per_sequence: float = 0.0
    offloaded: bool = False  # the sharded training state lives in host memory (FSDP CPU offload): an optimizer
    # reports its state under ``host/training`` instead of ``training`` when it runs sharded (nproc > 1)
    config: dict[str, Any] = field(default_factory=dict)  # the config.json facts, for plugins that need more


@dataclass(frozen=True)
class EngineNeeds:
    """A sampler that runs in processes of its own (``visplay_engine_needs``)."""

    gpus: int  # GPUs per engine (tensor x pipeline parallel)
    memory_fraction: float  # the share of each of its GPUs' memory it reserves
    gpus_setting: str = ""  # the recipe setting that decides ``gpus``, named in errors (e.g. "plugins.vllm.x=2")
    memory_setting: str = ""  # likewise for ``memory_fraction``
    sleeps: bool = False  # on a GPU it shares with training, it frees its memory while training updates


@dataclass(frozen=True)
class MemoryItem:
    """One thing in memory or on disk: where (``training``: per training GPU; ``sampling/<role>``: per engine GPU;
    ``host/training``: host memory per training process; ``disk/snapshot``, ``disk/weights``), what, how much,
    and the recipe change that shrinks it."""

    where: str
    name: str
    gib: float
    fix: str = ""
    transient: bool = False  # held only during a training forward/backward (activations), not while sampling


@dataclass
class Footprint:
    """A plugin's share of a plan (``visplay_footprint``)."""

    items: list[MemoryItem] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # plan lines only this plugin can write
    problems: list[str] = field(default_factory=list)  # why the plan cannot work, each naming a key


# --- the terminal ------------------------------------------------------------------------------------------


class PartProgress(Protocol):
    """Progress over a command's known parts (visplay.loop.progress.Parts): ``with progress.part(name): ...``
    counts one part done when the block ends."""

    def part(self, name: str) -> contextlib.AbstractContextManager[None]: ...


def in_part(progress: PartProgress | None, name: str) -> contextlib.AbstractContextManager[None]:
    """``progress.part(name)``, or nothing when there is no progress to report."""
    return progress.part(name) if progress is not None else contextlib.nullcontext()
