"""One plugin session per process: plugin manager -> declared sections and names -> schema -> recipe.

A command (``visplay run``, ``resume``, ``replay``, ``eval``, the dry run, a test) makes one
:class:`PluginSession` and hands it on: the session builds the plugin manager once, asks the plugins once what they
declare (:class:`Declared`: recipe sections, legacy keys, variant defaults, path keys, served names), loads recipes
against that, and makes the run's :class:`~visplay.context.RunContext` over the same manager.

What the installed entry-point plugins declare is also kept in an index file (``$VISPLAY_CACHE/plugin-index.json``,
else ``~/.cache/visplay/``), keyed by a fingerprint of the installed plugins (entry points, distribution versions,
and the size and modification time of every file of each plugin's package), so a recipe with a mistyped key or
an unknown name is refused before any plugin is imported; a fresh index is rebuilt from the plugins themselves
whenever the fingerprint changes. ``VISPLAY_PLUGIN_INDEX=0`` turns the index off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import weakref
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from importlib import metadata, util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visplay.config import RecipeError, all_keys, open_keys

if TYPE_CHECKING:  # pragma: no cover
    import pluggy
    from omegaconf import DictConfig

    from visplay.context import RunContext

log = logging.getLogger("visplay.session")

INDEX_FORMAT = 1
SERVING_HOOKS = {"backend": "visplay_load_policy", "image_source": "visplay_image_source",
                 "sampler": "visplay_make_sampler", "optimizer": "visplay_make_optimizer", "judge": "visplay_judge",
                 "protocol": "visplay_eval_protocol",
                 "reward_component": "visplay_reward_components"}
"""Kinds of served names (``visplay_names``) and the hook that serves each kind."""
CORE_NAMES = {"judge": ["rule"]}
"""Names the core serves itself (``eval.judge=rule``: visplay/eval/scoring.py)."""


@dataclass
class Declared:
    """What a plugin set declares for recipes; ``light`` when read from the index (no section classes)."""

    sections: dict[str, type] = field(default_factory=dict)
    keys: dict[str, list[str]] = field(default_factory=dict)
    """section -> every dotted key under ``plugins.<section>`` (the section's own key first)."""
    open_keys: list[str] = field(default_factory=list)
    """dotted keys of free-form mappings inside sections (anything below them is allowed)."""
    owners: dict[str, str] = field(default_factory=dict)
    legacy: dict[str, list[list[Any]]] = field(default_factory=dict)
    """old dotted key -> [[new dotted key, condition or None]]: a condition {dotted key: value} must hold in the
    recipe for that move (the games render at the old data.size only when data.source is games)."""
    variant_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    path_keys: list[str] = field(default_factory=list)
    names: dict[str, list[str]] = field(default_factory=dict)
    unchecked_kinds: list[str] = field(default_factory=list)
    unserved_kinds: list[str] = field(default_factory=list)
    """kinds no plugin serves at all (a test context of one plugin: fine to load, impossible to run)."""
    light: bool = False

    def to_index(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("sections")
        data.pop("light")
        return data

    @classmethod
    def from_index(cls, data: dict[str, Any]) -> Declared:
        return cls(**data, light=True)


def declare(pm: pluggy.PluginManager) -> Declared:
    """Ask every plugin of ``pm`` what it declares (``visplay_recipe_sections``, ``visplay_names``)."""
    from visplay.hooks import call_each

    out = Declared()
    for plugin, declared in call_each(pm, "visplay_recipe_sections", {}):
        for name, section in dict(declared).items():
            if not (isinstance(section, type) and is_dataclass(section)):
                raise RecipeError(f"plugin {plugin!r}: recipe section {name!r} must be a dataclass type")
            if name in out.sections:
                raise RecipeError(f"recipe section plugins.{name} is declared by two plugins: {out.owners[name]}, "
                                  f"{plugin}")
            out.sections[name], out.owners[name] = section, plugin
    out.sections = dict(sorted(out.sections.items()))
    for name, section in out.sections.items():
        _declare_section(out, name, section)
    _declare_names(out, pm, call_each)
    return out


def _declare_section(out: Declared, name: str, section: type) -> None:
    prefix = f"plugins.{name}"
    out.keys[name] = [prefix, *all_keys(section, f"{prefix}.")]
    out.open_keys += open_keys(section, f"{prefix}.")
    for old, target in dict(getattr(section, "legacy_keys", {}) or {}).items():
        key, condition = target if isinstance(target, tuple) else (target, None)
        out.legacy.setdefault(old, []).append([f"{prefix}.{key}" if key else prefix, condition])
    for variant, values in dict(getattr(section, "variant_defaults", {}) or {}).items():
        for key, value in values.items():
            out.variant_defaults.setdefault(variant, {})[f"{prefix}.{key}"] = value
    out.path_keys += [f"{prefix}.{key}" for key in getattr(section, "path_keys", ()) or ()]
    known = {f.name for f in fields(section)}
    for key in [*(getattr(section, "path_keys", ()) or ()), *(k for v in (getattr(section, "variant_defaults", {})
                                                                              or {}).values() for k in v)]:
        if key.split(".")[0] not in known:
            raise RecipeError(f"recipe section plugins.{name} ({section.__name__}) declares {key!r}, not a key of it")


def _declare_names(out: Declared, pm: pluggy.PluginManager, call_each: Any) -> None:
    names: dict[str, set[str]] = {kind: set(values) for kind, values in CORE_NAMES.items()}
    declaring: dict[str, set[str]] = {}
    for plugin, served in call_each(pm, "visplay_names", {}):
        for kind, values in dict(served).items():
            names.setdefault(str(kind), set()).update(str(v) for v in values)
            declaring.setdefault(str(kind), set()).add(plugin)
    for kind, hook in SERVING_HOOKS.items():
        # unchecked: nobody serves the kind here (a test's context of one plugin), or a server declares no names
        servers = {impl.plugin_name for impl in getattr(pm.hook, hook).get_hookimpls()}
        if not servers or servers - declaring.get(kind, set()):
            out.unchecked_kinds.append(kind)
        if not servers and kind not in CORE_NAMES:
            out.unserved_kinds.append(kind)
    out.names = {kind: sorted(values) for kind, values in sorted(names.items())}


# --- the index ---------------------------------------------------------------------------------------------------


def index_path() -> Path:
    root = os.environ.get("VISPLAY_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "visplay") / "plugin-index.json"


def fingerprint(only: Collection[str] | None) -> str | None:
    """A hash of the installed entry-point plugins and their files (None: not computable, use no index)."""
    from visplay.plugins import ENTRY_POINT_GROUP, allowed_plugins

    allowed = allowed_plugins(only)
    parts: list[Any] = [INDEX_FORMAT, sorted(allowed) if allowed is not None else None]
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if allowed is not None and ep.name not in allowed:
            continue
        dist = (ep.dist.name, ep.dist.version) if ep.dist is not None else (None, None)
        stamp = _package_stamp(ep.value.split(":")[0].split(".")[0])
        if stamp is None:
            return None
        parts.append([ep.name, ep.value, *dist, stamp])
    parts.append(_package_stamp("visplay"))  # the core's hookspecs decide what is asked
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _package_stamp(top: str) -> list[int] | None:
    try:
        spec = util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or []) or ([spec.origin] if spec.origin else [])
    total = latest = count = 0
    for root in roots:
        files = [Path(root)] if Path(root).is_file() else Path(root).rglob("*.py")
        for path in files:
            stat = path.stat()
            total, latest, count = total + stat.st_size, max(latest, stat.st_mtime_ns), count + 1
    return [count, total, latest]


def read_index(key: str) -> Declared | None:
    try:
        data = json.loads(index_path().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("fingerprint") != key:
        return None
    try:
        return Declared.from_index(data["declared"])
    except (KeyError, TypeError):
        return None


def write_index(key: str, declared: Declared) -> None:
    path = index_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"fingerprint": key, "declared": declared.to_index()}, sort_keys=True))
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home is no reason to fail; the next command imports the plugins again
        log.debug("plugin index not written to %s: %s", path, exc)


# --- the session -------------------------------------------------------------------------------------------------


class PluginSession:
    """The plugins of one command, built once: ``pm``, ``declared``, ``load_recipe`` and ``context``.

    :param extra: plugin objects registered after the entry-point plugins (tests, replay's log server).
    :param only: load just these entry-point names (replay: the set the run logged).
    :param autoload: load entry points at all (default: unless ``VISPLAY_DISABLE_PLUGIN_AUTOLOAD`` is set).
    """

    def __init__(self, *, extra: tuple[Any, ...] = (), only: Collection[str] | None = None,
                 autoload: bool | None = None):
        from visplay.plugins import autoload_enabled

        self.extra, self.only = tuple(extra), (set(only) if only is not None else None)
        self.autoload = autoload_enabled() if autoload is None else autoload
        self._pm: pluggy.PluginManager | None = None
        self._declared: Declared | None = None
        self._loaded: dict[int, weakref.ref] = {}  # recipes this session loaded (id -> weak reference)

    @property
    def pm(self) -> pluggy.PluginManager:
        if self._pm is None:
            from visplay.plugins import get_plugin_manager

            self._pm = get_plugin_manager(autoload=self.autoload, extra=self.extra, only=self.only)
        return self._pm

    @property
    def declared(self) -> Declared:
        if self._declared is None:
            self._declared = declare(self.pm)
            key = self._index_key()
            if key is not None:
                write_index(key, self._declared)
        return self._declared

    def _index_key(self) -> str | None:
        """The index applies to the entry-point plugins alone (no hand-registered ones), when not turned off."""
        if self.extra or not self.autoload or os.environ.get("VISPLAY_PLUGIN_INDEX", "1").strip() in ("0", ""):
            return None
        return fingerprint(self.only)

    def load_recipe(self, source: Any, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
        """A resolved, read-only recipe (visplay/loader.py). With a fresh index, a recipe that is wrong in a way
        the index can tell is refused before any plugin is imported."""
        from visplay import loader

        if self._declared is None and (key := self._index_key()) is not None:
            light = read_index(key)
            if light is not None:
                loader.load(source, overrides, light)
        cfg = loader.load(source, overrides, self.declared)
        self._loaded[id(cfg)] = weakref.ref(cfg)
        return cfg

    def recipe(self, recipe: Any) -> DictConfig:
        """``recipe`` as this session's plugins see it: a recipe this session loaded is returned as is; any other
        (a name, a path, a recipe loaded with other plugins) is loaded, or checked again in memory."""
        ref = self._loaded.get(id(recipe))
        if ref is not None and ref() is recipe:
            return recipe
        return self.load_recipe(recipe)

    def context(self, recipe: DictConfig, run_dir: str | Path, **kwargs: Any) -> RunContext:
        """A RunContext over ``recipe`` and this session's plugin manager (``log``, ``progress`` as keywords).
        ``run_dir`` has no default: the plugins' checks look at files there (a sink's folder), never in the
        current folder by accident (a dry run's fallback layouts once did)."""
        from visplay.context import RunContext

        return RunContext(recipe=self.recipe(recipe), pm=self.pm, run_dir=Path(run_dir), session=self, **kwargs)
