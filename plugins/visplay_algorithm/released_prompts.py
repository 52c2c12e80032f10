"""The released code's prompt texts, taken from a user's own checkout of bruno686/VisPlay (none ship with visplay).

``visplay prompts import-released /path/to/VisPlay [--out DIR]`` checks that the four source files are byte for
byte the ones of the released commit (sha256 below), reads the prompt strings out of their Python syntax trees
(no code is run) and writes one template file per prompt into DIR plus ``manifest.json``. A recipe uses them with
``plugins.algorithm.prompt_dir=DIR``. Templates are plain text; ``{question}`` and ``{qtype}`` are the only
placeholders (replaced literally, so the ``\\boxed{}`` braces stay as they are).

Which prompt is which (file:line at the released commit):

- ``questioner_user``: questioner training, user turn only, text then image, no system message
  (verl/utils/dataset.py:204-235; the data set's own problem text is dropped there);
- ``reasoner_user``: reasoner training, user turn, text then image (dataset.py:192-200, ``{question}``);
- ``vote_system`` / ``vote_user``: the votes that set the questioner's confidence, image then text, with the
  question type (vllm_service_init/start_vllm_server.py:156-168);
- ``set_questioner_system`` / ``set_questioner_user``: questions for the reasoner's set
  (question_generate/question_generate.py:165-204);
- ``set_vote_system`` / ``set_vote_user``: the votes that set the silver labels (question_evaluate/evaluate.py:112-120).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from visplay.api import check_writable_file, sha256_file, write_file

RELEASED_COMMIT = "3aa895bf6a1df53d61f8e30dd32c39c1b5d5a03f"
SOURCES = {
    "verl/utils/dataset.py": "11df55e6cef94a618b75b6c5eabbc4ee8f1df9c774a48d7ae495f31a82efdcf9",
    "vllm_service_init/start_vllm_server.py": "6a79f689ddb4faa347c3be1fd12b3065e29c53ff53c8e2706282d8fabce91308",
    "question_evaluate/evaluate.py": "dc0c7b3dcd780b736201defceabf4281f05f3d5dc04252ddbfcde1a0959bce08",
    "question_generate/question_generate.py": "d2d340fc758fadc14d326f622ecd6228058ff97d6c74764a153f37b8cec519a7",
}
"""sha256 of each source file at ``RELEASED_COMMIT``; another version is refused (its prompts may differ)."""

TEMPLATES = ("questioner_user", "reasoner_user", "vote_system", "vote_user", "set_questioner_system",
             "set_questioner_user", "set_vote_system", "set_vote_user")
PLACEHOLDERS = {"content": "{question}", "q": "{question}", "t": "{qtype}"}
"""Variables of the released f-strings and concatenations -> template placeholders."""


class ReleasedPromptError(Exception):
    """The checkout or the template folder is not usable; the message names the file."""


# --- reading string expressions out of the released sources ------------------------------------------------------


def _text(node: ast.AST, names: dict[str, str]) -> str | None:
    """The string an expression builds, variables as placeholders; None if it is not a string expression."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = [_text(v.value if isinstance(v, ast.FormattedValue) else v, names) for v in node.values]
        return None if None in parts else "".join(parts)  # type: ignore[arg-type]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left, names), _text(node.right, names)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Name):
        return names.get(node.id, PLACEHOLDERS.get(node.id))
    return None


def _module_strings(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "literal"`` assignments (e.g. evaluate.py's image placeholder)."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = _text(node.value, {})
            if value is not None:
                out[node.targets[0].id] = value
    return out


def _assigned(tree: ast.Module, name: str) -> list[str]:
    """Every string assigned to ``name`` anywhere (list comprehensions: their element)."""
    names, found = _module_strings(tree), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value = node.value.elt if isinstance(node.value, ast.ListComp) else node.value
            text = _text(value, names)
            if text is not None:
                found.append(text)
    return found


def _text_parts(tree: ast.Module) -> list[str]:
    """The ``{"type": "text", "text": X}`` message parts, in source order."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = [k.value if isinstance(k, ast.Constant) else None for k in node.keys]
            if "text" in keys and "type" in keys:
                text = _text(node.values[keys.index("text")], {})
                if text is not None:
                    found.append((node.lineno, text))
    return [text for _, text in sorted(found)]


def _chat_turns(prompt: str) -> tuple[str, str]:
    """(system, user) contents of a hand-written Qwen chat string; the image tokens are dropped from the user."""
    system = prompt.split("<|im_start|>system\n", 1)[1].split("<|im_end|>", 1)[0]
    user = prompt.split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]
    return system, user.split("<|vision_end|>", 1)[-1]


def _one(values: list[str], what: str) -> str:
    if len(values) != 1:
        raise ReleasedPromptError(f"expected one {what}, found {len(values)}")
    return values[0]


def extract(checkout: Path) -> dict[str, str]:
    """{template name: text} from a verified checkout (see :func:`verify`)."""
    trees = {rel: ast.parse((checkout / rel).read_text(encoding="utf-8")) for rel in SOURCES}
    parts = _text_parts(trees["verl/utils/dataset.py"])
    reasoner = [p for p in parts if "{question}" in p]
    questioner = [p for p in parts if "{question}" not in p]
    vote_system, vote_user = _chat_turns(_one(_assigned(trees["vllm_service_init/start_vllm_server.py"], "prompt"),
                                              "vote prompt"))
    set_vote_system, set_vote_user = _chat_turns(_one(_assigned(trees["question_evaluate/evaluate.py"], "prompts"),
                                                      "evaluation prompt"))
    generate = trees["question_generate/question_generate.py"]
    return {
        "questioner_user": _one(questioner, "questioner text in dataset.py"),
        "reasoner_user": _one(reasoner, "reasoner text in dataset.py"),
        "vote_system": vote_system, "vote_user": vote_user,
        "set_questioner_system": _one(_assigned(generate, "system_prompt"), "system_prompt"),
        "set_questioner_user": _one(_assigned(generate, "user_question"), "user_question"),
        "set_vote_system": set_vote_system, "set_vote_user": set_vote_user,
    }


def verify(checkout: Path) -> dict[str, str]:
    """{file: sha256} of the released sources in ``checkout``; raises naming the first missing or changed file."""
    hashes = {}
    for rel, expected in SOURCES.items():
        path = checkout / rel
        if not path.is_file():
            raise ReleasedPromptError(f"{path}: missing (is {checkout} a checkout of bruno686/VisPlay?)")
        digest = sha256_file(path)  # in blocks: a huge file in a checkout costs no memory
        if digest != expected:
            raise ReleasedPromptError(f"{path}: sha256 {digest[:12]}... is not the released commit's "
                                      f"{expected[:12]}... (check out {RELEASED_COMMIT[:7]})")
        hashes[rel] = digest
    return hashes


def import_released(checkout: str | Path, out: str | Path) -> Path:
    """Verify, extract, and write the templates and ``manifest.json`` into ``out`` (each file written atomically)."""
    checkout, out = Path(checkout), Path(out)
    hashes = verify(checkout)
    texts = extract(checkout)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"repository": "bruno686/VisPlay", "commit": RELEASED_COMMIT, "sources": hashes,
                "templates": {name: hashlib.sha256(text.encode()).hexdigest() for name, text in texts.items()}}
    files = [*((f"{n}.txt", t) for n, t in texts.items()), ("manifest.json", json.dumps(manifest, indent=1))]
    for name, _ in files:  # a link or folder planted at any of them is refused before one is written
        check_writable_file(out / name)
    for name, text in files:
        write_file(out / name, text)  # beside it, then renamed: never through a link planted there
    return out


# --- using a template folder ----------------------------------------------------------------------------------


def load_templates(folder: str | Path) -> dict[str, str]:
    """The templates of a folder written by :func:`import_released`; raises naming a missing or edited file."""
    folder = Path(folder)
    manifest_file = folder / "manifest.json"
    if not manifest_file.is_file():
        raise ReleasedPromptError(f"plugins.algorithm.prompt_dir: {manifest_file} missing (write the folder with "
                                  f"`visplay prompts import-released /path/to/VisPlay --out {folder}`)")
    expected = json.loads(manifest_file.read_text(encoding="utf-8")).get("templates", {})
    texts = {}
    for name in TEMPLATES:
        path = folder / f"{name}.txt"
        if not path.is_file():
            raise ReleasedPromptError(f"plugins.algorithm.prompt_dir: {path} missing")
        texts[name] = path.read_text(encoding="utf-8")
        if name in expected and hashlib.sha256(texts[name].encode()).hexdigest() != expected[name]:
            raise ReleasedPromptError(f"plugins.algorithm.prompt_dir: {path} differs from manifest.json")
    return texts


def fill(template: str, question: str = "", qtype: str = "") -> str:
    """Replace the placeholders literally (str.format would trip over the templates' ``\\boxed{}``)."""
    return template.replace("{question}", question).replace("{qtype}", qtype)


def add_command(subparsers: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """``visplay prompts import-released CHECKOUT [--out DIR]`` (added through ``visplay_add_commands``)."""
    p = subparsers.add_parser("prompts", help="prompt templates: import the released code's from your own checkout",
                              description="visplay ships no prompt text of the released code. `visplay prompts "
                                          "import-released /path/to/VisPlay` checks the checkout's source files "
                                          "against the released commit's hashes, extracts its prompts into template "
                                          "files, and prints the recipe override that uses them "
                                          "(plugins.algorithm.prompt_dir=...).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = actions.add_parser("import-released", help="extract the released prompts from a checkout of bruno686/VisPlay")
    q.add_argument("checkout", help="a local checkout of bruno686/VisPlay at the released commit (3aa895b)")
    q.add_argument("--out", default="prompts/released", help="folder for the templates (default: %(default)s)")
    return {"prompts": cli_import_released}


def cli_import_released(args: argparse.Namespace) -> int:
    """``visplay prompts import-released CHECKOUT [--out DIR]``."""
    try:
        out = import_released(args.checkout, args.out)
    except (ReleasedPromptError, OSError, SyntaxError) as exc:
        print(f"visplay: {exc}", file=sys.stderr)
        return 1
    print(f"released prompts of bruno686/VisPlay@{RELEASED_COMMIT[:7]} written to {out}")
    print(f"use them with: plugins.algorithm.prompt_dir={out}")
    return 0


def cached_loader() -> Callable[[str], dict[str, str]]:
    """``load_templates`` memoised per folder (hooks run per batch; the folder is read once per process)."""
    cache: dict[str, dict[str, str]] = {}

    def load(folder: str) -> dict[str, str]:
        if folder not in cache:
            cache[folder] = load_templates(folder)
        return cache[folder]

    return load


class StepQuestionTypes:
    """The type each question of the current step was parsed with, for the released vote prompt's ``{qtype}``.

    The sampling hook gets (image, question) only; the questions it votes on were parsed earlier in the same
    step by this plugin, so it remembers {question text: type} and forgets it when the step changes. Two
    questions of one step with the same text and different types get the last one's type.
    """

    def __init__(self) -> None:
        self.where: tuple = ()
        self.types: dict[str, str] = {}

    def remember(self, where: tuple, question: str | None, qtype: str | None) -> None:
        if where != self.where:
            self.where, self.types = where, {}
        if question:
            self.types[question] = qtype or ""

    def get(self, where: tuple, question: str) -> str:
        return self.types.get(question, "") if where == self.where else ""


def released_prompt_texts(templates: dict[str, str], purpose: str, phase: str, question: str = "",
                          qtype: str = "") -> tuple[str | None, str]:
    """(system, user) for ``purpose`` ``question`` (questioner), ``vote`` or ``rollout`` in ``phase``."""
    if purpose == "question":
        if phase == "reasoner_set":
            return templates["set_questioner_system"], templates["set_questioner_user"]
        return None, templates["questioner_user"]
    if purpose == "vote":
        prefix = "set_vote" if phase == "reasoner_set" else "vote"
        return templates[f"{prefix}_system"], fill(templates[f"{prefix}_user"], question, qtype)
    return None, fill(templates["reasoner_user"], question, qtype)
