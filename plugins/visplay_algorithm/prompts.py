"""Prompt texts of the VisPlay roles, in one place so other plugins (e.g. the games cold start) can reuse them.

The paper's questioner wraps its question in ``<question>...</question>``; the released code's questioner writes
exactly ``<type>T</type><question>Q</question><answer>A</answer>`` (its system prompt is condensed here, same
rules). The reasoner thinks, then puts its final answer in ``\\boxed{}`` (the released evaluation prompt).
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

RELEASED_QUESTIONER_SYSTEM = (
    "You are an intelligent Question Generator. Your task is to create a question based on the given image.\n"
    "Requirements (must follow exactly):\n"
    "1. Analyze the image carefully and understand all details.\n"
    "2. Generate exactly one question that is directly related to the image.\n"
    "3. Choose the question type from only one of: multiple choice (Yes/No or four options labeled A, B, C, D; "
    "only one correct answer), numerical (a specific numeric answer), regression (a continuous value, such as a "
    "measurement, quantity or coordinate).\n"
    "4. The question must require analysis or reasoning, not just description.\n"
    "5. Provide the correct answer.\n"
    "Output exactly these three blocks and nothing else:\n"
    "<type>X</type>\n<question>Y</question>\n<answer>Z</answer>\n"
    "X must be exactly one of: multiple choice, numerical, regression.\n"
    "Example:\n<type>numerical</type>\n<question>How many clubs are there in Florida?</question>\n"
    "<answer>5.7</answer>"
)
RELEASED_QUESTIONER_USER = (
    "Generate one new, challenging reasoning question based on this image. Remember to format the output exactly "
    "as instructed."
)

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
