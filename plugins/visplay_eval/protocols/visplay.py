"""The ``visplay`` protocol (the default): the released solver instruction after the question, the item's images
(all of them, in file order) before it, the last ``\\boxed{}`` (nested braces allowed) scored by item kind with the
algorithm plugin's answer equivalence (visplay/eval/scoring.py), and the fixed yes/no judge prompt of
visplay_eval/judges.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from visplay.api import Presentation, scoring


class VisplayProtocol:
    """Today's deterministic rule protocol, for every benchmark."""

    name = "visplay"

    def __init__(self, key: Callable[[str], str | None]) -> None:
        self._key = key

    def supports(self, benchmark: str) -> bool:
        return True

    def present(self, item: Any) -> Presentation:
        text = scoring.SOLVER_TEMPLATE.format(question=item.prompt)
        return Presentation((*range(len(item.images)), text))  # every image, in file order, then the text

    def score(self, item: dict[str, Any]) -> dict[str, Any]:
        verdict = scoring.rule_verdict(item, self._key)
        return {"correct": verdict.correct, "extracted": verdict.extracted, "reason": verdict.reason}

    def judge_request(self, item: dict[str, Any]) -> tuple[str | None, str] | None:
        from visplay_eval.judges import JUDGE_SYSTEM, judge_prompt

        return JUDGE_SYSTEM, judge_prompt(item)

    def parse_judge_reply(self, item: dict[str, Any], reply: str | None) -> dict[str, Any]:
        from visplay_eval.judges import parse_verdict

        parsed = parse_verdict(reply)
        return {"correct": bool(parsed), "extracted": scoring.extract_boxed(item.get("response")),
                "reason": "unparsed_verdict" if parsed is None else ("judged_correct" if parsed else "judged_wrong")}
