"""``visplay eval ... --compare-protocols released,lmms-eval,visplay``: one set of responses scored under each
protocol, and the items on which the protocols disagree, with the stage that differs.

Each protocol owns its extraction and scoring (visplay/eval/protocol.py), so the comparison reads what each one
extracted and decided for the same response. An item is a disagreement when its verdicts differ. Each pair of a
protocol that called it right and one that called it wrong names a stage: ``extraction`` when they extracted
different answers (whitespace at the ends ignored; no answer and an empty one count as the same), else ``judge``
when a model judge was asked (same answer, another prompt or reading of the reply), else ``normalisation`` (same
answer, another rule: normalisation, answer equivalence, option mapping); an item can show two
(``extraction+normalisation``). A protocol that does not support a benchmark is listed as skipped for it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visplay.context import RunContext
from visplay.eval.benchmarks import BenchmarkSpec, resolve_names
from visplay.eval.protocol import protocol_supports
from visplay.eval.run import get_protocol, judge_items, record_input
from visplay.eval.samples import read_samples
from visplay.log.runlog import RunLog
from visplay.session import PluginSession

SHOWN_ITEMS = 50  # disagreeing items printed per benchmark; the count is always complete
SHOWN_CHARS = 70  # of a response or an extracted answer


@dataclass
class Comparison:
    """One benchmark's responses under several protocols: ``verdicts[protocol][i]`` for ``items[i]``."""

    benchmark: str
    title: str
    judge: str
    items: list[dict[str, Any]]  # index, item_id, reference, response
    verdicts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def score(self, protocol: str) -> tuple[int, int]:
        """(correct, n) under ``protocol``."""
        verdicts = self.verdicts[protocol]
        return sum(bool(v["correct"]) for v in verdicts), len(verdicts)

    def disagreements(self) -> list[tuple[int, str]]:
        """(item position, stage) of every item whose verdicts differ, in item order."""
        out = []
        for i in range(len(self.items)):
            row = [self.verdicts[p][i] for p in self.verdicts]
            if len({bool(v["correct"]) for v in row}) > 1:
                out.append((i, stage_of(row)))
        return out


def _answer(value: Any) -> str:
    return "" if value is None else str(value).strip()


def stage_of(verdicts: Sequence[dict[str, Any]]) -> str:
    """Which stage makes disagreeing verdicts of one response differ: for each pair of a right and a wrong
    verdict, ``extraction`` when their extracted answers differ, else ``judge`` when a model judge was asked for
    either, else ``normalisation``; the stages found, sorted and joined by ``+``."""
    right = [v for v in verdicts if v["correct"]]
    wrong = [v for v in verdicts if not v["correct"]]
    stages = set()
    for a in right:
        for b in wrong:
            if _answer(a.get("extracted")) != _answer(b.get("extracted")):
                stages.add("extraction")
            elif a.get("prompt") or b.get("prompt"):
                stages.add("judge")
            else:
                stages.add("normalisation")
    return "+".join(sorted(stages))


def compare(benchmark: str, title: str, judge: str, items: list[dict[str, Any]], protocols: Sequence[str],
            supports: Callable[[str], bool], score: Callable[[str], list[dict[str, Any]]]) -> Comparison:
    """Score ``items`` under each protocol that ``supports`` the benchmark (``score(protocol)`` returns the
    verdicts in item order)."""
    result = Comparison(benchmark, title, judge, items)
    for protocol in protocols:
        if not supports(protocol):
            result.skipped.append(protocol)
            continue
        verdicts = score(protocol)
        if len(verdicts) != len(items):
            raise ValueError(f"{benchmark}: protocol {protocol} gave {len(verdicts)} verdicts for {len(items)} items")
        result.verdicts[protocol] = verdicts
    return result


def _short(text: Any) -> str:
    if text is None:
        return "None"
    text = str(text).replace("\n", " ")
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "...")


