"""The docs name test files as evidence ("tests/scale/test_fsdp_policy.py shows ..."): every such path exists, so a
reader can open it. (The tests moved into rooms once and 17 paths in docs/ went stale without a word.)"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_file_the_docs_name_exists():
    named = {}
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for path in re.findall(r"\btests/[A-Za-z0-9_/]+\.py\b", doc.read_text(encoding="utf-8")):
            named.setdefault(path, doc.name)
    assert len(named) > 20  # the docs do cite their tests
    missing = {path: doc for path, doc in named.items() if not (ROOT / path).is_file()}
    assert not missing, missing


def test_every_test_folder_and_glob_the_docs_name_matches_files():
    """``pytest tests/models tests/grpo``, ``tests/replay/test_*.py``: a folder or pattern of test files the docs
    give as a command or as evidence names at least one file (``tests/test_models_*.py`` named none after the move)."""
    named = {}
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for pattern in re.findall(r"\btests/[A-Za-z0-9_/]*\*[A-Za-z0-9_/*]*\.py\b", text):
            named.setdefault(pattern, doc.name)
        for span in re.findall(r"`([^`\n]+)`", text):  # a folder in code: `pytest tests/models tests/grpo`
            for folder in re.findall(r"(?<![\w/.])(tests/[A-Za-z0-9_]+)/?(?=\s|$)", span):
                named.setdefault(folder, doc.name)
    assert len(named) >= 3
    empty = {p: doc for p, doc in named.items()
             if not (sorted(ROOT.glob(p)) if "*" in p else (ROOT / p).is_dir() and any((ROOT / p).glob("test_*.py")))}
    assert not empty, empty
