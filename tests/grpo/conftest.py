"""GRPO tests run torch on one thread: results are bit-exact across runs, and the 2 CI cores are shared."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield
