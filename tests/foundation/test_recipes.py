"""Recipe loading: schema -> YAML -> overrides -> validation, with errors that name the file and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ReadonlyConfigError

from visplay.config import RecipeError, all_keys, field_docs, load_recipe, recipe_sha256

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_tiny_recipe_loads_with_paper_variant_defaults():
    cfg = load_recipe("tiny")
    assert cfg.name == "tiny"
    algorithm = cfg.plugins.algorithm  # the variant defaults are the algorithm plugin's (its section declares them)
    assert list(algorithm.filter.band) == [0.25, 0.75]
    assert algorithm.reward.combine == "paper" and algorithm.reward.diversity_scope == "image"
    assert cfg.plugins.grpo.loss_agg == "token_mean"
    assert cfg.run_dir == "runs/tiny"


def test_released_variant_takes_released_defaults_unless_set(tmp_path):
    cfg = load_recipe("tiny", ["variant=released"])
    assert list(cfg.plugins.algorithm.filter.band) == [0.3, 0.8]
    assert cfg.plugins.algorithm.reward.combine == "released" and cfg.plugins.algorithm.reward.format_weight == 0.1
    assert cfg.plugins.grpo.loss_agg == "seq_mean_token_mean"
    cfg = load_recipe("tiny", ["variant=released", "plugins.algorithm.filter.band=[0.2,0.9]"])
    assert list(cfg.plugins.algorithm.filter.band) == [0.2, 0.9]


def test_overrides_apply_after_yaml():
    cfg = load_recipe("tiny", ["questioner.steps=7", "seed=3"])
    assert cfg.questioner.steps == 7 and cfg.seed == 3


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    path = write(tmp_path, "name: x\nquestioner:\n  stepz: 3\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    msg = str(err.value)
    assert str(path) in msg and "questioner.stepz" in msg and "did you mean 'questioner.steps'" in msg


def test_unknown_override_names_the_override():
    with pytest.raises(RecipeError, match=r"override 'questioner.stepz=2'.*questioner.steps"):
        load_recipe("tiny", ["questioner.stepz=2"])
    with pytest.raises(RecipeError, match=r"plugins\.algorithm\.filter\.bnd.*plugins\.algorithm\.filter\.band"):
        load_recipe("tiny", ["plugins.algorithm.filter.bnd=[0.1,0.2]"])


def test_wrong_type_names_key(tmp_path):
    path = write(tmp_path, "name: x\nquestioner:\n  steps: many\n")
    with pytest.raises(RecipeError, match=r"questioner\.steps"):
        load_recipe(path)


def test_missing_required_value_names_key(tmp_path):
    path = write(tmp_path, "iterations: 2\n")
    with pytest.raises(RecipeError, match=r"required key\(s\) missing: name"):
        load_recipe(path)


def test_semantic_validation_names_key(tmp_path):
    path = write(tmp_path, "name: x\nplugins:\n  algorithm:\n    filter:\n      band: [0.8, 0.2]\n")
    with pytest.raises(RecipeError, match=r"plugins\.algorithm\.filter\.band"):
        load_recipe(path)
    with pytest.raises(RecipeError, match=r"'variant'"):
        load_recipe("tiny", ["variant=papr"])
    with pytest.raises(RecipeError, match=r"plugins\.models\.tiny\.hidden_size"):
        load_recipe("tiny", ["plugins.models.tiny.hidden_size=64", "plugins.models.tiny.num_heads=4"])


def test_yaml_syntax_error_names_file(tmp_path):
    path = write(tmp_path, "name: [unclosed\n")
    with pytest.raises(RecipeError, match=str(path)):
        load_recipe(path)


def test_unknown_recipe_name_suggests():
    with pytest.raises(RecipeError, match="did you mean 'tiny'"):
        load_recipe("tiyn")


def test_resolved_recipe_is_read_only_and_hash_is_stable():
    a, b = load_recipe("tiny"), load_recipe("tiny")
    assert recipe_sha256(a) == recipe_sha256(b)
    assert recipe_sha256(a) != recipe_sha256(load_recipe("tiny", ["seed=1"]))
    with pytest.raises(ReadonlyConfigError):
        a.seed = 5
    assert OmegaConf.is_readonly(a)


def test_every_schema_key_is_documented():
    docs = field_docs()
    undocumented = [k for k in all_keys() if k not in docs]
    assert not undocumented, undocumented


@pytest.mark.parametrize("command", ["run", "reproduce"])
def test_cli_exits_2_and_creates_nothing_on_a_bad_recipe(tmp_path, command):
    path = write(tmp_path, "name: bad\nrun_dir: " + str(tmp_path / "runs" / "bad") + "\nquestioner:\n  stepz: 1\n")
    proc = subprocess.run([sys.executable, "-m", "visplay.cli", command, str(path)], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "questioner.stepz" in proc.stderr and str(path) in proc.stderr
    assert not (tmp_path / "runs").exists()
