"""visplay eval plugin: the judges ``rule``, ``local`` and ``endpoint`` behind the ``visplay_judge`` hook, and the
protocols ``visplay``, ``released`` and ``lmms-eval`` behind ``visplay_eval_protocol``.

A third party adds a judge by implementing ``visplay_judge`` and answering only its own name (returning None for
others); see plugins/visplay_eval/judges.py for the contract of the returned dicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from visplay.api import hookimpl
from visplay_eval.judges import JUDGES, JudgeError
from visplay_eval.options import EvalOptions
from visplay_eval.protocols import NAMES, make_protocol


@hookimpl
def visplay_recipe_sections() -> dict[str, type]:
    return {"eval": EvalOptions}


@hookimpl
def visplay_names() -> dict[str, list[str]]:
    return {"judge": sorted(JUDGES), "protocol": list(NAMES)}


@hookimpl
def visplay_eval_protocol(ctx: Any, name: str) -> Any:
    """The protocols ``visplay`` (default), ``released`` and ``lmms-eval``; None for other names."""
    return make_protocol(ctx, name)


@hookimpl
def visplay_judge(ctx: Any, name: str, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Judge benchmark responses with ``rule`` (default), ``local`` or ``endpoint``; None for other names."""
    judge = JUDGES.get(name)
    if judge is None:
        return None
    if not items:
        return []
    verdicts = judge(ctx, items)
    if len(verdicts) != len(items):
        raise JudgeError(f"judge {name!r} returned {len(verdicts)} verdicts for {len(items)} items")
    return verdicts
