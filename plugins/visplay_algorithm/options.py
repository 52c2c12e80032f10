"""The algorithm plugin's recipe section, ``plugins.algorithm``: the VisPlay method's rewards, filter and prompts.

Every setting of the method that differs between the paper and the released code (PAPER.md, "Rewards") lives here
with its variant default: a recipe that leaves one at None gets the value of its ``variant``. The filter band is
defined, defaulted and validated in this file and nowhere else (:class:`FilterOptions`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from visplay.api import int_at_least, number_in, one_of
from visplay_algorithm.rewards import COMBINE_RULES, QUESTIONER_COMPONENTS, REASONER_COMPONENTS

DIVERSITY_SCOPES = ("image", "batch")


@dataclass
class RewardOptions:
    """Reward components and their combination into one scalar (PAPER.md, "Rewards")."""

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

    def validate(self, served: dict[str, list[str]] | None = None) -> dict[str, str]:
        checks = {
            "combine": one_of(self.combine, COMBINE_RULES),
            "diversity_scope": one_of(self.diversity_scope, DIVERSITY_SCOPES),
            "diversity_lambda": number_in(self.diversity_lambda, 0.0),
            "bleu_threshold": number_in(self.bleu_threshold, 0.0, 1.0),
            "format_weight": number_in(self.format_weight, 0.0, 1.0),
            **{f"weights.{name}": number_in(weight) for name, weight in self.weights.items()},
        }
        for name in self.weights:
            checks[f"weights.{name}"] = checks[f"weights.{name}"] or self._weight_problem(str(name), served)
        return {key: why for key, why in checks.items() if why is not None}

    def _weight_problem(self, name: str, served: dict[str, list[str]] | None) -> str | None:
        """A weight on a built-in component means something only under ``combine: weighted``; any other name must
        be a component some installed plugin returns (when every reward plugin declares its components)."""
        if name in QUESTIONER_COMPONENTS + REASONER_COMPONENTS:
            return None if self.combine == "weighted" else (
                f"built-in components are weighted only under plugins.algorithm.reward.combine=weighted (this "
                f"recipe combines with {self.combine!r})")
        known = (served or {}).get("reward_component")
        if known is None or name in known:
            return None
        hint = difflib.get_close_matches(name, sorted(known), n=1)
        return ("no reward component of that name" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; known components: {', '.join(sorted(known))}")


@dataclass
class FilterOptions:
    """Which voted questions enter the reasoner's training set."""

    band: list[float] | None = None
    """Inclusive confidence band [low, high] for the reasoner's set; None: the variant's (paper 0.25-0.75,
    released 0.3-0.8)."""
    released_skip_rules: bool | None = None
    """Also apply the released code's extra skip rules (docs/algorithm.md); None: the variant's (released: on)."""

    def validate(self) -> dict[str, str]:
        band = list(self.band or [])
        if len(band) != 2 or any(number_in(b, 0.0, 1.0) for b in band) or band[0] > band[1]:
            return {"band": f"must be [low, high] with 0 <= low <= high <= 1, got {band}"}
        return {}

    def keeps(self, confidence: float) -> bool:
        """Inside the band, inclusive, with a 1e-9 tolerance so c = 3/10 is inside [0.3, 0.8] whatever the
        rounding."""
        low, high = float(self.band[0]), float(self.band[1])
        return low - 1e-9 <= confidence <= high + 1e-9


