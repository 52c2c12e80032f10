"""Released prompt templates: extracted from a user's checkout (hash-checked), used per purpose and phase.

The positive extraction test needs a checkout of bruno686/VisPlay at 3aa895b: ``VISPLAY_RELEASED_CHECKOUT`` or the
session mirror (a bare git repository, exported with ``git archive``); it is skipped without one.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.algorithm import RecordingSampler, make_ctx
from visplay_algorithm import plugin as algorithm_plugin
from visplay_algorithm.released_prompts import (
    RELEASED_COMMIT,
    SOURCES,
    TEMPLATES,
    ReleasedPromptError,
    import_released,
    load_templates,
)

from visplay.types import AskedQuestion, ImageRecord

ROOT = Path(__file__).resolve().parents[2]
MIRROR = Path("/work/.mirror/bruno686+VisPlay/repo")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    given = os.environ.get("VISPLAY_RELEASED_CHECKOUT")
    if given:
        return Path(given)
    if not MIRROR.is_dir():
        pytest.skip("no checkout of bruno686/VisPlay (set VISPLAY_RELEASED_CHECKOUT)")
    out = tmp_path_factory.mktemp("visplay-checkout")
    archive = subprocess.run(["git", "-C", str(MIRROR), "archive", RELEASED_COMMIT, *SOURCES], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def test_import_released_writes_every_template_and_ships_none(checkout, tmp_path):
    """The prompts read from the released sources: the vote carries the question type and asks for \\boxed{} only
    (start_vllm_server.py:156-168), the questioner's training text has no placeholder (dataset.py:204-235, the data
    set's problem is dropped), no prompt mentions <think>. None of their lines is in the package."""
    out = import_released(checkout, tmp_path / "released")
    texts = load_templates(out)
    assert set(texts) == set(TEMPLATES)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["commit"] == RELEASED_COMMIT and manifest["sources"] == SOURCES
    assert "{question}" in texts["vote_user"] and "{qtype}" in texts["vote_user"]
    assert "{question}" in texts["reasoner_user"] and "{question}" in texts["set_vote_user"]
    assert "{question}" not in texts["questioner_user"] + texts["set_questioner_user"]
    assert all("<think>" not in text for text in texts.values())
    shipped = "\n".join(p.read_text(encoding="utf-8") for folder in ("visplay", "plugins", "recipes", "docs")
                        for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".yaml", ".md"))
    lines = {line.strip() for text in texts.values() for line in text.splitlines() if len(line.strip()) >= 40}
    assert lines and not [line for line in lines if line in shipped]


