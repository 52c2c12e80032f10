"""lmms-eval's MathVision task (lmms-eval 0.7.3, ``lmms_eval/tasks/mathvision/``, default variant
``mathvision_test`` / ``mathvision_testmini``), re-implemented: the prompt of ``utils.py``
``mathvision_doc_to_text`` with the YAML's ``default`` ``mc_prompt``, one image (``mathvision_doc_to_visual``),
and the rule metric ``mathvision_standard_eval`` (``utils.py`` ``mathvision_process_results`` with
``eval_utils.py`` ``find_math_answer`` / ``_strip_string`` / ``is_equal`` / ``eval_tuple``).

``is_equal`` compares answers numerically through ``latex2sympy2`` (``round(eval(str(latex2sympy(x))), 2)``);
that parser is a third-party package visplay does not vendor, so the MathVision scoring needs it installed
(:func:`missing_dependency` says so before a model loads). ``eval`` of the printed expression is replaced here by
an evaluator of plain Python arithmetic on number literals: the names a printed sympy expression can hold
(``sqrt``, ``pi``, symbols) are not defined where lmms-eval evaluates it, so those comparisons fail there too.
The identity test (tests/eval/test_lmms_identity.py) checks the verdicts against lmms-eval's own function.
"""

from __future__ import annotations

import ast
import operator
import re
from typing import Any

QUERY_PROMPT = 'Please solve the problem step by step and put your answer in one "\\boxed{}".'
MC_PROMPT = "Answer the question with the option's letter from the given choices directly."
_FLAGS = ("the final answer is", "the answer is", "the correct answer is", "the answer should be")
_BOXED = re.compile("oxed{(.*)}", flags=re.S)
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv,
        ast.USub: operator.neg, ast.UAdd: operator.pos}


def missing_dependency() -> str | None:
    """Why MathVision cannot be scored here (``latex2sympy2`` absent), or None."""
    try:
        import latex2sympy2  # noqa: F401
    except ImportError:
        return ("lmms-eval's MathVision scoring (eval_utils.py is_equal) compares answers through latex2sympy2, "
                "which is not installed: pip install latex2sympy2")
    return None


def mathvision_text(question: str, options: list[str]) -> str:
    """``mathvision_doc_to_text`` with the default kwargs: the boxed-answer instruction glued to the question
    (no separator, as there), then ``Choices:`` with ``A. ...`` lines and the multiple-choice prompt."""
    if not options:
        return QUERY_PROMPT + question
    listed = "\n".join(f"{chr(ord('A') + i)}. {choice}" for i, choice in enumerate(options))
    return f"{QUERY_PROMPT}{question}\nChoices: {listed}\n{MC_PROMPT}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _narrow(answer: str) -> str:
    """The first half of ``mathvision_process_results``: a lone letter line, a trailing ``is <number>``, the text
    after an answer phrase (its first line and sentence), or the last ``\\boxed{`` when there are several."""
    for letter in "ABCDE":
        if (answer.endswith((f" {letter}.", f" ({letter}).")) or answer.startswith(
                (f"{letter}\n", f"({letter})\n", f"({letter}) {letter}\n"))):
            answer = letter
            break  # the answer is now one letter: no later letter can match
    tail = answer.split("is ")[-1].rstrip(".")
    if _is_number(tail):
        answer = tail
    if "oxed{" in answer:
        return "\\boxed{" + answer.split("oxed{")[-1] if answer.count("oxed{") > 1 else answer
    for flag in _FLAGS:
        for spelled in (flag, flag.replace("the", "The")):
            found = spelled in answer
            answer = answer.split(spelled)[-1].strip()
            if found:
                answer = answer.split("\n")[0].split(". ")[0]
    return answer


def mathvision_extract(response: str) -> str:
    """The answer string ``mathvision_process_results`` compares (the response already stripped of reasoning)."""
    answer = find_math_answer(_narrow(response.strip()))
    for letter in "abcde":
        answer = answer.replace(f"({letter})", letter)
    for letter in "abcde":
        answer = answer.replace(f"{{{letter}}}", letter)
    return answer.rstrip(".").lstrip(":").strip()


def find_math_answer(text: str) -> str:
    """``eval_utils.py`` ``find_math_answer``: the greedy ``oxed{...}`` content (or all), cut at an unopened
    ``}``, the value after ``=`` / ``\\approx``, LaTeX and unit words removed, then ``_strip_string``."""
    text = text.lower().replace("{}", "")
    boxed = _BOXED.findall(text)
    ans = boxed[-1] if boxed else text
    close, open_ = ans.find("}"), ans.find("{")
    if close != -1 and (open_ == -1 or close < open_):
        ans = ans.split("}")[0]
    ans = ans.split("=")[-1].split("\\approx")[-1]
    for old, new in ((" ", ""), ("\\,", ""), ("∞", "\\infty"), ("+\\infty", "\\infty"), ("\\\\", "\\"),
                     ("\n", ""), ("\\text", ""), ("\\mbox", ""), ("bmatrix", "pmatrix"), ("\\left", ""),
                     ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("{m}^3", ""), ("m^3", ""),
                     ("{units}", ""), ("units", ""), ("{km}", ""), ("km", "")):
        ans = ans.replace(old, new)
    return strip_string(ans)


