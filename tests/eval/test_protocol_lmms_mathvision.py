"""The ``lmms-eval`` protocol's MathVision (lmms-eval 0.7.3 ``tasks/mathvision/utils.py``
``mathvision_doc_to_text`` / ``mathvision_process_results``) in the main environment, without lmms-eval: the
loader's columns, the prompt, hand-derived verdicts and the refusal without latex2sympy2. Identity with lmms-eval's
own functions on 240 crafted responses is tests/eval/test_lmms_identity.py (its own environment)."""

from __future__ import annotations

import json
import sys

import pytest
from support.eval import make_image
from visplay_eval.protocols import lmms_eval_mathvision as mathvision
from visplay_eval.protocols.lmms_eval import LmmsEvalProtocol

from visplay.api import ProtocolError
from visplay.eval.benchmarks import load_benchmark

PREFIX = 'Please solve the problem step by step and put your answer in one "\\boxed{}".'


def _rows(tmp_path):
    make_image("mv").save(tmp_path / "1.png")
    rows = [{"id": "1", "question": "<image1> Which is largest?", "options": ["3", "4", "5"], "answer": "C",
             "image": "1.png"},
            {"id": "2", "question": "<image1> Find the area.", "options": [], "answer": "\\frac{1}{2}",
             "image": "1.png"}]
    (tmp_path / "mathvision.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_benchmark("math-vision", tmp_path)


def test_prompt_from_the_loaded_columns(tmp_path):
    choice, free = _rows(tmp_path)
    assert choice.options == ["3", "4", "5"] and free.options == [] and choice.meta["raw_answer"] == "C"
    protocol = LmmsEvalProtocol()
    # doc_to_text: the instruction glued to the question, "Choices:" lines, "\n" + the default mc_prompt
    assert protocol.present(choice).parts == (0, PREFIX + "<image1> Which is largest?\nChoices: A. 3\nB. 4\nC. 5\n"
                                              "Answer the question with the option's letter from the given choices "
                                              "directly.")
    assert protocol.present(free).parts == (0, PREFIX + "<image1> Find the area.")


def _score(response: str, answer: str, options: list[str] | None = None) -> dict:
    return LmmsEvalProtocol().score({"benchmark": "math-vision", "question": "q", "answer": answer,
                                     "response": response, "options": options or [], "meta": {"raw_answer": answer}})


@pytest.mark.parametrize("response, answer, options, correct, extracted", [
    # " (B)." at the end -> the letter B; is_equal lower-cases both sides
    ("So the answer is (B).", "B", ["3", "4", "5"], True, "b"),
    # the boxed content equals the text of the reference option ("4" is option B)
    ("It must be \\boxed{4}", "B", ["3", "4", "5"], True, "4"),
    ("\\boxed{C}", "B", ["3", "4", "5"], False, "c"),
    # "the answer is" keeps what follows; _fix_a_slash_b writes 1/2 as \frac{1}{2}
    ("The answer is 1/2", "\\frac{1}{2}", [], True, "\\frac{1}{2}"),
    # find_math_answer drops ^\circ and spaces
    ("\\boxed{60 ^\\circ}", "60", [], True, "60"),
    # two boxes: the last one; its "7cm" is no number
    ("\\boxed{3} first, then \\boxed{7 cm}", "7", [], False, "7cm"),
    ("<think>\\boxed{9}</think>no answer", "9", [], False, "noanswer"),
    ("", "9", [], False, ""),
])
def test_hand_derived_verdicts(response, answer, options, correct, extracted):
    verdict = _score(response, answer, options)
    assert (verdict["correct"], verdict["extracted"]) == (correct, extracted)


def test_numeric_equivalence_goes_through_latex2sympy():
    pytest.importorskip("latex2sympy2")
    # "1/2." keeps its period through _fix_a_slash_b; latex2sympy then reads 1/2 == \frac{1}{2} == 0.5
    assert _score("The answer is 1/2.", "\\frac{1}{2}")["correct"]
    assert _score("\\boxed{0.333}", "\\frac{1}{3}")["correct"] and not _score("\\boxed{0.3}", "\\frac{1}{3}")["correct"]


def test_refused_before_scoring_without_latex2sympy(monkeypatch):
    monkeypatch.setitem(sys.modules, "latex2sympy2", None)  # import latex2sympy2 -> ImportError
    protocol = LmmsEvalProtocol()
    assert not protocol.supports("math-vision")
    assert "latex2sympy2, which is not installed" in protocol.refusal("math-vision")
    assert mathvision.missing_dependency() is not None


def test_answer_outside_the_option_letters_is_a_clear_error():
    with pytest.raises(ProtocolError, match="math-vision item .*'F' is not one of the 3 option letters"):
        _score("\\boxed{A}", "F", ["3", "4", "5"])


def _log_samples(tmp_path):
    """An lmms-eval ``--log_samples`` file of ``mathvision_testmini`` (doc, target, resps) for four items."""
    docs = [({"id": "1", "question": "Which?", "options": ["3", "4", "5"], "answer": "C"}, "The answer is (C)."),
            ({"id": "2", "question": "Area?", "options": [], "answer": "\\frac{1}{2}"}, "The answer is 1/2"),
            ({"id": "3", "question": "Angle?", "options": [], "answer": "60"}, "\\boxed{45^\\circ}"),
            ({"id": "4", "question": "Which?\nA. 1\nB. 2", "options": [], "answer": "B"}, "\\boxed{2}")]
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps({"doc_id": i, "doc": doc, "target": doc["answer"], "resps": [[resp]]}) + "\n"
                            for i, (doc, resp) in enumerate(docs)))
    return path


def test_rescore_of_an_lmms_eval_samples_file(tmp_path, monkeypatch, capsys):
    from visplay.cli import main

    monkeypatch.chdir(tmp_path)
    samples = _log_samples(tmp_path)
    args = ["eval", str(samples), "--rescore", "--protocol", "lmms-eval", "--benchmarks", "math-vision"]
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "latex2sympy2", None)
        assert main(args) == 2
        assert "latex2sympy2, which is not installed" in capsys.readouterr().err
        assert not (tmp_path / "eval.db").exists()  # refused before the eval database is created
    pytest.importorskip("latex2sympy2")
    assert main(args) == 0
    from visplay.log.runlog import RunLog

    with RunLog(tmp_path / "eval.db", readonly=True) as log:
        rows = sorted(log.rows_matching("eval_items", eval_id="rescored/rule@lmms-eval"), key=lambda r: r["idx"])
    # (C) -> c; 1/2 -> \frac{1}{2}; 45 != 60; item 4's options are in its question, not in lmms-eval's options
    # column, so "2" is compared with "B" alone
    assert [(r["correct"], r["extracted"]) for r in rows] == [
        (1, "c"), (1, "\\frac{1}{2}"), (0, "45"), (0, "2")]
