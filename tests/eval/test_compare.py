"""`visplay eval --compare-protocols`: one set of responses scored under released, lmms-eval and visplay, with the
items on which they disagree and the stage that differs. Expected verdicts are worked out by hand from each
protocol's rules (docs/evaluation.md, the protocol table)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support.eval import StandInModels, patch_plugin_manager, write_benchmarks

from visplay.cli import main
from visplay.eval.compare import stage_of

MMSTAR_Q = "What is shown?\nA. dog\nB. cat\nC. bird\nD. fish"


def _record(benchmark: str, doc_id: int, question: str, target: str, response: str) -> dict:
    doc = {"id": f"{benchmark}-{doc_id}", "question": question, "options": [], "answer": target}
    return {"doc_id": doc_id, "doc": doc, "target": target, "resps": [[response]], "filtered_resps": [response],
            "benchmark": benchmark}


# (record, verdict under released / lmms-eval / visplay), each derived from the protocol's rules:
RECORDS = [
    # all three read B: released "B" == "B"; lmms-eval's extract_mcq_answer falls back to the only letter; visplay
    # the boxed letter
    (_record("mmstar", 0, MMSTAR_Q, "B", "\\boxed{B}"), (True, True, True)),
    # no box: released compares its first 100 characters ("THEANSWERIS(B)" != "B"), visplay has no answer,
    # lmms-eval's phrase "the answer is" finds B
    (_record("mmstar", 1, MMSTAR_Q, "B", "The answer is (B)."), (False, True, False)),
    # an option's text: visplay maps "cat" to B; released "CAT" != "B"; lmms-eval finds no capital letter
    (_record("mmstar", 2, MMSTAR_Q, "B", "\\boxed{cat}"), (False, False, True)),
    # open answer: visplay's answer equivalence has 3.5 == 3.50; released's normalisation "35" != "350";
    # lmms-eval has no rule scoring for MM-Vet (an API judge there)
    (_record("mm-vet", 0, "What is x?", "3.50", "\\boxed{3.5}"), (False, None, True)),
    # no box: lmms-eval's HallusionBench rule ("yes" absent -> 0) matches "no"; the others have no answer / the
    # whole sentence
    (_record("hallusionbench", 0, "Is there a cat in the image?", "no", "No, there is none."),
     (False, True, False)),
]


def _scores(benchmark: str) -> list[str]:
    """The score lines RECORDS imply for one benchmark, in the compared order (skipped protocols left out)."""
    verdicts = [v for r, v in RECORDS if r["benchmark"] == benchmark]
    lines = []
    for k, protocol in enumerate(("released", "lmms-eval", "visplay")):
        if verdicts[0][k] is None:
            continue
        correct, n = sum(v[k] for v in verdicts), len(verdicts)
        lines.append(f"{protocol} {correct}/{n} {100 * correct / n:.2f}%")
    return lines


def _line(text: str) -> str:
    return " ".join(text.split())


def _section(out: str, title: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{title}: "))
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith(" ")), len(lines))
    return [_line(line) for line in lines[start:end]]


def test_rescore_compare_protocols_in_a_subprocess(tmp_path):
    samples = tmp_path / "s.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r, _ in RECORDS))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", None)
    proc = subprocess.run([sys.executable, "-m", "visplay.cli", "eval", str(samples), "--rescore",
                           "--compare-protocols", "released,lmms-eval,visplay", "--db", str(tmp_path / "c.db")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"protocols compared on the same responses of {samples}:" in out
    mmstar = _section(out, "MMStar")
    assert mmstar[:5] == ["MMStar: 3 item(s), judge rule", *_scores("mmstar"),
                          "disagreeing items: 2 (extraction 1, extraction+normalisation 1)"]
    assert mmstar[5] == "- item 1 (mmstar-1), reference 'B': extraction; response 'The answer is (B).'"
    assert mmstar[6:9] == ["released wrong extracted 'The answer is (B).' (mismatch)",
                           "lmms-eval right extracted 'B' (match)", "visplay wrong extracted None (no_boxed_answer)"]
    assert mmstar[9] == "- item 2 (mmstar-2), reference 'B': extraction+normalisation; response '\\\\boxed{cat}'"
    assert mmstar[10:12] == ["released wrong extracted 'cat' (mismatch)", "lmms-eval wrong extracted '' (mismatch)"]
    assert mmstar[12].startswith("visplay right extracted 'cat'")
    vet = _section(out, "MM-Vet")
    assert vet[:7] == [
        "MM-Vet: 1 item(s), judge rule", *_scores("mm-vet"), "lmms-eval skipped (no prompt or scoring for mm-vet)",
        "disagreeing items: 1 (normalisation 1)",
        "- item 0 (mm-vet-0), reference '3.50': normalisation; response '\\\\boxed{3.5}'",
        "released wrong extracted '3.5' (mismatch)"]
    assert vet[7].startswith("visplay right extracted '3.5'") and len(vet) == 8
    hallusion = _section(out, "HallusionBench")
    assert hallusion[1:5] == [*_scores("hallusionbench"), "disagreeing items: 1 (extraction 1)"]
    assert hallusion[5].startswith("- item 0 (hallusionbench-0), reference 'no': extraction")


def test_stage_of_pairs_right_and_wrong_verdicts():
    right = {"correct": True, "extracted": "B", "prompt": None}
    assert stage_of([right, {"correct": False, "extracted": " B ", "prompt": None}]) == "normalisation"
    assert stage_of([right, {"correct": False, "extracted": "C", "prompt": None}]) == "extraction"
    assert stage_of([right, {"correct": False, "extracted": "B", "prompt": "[user] ..."}]) == "judge"
    assert stage_of([{"correct": False, "extracted": None}, {"correct": True, "extracted": ""}]) == "normalisation"


@pytest.fixture
def data_dir(tmp_path_factory):
    return write_benchmarks(tmp_path_factory.mktemp("bench"))


def test_eval_compare_protocols_scores_the_generated_responses(tmp_path, data_dir, monkeypatch, capsys):
    """`visplay eval MODEL --compare-protocols`: generated once (visplay's prompt), scored under each protocol."""
    standin = StandInModels()
    patch_plugin_manager(monkeypatch, standin)
    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(tmp_path), "--benchmarks", "mmstar,mm-vet", "--data", str(data_dir),
                 "--compare-protocols", "visplay,released,lmms-eval"]) == 0
    out = capsys.readouterr().out
    assert len(standin.sampler.calls) == 1 + 1  # one batch per benchmark: nothing generated again
    assert "protocols compared on the same responses generated under protocol visplay:" in out
    # star0 "\boxed{fish}" (D): visplay maps the option text; released "FISH" != "D"; lmms-eval finds no letter
    assert _section(out, "MMStar")[1:5] == ["visplay 1/1 100.00%", "released 0/1 0.00%", "lmms-eval 0/1 0.00%",
                                            "disagreeing items: 1 (extraction+normalisation 1)"]
    # vet0 "\boxed{Crimson}" (red<OR>crimson) is right under visplay only; vet1 "an apple" (apple<AND>pear) wrong
    assert _section(out, "MM-Vet")[1:5] == ["visplay 1/2 50.00%", "released 0/2 0.00%",
                                            "lmms-eval skipped (no prompt or scoring for mm-vet)",
                                            "disagreeing items: 1 (normalisation 1)"]


def test_unknown_protocol_in_the_comparison_fails_before_a_model_loads(tmp_path, data_dir, monkeypatch, capsys):
    standin = StandInModels()
    patch_plugin_manager(monkeypatch, standin)
    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(tmp_path), "--benchmarks", "mmstar", "--data", str(data_dir),
                 "--compare-protocols", "released,vlmevalkit"]) == 2
    assert "eval.protocol=vlmevalkit" in capsys.readouterr().err and standin.loaded == []
