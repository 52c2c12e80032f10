"""CLI habits: options anywhere, -v/-q on either side of the command, run/reproduce as one command, recipes from
the package with ./recipes and paths overriding, and a folder never taken for a recipe."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from visplay.cli import build_parser, parse_args
from visplay.config import RecipeError, find_recipe, load_recipe, recipe_dirs


@pytest.mark.parametrize("argv, overrides, quiet, verbose", [
    (["run", "tiny", "-q", "name=x", "iterations=1"], ["name=x", "iterations=1"], True, 0),
    (["-v", "run", "tiny", "a=1", "-v", "--overwrite", "b=2"], ["a=1", "b=2"], False, 2),
    (["-q", "reproduce", "tiny", "a=1"], ["a=1"], True, 0),
    (["run", "tiny", "a=1", "-vv"], ["a=1"], False, 2),
])
def test_options_anywhere(argv, overrides, quiet, verbose):
    args = parse_args(argv)
    assert (args.recipe, args.overrides, args.quiet, args.verbose) == ("tiny", overrides, quiet, verbose)


def test_options_anywhere_for_replay_and_recipe():
    args = parse_args(["replay", "x.db", "a=1", "--iteration", "1", "b=2"])
    assert (args.db, args.overrides, args.iteration) == ("x.db", ["a=1", "b=2"], 1)
    args = parse_args(["recipe", "tiny", "--explain", "a=1"])
    assert args.explain and args.overrides == ["a=1"]


def test_run_and_reproduce_are_one_command():
    help_text = build_parser().format_help()
    assert "run (reproduce)" in help_text
    assert parse_args(["reproduce", "tiny"]).command == "reproduce"
    commands = build_parser().get_default("_commands")
    assert commands["run"] is commands["reproduce"]


def test_recipes_ship_inside_the_package():
    packaged = Path(str(resources.files("visplay") / "data" / "recipes"))
    assert recipe_dirs()[-1] == packaged
    assert {"tiny", "qwen-vl-3b", "qwen-vl-7b", "mimo-vl-7b", "qwen3-vl-4b", "qwen3-vl-8b"} <= {p.stem for p in packaged.glob("*.yaml")}
    assert (Path(str(resources.files("visplay") / "data" / "paper_table1.json"))).is_file()


def test_a_folder_is_never_a_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").mkdir()  # ./tiny/ beside the user: the name still means the recipe
    assert find_recipe("tiny").parent == recipe_dirs()[-1]
    assert load_recipe("tiny").name == "tiny"
    with pytest.raises(RecipeError, match="tiny: is a directory, not a recipe file"):
        find_recipe("./tiny")
    with pytest.raises(RecipeError, match="no recipe named 'tinny'.*did you mean 'tiny'"):
        find_recipe("tinny")


def test_local_recipes_and_paths_override_the_packaged_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "tiny.yaml").write_text("name: mine\niterations: 1\n")
    assert load_recipe("tiny").name == "mine"
    (tmp_path / "other.yaml").write_text("name: other\n")
    assert load_recipe(str(tmp_path / "other.yaml")).name == "other"


def test_quiet_after_overrides_on_the_real_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "visplay.cli", "recipe", "tiny", "-q", "iterations=1", "-v"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "iterations: 1" in proc.stdout


def test_diff_reports_recipe_differences_key_by_key():
    from visplay.log.diff import Divergence, recipe_changes

    a = "name: x\nrun_dir: runs/a\noptimizer:\n  lr: 0.05\n  kl_coef: 0.01\nplugins: {}\n"
    b = "name: x\nrun_dir: runs/b\noptimizer:\n  lr: 0.04\n  kl_coef: 0.01\nplugins:\n  metrics:\n    sinks: []\n"
    assert recipe_changes(a, b) == [("optimizer.lr", 0.05, 0.04), ("plugins", {}, "<absent>"),
                                    ("plugins.metrics.sinks", "<absent>", [])]
    line = Divergence("runs", ("r",), "recipe_yaml", a, b).describe()
    assert line == ("runs[r].recipe_yaml: 3 key(s) differ: optimizer.lr: a=0.05 b=0.04; plugins: a={} "
                    "b='<absent>'; plugins.metrics.sinks: a='<absent>' b=[]")
    assert recipe_changes(a, a.replace("runs/a", "runs/c")) == []  # run_dir is where, not what
