"""Benchmark loaders: the eight evaluation sets of the paper, read from local parquet/JSON files.

The files are the ones the paper's authors evaluated on (EasyR1/verl style): one row per item with ``problem``
(the question text, possibly with ``<image>`` tags), ``answer`` (the reference) and ``images`` (a list of
``{"bytes": ..., "path": ...}`` structs) or ``image`` (one struct, raw bytes, base64 text or a path). Some sets
were published together in one combined file (``MLLM_test/test.parquet``) whose ``file_name`` column names the
subset; a benchmark then reads only its own rows. Each benchmark has a small adapter (:data:`BENCHMARKS`): which
columns it reads, how options are rendered, and what counts as correct (see visplay/eval/scoring.py).

lmms-lab's and VLMEvalKit's layouts are read too (visplay/eval/layouts.py): MMMU's ``image_1`` .. ``image_7``
columns, VLMEvalKit ``.tsv`` files (base64 images, options in letter columns), and one split at a time where the
files or rows name splits (``eval.splits``; MMMU: validation by default; an unlabelled split is refused).

Nothing here is downloaded. A bad file (unreadable, missing a column, an undecodable image, no rows) raises
:class:`BenchmarkError` naming the file, and the column or row where it applies.
"""

from __future__ import annotations

import ast
import base64
import binascii
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from visplay.eval.layouts import LayoutError, check_labelled, choose_split, file_split, read_tsv

QUESTION_COLUMNS = ("problem", "question")
ANSWER_COLUMNS = ("answer", "gt_answer")
IMAGE_COLUMNS = ("images", "image")
SUBSET_COLUMN = "file_name"
FILE_SUFFIXES = (".parquet", ".jsonl", ".json", ".tsv")
CHOICE_LETTERS = "ABCDEFGHIJ"


