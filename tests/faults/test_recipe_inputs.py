"""Fault suite, the recipe loader and the command line (issue 28's loader classes, built with issue 21's loader):
sizes and strings, environment interpolation, legacy keys, a broken plugin, --explain. Each refusal exits 2 with
the input named, before anything is created."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from visplay.config import RecipeError, load_recipe


def _cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "OMP_NUM_THREADS": "1", "VISPLAY_CACHE": str(tmp_path / "cache"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "visplay.cli", *args], capture_output=True, text=True, env=full,
                          cwd=tmp_path, timeout=300)


@pytest.mark.parametrize("override, message", [
    ("name=" + "a" * 250, "250 characters long"),
    (".".join(["a"] * 6000) + "=1", "6000 parts"),
    ("seed=" + "[" * 1000 + "]" * 1000, "nested 1000 levels deep"),
    ("run_dir=/tmp/" + "d" * 300, "longer than file systems allow"),
    ("run_dir=/tmp/" + "/".join(["d" * 200] * 30), "cannot be used as a folder"),
    ("run_dir=$HOME/runs/x", "environment variables are not expanded"),
    ("data.images=$HOME/images", "environment variables are not expanded"),
])
def test_sizes_and_strings_are_refused_with_a_message_not_a_traceback(tmp_path, override, message):
    done = _cli(tmp_path, "run", "tiny", override)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["cache"])  # no run folder, no folder named $HOME


def test_thousands_of_overrides_load_in_one_merge():
    """2,000 overrides took 296 s when each was merged on its own; they are one merge now (the last one wins)."""
    cfg = load_recipe("tiny", [f"questioner.steps={k}" for k in range(2000)])
    assert cfg.questioner.steps == 1999


def test_environment_interpolation_in_a_recipe_file(tmp_path, monkeypatch):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: env\nrun_dir: ${oc.env:VISPLAY_TEST_RUNS}/env\n")
    monkeypatch.setenv("VISPLAY_TEST_RUNS", str(tmp_path / "runs"))
    assert load_recipe(recipe).run_dir == f"{tmp_path / 'runs'}/env"  # resolved once, stored resolved
    monkeypatch.delenv("VISPLAY_TEST_RUNS")
    with pytest.raises(RecipeError, match=r"key 'run_dir': .*VISPLAY_TEST_RUNS.* not found"):
        load_recipe(recipe)
    done = _cli(tmp_path, "recipe", str(recipe))
    assert done.returncode == 2 and "VISPLAY_TEST_RUNS" in done.stderr and "Traceback" not in done.stderr


def test_an_old_key_with_its_new_name_in_one_file_is_refused(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: both\nreward:\n  combine: released\nplugins:\n  algorithm:\n    reward:\n"
                      "      combine: paper\n")
    with pytest.raises(RecipeError, match=r"'reward' \(its old name\) and 'plugins.algorithm.reward' are both given "
                                          r"for combine"):
        load_recipe(recipe)


def test_an_old_key_on_the_command_line_overrides_the_file_like_any_override(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: one\nplugins:\n  grpo:\n    lr: 0.5\n")
    assert load_recipe(recipe, ["optimizer.lr=0.25"]).plugins.grpo.lr == 0.25


BROKEN = '''
raise ImportError("this plugin is broken on purpose")
'''


def _broken_site(root: Path) -> Path:
    site = root / "site"
    (site / "broken_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "broken_plugin.py").write_text(BROKEN)
    (site / "broken_plugin-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\n"
                                                                  "Version: 1.0\n")
    (site / "broken_plugin-1.0.dist-info" / "entry_points.txt").write_text("[visplay]\nbroken = broken_plugin\n")
    return site


def test_a_broken_plugin_never_breaks_help_and_is_named_by_commands_that_need_it(tmp_path):
    env = {"PYTHONPATH": f"{_broken_site(tmp_path)}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for args in (["--help"], ["run", "--help"], []):
        done = _cli(tmp_path, *args, env=env)
        assert done.returncode in (0, 2) and "Traceback" not in done.stderr, (args, done.stderr[-2000:])
        assert "usage: visplay" in done.stdout + done.stderr
    top = _cli(tmp_path, "--help", env=env)
    assert "plugin 'broken'" in top.stdout and "failed to import" in top.stdout
    used = _cli(tmp_path, "recipe", "tiny", env=env)
    assert used.returncode == 1 and "plugin 'broken'" in used.stderr and "Traceback" not in used.stderr


def test_explain_prints_list_and_mapping_values(tmp_path):
    done = _cli(tmp_path, "recipe", "tiny", "--explain")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "plugins.algorithm.filter.band = [0.25, 0.75]" in out
    assert "plugins.games.games = ['2048', 'shapes', 'shisen']" in out
    assert "plugins.metrics.sinks = ['tensorboard']" in out
    assert "plugins.algorithm.reward.weights = {}" in out
    assert "plugins.algorithm.reward:  #" in out  # a section: its keys follow one by one
    # cold_start_steps=0 alone still runs tiny's 300 reasoner steps: its help says the reasoner has its own key
    lines = out.splitlines()
    doc = lines[lines.index("plugins.games.cold_start_steps = 300") + 1]
    assert "``cold_start_steps=0`` alone still runs the reasoner's 300" in doc, doc


def test_a_recipe_file_nested_too_deep_is_a_message(tmp_path):
    recipe = tmp_path / "deep.yaml"
    recipe.write_text("name: deep\nseed: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(RecipeError, match="deep.yaml"):
        load_recipe(recipe)


def test_a_run_needs_a_plugin_for_every_name_it_uses(tmp_path):
    """Loading a recipe without any image source plugin is fine (a test of one plugin does it); running it is
    refused before anything is created, naming the key."""
    script = textwrap.dedent(f"""
        from visplay.loop.engine import run_recipe
        from visplay.session import PluginSession
        import visplay_algorithm.plugin as algorithm
        session = PluginSession(extra=(algorithm,), autoload=False)
        cfg = session.load_recipe("tiny", ["run_dir={tmp_path / 'run'}"])
        run_recipe(cfg, session=session)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "key 'data.source': no installed plugin serves any image source" in done.stderr
    assert not (tmp_path / "run").exists()
