"""Stand-ins for the algorithm tests: a run context over the tiny recipe, items, and a recording sampler."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from visplay_algorithm import plugin as algorithm_plugin
from visplay_algorithm.answer_key import canonical_key

from visplay.context import RunContext
from visplay.loop.votes import majority_vote
from visplay.session import PluginSession
from visplay.types import AnswerItem, Generation, ParsedQuestion, Prompt, QuestionItem

RECIPE = Path(__file__).resolve().parent.parent.parent / "recipes" / "tiny.yaml"


def make_ctx(variant: str = "paper", overrides: Sequence[str] = (), extra: Sequence[object] = ()) -> RunContext:
    """A context with only the algorithm plugin (plus ``extra`` plugin objects) registered."""
    session = PluginSession(extra=(algorithm_plugin, *extra), autoload=False)
    return session.context(session.load_recipe(RECIPE, [f"variant={variant}", *overrides]), Path("."))


def generation(text: str, token_ids: Sequence[int] = (1, 2, 3)) -> Generation:
    return Generation(prompt=Prompt(user="q"), text=text, token_ids=list(token_ids),
                      logprobs=[0.0] * len(token_ids), seed=0)


def question_item(ctx: RunContext, key: str, group: str, text: str,
                  answers: Sequence[str | None] | None) -> QuestionItem:
    """Parse ``text`` with the context's variant; vote ``answers`` (None: the question was not voted)."""
    parsed: ParsedQuestion = ctx.hooks.parse_question(text=text)
    vote = None
    if answers is not None:  # as visplay.phases.vote: the key hook, then the vote hook or the core's count
        keys = [None if a is None else ctx.hooks.answer_key(answer=a) for a in answers]
        vote = ctx.hooks.vote(answers=list(answers), keys=keys) or majority_vote(list(answers), keys)
    return QuestionItem(key=key, image_id=f"img-{group}", group=group, generation=generation(text), parsed=parsed,
                        vote=vote)


def answer_item(key: str, text: str, silver: str | None) -> AnswerItem:
    from visplay_algorithm.parsing import extract_answer

    extracted = extract_answer(text)
    return AnswerItem(key=key, question_key="q", group="g", generation=generation(text), extracted=extracted,
                      answer_key=canonical_key(extracted), silver_label=silver, silver_key=canonical_key(silver))


def votes(**counts: int) -> list[str | None]:
    """An answer list from counts, e.g. votes(a=5, none=2) -> ["a"] * 5 + [None] * 2."""
    out: list[str | None] = []
    for answer, count in counts.items():
        out.extend([None if answer == "none" else answer] * count)
    return out


class RecordingSampler:
    """A Sampler that records its inputs and returns deterministic texts (sample j of prompt i)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[Prompt], list]] = []

    def sample(self, prompts, params):
        self.calls.append((list(prompts), list(params)))
        return [[Generation(prompt=p, text=f"p{i}/g{j}", token_ids=[i, j], logprobs=[0.0, 0.0], seed=sp.seed,
                            sample_index=j) for j in range(sp.n)] for i, (p, sp) in enumerate(zip(prompts, params))]


WORDS = ("what how many is the of in image color red blue green left right circle square larger smaller "
         "count total number shown are there which side top bottom a an").split()


def question_corpus(seed: int, n: int, *, long_questions: bool = True) -> list[str]:
    """A seeded corpus with the awkward cases: duplicates, empty and one-word questions, unicode, long ones.

    ``long_questions=False`` replaces the 80-200-word questions by ordinary ones (a typical questioner batch).
    """
    rng = random.Random(seed)
    templates = ["how many {a} {b} are in the image", "what is the {a} of the {b}", "which {a} is {b} the {c}",
                 "is the {a} {b} larger than the {c}"]
    out: list[str] = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.15 and out:
            out.append(rng.choice(out))  # exact duplicate
        elif roll < 0.2:
            out.append("")
        elif roll < 0.27:
            out.append(rng.choice(WORDS))
        elif roll < 0.32:
            out.append(" ".join(rng.choice(["颜色", "是", "什么", "ñandú", "café", "🙂", "数量"]) for _ in range(4)))
        elif roll < 0.35 and long_questions:
            out.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(80, 200))))
        elif roll < 0.7:
            t = rng.choice(templates)
            out.append(t.format(a=rng.choice(WORDS), b=rng.choice(WORDS), c=rng.choice(WORDS)))
        else:
            out.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 14))))
    return out


# Forms that are one answer for the canonical keys (variant paper); mathruler (variant released) splits "yes." from
# "yes" and "(B)" from "B." (listed in DIFFERENCES).
EQUIVALENT = [
    ["3", "3.0", "3.00", "$3$", "3."],
    ["0.5", "1/2", "\\frac{1}{2}", "\\dfrac{1}{2}", ".5"],
    ["-2", "-2.0", "$-2$"],
    ["B", "(B)", "B.", "b"],
    ["yes", "Yes", "YES", "yes."],
    ["no", "No"],
    ["\\text{red}", "red", "Red"],
    ["50%", "50", "50\\%"],
    ["30^\\circ", "30^{\\circ}"],
    ["1,000", "1000"],
]