class BenchmarkError(Exception):
    """A benchmark file the user must fix or a benchmark name that does not exist."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """How one benchmark's files are found, read and scored.

    ``kind`` says what counts as correct: ``choice`` (a multiple-choice letter), ``yesno``, ``open`` (boxed-answer
    equivalence through the ``visplay_answer_key`` hook) or ``auto`` (per item: a letter reference with options is
    a choice item, a yes/no reference a yes/no item, anything else open).
    """

    name: str
    title: str
    aliases: tuple[str, ...]
    kind: str = "auto"
    subsets: tuple[str, ...] = ()
    """Values of ``file_name`` in the combined MLLM_test file that belong to this benchmark."""
    alternatives: bool = False
    """References may hold ``<OR>``/``<AND>`` alternatives (MM-Vet)."""
    default_split: str | None = None
    """The split read when the files hold several and ``eval.splits`` names none (visplay/eval/layouts.py)."""


BENCHMARKS: dict[str, BenchmarkSpec] = {spec.name: spec for spec in (
    BenchmarkSpec("mmmu", "MMMU", ("mmmu", "mmmu_dev_val"), subsets=("mmmu",), default_split="validation"),
    BenchmarkSpec("mm-vet", "MM-Vet", ("mm-vet", "mmvet"), kind="open", subsets=("mm-vet",), alternatives=True),
    BenchmarkSpec("realworldqa", "RealWorldQA", ("realworldqa",), subsets=("realWorldQA", "realworldqa")),
    BenchmarkSpec("visnumbench", "VisNumBench", ("visnumbench",), subsets=("visnumbench",)),
    BenchmarkSpec("mathverse", "MathVerse", ("mathverse",), subsets=("mathverse",)),
    BenchmarkSpec("math-vision", "MATH-Vision", ("math-vision", "mathvision", "math-v"), subsets=("mathvision",)),
    BenchmarkSpec("hallusionbench", "HallusionBench", ("hallusionbench", "hallusion"), kind="yesno",
                  subsets=("hallusionbench",)),
    BenchmarkSpec("mmstar", "MMStar", ("mmstar",), kind="choice", subsets=("mmstar",)),
)}

# The combined file the authors evaluated several sets from (Evaluation/eval_boxed_accuracy.py in their code).
COMBINED_FILES = ("MLLM_test/test.parquet", "MLLM_test.parquet", "MLLM_test/test.jsonl", "MLLM_test.jsonl")


@dataclass
class BenchmarkItem:
    """One evaluation item, ready to prompt. ``prompt`` is the question with the options rendered."""

    benchmark: str
    index: int
    item_id: str
    question: str
    prompt: str
    answer: str
    kind: str
    options: list[str]
    image: Image.Image | None
    source: str
    meta: dict[str, Any] = field(default_factory=dict)
    images: list[Image.Image] = field(default_factory=list)
    """Every image of the row in file order (``image`` is the first); MMMU's ``image_1`` .. ``image_7`` columns
    land here in number order, with the numbers in ``meta["image_numbers"]``."""


# Row columns kept in an item's meta for the protocols that score with them (MathVista's answer_type, precision,
# unit, query and choices; MathVerse's query_wo and question_for_eval).
JUDGE_COLUMNS = ("answer_type", "precision", "unit", "query", "choices", "query_wo", "question_for_eval")


def _norm_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def resolve_names(names: str | list[str]) -> list[BenchmarkSpec]:
    """Benchmark specs for comma-separated or listed names (any case, with or without dashes)."""
    if isinstance(names, str):
        names = [n for n in names.split(",")]
    wanted = [n.strip() for n in names if n and n.strip()]
    if not wanted:
        raise BenchmarkError(f"no benchmarks named; choose from: {', '.join(BENCHMARKS)}")
    lookup = {_norm_name(a): spec for spec in BENCHMARKS.values() for a in (spec.name, *spec.aliases)}
    specs = []
    for name in wanted:
        spec = lookup.get(_norm_name(name))
        if spec is None:
            raise BenchmarkError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
        if spec not in specs:
            specs.append(spec)
    return specs


# --- finding files -------------------------------------------------------------------------------------------


def find_files(spec: BenchmarkSpec, data_dir: str | Path) -> tuple[list[Path], tuple[str, ...]]:
    """The files holding ``spec``'s items under ``data_dir`` and the ``file_name`` values to keep (empty: all).

    Looked up in order: ``<alias>.parquet|.jsonl|.json|.tsv``, a folder ``<alias>/`` (every such file below it, sorted),
    then the combined ``MLLM_test`` file filtered on its ``file_name`` column. Names match case-insensitively.
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise BenchmarkError(f"{root}: benchmark data folder not found")
    aliases = {_norm_name(a) for a in (spec.name, *spec.aliases)}
    entries = sorted(root.iterdir())
    for entry in entries:
        if entry.is_file() and entry.suffix in FILE_SUFFIXES and _norm_name(entry.stem) in aliases:
            return [entry], ()
    for entry in entries:
        if entry.is_dir() and _norm_name(entry.name) in aliases:
            files = sorted(p for p in entry.rglob("*") if p.is_file() and p.suffix in FILE_SUFFIXES)
            if not files:
                raise BenchmarkError(f"{entry}: no .parquet/.jsonl/.json files for benchmark {spec.name}")
            return files, ()
    for rel in COMBINED_FILES:
        if (root / rel).is_file() and spec.subsets:
            return [root / rel], spec.subsets
    raise BenchmarkError(
        f"{root}: no files for benchmark {spec.name} (looked for {spec.name}.parquet/.jsonl/.json, a folder "
        f"{spec.name}/, or {COMBINED_FILES[0]} with file_name in {list(spec.subsets)})"
    )


