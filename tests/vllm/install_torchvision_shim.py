"""Install the torchvision workaround into the current Python environment (the vLLM test venv only).

There is no CPU torchvision build for torch 2.13; the CUDA build that pip picks fails on import with
``operator torchvision::nms does not exist`` because its compiled ops do not load. vLLM imports torchvision, so
the vLLM test environment registers the two operator schemas torchvision's Python side expects (``nms`` and
``qnms``) before torchvision is first imported. Only torchvision's compiled ops stay unavailable (vLLM's Qwen
path does not use them).

The hook is lazy: a ``.pth`` file installs a meta-path finder that acts only when ``torchvision`` is imported,
so other programs in the environment do not pay for importing torch at start-up.

Run with the target environment's interpreter:  ``/path/to/venv/bin/python tests/vllm/install_torchvision_shim.py``
Never run it in the main visplay environment (the brief forbids torchvision there).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

MODULE_NAME = "_visplay_torchvision_shim"
PTH_NAME = "visplay_torchvision_shim.pth"

MODULE_SOURCE = '''"""Registers torchvision::nms/qnms schemas before torchvision imports (installed by visplay's
tests/vllm/install_torchvision_shim.py; vLLM test environment only)."""

import importlib.abc
import sys

_LIB = None  # the torch.library.Library must stay alive for the schemas to stay registered


def _register():
    global _LIB
    if _LIB is not None:
        return
    import torch

    try:
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    except RuntimeError:
        return  # already defined (a working torchvision build, or registered before)
    _LIB = lib


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path.remove(self)
            _register()
        return None  # let the normal finders import it


def install():
    if not any(isinstance(f, _Finder) for f in sys.meta_path) and "torchvision" not in sys.modules:
        sys.meta_path.insert(0, _Finder())
'''


def main() -> int:
    site = Path(sysconfig.get_paths()["purelib"])
    (site / f"{MODULE_NAME}.py").write_text(MODULE_SOURCE)
    (site / PTH_NAME).write_text(f"import {MODULE_NAME}; {MODULE_NAME}.install()\n")
    print(f"installed {MODULE_NAME} into {site}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