def test_a_changed_or_missing_source_file_is_refused(checkout, tmp_path):
    fake = tmp_path / "fake"
    for rel in SOURCES:
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_bytes((checkout / rel).read_bytes())
    (fake / "question_evaluate/evaluate.py").write_text("prompts = []\n")
    with pytest.raises(ReleasedPromptError, match="question_evaluate/evaluate.py: sha256"):
        import_released(fake, tmp_path / "out")
    with pytest.raises(ReleasedPromptError, match="missing"):
        import_released(tmp_path / "nowhere", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_import_released(checkout, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "visplay.cli", "prompts", "import-released", str(checkout),
                           "--out", str(tmp_path / "p")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"plugins.algorithm.prompt_dir={tmp_path / 'p'}" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "visplay.cli", "prompts", "import-released", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "verl/utils/dataset.py: missing" in proc.stderr


def _own_templates(folder: Path) -> Path:
    """A template folder with our own texts (the hooks only need the files and a matching manifest)."""
    folder.mkdir()
    texts = {name: f"[{name}] {{question}} / {{qtype}} \\boxed{{}}" for name in TEMPLATES}
    texts["questioner_user"] = "[questioner_user]"
    for name, text in texts.items():
        (folder / f"{name}.txt").write_text(text)
    manifest = {"templates": {n: hashlib.sha256(t.encode()).hexdigest() for n, t in texts.items()}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_hooks_use_the_template_of_each_purpose_and_phase(tmp_path):
    """Questioner training: user text only, no system; votes: the vote template with the parsed type and
    top_k 40 / top_p 1 (start_vllm_server.py:51-58); reasoner set: its own questioner and vote templates;
    rollouts: the reasoner template without a system message and the recipe's sampling."""
    folder = _own_templates(tmp_path / "t")
    ctx = make_ctx("released", [f"plugins.algorithm.prompt_dir={folder}"])
    image = ImageRecord("img", None, "test")  # type: ignore[arg-type]
    ctx.phase, ctx.step = "questioner", 1
    sampler = RecordingSampler()
    algorithm_plugin.visplay_generate_questions(ctx, sampler, [image], 2, [5])
    (prompt,), _ = sampler.calls[-1]
    assert (prompt.system, prompt.user) == (None, "[questioner_user]")
    parsed = ctx.hooks.parse_question(text="<type>numerical</type><question>How many?</question><answer>3</answer>")
    asked = AskedQuestion(image, parsed.question, parsed.qtype)  # the type travels with the question
    algorithm_plugin.visplay_sample_answers(ctx, sampler, [asked], 3, [6], "vote")
    (prompt,), (params,) = sampler.calls[-1]
    assert (prompt.system, prompt.user) == ("[vote_system] {question} / {qtype} \\boxed{}",
                                            "[vote_user] How many? / numerical \\boxed{}")
    assert (params.top_k, params.top_p, params.temperature) == (40, 1.0, 1.0)
    algorithm_plugin.visplay_sample_answers(ctx, sampler, [asked], 3, [6], "rollout")
    (prompt,), (params,) = sampler.calls[-1]
    assert (prompt.system, prompt.user) == (None, "[reasoner_user] How many? / numerical \\boxed{}")
    assert params.top_p == ctx.recipe.reasoner.sampling.top_p
    ctx.phase = "reasoner_set"
    algorithm_plugin.visplay_generate_questions(ctx, sampler, [image], 1, [7])
    (prompt,), _ = sampler.calls[-1]
    assert prompt.system.startswith("[set_questioner_system]") and prompt.user.startswith("[set_questioner_user]")
    algorithm_plugin.visplay_sample_answers(ctx, sampler, [AskedQuestion(image, "Q?")], 2, [8], "vote")
    (prompt,), _ = sampler.calls[-1]
    assert prompt.user == "[set_vote_user] Q? /  \\boxed{}"


def test_two_identical_questions_of_different_types_each_get_their_own_type(tmp_path):
    """The released vote prompt carries the question's type; in one step the same text parsed twice with two
    types must not share one (it did while the type travelled through a module global, keyed by the text)."""
    folder = _own_templates(tmp_path / "t")
    ctx = make_ctx("released", [f"plugins.algorithm.prompt_dir={folder}"]).at(1, "questioner", 0)
    image = ImageRecord("img", None, "test")  # type: ignore[arg-type]
    texts = ["<type>numerical</type><question>How many?</question><answer>3</answer>",
             "<type>multiple choice</type><question>How many?</question><answer>A</answer>"]
    asked = []
    for text in texts:
        parsed = ctx.hooks.parse_question(text)
        asked.append(AskedQuestion(image, parsed.question, parsed.qtype))
    sampler = RecordingSampler()
    ctx.hooks.sample_answers(sampler, asked, 1, [1, 2], "vote")
    prompts, _ = sampler.calls[-1]
    assert [p.user for p in prompts] == ["[vote_user] How many? / numerical \\boxed{}",
                                         "[vote_user] How many? / multiple choice \\boxed{}"]


def test_an_edited_template_is_refused(tmp_path):
    folder = _own_templates(tmp_path / "t")
    (folder / "vote_user.txt").write_text("edited")
    with pytest.raises(ReleasedPromptError, match="vote_user.txt differs from manifest.json"):
        load_templates(folder)
    with pytest.raises(ReleasedPromptError, match="manifest.json missing"):
        load_templates(tmp_path)


@pytest.mark.parametrize("damage", ["edited", "missing"])
def test_an_edited_or_missing_template_is_refused_when_the_recipe_loads(tmp_path, damage):
    """Issue 28: the folder was checked only at the first questioner step (after the cold start and a gold
    evaluation); the recipe now refuses it at load, naming the file."""
    from visplay.config import RecipeError

    folder = _own_templates(tmp_path / "t")
    victim = folder / f"{sorted(TEMPLATES)[0]}.txt"
    if damage == "edited":
        victim.write_text(victim.read_text() + " (edited)")
    else:
        victim.unlink()
    with pytest.raises(RecipeError, match=rf"plugins\.algorithm\.prompt_dir.*{victim.name}.*"
                                          rf"({'differs from manifest' if damage == 'edited' else 'missing'})"):
        make_ctx("released", [f"plugins.algorithm.prompt_dir={folder}"])