@dataclass
class SetSamplingOptions:
    """How questioner_i samples the questions of the reasoner's set (phase ``reasoner_set``); a None setting takes
    ``questioner.sampling``'s (the questioner's training settings)."""

    temperature: float | None = None
    """Sampling temperature; None: the variant's (paper: ``questioner.sampling.temperature``, released: 1.0,
    question_generate.py ``vllm.SamplingParams``)."""
    top_p: float | None = None
    """Nucleus mass; None: the variant's (paper: ``questioner.sampling.top_p``, released: 0.95 where its
    training uses 0.99)."""
    top_k: int | None = None
    """Top-k cut-off, 0 off; None: the variant's (paper: ``questioner.sampling.top_k``, released: 0, vLLM's
    default -1 = off)."""
    max_new_tokens: int | None = None
    """Longest question response in tokens; None: the variant's (paper: ``questioner.sampling.max_new_tokens``,
    released: 4096 where its training uses 2048)."""

    def validate(self) -> dict[str, str]:
        checks = {
            "temperature": None if self.temperature is None else number_in(self.temperature, 0.0),
            "top_p": None if self.top_p is None else number_in(self.top_p, 0.0, 1.0, low_open=True),
            "top_k": None if self.top_k is None else int_at_least(self.top_k, 0),
            "max_new_tokens": None if self.max_new_tokens is None else int_at_least(self.max_new_tokens, 1),
        }
        return {key: why for key, why in checks.items() if why is not None}

    def overrides(self) -> dict[str, float]:
        """The settings given (not None), as ``SamplingParams`` field names."""
        return {k: v for k, v in (("temperature", self.temperature), ("top_p", self.top_p), ("top_k", self.top_k),
                                  ("max_new_tokens", self.max_new_tokens)) if v is not None}


RELEASED_SET_SAMPLING = {"temperature": 1.0, "top_p": 0.95, "top_k": 0, "max_new_tokens": 4096}
"""The released reasoner set's sampling (bruno686/VisPlay@3aa895b question_generate/question_generate.py:206-212:
``max_tokens=4096, temperature=1.0, top_p=0.95``, no top_k)."""


@dataclass
class AlgorithmOptions:
    """The VisPlay method (paper and released variants): rewards, the reasoner set's filter, and prompt texts
    (None keeps the variant's built-in prompt)."""

    reward: RewardOptions = field(default_factory=RewardOptions)
    """Reward components and their combination."""
    filter: FilterOptions = field(default_factory=FilterOptions)
    """Which voted questions enter the reasoner's training set."""
    questioner_system: str | None = None
    """System text of the questioner's prompt."""
    questioner_user: str | None = None
    """User text of the questioner's prompt (the image comes first)."""
    reasoner_system: str | None = None
    """System text of the reasoner's prompt."""
    reasoner_suffix: str | None = None
    """Text appended to each question in the reasoner's prompt."""
    prompt_dir: str | None = None
    """A folder of the released code's templates (``visplay prompts import-released``), used instead of all texts."""
    set_sampling: SetSamplingOptions = field(default_factory=SetSamplingOptions)
    """How the reasoner set's questions are sampled (each None setting: ``questioner.sampling``'s)."""

    legacy_keys = {"reward": "reward", "reasoner.filter": "filter"}
    variant_defaults = {
        "paper": {"filter.band": [0.25, 0.75], "filter.released_skip_rules": False, "reward.combine": "paper",
                  "reward.diversity_scope": "image", "reward.format_weight": 0.0, "reward.none_as_vote": False},
        "released": {"filter.band": [0.3, 0.8], "filter.released_skip_rules": True, "reward.combine": "released",
                     "reward.diversity_scope": "batch", "reward.format_weight": 0.1, "reward.none_as_vote": True,
                     **{f"set_sampling.{key}": value for key, value in RELEASED_SET_SAMPLING.items()}},
    }
    path_keys = ("prompt_dir",)

    def validate(self, served: dict[str, list[str]] | None = None) -> dict[str, str]:
        problems = {f"reward.{k}": v for k, v in self.reward.validate(served).items()}
        problems |= {f"filter.{k}": v for k, v in self.filter.validate().items()}
        problems |= {f"set_sampling.{k}": v for k, v in self.set_sampling.validate().items()}
        if self.prompt_dir is not None and not Path(self.prompt_dir).is_dir():
            problems["prompt_dir"] = f"{self.prompt_dir} is not a folder (write one with `visplay prompts " \
                                     f"import-released`)"
        elif self.prompt_dir is not None:  # a missing or edited template is refused at load, not at the first step
            from visplay_algorithm.released_prompts import ReleasedPromptError, load_templates

            try:
                load_templates(self.prompt_dir)
            except (ReleasedPromptError, OSError, ValueError) as exc:
                problems["prompt_dir"] = str(exc).removeprefix("plugins.algorithm.prompt_dir: ")
        return problems
