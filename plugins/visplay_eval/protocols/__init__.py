"""The eval plugin's protocols (``eval.protocol``): ``visplay`` (default), ``released`` and ``lmms-eval``."""

from __future__ import annotations

from typing import Any

NAMES = ("lmms-eval", "released", "visplay")


def make_protocol(ctx: Any, name: str) -> Any | None:
    """The protocol named ``name`` for this run (None when it is not one of :data:`NAMES`)."""
    if name == "visplay":
        from visplay_eval.judges import answer_key_fn
        from visplay_eval.protocols.visplay import VisplayProtocol

        return VisplayProtocol(answer_key_fn(ctx))
    if name == "released":
        from visplay_eval.protocols.released import ReleasedProtocol

        return ReleasedProtocol()
    if name == "lmms-eval":
        from visplay_eval.protocols.lmms_eval import LmmsEvalProtocol

        return LmmsEvalProtocol()
    return None
