"""Shared test setup: offline, CPU, small thread counts (the CI machine has 2 cores)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VISPLAY_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache", "visplay-tests"))

import pytest  # noqa: E402


@pytest.fixture
def no_autoload(monkeypatch):
    """A plugin manager that loads no entry points (tests register plugins by hand)."""
    monkeypatch.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture
def one_thread():
    """torch on one thread: bit-exact results across runs, and the 2 CI cores are shared. The models and grpo
    folders use it for every test (their conftest.py); elsewhere a test asks for it."""
    import torch

    torch.set_num_threads(1)
    yield


def pytest_collection_modifyitems(config, items):
    """Benchmarks (tests/benchmarks) run only when asked: `pytest tests/benchmarks --benchmark-enable`."""
    if config.getoption("benchmark_enable", False) or config.getoption("benchmark_only", False):
        return
    skip = pytest.mark.skip(reason="benchmark: run with --benchmark-enable")
    for item in items:
        if "benchmark" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)
