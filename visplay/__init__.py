"""visplay: VisPlay (arXiv 2511.15661), reproducible and extensible.

The core (this package) defines hook points and runs the self-play loop; everything model-, algorithm- or
data-specific lives in plugins registered under the ``visplay`` entry-point group. Everything a plugin may use of
the core is in :mod:`visplay.api`; the three names a small plugin needs are importable from here too:
``visplay.hookimpl`` (the marker), ``visplay.section`` (makes a class a recipe section: a dataclass whose field
docstrings ``visplay recipe --explain`` prints) and ``visplay.plugin_section`` (read a plugin's own section);
``visplay.testing`` helps test a plugin.
"""

from __future__ import annotations

from dataclasses import dataclass as section
from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl", "plugin_section", "section"]


def __getattr__(name: str) -> Any:  # lazy: `import visplay` stays cheap for the CLI
    if name == "hookimpl":
        from visplay.hookspecs import hookimpl

        return hookimpl
    if name == "plugin_section":
        from visplay.config import plugin_section

        return plugin_section
    raise AttributeError(f"module 'visplay' has no attribute {name!r}")