def format_comparison(comparison: Comparison) -> str:
    """The per-protocol scores of one benchmark and its disagreeing items, as text."""
    c = comparison
    lines = [f"{c.title or c.benchmark}: {len(c.items)} item(s), judge {c.judge}"]
    width = max([len(p) for p in [*c.verdicts, *c.skipped]] + [8])
    for protocol in c.verdicts:
        correct, n = c.score(protocol)
        accuracy = 100.0 * correct / n if n else 0.0
        lines.append(f"  {protocol:<{width}} {f'{correct}/{n}':>11} {accuracy:>7.2f}%")
    lines += [f"  {protocol:<{width}} skipped (no prompt or scoring for {c.benchmark})" for protocol in c.skipped]
    found = c.disagreements()
    stages = Counter(stage for _, stage in found)
    summary = ", ".join(f"{stage} {n}" for stage, n in sorted(stages.items()))
    lines.append(f"  disagreeing items: {len(found)}" + (f" ({summary})" if summary else ""))
    for i, stage in found[:SHOWN_ITEMS]:
        item = c.items[i]
        lines.append(f"  - item {item['index']} ({item['item_id']}), reference {_short(item['reference'])}: {stage}; "
                     f"response {_short(item['response'])}")
        for protocol, verdicts in c.verdicts.items():
            v = verdicts[i]
            lines.append(f"      {protocol:<{width}} {'right' if v['correct'] else 'wrong'}  extracted "
                         f"{_short(v.get('extracted'))}  ({v.get('reason', '')})")
    if len(found) > SHOWN_ITEMS:
        lines.append(f"  ... {len(found) - SHOWN_ITEMS} more disagreeing item(s)")
    return "\n".join(lines)


def compare_under(ctx: RunContext, judge: str, spec: BenchmarkSpec, shown: list[dict[str, Any]],
                  protocols: Sequence[str], inputs: Callable[[str], list[dict[str, Any]]]) -> Comparison:
    """:func:`compare` through the protocol hooks and the judge named ``judge``; ``inputs(protocol)`` gives the
    judge inputs of the benchmark's items under that protocol."""
    return compare(spec.name, spec.title, judge, shown, protocols,
                   supports=lambda name: protocol_supports(get_protocol(ctx, name), spec.name, judge)[0],
                   score=lambda name: judge_items(ctx, judge, inputs(name)))


def compare_samples(samples: str, protocols: Sequence[str], *, judge: str = "rule", benchmark: str | None = None,
                    recipe: str | None = None, overrides: Sequence[str] = (), db: str | None = None,
                    session: PluginSession | None = None) -> list[Comparison]:
    """The responses of a samples file scored under each of ``protocols`` (``--rescore --compare-protocols``):
    one :class:`~visplay.eval.compare.Comparison` per benchmark. Nothing but a model judge's verdicts is written
    (to ``db``, ./eval.db)."""
    session = session or PluginSession()
    records = read_samples(samples, benchmark)
    cfg = session.load_recipe(recipe or "tiny", list(overrides))
    out = []
    with RunLog(Path(db or "eval.db"), create=True) as runlog:
        ctx = session.context(cfg, Path.cwd(), log=runlog, phase="eval")
        for name in protocols:
            get_protocol(ctx, name)
        names = list(dict.fromkeys(r["benchmark"] for r in records))
        for spec, name in zip(resolve_names(names), names):
            mine = [r for r in records if r["benchmark"] == name]
            shown = [{"index": int(r["doc_id"]), "item_id": str(r["doc"].get("id", r["doc_id"])),
                      "reference": r["target"], "response": r["response"]} for r in mine]

            def inputs(protocol: str, spec: BenchmarkSpec = spec, mine: list[dict] = mine) -> list[dict[str, Any]]:
                return [record_input(r, spec, f"compare@{protocol}", protocol, samples) for r in mine]

            out.append(compare_under(ctx, judge, spec, shown, protocols, inputs))
    return out