def read_rows(path: Path) -> list[dict[str, Any]]:
    """All rows of a parquet, JSON-lines or JSON (a list of objects) file as dicts."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        if path.suffix == ".tsv":
            return read_tsv(path)
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except LayoutError as exc:
        raise BenchmarkError(f"{path}: {exc}") from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"{path}: cannot read benchmark file: {exc}") from exc
    except Exception as exc:  # pyarrow raises its own error classes for corrupt files
        raise BenchmarkError(f"{path}: cannot read benchmark file: {type(exc).__name__}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise BenchmarkError(f"{path}: a JSON benchmark file is a list of objects (one per item)")
    return data


# --- images --------------------------------------------------------------------------------------------------


def decode_image(value: Any, *, base_dir: Path) -> Image.Image:
    """One image from a struct ``{"bytes", "path"}``, raw bytes, base64 text or a path (relative to the file).

    A string is tried as base64 first (it decodes to bytes PIL can open), so a base64 image is never looked up as
    a file name (a long one is not a valid name at all); otherwise it is a path, and a path the system refuses
    (too long, not readable) is reported, not raised."""
    if isinstance(value, dict):
        raw = value.get("bytes")
        if raw:
            return decode_image(raw, base_dir=base_dir)
        if value.get("path"):
            return decode_image(str(value["path"]), base_dir=base_dir)
        raise ValueError("image struct has neither bytes nor path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _open_bytes(bytes(value))
    if isinstance(value, str):
        return _image_from_text(value, base_dir)
    raise ValueError(f"unsupported image value of type {type(value).__name__}")


def _image_from_text(value: str, base_dir: Path) -> Image.Image:
    text = value.strip()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if raw:
        try:
            return _open_bytes(raw)
        except ValueError:
            pass  # valid base64 by chance (a short path such as "abcd"); tried as a path below
    candidate = Path(text).expanduser()
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    try:
        found = candidate.is_file()
        data = candidate.read_bytes() if found else b""
    except OSError as exc:  # ENAMETOOLONG, EACCES, ...: not a file we can read
        raise ValueError(f"neither an image in base64 nor a readable file ({text[:40]!r}...: {exc.strerror})") \
            from exc
    if not found:
        raise ValueError(f"neither an image in base64 nor an existing file ({text[:40]!r}...)")
    return _open_bytes(data)


def _open_bytes(raw: bytes) -> Image.Image:
    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"undecodable image bytes ({len(raw)} bytes): {exc}") from exc


_NUMBERED_IMAGE = re.compile(r"image_(\d+)")


def _images_of(row: dict[str, Any]) -> tuple[str | None, list[Any], list[int]]:
    """(column, image values, their numbers): an ``images`` list, one ``image``, or MMMU's ``image_<N>`` columns."""
    for column in IMAGE_COLUMNS:
        if column in row and row[column] is not None:
            value = row[column]
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            return column, values, list(range(1, len(values) + 1))
    numbered = sorted((int(m.group(1)), key) for key in row if (m := _NUMBERED_IMAGE.fullmatch(str(key)))
                      and row[key] is not None)
    if numbered:
        return "image_<N>", [row[key] for _, key in numbered], [n for n, _ in numbered]
    return None, [], []


# --- options and prompts -------------------------------------------------------------------------------------

_IMAGE_TAG = re.compile(r"<image\s*\d*>")
_OPTION_LINE = re.compile(r"^\s*\(?([A-J])[.):]\s+\S", re.MULTILINE)


