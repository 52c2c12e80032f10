"""Benchmark files as people have them: lmms-lab's MMMU parquet layout with its splits, VLMEvalKit ``.tsv`` files,
and base64 image strings that must never be looked up as file names (issue 27)."""

from __future__ import annotations

import base64
import csv

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.eval import make_image, png

from visplay.eval.benchmarks import BenchmarkError, load_benchmark


def _parquet(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _mmmu_row(split: str, k: int, answer: str, images: int = 2) -> dict:
    """A row in lmms-lab/MMMU's columns (id, question, options as a string list, image_1 .. image_7, answer, ...)."""
    row = {"id": f"{split}_Art_{k}", "question": f"Compare <image 1> and <image 2>. [{split}{k}]",
           "options": "['red', 'blue', 'green']", "explanation": "", "answer": answer, "img_type": "['Photos']",
           "topic_difficulty": "Easy", "question_type": "multiple-choice", "subfield": "Art"}
    for n in range(1, 8):
        row[f"image_{n}"] = {"bytes": png(f"{split}{k}-{n}"), "path": None} if n <= images else None
    return row


@pytest.fixture()
def lmms_lab_mmmu(tmp_path):
    """lmms-lab/MMMU as downloaded: data/<split>-00000-of-00001.parquet; test answers are '?'."""
    data = tmp_path / "MMMU" / "data"
    _parquet(data / "dev-00000-of-00001.parquet", [_mmmu_row("dev", 0, "A")])
    _parquet(data / "validation-00000-of-00001.parquet", [_mmmu_row("validation", k, "B") for k in range(3)])
    _parquet(data / "test-00000-of-00001.parquet", [_mmmu_row("test", k, "?") for k in range(2)])
    return tmp_path


def test_lmms_lab_mmmu_reads_validation_by_default_never_all_splits(lmms_lab_mmmu):
    items = load_benchmark("mmmu", lmms_lab_mmmu)
    assert [i.item_id for i in items] == ["validation_Art_0", "validation_Art_1", "validation_Art_2"]
    assert {i.meta["split"] for i in items} == {"validation"}
    # every image column reaches the item, in number order
    assert [len(i.images) for i in items] == [2, 2, 2]
    assert items[1].images[1].tobytes() == make_image("validation1-2").tobytes()
    assert items[0].options == ["red", "blue", "green"] and items[0].kind == "choice"


def test_a_named_split_is_read_alone(lmms_lab_mmmu):
    (item,) = load_benchmark("mmmu", lmms_lab_mmmu, splits={"mmmu": "dev"})
    assert item.item_id == "dev_Art_0" and item.answer == "A"
    with pytest.raises(BenchmarkError, match=r"eval.splits.mmmu=train, but the files hold split\(s\) dev, test, "
                                             r"validation"):
        load_benchmark("mmmu", lmms_lab_mmmu, splits={"mmmu": "train"})


def test_a_split_named_for_a_file_without_splits_is_an_error(tmp_path):
    _parquet(tmp_path / "mmmu.parquet", [_mmmu_row("validation", 0, "B")])
    assert len(load_benchmark("mmmu", tmp_path)) == 1
    with pytest.raises(BenchmarkError, match=r"mmmu.parquet: eval.splits.mmmu=dev, but neither the file names nor "
                                             r"a 'split' column name splits"):
        load_benchmark("mmmu", tmp_path, splits={"mmmu": "dev"})


def test_splits_accept_any_spelling_of_the_benchmark_and_refuse_unknown_ones(lmms_lab_mmmu):
    (item,) = load_benchmark("mmmu", lmms_lab_mmmu, splits={"MMMU": "dev"})
    assert item.meta["split"] == "dev"
    with pytest.raises(BenchmarkError, match="eval.splits.mmu: unknown benchmark 'mmu'"):
        load_benchmark("mmmu", lmms_lab_mmmu, splits={"mmu": "dev"})


def test_the_unlabelled_test_split_is_refused_naming_file_and_row(lmms_lab_mmmu):
    with pytest.raises(BenchmarkError) as err:
        load_benchmark("mmmu", lmms_lab_mmmu, splits={"mmmu": "test"})
    message = str(err.value)
    assert "test-00000-of-00001.parquet: row 0: column 'answer'" in message
    assert "answer is '?'" in message and "split 'test'" in message


def test_several_splits_without_a_default_are_an_error_listing_them(tmp_path):
    data = tmp_path / "mathvision" / "data"
    row = {"question": "How many?", "answer": "3", "image": {"bytes": png("mv"), "path": None}}
    _parquet(data / "test-00000-of-00001.parquet", [row])
    _parquet(data / "testmini-00000-of-00001.parquet", [row, row])
    with pytest.raises(BenchmarkError, match=r"math-vision has splits test, testmini \(they are not concatenated\); "
                                             r"choose one with eval.splits.math-vision=<split>"):
        load_benchmark("math-vision", tmp_path)
    assert len(load_benchmark("math-vision", tmp_path, splits={"math-vision": "testmini"})) == 2


def _b64(tag: str, size: int = 24) -> str:
    return base64.b64encode(png(tag, size)).decode()


def _tsv(path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, columns, delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)


def test_vlmevalkit_mcq_tsv(tmp_path):
    """MMStar.tsv in VLMEvalKit's columns: index, question, A-D, answer, category, base64 image; a row whose image
    is another row's index shares that row's image."""
    _tsv(tmp_path / "MMStar.tsv", [
        {"index": 0, "question": "Which colour?", "A": "red", "B": "blue", "C": "green", "D": "grey",
         "answer": "B", "category": "coarse perception", "l2_category": "image scene", "image": _b64("star0")},
        {"index": 1, "question": "Which shape?", "A": "circle", "B": "square", "C": "", "D": "",
         "answer": "A", "category": "fine-grained perception", "l2_category": "", "image": "0"},
    ])
    first, second = load_benchmark("mmstar", tmp_path)
    assert first.item_id == "0" and first.options == ["red", "blue", "green", "grey"] and first.answer == "B"
    assert first.prompt == "Which colour?\nA. red\nB. blue\nC. green\nD. grey"
    assert first.kind == "choice" and first.meta["category"] == "coarse perception"
    assert first.images[0].tobytes() == make_image("star0").tobytes()
    assert second.options == ["circle", "square"]
    assert second.images[0].tobytes() == first.images[0].tobytes()  # "0": the image of the row with index 0


def test_vlmevalkit_mmmu_tsv_with_image_lists_and_a_split_column(tmp_path):
    """MMMU_DEV_VAL.tsv: several base64 images as a list literal, dev and validation rows in one file."""
    def row(index, split, images):
        return {"index": index, "question": "<image 1> or <image 2>?", "A": "left", "B": "right", "answer": "A",
                "category": "Art", "split": split, "image": repr([_b64(t) for t in images])}

    _tsv(tmp_path / "MMMU_DEV_VAL.tsv", [row(1, "dev", ["d1", "d2"]), row(2, "validation", ["v1", "v2", "v3"]),
                                         row(3, "validation", ["w1", "w2"])])
    items = load_benchmark("mmmu", tmp_path)
    assert [i.item_id for i in items] == ["2", "3"]
    assert [len(i.images) for i in items] == [3, 2] and items[0].meta["image_numbers"] == [1, 2, 3]
    assert items[0].images[2].tobytes() == make_image("v3").tobytes()
    (dev,) = load_benchmark("mmmu", tmp_path, splits={"mmmu": "dev"})
    assert dev.item_id == "1" and dev.meta["split"] == "dev"


def test_a_dangling_image_reference_names_file_and_row(tmp_path):
    _tsv(tmp_path / "MMStar.tsv", [{"index": 0, "question": "q", "A": "x", "B": "y", "answer": "A", "image": "7"}])
    with pytest.raises(BenchmarkError, match=r"MMStar.tsv: row 0: column 'image': '7' is neither base64 nor the "
                                             r"index of a row with an image"):
        load_benchmark("mmstar", tmp_path)


def test_a_short_base64_image_is_decoded_not_stat_ed(tmp_path):
    """A base64 PNG of a few hundred characters (longer than a file name may be, shorter than the old 1024-character
    cut) used to reach ``Path.is_file`` and fail with ``OSError: File name too long``."""
    text = _b64("t0", 11)  # 592 characters, 273 of them in a row without "/": too long for one name component
    assert len(text) < 1024 and max(len(part) for part in text.split("/")) > 255
    _parquet(tmp_path / "mmstar.parquet", [{"question": "q\nA. x\nB. y", "answer": "A", "image": text}])
    (item,) = load_benchmark("mmstar", tmp_path)
    assert item.images[0].tobytes() == make_image("t0", 11).tobytes()


def test_a_long_string_that_is_neither_base64_nor_a_file_is_a_clear_error(tmp_path):
    path = _parquet(tmp_path / "mmstar.parquet", [{"question": "q", "answer": "A", "image": "x!" * 200}])
    with pytest.raises(BenchmarkError) as err:
        load_benchmark("mmstar", tmp_path)
    assert f"{path}: row 0: column 'image': neither an image in base64 nor a readable file" in str(err.value)
