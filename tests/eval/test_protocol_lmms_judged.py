"""The ``lmms-eval`` protocol's judged benchmarks (MM-Vet, MathVista) in the main environment: refused under the
rule judge with a message naming ``--judge``, and scored through visplay's endpoint judge (a stand-in server) with
lmms-eval's judge prompts and reply parsing. Identity of those prompts and parsings with lmms-eval's own functions
is tests/eval/test_lmms_identity.py (its own environment)."""

from __future__ import annotations

import pytest
import visplay_eval.plugin as eval_plugin
from visplay_eval.protocols import lmms_eval_judged as judged
from visplay_eval.protocols.lmms_eval import LmmsEvalProtocol

from visplay.api import ProtocolError
from visplay.config import load_recipe
from visplay.context import RunContext
from visplay.plugins import get_plugin_manager

MATHVISTA_META = {"question_type": "free_form", "answer_type": "integer", "precision": 0, "unit": "",
                  "query": "Hint: integer.\nQuestion: How many?"}


def _mmvet(response: str, answer: str = "-1<AND>-5") -> dict:
    return {"benchmark": "mm-vet", "question": "What is x?", "raw_question": "What is x?", "answer": answer,
            "response": response, "options": [], "meta": {"raw_answer": answer}, "protocol": "lmms-eval"}


def _mathvista(response: str, answer: str = "14") -> dict:
    return {"benchmark": "mathvista", "question": "How many?", "raw_question": "How many?", "answer": answer,
            "response": response, "options": [], "meta": {**MATHVISTA_META, "raw_answer": answer},
            "protocol": "lmms-eval"}


def _mathverse(response: str, answer: str = "5") -> dict:
    return {"benchmark": "mathverse", "question": "Find x.", "answer": answer, "response": response, "options": [],
            "meta": {"query_wo": "Please answer. Find x.", "question_for_eval": "Find x.", "raw_answer": answer},
            "protocol": "lmms-eval"}


def test_rule_judge_refuses_judged_benchmarks():
    protocol = LmmsEvalProtocol()
    assert not protocol.supports("mm-vet") and not protocol.supports("mathvista", "rule")
    assert protocol.supports("mm-vet", "endpoint") and protocol.supports("mathvista", "local")
    with pytest.raises(ProtocolError, match="mm-vet is graded by a model judge.*--judge local or --judge endpoint"):
        protocol.score(_mmvet("x = -1 or x = -5"))
    with pytest.raises(ProtocolError, match="mathvista.*--judge"):
        protocol.score(_mathvista("There are 14 of them."))
    with pytest.raises(ProtocolError, match="mathverse.*--judge"):
        protocol.score(_mathverse("x = 5"))
    assert protocol.score(_mathvista(" 14 "))["correct"]  # a bare integer is extracted without a judge there too


def test_mathvista_without_its_columns_is_refused():
    item = {**_mathvista("14"), "meta": {"raw_answer": "14", "question_type": "free_form"}}
    with pytest.raises(ProtocolError, match="columns answer_type, query"):
        LmmsEvalProtocol().judge_request(item)


def test_endpoint_judge_grades_with_lmms_eval_prompts(tmp_path):
    from support.eval import JudgeServer

    pm = get_plugin_manager(autoload=False, extra=(eval_plugin,))
    items = [_mmvet("<think>hmm</think>x = -1 or x = -5"), _mathvista("There are 14 of them."),
             _mathvista("14"), _mathvista("I count 1 of them.", answer="1"), _mathverse("x = 5")]
    with JudgeServer(mode="one") as server:  # replies "1" to every prompt
        ctx = RunContext(recipe=load_recipe("tiny", [f"plugins.eval.judge_url={server.url}"]), pm=pm,
                         run_dir=tmp_path, phase="eval")
        verdicts = ctx.hooks.judge(name="endpoint", items=items)
    sent = [body["messages"] for _, _, body in server.requests]
    assert len(sent) == 4  # the bare "14" needs no extraction, as in lmms-eval
    assert all(len(m) == 1 and m[0]["role"] == "user" for m in sent)
    users = sorted(m[0]["content"] for m in sent)
    assert judged.mmvet_judge_prompt("What is x?", "-1<AND>-5", "x = -1 or x = -5") in users
    assert users[0].startswith("Compare the ground truth") and "| -1 <AND> -5 | x = -1 or x = -5 |" in users[0]
    assert judged.mathvista_extract_prompt(MATHVISTA_META["query"], "There are 14 of them.") in users
    assert judged.mathverse_judge_prompt("Find x.", "5", "x = 5") in users
    assert [(v["correct"], v["extracted"]) for v in verdicts[1:4]] == [(False, "1"), (True, "14"), (True, "1")]
    assert verdicts[4]["correct"] and verdicts[4]["reason"] == "judged_correct"
    assert verdicts[0]["correct"] and verdicts[0]["score"] == 1.0 and verdicts[0]["reason"] == "judged_score=1"
    assert verdicts[2]["verdict"] is None and verdicts[1]["verdict"] == "1"


@pytest.mark.parametrize("reply, score", [("0.5", 0.5), (" 1.0\n", 1.0), ("0.3 because", 0.3), ("1.5", None),
                                          ("abc", None), ("", None), ("0.4\n0.5", None), ("nan", None)])
def test_mmvet_reply_parsing(reply, score):
    assert judged.mmvet_score(reply) == score


def test_mathvista_normalisation():
    choice = {"question_type": "multi_choice", "answer_type": "text", "precision": 0, "choices": ["3/11", "8/11"]}
    assert judged.mathvista_normalize("(b) eight", choice) == "8/11"
    assert judged.mathvista_normalize("3/1", choice) == "3/11"  # nearest by edit distance
    number = {"question_type": "free_form", "answer_type": "float", "precision": 2, "choices": []}
    assert judged.mathvista_normalize("1.456", number) == "1.46" and judged.mathvista_normalize("x", number) is None
    assert judged.mathvista_normalize("1.456", {**number, "precision": 1.0}) is None  # round(x, 1.0) fails there
    assert judged.edit_distance("kitten", "sitting") == 3
