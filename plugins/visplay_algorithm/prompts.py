"""Prompt texts of the VisPlay roles, in one place so other plugins (e.g. the games cold start) can reuse them.

The paper's questioner wraps its question in ``<question>...</question>``; the released code's questioner writes
exactly ``<type>T</type><question>Q</question><answer>A</answer>`` (its rules, in our words; the released texts
themselves come only from a user's checkout, see released_prompts.py). The reasoner thinks, then puts its final answer in ``\\boxed{}`` (the released evaluation prompt).
"""

from __future__ import annotations

QUESTION_TYPES = ("multiple choice", "numerical", "regression")
"""The released format's allowed ``<type>`` values."""

PAPER_QUESTIONER_SYSTEM = (
    "You are a Questioner. Look at the image and ask one challenging question about it that needs careful "
    "visual reasoning and has a single short answer."
)
PAPER_QUESTIONER_USER = (
    "Write exactly one question about this image. Put the question inside <question> and </question>, "
    "for example: <question>How many red circles are in the image?</question>"
)

# Our own wording of the released questioner's rules (same three blocks and types); the released texts themselves
# are not shipped: `visplay prompts import-released` extracts them from a user's checkout (released_prompts.py).
RELEASED_QUESTIONER_SYSTEM = (
    "Look closely at the image and write one question about it that takes reasoning, not mere description, to "
    "answer. Pick its type: multiple choice (yes/no, or options A to D with one right option), numerical (one "
    "number), or regression (a continuous quantity such as a length, a count estimate or a coordinate). Give the "
    "right answer as a bare value or option letter, without units.\n"
    "Reply with these three blocks only:\n"
    "<type>T</type>\n<question>Q</question>\n<answer>A</answer>\n"
    "T is one of: multiple choice, numerical, regression. For instance:\n"
    "<type>numerical</type>\n<question>How many windows are on the front of the house?</question>\n"
    "<answer>6</answer>"
)
RELEASED_QUESTIONER_USER = "Ask one new, hard question about this image in the three-block format."

REASONER_SYSTEM = "You are a helpful assistant."
REASONER_SUFFIX = (
    "\nThink step by step inside <think> and </think>, then put your final answer within \\boxed{}."
)


def questioner_texts(variant: str) -> tuple[str, str]:
    """(system, user) texts of the questioner prompt for ``variant`` (``paper`` or ``released``)."""
    if variant == "paper":
        return PAPER_QUESTIONER_SYSTEM, PAPER_QUESTIONER_USER
    if variant == "released":
        return RELEASED_QUESTIONER_SYSTEM, RELEASED_QUESTIONER_USER
    raise ValueError(f"variant must be 'paper' or 'released', got {variant!r}")


def reasoner_user_text(question: str) -> str:
    """The reasoner's user text for one question (both variants)."""
    return f"{question}{REASONER_SUFFIX}"


def paper_question_target(question: str) -> str:
    """What a well-formed paper-format questioner output looks like (for cold-start SFT targets)."""
    return f"<question>{question}</question>"


def released_question_target(qtype: str, question: str, answer: str) -> str:
    """A well-formed released-format questioner output (for cold-start SFT targets)."""
    if qtype not in QUESTION_TYPES:
        raise ValueError(f"qtype must be one of {QUESTION_TYPES}, got {qtype!r}")
    return f"<type>{qtype}</type><question>{question}</question><answer>{answer}</answer>"


def format_question(variant: str, question: str, qtype: str = "numerical", answer: str = "") -> str:
    """A well-formed questioner output for ``variant`` (paper ignores ``qtype`` and ``answer``)."""
    if variant == "paper":
        return paper_question_target(question)
    if variant == "released":
        return released_question_target(qtype, question, answer)
    raise ValueError(f"variant must be 'paper' or 'released', got {variant!r}")


def reasoner_target(thinking: str, answer: str) -> str:
    """A well-formed reasoner output (for cold-start SFT targets)."""
    return f"<think>{thinking}</think> \\boxed{{{answer}}}"