def strip_string(text: str) -> str:
    """``eval_utils.py`` ``_strip_string`` (its order kept: the brace fix for ``\\frac`` runs only when the text
    holds ``sqrt``, as there)."""
    for old, new in (("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac"),
                     ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", ""), ("$", "")):
        text = text.replace(old, new)
    text = text.split("\\text{ ")[0]  # _remove_right_units
    text = text.replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if not text:
        return text
    if text[0] == ".":
        text = "0" + text
    for sep in ("=", "\\approx"):
        if len(text.split(sep)) == 2:
            text = text.split(sep)[-1]
    if "sqrt" in text:
        text = _braced_sqrt(text)
    text = text.replace(" ", "")
    if "sqrt" in text:
        text = _braced_fracs(text)
    if text == "0.5":
        text = "\\frac{1}{2}"
    return _slash_fraction(text)


def _braced_sqrt(text: str) -> str:
    """``_fix_sqrt``: ``\\sqrt3`` -> ``\\sqrt{3}`` (one character)."""
    head, *rest = text.split("\\sqrt")
    return head + "".join("\\sqrt{" + p[0] + "}" + p[1:] if p and p[0] != "{" else "\\sqrt" + p for p in rest)


def _braced_fracs(text: str) -> str:
    """``_fix_fracs``: ``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{2}`` -> ``\\frac{1}{2}``; the text unchanged
    when a ``\\frac`` has fewer than two characters after it."""
    head, *rest = text.split("\\frac")
    out = head
    for part in rest:
        out += "\\frac"
        if part and part[0] == "{":
            out += part
        elif len(part) < 2:
            return text
        elif part[1] != "{":
            out += "{" + part[0] + "}{" + part[1] + "}" + part[2:]
        else:
            out += "{" + part[0] + "}" + part[1:]
    return out


def _slash_fraction(text: str) -> str:
    """``_fix_a_slash_b``: ``3/4`` -> ``\\frac{3}{4}`` when both sides are integers written canonically."""
    pieces = text.split("/")
    if len(pieces) != 2:
        return text
    try:
        num, den = int(pieces[0]), int(pieces[1])
    except ValueError:
        return text
    return f"\\frac{{{num}}}{{{den}}}" if text == f"{num}/{den}" else text


# --- is_equal ------------------------------------------------------------------------------------------------


def _arith(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _arith(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, complex)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_arith(node.left), _arith(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_arith(node.operand))
    raise ValueError("not plain arithmetic")


def latex_value(text: str) -> Any:
    """``round(eval(str(latex2sympy(text))), 2)``; any failure raises (the caller counts it as no value)."""
    from latex2sympy2 import latex2sympy

    return round(_arith(ast.parse(str(latex2sympy(text)), mode="eval")), 2)


def _value_or_text(sub: str) -> str:
    return sub if "infty" in sub or sub in ("a", "-a") else str(latex_value(sub))


def eval_tuple(text: str) -> str:
    """``eval_tuple``: each element of a ``(a,b)`` / ``[a,b]`` text evaluated and rounded; the text unchanged
    when it is no such tuple or an element fails."""
    parts = text[1:-1].split(",")
    try:
        brackets = text[0] + text[-1]
        if brackets in ("()", "[]") and len(parts) > 1:
            return brackets[0] + ",".join(_value_or_text(p) for p in parts) + brackets[1]
    except Exception:  # noqa: BLE001 - any failure keeps the text, as the reference's bare except does
        return text
    return text


def is_equal(first: str, second: str) -> bool:
    """``is_equal``: lower-cased, non-blank, equal after strip, equal as evaluated tuples, or equal numbers
    (rounded to 2 decimals) through latex2sympy."""
    first, second = first.lower(), second.lower()
    if not first.replace(" ", "") or not second.replace(" ", ""):
        return False
    if first.strip() == second.strip():
        return True
    first, second = eval_tuple(first), eval_tuple(second)
    if first == second:
        return True
    try:
        return latex_value(second) == latex_value(first)
    except Exception:  # noqa: BLE001 - the reference counts every failure as unequal
        return False


def mathvision_correct(reference: str, options: list[str], response: str) -> tuple[bool, str]:
    """(verdict, extracted): the answer equals the reference or, for a multiple-choice item, the text of the
    reference's option."""
    answer = mathvision_extract(response)
    value = options[ord(reference) - ord("A")] if options else ""
    return is_equal(reference, answer) or is_equal(value, answer), answer
