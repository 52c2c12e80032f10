"""Protocols in a whole `visplay eval` (scripted stand-in model) and the lmms-eval rules on hand-worked cases
(the identity test against lmms-eval itself is tests/eval/test_lmms_identity.py)."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.eval import RESPONSES, StandInModels, make_image, patch_plugin_manager, png, write_benchmarks
from visplay_eval.protocols.lmms_eval import LmmsEvalProtocol
from visplay_eval.protocols.lmms_eval_rules import (
    mcq_letter,
    mmmu_choice,
    mmmu_open_candidates,
    strip_reasoning,
)

from visplay.cli import main
from visplay.eval.benchmarks import load_benchmark
from visplay.log.runlog import RunLog


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_benchmarks(tmp_path_factory.mktemp("bench"))


@pytest.fixture
def models(monkeypatch):
    standin = StandInModels()
    patch_plugin_manager(monkeypatch, standin)
    return standin


def _eval(tmp_path, monkeypatch, data_dir, benchmarks, *extra):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "M").mkdir(exist_ok=True)
    code = main(["eval", str(tmp_path / "M"), *extra, "--benchmarks", benchmarks, "--data", str(data_dir)])
    return code


def test_released_protocol_end_to_end(tmp_path, data_dir, models, monkeypatch, capsys):
    assert _eval(tmp_path, monkeypatch, data_dir, "mmmu,mathverse,math-vision,hallusionbench",
                 "--protocol", "released") == 0
    assert "under protocol released" in capsys.readouterr().out
    with RunLog(tmp_path / "eval.db", readonly=True) as log:
        scores = {r["benchmark"]: r for r in log.rows("eval_scores")}
        items = {r["question"].split("[q:")[1].split("]")[0]: r for r in log.rows("eval_items")}
    assert {s["eval_id"] for s in scores.values()} == {"M/rule@released"}
    # hand-worked from the released code: \boxed{B} == B; 4.0 -> "40" != "4"; 3.50 -> "350" != "35";
    # \boxed{\frac{1}{2}} -> "\frac{1"; HallusionBench compares with the file's raw "no" / "1"
    assert {b: s["accuracy"] for b, s in scores.items()} == {"mmmu": 50.0, "mathverse": 0.0, "math-vision": 0.0,
                                                           "hallusionbench": 0.0}
    assert items["mvis0"]["extracted"] == "\\frac{1" and items["mmmu1"]["extracted"] == "4.0"
    assert items["mmmu0"]["prompt_user"].startswith(
        "Please reason step by step carefully based on the question: [q:mmmu0] Which shape is drawn? and the image.")
    assert "B. square" not in items["mmmu0"]["prompt_user"]  # the released prompt is the file's text as is
    assert RESPONSES["mmmu0"][1] and RESPONSES["mv0"][1]  # the visplay protocol calls both right


def test_lmms_eval_protocol_end_to_end_and_unsupported_benchmark(tmp_path, data_dir, models, monkeypatch, capsys):
    assert _eval(tmp_path, monkeypatch, data_dir, "mmmu,mmstar", "eval.protocol=lmms-eval") == 0
    with RunLog(tmp_path / "eval.db", readonly=True) as log:
        items = {r["question"].split("[q:")[1].split("]")[0]: r for r in log.rows("eval_items")}
    # mmmu0 "... \boxed{B}": " B" is no candidate form ("(B)", "B ", "B."), >5 words, no option text -> a
    # random letter from Random(0) over A-D
    assert items["mmmu0"]["extracted"] == random.Random(0).choice("ABCD")
    assert items["mmmu0"]["reason"].endswith("+random_letter")
    assert items["mmmu0"]["prompt_user"].endswith("D. star\n\nAnswer with the option's letter from the given "
                                                  "choices directly.")
    assert items["star0"]["correct"] == 0  # "\boxed{fish}": no letter A-D as a form -> fallback finds none
    assert _eval(tmp_path, monkeypatch, data_dir, "mm-vet", "eval.protocol=lmms-eval") == 2
    assert "no prompt or scoring for benchmark(s) mm-vet" in capsys.readouterr().err
    assert _eval(tmp_path, monkeypatch, data_dir, "mmmu", "--protocol", "nobody") != 0


@pytest.mark.parametrize("response, letter", [
    ("The answer is (B).", "B"),
    ("A B C D", "A"),  # "start" outranks "end"
    ("CAD", "D"),  # only "D " (space form) qualifies; C and D touch letters
    ("<think>A</think> C", "C"),
    ("I choose B, not C.", "C"),  # a lone letter at the end ("end", 9) outranks the phrase form (7)
    ("I choose B, not C, fine", "C"),  # the phrase form takes every letter after the phrase; C is the later one
    ("I choose B", "B"),
    ("", ""), ("xyz", ""),
    ("data", ""),  # lower case never matches
])
def test_mcq_letter_hand_worked(response, letter):
    assert mcq_letter(strip_reasoning(response)) == letter


def test_mcq_letter_strips_one_character_kind_at_a_time():
    # "," first (nothing at the ends of ".,A"), then "." -> ",A"; padded " ,A ": "A " gives A (space form)
    assert mcq_letter(".,A") == "A"


def test_mmmu_rules_hand_worked():
    options = ["circle", "square", "triangle", "star"]
    assert mmmu_choice("(B) square", options, random.Random(0)) == ("B", False)
    assert mmmu_choice("I would say that it is a square here", options, random.Random(0)) == ("B", False)
    assert mmmu_choice("It is C or maybe D.", options, random.Random(0)) == ("D", False)  # "." stripped: "D "
    assert mmmu_choice("It is C or maybe D, hmm", options, random.Random(0)) == ("C", False)  # "D," is no form
    rng = random.Random(0)
    expected = random.Random(0)
    assert [mmmu_choice("none", options, rng)[0] for _ in range(3)] == [expected.choice("ABCD") for _ in range(3)]
    assert set(mmmu_open_candidates("So the answer is 4.50")) == {4.5}  # "4.50" is a number: rounded float
    assert set(mmmu_open_candidates("So the answer is red")) == {"red"}  # the shortest tail after an indicator
    assert set(mmmu_open_candidates("x")) == {" x", "x "}


def test_three_images_reach_the_presentation_interleaved(tmp_path):
    rows = [{"id": "validation_Art_1", "question": "Compare <image 1>, <image 2> and <image 3>.", "answer": "A",
             "options": "['first', 'second']", "question_type": "multiple-choice",
             **{f"image_{n}": {"bytes": png(f"img{n}"), "path": None} for n in (1, 2, 3)},
             **{f"image_{n}": None for n in (4, 5, 6, 7)}}]
    (tmp_path / "mmmu").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "mmmu" / "validation.parquet")
    (item,) = load_benchmark("mmmu", tmp_path)
    assert len(item.images) == 3 and item.meta["image_numbers"] == [1, 2, 3]
    assert [img.tobytes() for img in item.images] == [make_image(f"img{n}").tobytes() for n in (1, 2, 3)]
    shown = LmmsEvalProtocol().present(item)
    assert shown.parts == ("Compare", 0, ",", 1, "and", 2,
                           ".\nA. first\nB. second\n\nAnswer with the option's letter from the given choices directly.")
    assert shown.placeholder_text().count("<image>") == 3


def test_an_item_with_three_images_reaches_the_sampler_with_all_three(tmp_path, models, monkeypatch):
    test_three_images_reach_the_presentation_interleaved(tmp_path)
    assert _eval(tmp_path, monkeypatch, tmp_path, "mmmu", "eval.protocol=lmms-eval") == 0
    ((prompt,), _), = models.sampler.calls
    assert len(prompt.images) == 3 and prompt.interleaved
    assert prompt.parts()[:6] == ["Compare", 0, ",", 1, "and", 2]
    with RunLog(tmp_path / "eval.db", readonly=True) as log:
        (row,) = log.rows("eval_items")
        events = [e for e in log.rows("events") if e["kind"] == "eval_images_dropped"]
    assert row["prompt_user"].count("<image>") == 3  # the interleaved text keeps every placeholder
    assert row["image_id"] == ",".join(r.image_id for r in prompt.images)
    assert events == []  # nothing dropped, so nothing to report


def test_released_still_reports_the_images_it_drops(tmp_path, models, monkeypatch):
    test_three_images_reach_the_presentation_interleaved(tmp_path)
    assert _eval(tmp_path, monkeypatch, tmp_path, "mmmu", "eval.protocol=released") == 0
    ((prompt,), _), = models.sampler.calls
    assert len(prompt.images) == 1 and prompt.user.endswith("<image>")  # the released chat: text, then the image
    with RunLog(tmp_path / "eval.db", readonly=True) as log:
        events = [e for e in log.rows("events") if e["kind"] == "eval_images_dropped"]
    assert len(events) == 1 and "1 item(s) have images the protocol does not show" in events[0]["message"]


def _verdicts(db, eval_id):
    with RunLog(db, readonly=True) as log:
        return {(r["benchmark"], r["idx"]): (r["correct"], r["extracted"])
                for r in log.rows_matching("eval_items", eval_id=eval_id)}


def test_samples_out_and_rescore_match_a_direct_evaluation(tmp_path, data_dir, models, monkeypatch, capsys):
    import json

    from visplay.eval.samples import doc_hash

    sets = "mmmu,mathverse,math-vision,mmstar"
    samples = tmp_path / "samples.jsonl"
    assert _eval(tmp_path, monkeypatch, data_dir, sets, "--samples-out", str(samples)) == 0
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(records) == 5
    first = records[0]
    assert {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "doc_hash", "accuracy"} <= set(first)
    assert first["resps"] == [[first["filtered_resps"][0]]] and first["doc_hash"] == doc_hash(first["doc"])
    results = json.loads((tmp_path / "samples.jsonl.results.json").read_text())
    assert results["results"]["mmmu"]["accuracy"] == 1.0 and results["protocol"] == "visplay"
    # lmms-eval covers mmmu and mmstar of these: rescore a file holding only those
    covered = tmp_path / "covered.jsonl"
    covered.write_text("".join(json.dumps(r) + "\n" for r in records if r["benchmark"] in ("mmmu", "mmstar")))
    for protocol, wanted, source, n in (("released", sets, samples, 5), ("lmms-eval", "mmmu,mmstar", covered, 3)):
        assert _eval(tmp_path, monkeypatch, data_dir, wanted, "--protocol", protocol) == 0
        assert main(["eval", str(source), "--rescore", "--protocol", protocol]) == 0
        direct = _verdicts(tmp_path / "eval.db", f"M/rule@{protocol}")
        again = _verdicts(tmp_path / "eval.db", f"rescored/rule@{protocol}")
        assert again == direct and len(direct) == n
    assert main(["eval", str(samples), "--rescore", "--protocol", "lmms-eval"]) == 2  # mathverse, math-vision: refused
    assert main(["eval", str(samples), "--rescore"]) == 2  # no protocol named
    assert "re-scored as rescored/rule@lmms-eval" in capsys.readouterr().out


def test_mmmu_options_written_in_the_question_are_not_listed_twice(tmp_path):
    import json

    row = {"problem": "<image 1> Which shape?\nA. circle\nB. square", "answer": "B",
           "images": [{"bytes": None, "path": "a.png"}]}
    make_image("inline").save(tmp_path / "a.png")
    (tmp_path / "mmmu.jsonl").write_text(json.dumps(row) + "\n")
    (item,) = load_benchmark("mmmu", tmp_path)
    assert item.options == ["circle", "square"] and item.meta["options_in_text"] == 1
    assert LmmsEvalProtocol().present(item).parts == (
        0, "Which shape?\nA. circle\nB. square\n\nAnswer with the option's letter from the given choices directly.")
