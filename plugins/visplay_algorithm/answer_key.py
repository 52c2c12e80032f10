"""Canonical answer keys: two answers are the same vote when their keys are equal.

A key is computed once per answer, so a majority vote over m answers is a counting problem instead of the
released code's m^2 pairwise symbolic comparisons. Keys carry a kind prefix so that kinds never collide:

- ``num:<p>/<q>`` or ``num:<n>``: a rational number (``3 = 3.0 = 3.00``, ``1/2 = 0.5 = \\frac{1}{2}``,
  ``1,000 = 1000``, units and ``%`` / degree signs dropped: ``5 cm = 5``);
- ``mc:<letter>``: a multiple-choice letter A-J (``B``, ``(B)``, ``B.``, ``B) red``, ``option B``);
- ``bool:yes`` / ``bool:no``;
- ``tuple:(k1,k2,...)``: a parenthesised/bracketed list whose elements are keyed recursively;
- ``text:<s>``: everything else, lower-cased with LaTeX wrappers, spacing and leading articles removed.

docs/algorithm.md lists where this is stricter or looser than symbolic grading.
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_KEY_CHARS = 512
"""Answers are cut to this many characters before keying (a 10 KB answer is not worth a longer key)."""

_WRAPPERS = ("boxed", "text", "textbf", "textit", "textrm", "mathrm", "mathbf", "mathit", "mbox", "operatorname")
_WRAPPER_RE = re.compile(r"\\(?:" + "|".join(_WRAPPERS) + r")\s*\{")
_DROP_RE = re.compile(r"\\left|\\right|\\displaystyle|\\[,;:! ]|~")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUM_RE = re.compile(_NUM)
_FRAC_RE = re.compile(r"([-+]?)\\frac\s*\{\s*(" + _NUM + r")\s*\}\s*\{\s*(" + _NUM + r")\s*\}")
_FRAC_SHORT_RE = re.compile(r"([-+]?)\\frac\s*(\d)\s*(\d)")
_SLASH_RE = re.compile(r"(" + _NUM + r")\s*/\s*(" + _NUM + r")")
_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_UNIT_RE = re.compile(r"(" + _NUM + r"(?:\s*/\s*" + _NUM + r")?)\s*([a-zA-Z][a-zA-Z\s/^{}0-9.]*)?")
_CHOICE_RE = re.compile(r"(?:(?:option|choice|answer)\s*:?\s*)?\(?([a-j])\)?(?:\s*[.:)]\s*.*|\s+[-–]\s+.*)?",
                        re.IGNORECASE | re.DOTALL)
_VAR_ASSIGN_RE = re.compile(r"^[a-zA-Z]\s*=\s*(?=\S)")
_ARTICLE_RE = re.compile(r"^(?:the|a|an)\s+")
_BRACE_ATOM_RE = re.compile(r"\{([^{}\\]{1})\}")
_TRAILING = " \t\n.,;:!?'\"`"
_QUOTES = " '\"`"


def canonical_key(answer: str | None) -> str | None:
    """The canonical key of an extracted answer; None for no answer (None, blank, or nothing left)."""
    if answer is None or not isinstance(answer, str):
        return None
    s = _clean(answer[:MAX_KEY_CHARS])
    if not s:
        return None
    return _key(s)


def _key(s: str) -> str:
    low = s.lower()
    if low in ("yes", "no"):
        return f"bool:{low}"
    choice = _CHOICE_RE.fullmatch(s)
    if choice:
        return f"mc:{choice.group(1).lower()}"
    number = parse_number(s)
    if number is not None:
        return f"num:{_fmt(number)}"
    elements = _tuple_elements(s)
    if elements is not None:
        keys = [_key(e) if e else "" for e in (_clean(x) for x in elements)]
        return f"tuple:{s[0]}{','.join(keys)}{s[-1]}"
    return f"text:{_text(low)}"


def _clean(s: str) -> str:
    """Strip math delimiters, wrappers like \\text{} and \\boxed{}, spacing commands, quotes and end punctuation."""
    s = s.strip()
    for _ in range(4):  # wrappers can nest: $\boxed{\text{B}}$.
        before = s
        s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
        s = s.replace("\\[", "").replace("\\]", "")
        s = _unwrap(s)
        s = _DROP_RE.sub(" ", s)
        s = _DEGREE_RE.sub("", s).replace("\\%", "").replace("%", "")
        s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
        s = _VAR_ASSIGN_RE.sub("", s.strip())
        s = " ".join(s.split()).rstrip(_TRAILING).lstrip(_QUOTES)
        if s == before:
            break
    return s


def _unwrap(s: str) -> str:
    """Replace ``\\text{X}`` (and the other wrappers) by ``X``; an unclosed wrapper keeps its content."""
    out, pos = [], 0
    while True:
        m = _WRAPPER_RE.search(s, pos)
        if m is None:
            out.append(s[pos:])
            return "".join(out)
        out.append(s[pos:m.start()])
        depth, j = 1, m.end()
        while j < len(s) and depth:
            depth += {"{": 1, "}": -1}.get(s[j], 0)
            j += 1
        inner_end = j - 1 if depth == 0 else j
        out.append(s[m.end():inner_end])
        pos = j


def parse_number(s: str) -> Fraction | None:
    """A rational number written as an integer, decimal, fraction, ``\\frac`` or with a trailing unit word."""
    s = s.strip()
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    m = _FRAC_RE.fullmatch(s) or _FRAC_SHORT_RE.fullmatch(s)
    if m and not _big_exponent(s):
        return _ratio(m.group(1), m.group(2), m.group(3))
    m = _UNIT_RE.fullmatch(s)
    if m is None:
        return None
    body = m.group(1)
    if len(body) > 64 or _big_exponent(body):
        return None  # not worth an exact rational (and 1e999999 would be slow to print)
    slash = _SLASH_RE.fullmatch(body)
    if slash:
        return _ratio("", slash.group(1), slash.group(2))
    try:
        return Fraction(body)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def _big_exponent(body: str) -> bool:
    exponents = re.findall(r"[eE]([-+]?\d+)", body)
    return any(abs(int(e)) > 64 for e in exponents)


def _ratio(sign: str, num: str, den: str) -> Fraction | None:
    try:
        value = Fraction(num) / Fraction(den)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return -value if sign == "-" else value


def _fmt(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _tuple_elements(s: str) -> list[str] | None:
    """Top-level comma-separated elements of ``(a, b)`` / ``[a, b]``; None when ``s`` is not such a list."""
    if len(s) < 3 or s[0] not in "([" or s[-1] not in ")]":
        return None
    parts, depth, start = [], 0, 1
    for i, ch in enumerate(s[1:-1], start=1):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif ch == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    if not parts or depth != 0:
        return None
    parts.append(s[start:-1])
    return parts


def _text(low: str) -> str:
    low = _ARTICLE_RE.sub("", low)
    low = _BRACE_ATOM_RE.sub(r"\1", low)
    if any(ch in low for ch in "\\^_{}=+*/<>") or any(ch.isdigit() for ch in low):
        return "".join(low.split())  # math: spacing carries no meaning
    return low
