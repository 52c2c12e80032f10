"""Benchmark files as people have them: VLMEvalKit ``.tsv`` files and split selection (lmms-lab / Hugging Face
parquet layouts, VLMEvalKit's ``split`` column).

**VLMEvalKit TSV** (``vlmeval/dataset/image_base.py`` ``ImageBaseDataset.__init__`` and ``image_mcq.py``
``build_prompt``, open-compass/VLMEvalKit): tab-separated, a header row, one row per item with ``index``,
``question``, options in the letter columns ``A``, ``B``, ... (VLMEvalKit takes the letters whose cell is not
empty; here A, B, ... up to the first empty one, as options are lettered in order),
``answer``, optional ``hint``, ``category``, ``l2-category``, ``split``, and ``image``: base64 text, the string form
of a list of base64 texts (``"['...', '...']"``: several images, ``<image k>`` in the question is the k-th), or the
``index`` of another row whose image it shares (a value of 64 characters or fewer). Rows without ``image`` may name
files in ``image_path`` (relative to the TSV's folder here). :func:`read_tsv` turns such rows into the loader's
columns (``options`` from the letters, ``image`` resolved), so the rest of the loader reads them like parquet rows.

**Splits.** A benchmark folder in the Hugging Face layout holds one file per split (lmms-lab/MMMU:
``data/dev-00000-of-00001.parquet``, ``validation-...``, ``test-...``; a split may also be a folder name), and
VLMEvalKit's ``MMMU_DEV_VAL.tsv`` marks each row's split in a ``split`` column. Splits are never concatenated: the
loader reads one, ``eval.splits.<benchmark>`` when set, else the benchmark's default (MMMU: ``validation``, what
lmms-eval's ``mmmu_val`` and Qwen's reports score), else the only one present; several and no choice is an error
listing them. An unlabelled split (MMMU's test answers are ``?``) is refused for scoring, naming file and row.
"""

from __future__ import annotations

import ast
import csv
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SPLIT_NAMES = ("train", "dev", "validation", "val", "test", "testmini")
_SHARDED = re.compile(r"^(?P<split>[A-Za-z]+)(?:-\d+-of-\d+)?$")
UNLABELLED = "?"
"""The answer MMMU's test split carries for every item (its answers are not public)."""
IMAGE_REFERENCE_CHARS = 64
"""VLMEvalKit: an ``image`` value this short is another row's ``index`` (shared image), never base64."""


class LayoutError(ValueError):
    """A file whose layout cannot be read; the loader re-raises it as BenchmarkError."""


# --- splits --------------------------------------------------------------------------------------------------


def file_split(path: Path, root: Path) -> str | None:
    """The split a file holds by its name (``<split>[-NNNNN-of-NNNNN].<ext>``) or a folder between ``root`` and it
    named like a split; None when neither says."""
    match = _SHARDED.match(path.stem)
    if match and match.group("split").lower() in SPLIT_NAMES:
        return match.group("split").lower()
    try:
        folders = path.parent.relative_to(root).parts
    except ValueError:
        folders = ()
    named = [f.lower() for f in folders if f.lower() in SPLIT_NAMES]
    return named[-1] if named else None


def choose_split(benchmark: str, available: Iterable[str], wanted: str | None, default: str | None,
                 where: str) -> str:
    """The split to read among ``available`` (see the module docstring); ``where`` names the files for errors."""
    found = sorted(set(available))
    if wanted is not None:
        if wanted not in found:
            raise LayoutError(f"{where}: eval.splits.{benchmark}={wanted}, but the files hold split(s) "
                              f"{', '.join(found)}")
        return wanted
    if default is not None and default in found:
        return default
    if len(found) == 1:
        return found[0]
    raise LayoutError(f"{where}: benchmark {benchmark} has splits {', '.join(found)} (they are not concatenated); "
                      f"choose one with eval.splits.{benchmark}=<split>")


def check_labelled(answer: Any, split: str | None) -> None:
    """Refuse an item of an unlabelled split (answer ``?``): it cannot be scored."""
    if answer is not None and str(answer).strip() == UNLABELLED:
        which = f"split {split!r}" if split else "this file"
        raise LayoutError(f"answer is {UNLABELLED!r}: {which} has no public answers and cannot be scored "
                          f"(MMMU: evaluate validation, or dev, with eval.splits.<benchmark>=<split>)")


# --- VLMEvalKit TSV ------------------------------------------------------------------------------------------


def read_tsv(path: Path) -> list[dict[str, Any]]:
    """The rows of a VLMEvalKit TSV in the loader's columns (see the module docstring)."""
    csv.field_size_limit(sys.maxsize)  # base64 images are far longer than csv's default 128 kB field limit
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            raw = list(csv.DictReader(handle, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LayoutError(f"cannot read the TSV: {exc}") from exc
    rows = [{k: (v if v != "" else None) for k, v in r.items() if k is not None} for r in raw]
    by_index = {str(r.get("index")): r.get("image") for r in rows}
    return [_tsv_row(row, row_no, by_index) for row_no, row in enumerate(rows)]


def _tsv_row(row: dict[str, Any], row_no: int, by_index: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    letters = []
    for letter in "ABCDEFGHIJ":
        if row.get(letter) is None:
            break
        letters.append(str(row[letter]))
    if letters and row.get("options") is None:
        out["options"] = letters
    image = row.get("image")
    if image is not None:
        out["image"] = _tsv_images(str(image), row_no, by_index)
    elif row.get("image_path") is not None:
        out["image"] = _list_or_one(str(row["image_path"]))
    out.pop("image_path", None)
    return out


def _tsv_images(value: str, row_no: int, by_index: dict[str, Any]) -> list[str]:
    if len(value) <= IMAGE_REFERENCE_CHARS:
        shared = by_index.get(value)
        if shared is None or len(str(shared)) <= IMAGE_REFERENCE_CHARS:
            raise LayoutError(f"row {row_no}: column 'image': {value!r} is neither base64 nor the index of a row "
                              "with an image")
        value = str(shared)
    return _list_or_one(value)


def _list_or_one(value: str) -> list[str]:
    """VLMEvalKit's ``toliststr``: ``"[...]"`` is a list of strings (read as a literal, never evaluated)."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            items = ast.literal_eval(text)
        except (ValueError, SyntaxError) as exc:
            raise LayoutError(f"an image list {text[:40]!r}... is not a list literal") from exc
        return [str(x) for x in items]
    return [text]
