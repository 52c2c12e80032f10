"""Benchmark loaders: each benchmark's schema and layout, option rendering, kinds, and clear errors."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.eval import make_image, png, write_benchmarks

from visplay.eval.benchmarks import BENCHMARKS, BenchmarkError, load_benchmark, resolve_names


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_benchmarks(tmp_path_factory.mktemp("bench"))


def test_all_eight_benchmarks_load(data_dir):
    counts = {name: len(load_benchmark(name, data_dir)) for name in BENCHMARKS}
    assert counts == {"mmmu": 2, "mm-vet": 2, "realworldqa": 1, "visnumbench": 2, "mathverse": 1,
                      "math-vision": 1, "hallusionbench": 2, "mmstar": 1}


def test_mmmu_options_rendered_and_kinds(data_dir):
    first, second = load_benchmark("MMMU", data_dir)
    assert first.prompt == ("[q:mmmu0] Which shape is drawn?\nA. circle\nB. square\nC. triangle\nD. star")
    assert "<image" not in first.prompt
    assert (first.kind, first.answer, first.options[1]) == ("choice", "B", "square")
    assert (second.kind, second.options) == ("open", [])
    assert first.item_id == "mmmu-0" and first.meta["question_type"] == "multiple-choice"
    assert first.image.tobytes() == make_image("mmmu0").tobytes()  # struct {"bytes", "path"} decoded


def test_inline_options_not_repeated_and_letters_detected(data_dir):
    items = load_benchmark("visnumbench", data_dir)
    assert items[0].prompt.count("A. 3") == 1 and items[0].kind == "choice"
    assert items[1].kind == "choice"  # "(A) left" lines count as options


def test_combined_file_rows_filtered_by_file_name(data_dir):
    (rw,) = load_benchmark("RealWorldQA", data_dir)
    assert rw.meta["file_name"] == "realWorldQA" and rw.kind == "choice"
    (mv,) = load_benchmark("math-vision", data_dir)
    assert (mv.answer, mv.kind) == ("\\frac{1}{2}", "open")


def test_hallusionbench_numeric_answers_become_yes_no(data_dir):
    items = load_benchmark("hallusionbench", data_dir)
    assert [(i.answer, i.kind) for i in items] == [("no", "yesno"), ("yes", "yesno")]


def test_mmstar_jsonl_with_base64_image(data_dir):
    (item,) = load_benchmark("mmstar", data_dir)
    assert item.kind == "choice" and item.image.size == (24, 24) and item.item_id == "0"


def test_limit(data_dir):
    assert len(load_benchmark("mmmu", data_dir, limit=1)) == 1


def test_image_path_relative_to_file(tmp_path):
    (tmp_path / "pics").mkdir()
    make_image("p").save(tmp_path / "pics" / "a.png")
    (tmp_path / "mmstar.json").write_text(json.dumps([{"problem": "q\nA. x\nB. y", "answer": "A",
                                                       "image": "pics/a.png"}]))
    (item,) = load_benchmark("mmstar", tmp_path)
    assert item.image.tobytes() == make_image("p").tobytes()


def test_names_resolve_loosely_and_unknown_names_fail():
    assert [s.name for s in resolve_names("MM-Vet, mathvision,HallusionBench")] == \
        ["mm-vet", "math-vision", "hallusionbench"]
    with pytest.raises(BenchmarkError, match="unknown benchmark 'mmlu'"):
        resolve_names("mmlu")
    with pytest.raises(BenchmarkError, match="no benchmarks named"):
        resolve_names("")


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_missing_column_names_file_and_column(tmp_path):
    path = _write(tmp_path / "mmstar.parquet", [{"problem": "q", "images": [{"bytes": png("x"), "path": None}]}])
    with pytest.raises(BenchmarkError) as err:
        load_benchmark("mmstar", tmp_path)
    assert str(path) in str(err.value) and "missing column 'answer'" in str(err.value)


def test_undecodable_image_names_file_row_and_column(tmp_path):
    path = _write(tmp_path / "mmstar.parquet", [
        {"problem": "q1", "answer": "A", "images": [{"bytes": png("ok"), "path": None}]},
        {"problem": "q2", "answer": "B", "images": [{"bytes": b"not an image at all", "path": None}]},
    ])
    with pytest.raises(BenchmarkError) as err:
        load_benchmark("mmstar", tmp_path)
    assert f"{path}: row 1: column 'images': undecodable image" in str(err.value)


def test_empty_file_and_empty_answer(tmp_path):
    (tmp_path / "mmstar.jsonl").write_text("")
    with pytest.raises(BenchmarkError, match="mmstar.jsonl: empty benchmark file"):
        load_benchmark("mmstar", tmp_path)
    (tmp_path / "mmstar.jsonl").write_text(json.dumps({"problem": "q", "answer": " "}) + "\n")
    with pytest.raises(BenchmarkError, match="row 0: column 'answer' is empty"):
        load_benchmark("mmstar", tmp_path)


def test_corrupt_parquet_and_missing_files(tmp_path):
    (tmp_path / "mmmu.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(BenchmarkError, match="mmmu.parquet: cannot read benchmark file"):
        load_benchmark("mmmu", tmp_path)
    with pytest.raises(BenchmarkError, match="no files for benchmark mmstar"):
        load_benchmark("mmstar", tmp_path)
    with pytest.raises(BenchmarkError, match="benchmark data folder not found"):
        load_benchmark("mmstar", tmp_path / "nope")


def test_combined_file_without_subset_rows(tmp_path):
    _write(tmp_path / "MLLM_test" / "test.parquet", [{"file_name": "mathverse", "problem": "q", "answer": "1"}])
    with pytest.raises(BenchmarkError, match="no rows for benchmark realworldqa with file_name"):
        load_benchmark("realworldqa", tmp_path)
