"""What an evaluation protocol is: how a benchmark item is shown to the model and how a response is scored.

A protocol (``eval.protocol``, served by the ``visplay_eval_protocol`` hook) owns, for every benchmark it supports,
the prompt text, where the item's images go, the answer extraction and the rule scoring, and the prompt a model
judge sees with the parsing of its reply. The built-in ones (plugins/visplay_eval/protocols/) are ``visplay`` (the
default), ``released`` (the released VisPlay evaluation) and ``lmms-eval``. Protocols are pure: no model, no
network, the same item and response give the same verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from visplay.eval.benchmarks import BenchmarkItem


@dataclass(frozen=True)
class Presentation:
    """What the model sees for one item: ``parts`` in order, each a text or an image (an ``int``: the position
    of the image in ``BenchmarkItem.images``); ``system`` is the system text, None for the model's default."""

    parts: tuple[str | int, ...]
    system: str | None = None

    @property
    def images(self) -> list[int]:
        """The images shown, in the order the model sees them."""
        return [p for p in self.parts if isinstance(p, int)]

    @property
    def text(self) -> str:
        """The text parts joined by newlines (the user text of a prompt that carries its images apart)."""
        return "\n".join(p for p in self.parts if isinstance(p, str))

    def placeholder_text(self, tag: str = "<image>") -> str:
        """The parts as one string with ``tag`` where each image goes (what an interleaving processor gets)."""
        return "".join(tag if isinstance(p, int) else p for p in self.parts)


@runtime_checkable
class EvalProtocol(Protocol):
    """The contract of a protocol. Scoring ``item`` dicts carry ``benchmark``, ``question`` (the raw question
    text), ``prompt`` (the question with options rendered), ``answer`` (the reference), ``kind``, ``options``,
    ``letters``, ``alternatives``, ``meta`` (the row's ``question_type``, ``category``, ... and ``id``) and
    ``response``. Verdicts are dicts with ``correct`` (bool), ``extracted`` (str or None) and ``reason``."""

    name: str

    def supports(self, benchmark: str, judge: str | None = None) -> bool:
        """Whether the protocol defines prompt and scoring for ``benchmark`` (a visplay benchmark name) when judged
        by ``judge`` (``rule``, ``local``, ``endpoint``; None: not known yet). A protocol may leave ``judge`` out of
        its signature (:func:`protocol_supports` calls it either way) and may define ``refusal(benchmark, judge)
        -> str | None`` to say why it does not support one."""

    def present(self, item: BenchmarkItem) -> Presentation:
        """The prompt of one item."""

    def score(self, item: dict[str, Any]) -> dict[str, Any]:
        """The rule verdict of one response; never raises on a malformed response."""

    def judge_request(self, item: dict[str, Any]) -> tuple[str | None, str] | None:
        """(system text or None, user text) a model judge sees for one response; None when the protocol scores
        this item without a judge (a model judge then keeps the rule verdict)."""

    def parse_judge_reply(self, item: dict[str, Any], reply: str | None) -> dict[str, Any]:
        """The verdict from a model judge's reply."""


class ProtocolError(Exception):
    """A protocol is unknown or does not support a benchmark; the message names the protocol and benchmark."""


def protocol_supports(protocol: Any, benchmark: str, judge: str | None = None) -> tuple[bool, str | None]:
    """(whether ``protocol`` supports ``benchmark`` under ``judge``, its reason when it does not). Protocols whose
    ``supports`` takes no judge are asked without one."""
    import inspect

    try:
        takes_judge = "judge" in inspect.signature(protocol.supports).parameters
    except (TypeError, ValueError):  # a builtin or an odd callable: ask the plain way
        takes_judge = False
    ok = protocol.supports(benchmark, judge=judge) if takes_judge else protocol.supports(benchmark)
    if ok:
        return True, None
    refusal = getattr(protocol, "refusal", None)
    return False, refusal(benchmark, judge) if callable(refusal) else None
