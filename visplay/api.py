"""The public API for plugins: everything a plugin may import from the core, in one place.

pytest plugins import ``pytest``, not ``_pytest``; visplay plugins import ``visplay.api`` (and ``visplay.testing`` in
their tests), never the core's modules, so the core can move its rooms without breaking a third party. A plugin
that needs another plugin's code imports that plugin's own ``api`` module (e.g. ``visplay_models.api``), never its
internals. Names are loaded on first use, so ``from visplay.api import hookimpl`` stays cheap.

- hooks and recipes: ``hookimpl``, ``section`` (makes a class a recipe section), ``plugin_section``,
  ``plugin_options``, ``RecipeError``; value checks for a section's ``validate()``: ``int_at_least``,
  ``optional_int_at_least``, ``number_in``, ``one_of``
- errors: ``PluginError``, ``NoAnswerError``, ``HookResultError``
- the nouns of the hook contracts (visplay/types.py): ``ImageRecord``, ``ImageSource``, ``Prompt`` (and
  ``IMAGE_TAG``, where an interleaved prompt puts each image),
  ``SamplingParams``, ``Generation``, ``Sampler``, ``RefreshableSampler``, ``Policy``, ``TrainablePolicy``,
  ``ParsedQuestion``, ``AskedQuestion``, ``Vote``, ``QuestionItem``, ``AnswerItem``, ``FilterDecision``,
  ``Rollout``, ``UpdateResult``, ``Optimizer``, ``ModelFacts``, ``EngineNeeds``, ``MemoryItem``, ``Footprint``
- the run: ``RunContext``, ``RunLog``, ``derive_seed``, ``majority_vote``, ``NONE_VOTE_KEY``, ``file_hashes``,
  ``sha256_file``
- scale: ``distributed`` (the torch.distributed helpers, a module), ``plan_placement``, ``training_device``,
  ``cuda_visible_devices``, ``GIB``, ``DTYPE_BYTES``, ``NOT_GIVEN`` (a dry run's placeholder for a path it was not
  given)
- evaluation: ``scoring`` (the rule judge's extraction and verdicts, a module), ``Presentation``,
  ``EvalProtocol``, ``ProtocolError`` (visplay/eval/protocol.py)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "hookimpl": "visplay.hookspecs", "plugin_section": "visplay.config", "plugin_options": "visplay.config",
    "RecipeError": "visplay.config", "int_at_least": "visplay.recipe_rules",
    "optional_int_at_least": "visplay.recipe_rules", "number_in": "visplay.recipe_rules",
    "one_of": "visplay.recipe_rules", "PluginError": "visplay.plugins", "NoAnswerError": "visplay.hooks",
    "HookResultError": "visplay.hooks", "RunContext": "visplay.context", "RunLog": "visplay.log.runlog",
    "derive_seed": "visplay.seeding", "majority_vote": "visplay.loop.votes", "NONE_VOTE_KEY": "visplay.loop.votes",
    "file_hashes": "visplay.files", "sha256_file": "visplay.files", "write_file": "visplay.files",
    "check_writable_file": "visplay.files", "plan_placement": "visplay.scale.placement",
    "training_device": "visplay.scale.placement", "cuda_visible_devices": "visplay.scale.placement",
    "GIB": "visplay.scale.placement", "DTYPE_BYTES": "visplay.scale.placement", "NOT_GIVEN": "visplay.scale.plan",
    **{name: "visplay.eval.protocol" for name in ("Presentation", "EvalProtocol", "ProtocolError")},
    **{name: "visplay.types" for name in (
        "ImageRecord", "ImageSource", "Prompt", "IMAGE_TAG", "SamplingParams", "Generation", "Sampler", "RefreshableSampler",
        "Policy", "TrainablePolicy", "ParsedQuestion", "AskedQuestion", "Vote", "QuestionItem", "AnswerItem",
        "FilterDecision", "Rollout", "UpdateResult", "Optimizer", "ModelFacts", "EngineNeeds", "MemoryItem",
        "Footprint")},
}
_MODULES = {"distributed": "visplay.scale.distributed", "scoring": "visplay.eval.scoring"}

__all__ = sorted([*_EXPORTS, *_MODULES, "section"])

if TYPE_CHECKING:  # pragma: no cover - what static readers and IDEs see

    pass


def __getattr__(name: str) -> Any:
    if name == "section":
        from dataclasses import dataclass

        return dataclass
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'visplay.api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