def parse_options(value: Any) -> list[str]:
    """Options from a list or from its string form (MMMU stores ``"['a', 'b']"``); empty when absent."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return [text]
    if isinstance(value, dict):
        return [str(value[k]) for k in sorted(value)]
    return [str(v) for v in value]


def option_letters_in(text: str) -> list[str]:
    """Letters of options already written in the question text (``A. ...`` / ``(B) ...`` lines)."""
    letters = []
    for letter in _OPTION_LINE.findall(text):
        if letter not in letters:
            letters.append(letter)
    return letters


def inline_options(text: str) -> list[str]:
    """Option texts written in the question (``A. dog`` / ``(B) cat`` lines), when lettered A, B, C... in order."""
    found = re.findall(r"^\s*\(?([A-J])[.):]\s+(.+?)\s*$", text, re.MULTILINE)
    letters = [letter for letter, _ in found]
    return [option for _, option in found] if letters == list(CHOICE_LETTERS[: len(letters)]) else []


def build_prompt(question: str, options: list[str]) -> str:
    """The question without ``<image>`` tags, with options rendered as ``A. text`` lines when not already there."""
    text = _IMAGE_TAG.sub("", question).strip()
    if options and not option_letters_in(text):
        text += "\n" + "\n".join(f"{CHOICE_LETTERS[i]}. {opt}" for i, opt in enumerate(options))
    return text


def item_kind(spec: BenchmarkSpec, answer: str, options: list[str], prompt: str) -> str:
    """What counts as correct for one item (see BenchmarkSpec.kind)."""
    if spec.kind != "auto":
        return spec.kind
    ref = answer.strip().strip("()").rstrip(".").upper()
    letters = [CHOICE_LETTERS[i] for i in range(len(options))] if options else option_letters_in(prompt)
    if len(ref) == 1 and ref in letters:
        return "choice"
    if answer.strip().lower() in ("yes", "no"):
        return "yesno"
    return "open"


def _reference(spec: BenchmarkSpec, value: Any) -> str:
    text = str(value).strip()
    if spec.kind == "yesno" and text in ("0", "1"):  # HallusionBench's original gt_answer: 1 = yes
        return "yes" if text == "1" else "no"
    return text


# --- loading -------------------------------------------------------------------------------------------------


def _first_column(row: dict[str, Any], columns: tuple[str, ...]) -> str | None:
    return next((c for c in columns if c in row), None)


def _check_columns(path: Path, rows: list[dict[str, Any]], subset_filter: tuple[str, ...]) -> None:
    if not rows:
        raise BenchmarkError(f"{path}: empty benchmark file (no rows)")
    columns = set().union(*(r.keys() for r in rows[:50]))
    for needed in (QUESTION_COLUMNS, ANSWER_COLUMNS):
        if not columns & set(needed):
            raise BenchmarkError(f"{path}: missing column {needed[0]!r} (accepted: {', '.join(needed)}; "
                                 f"found: {', '.join(sorted(columns))})")
    if subset_filter and SUBSET_COLUMN not in columns:
        raise BenchmarkError(f"{path}: missing column {SUBSET_COLUMN!r} (needed to pick the rows of a combined file)")


def _make_item(spec: BenchmarkSpec, path: Path, row_no: int, index: int, row: dict[str, Any],
               split: str | None = None) -> BenchmarkItem:
    qcol, acol = _first_column(row, QUESTION_COLUMNS), _first_column(row, ANSWER_COLUMNS)
    question, answer = row.get(qcol) if qcol else None, row.get(acol) if acol else None
    if question is None or str(question).strip() == "":
        raise BenchmarkError(f"{path}: row {row_no}: column {qcol or QUESTION_COLUMNS[0]!r} is empty")
    if answer is None or str(answer).strip() == "":
        raise BenchmarkError(f"{path}: row {row_no}: column {acol or ANSWER_COLUMNS[0]!r} is empty")
    try:
        check_labelled(answer, split)
    except LayoutError as exc:
        raise BenchmarkError(f"{path}: row {row_no}: column {acol!r}: {exc}") from exc
    column, values, numbers = _images_of(row)
    images = []
    for value in values:
        try:
            images.append(decode_image(value, base_dir=path.parent))
        except ValueError as exc:
            raise BenchmarkError(f"{path}: row {row_no}: column {column!r}: {exc}") from exc
    image = images[0] if images else None
    options = parse_options(row.get("options"))
    prompt = build_prompt(str(question), options)
    options_in_text = not options and bool(inline_options(prompt))
    options = options or inline_options(prompt)
    reference = _reference(spec, answer)
    ids = [row[k] for k in ("id", "pid", "index") if row.get(k) is not None and str(row[k]) != ""]
    item_id = str(ids[0]) if ids else f"{path.name}:{row_no}"
    meta = {k: row[k] for k in ("question_type", "category", "subject", "hint", SUBSET_COLUMN) if k in row and row[k]}
    # what a protocol's scoring reads beyond the question (lmms-eval's MathVista and MathVerse: lmms_eval_judged.py)
    meta.update({k: row[k] for k in JUDGE_COLUMNS if row.get(k) is not None and str(row[k]) != ""})
    meta["n_images"] = len(values)
    meta["image_numbers"] = numbers
    meta["raw_answer"] = str(answer).strip()
    if split:
        meta["split"] = split
    if options_in_text:
        meta["options_in_text"] = 1  # the options were read from the question, not from an options column
    if ids:
        meta["id"] = str(ids[0])
    return BenchmarkItem(
        benchmark=spec.name, index=index, item_id=item_id, question=str(question), prompt=prompt,
        answer=reference, kind=item_kind(spec, reference, options, prompt), options=options, image=image,
        source=f"{path}#{row_no}", images=images,
        meta={k: v if isinstance(v, (int, list)) else str(v) for k, v in meta.items()},
    )


def iter_items(spec: BenchmarkSpec, data_dir: str | Path, *, limit: int | None = None,
               splits: dict[str, str] | None = None) -> Iterator[BenchmarkItem]:
    """The benchmark's items in file order (rows of a combined file filtered by ``file_name``), at most ``limit``,
    from one split when the files or rows name splits (``splits``: the recipe's ``eval.splits``; see
    visplay/eval/layouts.py)."""
    files, subsets = find_files(spec, data_dir)
    wanted_split = split_choices(splits).get(spec.name)
    files, split = _split_files(spec, files, Path(data_dir).expanduser(), wanted_split)
    wanted = {_norm_name(s) for s in subsets}
    index = 0
    for path in files:
        rows = read_rows(path)
        _check_columns(path, rows, subsets)
        rows, row_split = _split_rows(spec, path, rows, None if split else wanted_split)
        for row_no, row in rows:
            if wanted and _norm_name(str(row.get(SUBSET_COLUMN) or "")) not in wanted:
                continue
            if limit is not None and index >= limit:
                return
            yield _make_item(spec, path, row_no, index, row, split or row_split)
            index += 1
    if index == 0:
        where = f" with {SUBSET_COLUMN} in {list(subsets)}" if subsets else ""
        raise BenchmarkError(f"{', '.join(map(str, files))}: no rows for benchmark {spec.name}{where}")


def split_choices(splits: dict[str, str] | None) -> dict[str, str]:
    """``eval.splits`` keyed by benchmark name (any accepted spelling); an unknown benchmark is an error."""
    out = {}
    for name, split in (splits or {}).items():
        try:
            (spec,) = resolve_names([str(name)])
        except BenchmarkError as exc:
            raise BenchmarkError(f"eval.splits.{name}: {exc}") from exc
        out[spec.name] = str(split)
    return out


def _split_files(spec: BenchmarkSpec, files: list[Path], root: Path, wanted: str | None
                 ) -> tuple[list[Path], str | None]:
    """The files of one split when the file names say (the Hugging Face layout), else all of them."""
    named = {path: file_split(path, root) for path in files}
    if not any(named.values()):
        return files, None
    try:
        split = choose_split(spec.name, (s for s in named.values() if s), wanted, spec.default_split,
                             str(files[0].parent))
    except LayoutError as exc:
        raise BenchmarkError(str(exc)) from exc
    return [p for p in files if named[p] == split], split


def _split_rows(spec: BenchmarkSpec, path: Path, rows: list[dict[str, Any]], wanted: str | None
                ) -> tuple[list[tuple[int, dict[str, Any]]], str | None]:
    """(row number, row) of one split when the rows carry a ``split`` column (VLMEvalKit), else all rows."""
    numbered = list(enumerate(rows))
    present = {str(r["split"]) for r in rows if r.get("split") is not None}
    if not present and wanted is not None:
        raise BenchmarkError(f"{path}: eval.splits.{spec.name}={wanted}, but neither the file names nor a "
                             f"'split' column name splits (the whole file is one set)")
    if not present:
        return numbered, None
    try:
        split = choose_split(spec.name, present, wanted, spec.default_split, str(path))
    except LayoutError as exc:
        raise BenchmarkError(str(exc)) from exc
    return [(n, r) for n, r in numbered if str(r.get("split")) == split], split


def load_benchmark(name: str, data_dir: str | Path, *, limit: int | None = None,
                   splits: dict[str, str] | None = None) -> list[BenchmarkItem]:
    """All items of one benchmark (see :func:`iter_items`)."""
    (spec,) = resolve_names([name])
    return list(iter_items(spec, data_dir, limit=limit, splits=splits))


def image_id(image: Image.Image) -> str:
    """sha256 of the image's PNG bytes (the run log's image id convention)."""
    return hashlib.sha256(png_bytes(image)).hexdigest()


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
