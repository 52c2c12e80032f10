"""The plugin manager: first-party and third-party plugins, loaded the same way.

Nothing is loaded at import time; call :func:`get_plugin_manager`. Plugins come from the entry-point group
``visplay`` (first-party ones are declared in visplay's own pyproject.toml, so they take the same path as anyone
else's). Environment switches:

- ``VISPLAY_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry points (tests then register plugins by hand);
- ``VISPLAY_PLUGINS=a,b``: load only these entry-point names;
- ``VISPLAY_TRACE_HOOKS=1``: log every hook call and result to stderr (logger ``visplay.hooks``; visplay/hooks.py
  calls every implementation itself, so this is the one tracing mechanism).

A switch is on when its value is 1, true, yes or on (any case): :func:`env_flag`, the one rule for all of them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from visplay import hookspecs

log = logging.getLogger("visplay.plugins")

ENTRY_POINT_GROUP = "visplay"


class PluginError(Exception):
    """A plugin failed to load or a hook implementation raised; the message names the plugin and the hook."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]


def env_flag(name: str) -> bool:
    """Whether environment switch ``name`` is on: 1, true, yes or on, in any case (anything else is off)."""
    return (os.environ.get(name) or "").strip().lower() in {"1", "true", "yes", "on"}


def autoload_enabled() -> bool:
    return not env_flag("VISPLAY_DISABLE_PLUGIN_AUTOLOAD")


def allowed_plugins(only: Collection[str] | None = None) -> set[str] | None:
    """The entry-point names to load: ``VISPLAY_PLUGINS`` intersected with ``only`` (None: all)."""
    allow = os.environ.get("VISPLAY_PLUGINS")
    allowed = {n.strip() for n in allow.split(",") if n.strip()} if allow else None
    if only is not None:
        allowed = set(only) if allowed is None else allowed & set(only)
    return allowed


MANAGERS_BUILT = 0
"""Plugin managers built in this process (a run builds one; tests count them)."""


def get_plugin_manager(*, autoload: bool | None = None, extra: tuple[Any, ...] = (),
                       only: Collection[str] | None = None) -> pluggy.PluginManager:
    """A fresh plugin manager with the hookspecs, the entry-point plugins and ``extra`` plugin objects.

    ``check_pending`` runs at the end, so a hookimpl whose name matches no hookspec (a typo) fails here.
    ``only``: load just these entry-point names (replay takes the plugin set the run logged).
    """
    global MANAGERS_BUILT
    MANAGERS_BUILT += 1
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if autoload is None:
        autoload = autoload_enabled()
    if autoload:
        _load_entry_points(pm, only)
    for plugin in extra:
        if pm.is_registered(plugin):  # already loaded from its entry point
            continue
        name = getattr(plugin, "plugin_name", None) or (plugin.__name__ if isinstance(plugin, ModuleType)
                                                          else type(plugin).__name__)
        pm.register(plugin, name=name if pm.get_plugin(name) is None else None)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{exc} (is a hook name misspelled? known hooks: {', '.join(hook_names())})") from exc
    _refuse_wrappers(pm)
    return pm


def _refuse_wrappers(pm: pluggy.PluginManager) -> None:
    """visplay calls each implementation itself (visplay.hooks.call_each) to know who produced what, so a hook
    wrapper would never run; say so instead of ignoring it."""
    for name in hook_names():
        for impl in getattr(pm.hook, name).get_hookimpls():
            if impl.hookwrapper or getattr(impl, "wrapper", False):
                raise PluginError(f"plugin {impl.plugin_name!r}: hook wrappers are not supported on {name} (visplay "
                                  f"calls implementations one by one; see visplay/hooks.py); use a plain "
                                  f"implementation, or VISPLAY_TRACE_HOOKS=1 to trace calls")


def _load_entry_points(pm: pluggy.PluginManager, only: Collection[str] | None = None) -> None:
    allowed = allowed_plugins(only)
    eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    for ep in eps:
        if allowed is not None and ep.name not in allowed:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party package must name itself
            dist = ep.dist.name if ep.dist else "?"
            raise PluginError(f"plugin {ep.name!r} (from {dist}, {ep.value}) failed to import: {exc}") from exc
        try:
            pm.register(plugin, name=ep.name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) is invalid: {exc}") from exc
        if ep.dist is not None:
            pm._visplay_dists = getattr(pm, "_visplay_dists", {})  # noqa: SLF001
            pm._visplay_dists[ep.name] = (ep.dist.name, ep.dist.version)  # noqa: SLF001


def hook_names() -> list[str]:
    """Hook names in the order hookspecs.py defines them (the five product hook points first)."""
    return [n for n in vars(hookspecs) if n.startswith("visplay_")]


def plugin_infos(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """The active plugins in registration order, with distributions, versions and the hooks each fills."""
    dists = getattr(pm, "_visplay_dists", {})
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist, version = dists.get(name, (getattr(plugin, "__module__", None) or getattr(plugin, "__name__", "?"),
                                         "n/a"))
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or []))
        infos.append(PluginInfo(name=name, distribution=dist, version=version, hooks=hooks))
    return infos


def hook_table(pm: pluggy.PluginManager) -> dict[str, list[str]]:
    """{hook name: plugin names in call order (first called first)}; empty list for an unfilled hook."""
    table = {}
    for name in hook_names():
        caller = getattr(pm.hook, name)
        table[name] = [pm.get_name(impl.plugin) for impl in reversed(caller.get_hookimpls())]
    return table


def hook_reference_markdown() -> str:
    """The hook reference for docs/plugins.md, generated from the hookspec docstrings (a test keeps it current)."""
    import inspect

    lines = []
    for name in hook_names():
        spec = getattr(hookspecs, name)
        opts = getattr(spec, hookspecs.PROJECT + "_spec", {})
        first = " (firstresult)" if opts.get("firstresult") else ""
        signature = str(inspect.signature(spec)).replace("'", "")
        lines += [f"### `{name}`{first}", "", "```python", f"def {name}{signature}", "```", "",
                  inspect.cleandoc(spec.__doc__ or ""), ""]
    return "\n".join(lines)


DOCS_START = "<!-- hook reference: start (generated by `python -m visplay.plugins`) -->"
DOCS_END = "<!-- hook reference: end -->"


def render_plugin_docs(text: str) -> str:
    """docs/plugins.md with its generated hook reference replaced by the current one."""
    head, _, rest = text.partition(DOCS_START)
    _, _, tail = rest.partition(DOCS_END)
    return f"{head}{DOCS_START}\n\n{hook_reference_markdown()}\n{DOCS_END}{tail}"


if __name__ == "__main__":  # regenerate the hook reference in docs/plugins.md
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
    docs.write_text(render_plugin_docs(docs.read_text()))
    print(f"wrote {docs}")
