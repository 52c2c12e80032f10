"""Loading a recipe: schema -> YAML -> ``key=value`` overrides -> legacy keys -> variant defaults -> validation.

The order is EasyR1's (structured schema, YAML, command-line dotlist, object, validation). What the plugins declare
(their sections, legacy keys, variant defaults, path keys and the names they serve) arrives as one
:class:`visplay.session.Declared`, so this module never builds a plugin manager itself. ``Declared`` comes either
from the imported plugins (``full``: sections are dataclasses, so values are type-checked and each section's
``validate()`` runs) or from the session's cached index (``light``: key names only), which refuses a mistyped key
or a value the core can judge without importing any plugin; a recipe that passes the light check is then loaded in
full.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import field, make_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    GrammarParseError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from visplay.config import (
    CORE_PATH_KEYS,
    VARIANTS,
    RecipeConfig,
    RecipeError,
    all_keys,
    closest_key,
    find_recipe,
    open_keys,
    plugin_section,
)

if TYPE_CHECKING:  # pragma: no cover
    from visplay.session import Declared

log = logging.getLogger("visplay.config")

MAX_KEY_PARTS = 16
"""Deepest dotted key a recipe may name (the schema's deepest is 5 parts)."""
MAX_VALUE_DEPTH = 32
"""Deepest nesting of brackets/braces in one value (YAML's parser recurses per level)."""

NAME_KEYS = {"model.backend": "backend", "data.source": "image_source", "sampler.questioner": "sampler",
             "sampler.reasoner": "sampler", "optimizer.name": "optimizer", "eval.judge": "judge",
             "eval.protocol": "protocol"}
"""Core keys whose value names something a plugin serves, and the kind of name (``visplay_names``)."""


# --- reading sources -----------------------------------------------------------------------------------------


def read_source(source: Any) -> tuple[str, DictConfig]:
    """(where, data) of a recipe name, YAML path, mapping or loaded recipe (re-checked in memory, never through a
    temporary file)."""
    if isinstance(source, DictConfig):
        return "recipe", OmegaConf.create(OmegaConf.to_container(source, resolve=False))
    if isinstance(source, dict):
        return "recipe", OmegaConf.create(source)
    path = find_recipe(str(source))
    try:
        text = path.read_text()
        data = OmegaConf.create(text) if text.strip() else OmegaConf.create({})
    except RecursionError as exc:
        raise RecipeError(f"{path}: cannot parse recipe: nested deeper than the parser allows") from exc
    except Exception as exc:  # yaml's errors do not share a base class with OmegaConf's
        raise RecipeError(f"{path}: cannot parse recipe: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, DictConfig):
        raise RecipeError(f"{path}: a recipe is a mapping of keys, got a {type(data).__name__}")
    return str(path), data


def parse_overrides(items: list[str] | tuple[str, ...]) -> list[tuple[str, str, Any]]:
    """[(item, key, value)] for ``key=value`` overrides, each checked for shape, its value parsed as OmegaConf's
    dotlist parses it (YAML); plain values, so thousands of overrides cost milliseconds, not a DictConfig each."""
    import yaml

    try:
        from omegaconf._utils import get_yaml_loader
    except ImportError:  # pragma: no cover - older omegaconf
        from omegaconf._yaml import get_yaml_loader  # type: ignore[no-redef]

    out = []
    for item in items:
        if "=" not in item:
            raise RecipeError(f"command line: override {_short(item)!r} is not key=value")
        key, _, text = item.partition("=")
        parts = key.split(".")
        if len(parts) > MAX_KEY_PARTS or not all(parts):
            raise RecipeError(f"command line: override key {_short(key)!r} is not a recipe key ({len(parts)} "
                              f"parts; recipe keys have at most {MAX_KEY_PARTS}, none empty)")
        if _nesting(text) > MAX_VALUE_DEPTH:
            raise RecipeError(f"command line: override {_short(key)!r}: value nested {_nesting(text)} levels deep "
                              f"(at most {MAX_VALUE_DEPTH})")
        try:
            out.append((item, key, yaml.load(text, Loader=get_yaml_loader())))
        except (yaml.YAMLError, ValueError, RecursionError) as exc:
            raise RecipeError(f"command line: cannot parse override {_short(item)!r}: {_describe(exc)}") from exc
    return out


def overrides_tree(dots: list[tuple[str, str, Any]]) -> dict[str, Any]:
    """The overrides as one nested mapping, applied in order (a later one wins; mappings merge)."""
    tree: dict[str, Any] = {}
    for _, key, value in dots:
        *head, leaf = key.split(".")
        node = tree
        for part in head:
            child = node.get(part)
            if not isinstance(child, dict):  # a scalar set by an earlier override is replaced, as OmegaConf does
                child = node[part] = {}
            node = child
        node[leaf] = _merged(node.get(leaf), value)
    return tree


def _merged(old: Any, new: Any) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **{k: _merged(old.get(k), v) for k, v in new.items()}}
    return new


def _nesting(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


# --- legacy keys -------------------------------------------------------------------------------------------------


def upgrade_legacy_keys(data: DictConfig, where: str, legacy: dict[str, list[list[Any]]],
                        view: dict[str, Any] | None = None) -> DictConfig:
    """Move keys that became plugin settings to their new place (each claimant whose condition holds in ``view``,
    the whole recipe as given, gets the value), with one warning per source; an old key given together with its
    new name is an error naming both."""
    container = OmegaConf.to_container(data, resolve=False)
    view = container if view is None else view
    moved: list[tuple[str, str]] = []
    for old, claims in legacy.items():
        head, _, leaf = old.rpartition(".")
        parent = _dig(container, head.split(".")) if head else container
        if not isinstance(parent, dict) or leaf not in parent:
            continue
        targets = [new for new, condition in claims if _holds(condition, view)]
        if not targets:
            continue
        value = parent.pop(leaf)
        for new in targets:
            _place(container, old, new, value, where)
            moved.append((old, new))
        if head and not parent:  # an emptied old section (e.g. ``reward:``) goes too
            grand = _dig(container, head.split(".")[:-1]) if "." in head else container
            grand.pop(head.rsplit(".", 1)[-1], None)
    if not moved:
        return data
    listed = ", ".join(f"{old} -> {new}" for old, new in moved[:6]) + (f" and {len(moved) - 6} more"
                                                                      if len(moved) > 6 else "")
    log.warning("%s: %d key(s) moved into the plugin sections that read them: %s", where, len(moved), listed)
    return OmegaConf.create(container)


def _holds(condition: dict[str, Any] | None, view: dict[str, Any]) -> bool:
    return not condition or all(_dig(view, key.split(".")) == value for key, value in condition.items())


def _place(container: dict[str, Any], old: str, new: str, value: Any, where: str) -> None:
    target_parent = _dig(container, new.split(".")[:-1], create=True)
    name = new.rsplit(".", 1)[1]
    existing = target_parent.get(name)
    if isinstance(existing, dict) and isinstance(value, dict):
        clash = sorted(set(existing) & set(value))
        if clash:
            raise RecipeError(f"{where}: key {old!r} (its old name) and {new!r} are both given for "
                              f"{', '.join(clash)}; keep only {new!r}")
        target_parent[name] = {**value, **existing}
    elif existing is not None:
        raise RecipeError(f"{where}: key {old!r} is the old name of {new!r}, and both are given; keep only {new!r}")
    else:
        target_parent[name] = value


def _dig(tree: Any, path: list[str], create: bool = False) -> Any:
    for part in path:
        if not isinstance(tree, dict):
            return None
        if part not in tree and create:
            tree[part] = {}
        tree = tree.get(part)
    return tree


# --- schema and merging ------------------------------------------------------------------------------------------


def recipe_schema(sections: dict[str, type], absent: set[str]) -> type:
    """The core schema with a typed ``plugins`` section per declared plugin section and an unchecked mapping for
    each section a recipe sets for a plugin that is not installed (``absent``)."""
    typed = [(name, section, field(default_factory=section)) for name, section in sections.items()]
    untyped = [(name, dict[str, Any], field(default_factory=dict)) for name in sorted(absent)]
    plugins_cls = make_dataclass("PluginsConfig", typed + untyped)
    return make_dataclass("Recipe", [("plugins", plugins_cls, field(default_factory=plugins_cls))],
                          bases=(RecipeConfig,))


def absent_sections(sources: list[tuple[str, DictConfig]], declared: Declared) -> set[str]:
    """Plugin sections a recipe sets for plugins that are not installed: kept unchecked, with a warning; a name
    close to an installed plugin's section is a typo and an error."""
    absent: set[str] = set()
    for where, data in sources:
        given = data.get("plugins") if isinstance(data, DictConfig) else None
        for name in (given.keys() if isinstance(given, DictConfig) else []):
            if name in declared.keys or name in absent:
                continue
            hint = closest_key(str(name), list(declared.keys))
            if hint:
                raise RecipeError(f"{where}: unknown key 'plugins.{name}'; did you mean 'plugins.{hint}'?")
            log.warning("%s: no installed plugin declares plugins.%s; its settings are kept unchecked", where, name)
            absent.add(str(name))
    return absent


def merge(base: DictConfig, new: DictConfig, where: str, keys: list[str], key: str | None = None) -> DictConfig:
    """``key``: the dotted key being set (an override's), named when OmegaConf's error does not say."""
    try:
        return OmegaConf.merge(base, new)
    except (ConfigKeyError, ConfigAttributeError) as exc:
        raise unknown_key(where, _full_key(exc), keys) from exc
    except (ValidationError, GrammarParseError, MissingMandatoryValue) as exc:
        named = _full_key(exc)
        raise RecipeError(f"{where}: key {named if named != '?' else key or '?'!r}: {_describe(exc)}") from exc
    except OmegaConfBaseException as exc:
        raise RecipeError(f"{where}: {_describe(exc)}") from exc
    except TypeError as exc:  # OmegaConf: a list merged onto a mapping section (e.g. plugins=[1,2])
        named = key or ", ".join(sorted(k for k in new.keys() if OmegaConf.is_list(new[k])
                                        and OmegaConf.is_dict(base.get(k))))
        raise RecipeError(f"{where}: key {named or '?'!r}: a list where a mapping of keys is expected") from exc


def unknown_key(where: str, key: str, known: list[str]) -> RecipeError:
    hint = closest_key(key, [k for k in known if k.count(".") == key.count(".")])
    parent = key.rpartition(".")[0]
    siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == parent and parent]
    tail = (f"; did you mean {hint!r}?" if hint else f" ({parent} has: {', '.join(siblings)})" if siblings else "")
    return RecipeError(f"{where}: unknown key {key!r}{tail}")


def merge_overrides(cfg: DictConfig, tree: DictConfig, dots: list[tuple[str, str, Any]], keys: list[str],
                    legacy: dict[str, list[list[Any]]], view: dict[str, Any]) -> DictConfig:
    """All overrides (``tree``, legacy keys already moved) in one merge, so thousands of overrides stay fast; when
    that merge fails, each override alone names the culprit."""
    if not dots:
        return cfg
    try:
        return OmegaConf.merge(cfg, tree)
    except (OmegaConfBaseException, TypeError):
        for item, key, value in dots:
            where = f"command-line override {_short(item)!r}"
            one = upgrade_legacy_keys(OmegaConf.create(overrides_tree([(item, key, value)])), where, legacy, view)
            cfg = merge(cfg, one, where=where, keys=keys, key=key)
        return cfg


def mark_required(cfg: DictConfig, data: DictConfig, prefix: str = "") -> None:
    """Keep ``???`` from the recipe YAML: OmegaConf's merge ignores a MISSING value over a schema default, but a
    recipe writes ``model.path: ???`` to make a key required (an override then fills it)."""
    for key, value in data.items_ex(resolve=False):  # never resolves ${...}: that happens once, later
        dotted = f"{prefix}{key}"
        if OmegaConf.is_missing(data, key):
            OmegaConf.update(cfg, dotted, MISSING, merge=False)
        elif isinstance(value, DictConfig):
            mark_required(cfg, value, dotted + ".")


def _full_key(exc: BaseException) -> str:
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    return str(key)


def _describe(exc: BaseException) -> str:
    return str(exc).split("\n")[0]


# --- the pipeline ------------------------------------------------------------------------------------------------


def load(source: Any, overrides: list[str] | tuple[str, ...], declared: Declared) -> DictConfig:
    """A resolved, read-only recipe, or a RecipeError naming the file/override and the key (module docstring)."""
    where, data = read_source(source)
    dots = parse_overrides(overrides)
    raw_tree = overrides_tree(dots)
    view = _merged(OmegaConf.to_container(data, resolve=False), raw_tree)  # the recipe as given, for conditions
    data = upgrade_legacy_keys(data, where, declared.legacy, view)
    tree = upgrade_legacy_keys(OmegaConf.create(raw_tree), "command line", declared.legacy, view)
    absent = absent_sections([(where, data), ("command line", tree)], declared)
    if declared.light:
        return light_check(where, data, dots, tree, declared, absent, view)
    schema = recipe_schema(declared.sections, absent)
    keys = all_keys(schema, sections=declared.sections)
    cfg = merge(OmegaConf.structured(schema), data, where=where, keys=keys)
    mark_required(cfg, data)
    cfg = merge_overrides(cfg, tree, dots, keys, declared.legacy, view)
    finish(cfg, where, declared)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def finish(cfg: DictConfig, where: str, declared: Declared) -> None:
    """Variant defaults, required keys, interpolation, paths and the core's value rules (in that order)."""
    try:
        apply_variant_defaults(cfg, where, declared)
        missing = sorted(OmegaConf.missing_keys(cfg))
    except OmegaConfBaseException as exc:  # e.g. ${nonexistent.key} met while reading a key
        raise RecipeError(f"{where}: key {_full_key(exc)!r}: {_describe(exc)}") from exc
    if missing:
        setup = f"\n{cfg.setup.strip()}" if cfg.get("setup") else ""
        raise RecipeError(f"{where}: required key(s) missing: {', '.join(missing)} (set them in the recipe or as "
                          f"key=value on the command line){setup}")
    try:
        OmegaConf.resolve(cfg)
    except (OmegaConfBaseException, ValueError) as exc:
        raise RecipeError(f"{where}: key {_full_key(exc)!r}: {_describe(exc)}") from exc
    expand_paths(cfg, where, [*CORE_PATH_KEYS, *declared.path_keys])
    report(where, {**core_problems(cfg), **name_problems(cfg, declared), **section_problems(cfg, declared)})


def light_check(where: str, data: DictConfig, dots: list[tuple[str, str, Any]], tree: DictConfig,
                declared: Declared, absent: set[str], view: dict[str, Any]) -> DictConfig:
    """The checks that need no plugin imported: plugin keys by name (from the index), then the core's keys and
    values and the served names, exactly as the full load reports them. Plugin values are left to the full load
    that follows (their sections are stripped here). Returns the merged core recipe."""
    keys = [*all_keys(RecipeConfig), *(k for name in declared.keys for k in declared.keys[name])]
    opened = [*(k for k in open_keys(RecipeConfig) if k != "plugins"), *declared.open_keys,
              *(f"plugins.{name}" for name in absent)]
    for label, source in [(where, data), ("command line", tree)]:
        for key in _leaf_keys(OmegaConf.to_container(source, resolve=False)):
            if key.startswith("plugins.") and key.split(".")[1] in declared.keys and not _known(key, keys, opened):
                item = next((i for i, k, _ in dots if k == key or key.startswith(f"{k}.")), None)
                raise unknown_key(f"command-line override {_short(item)!r}" if item else label, key, keys)
    core_dots = [d for d in dots if not d[1].startswith("plugins")]
    cfg = merge(OmegaConf.structured(RecipeConfig), _without_plugins(data), where=where, keys=keys)
    mark_required(cfg, _without_plugins(data))
    cfg = merge_overrides(cfg, _without_plugins(tree), core_dots, keys, declared.legacy, view)
    try:
        OmegaConf.resolve(cfg)
    except (OmegaConfBaseException, ValueError):
        return cfg  # left to the full load, which reports it with the variant defaults applied
    if cfg.get("variant") not in VARIANTS:
        raise RecipeError(f"{where}: key 'variant': must be one of {', '.join(VARIANTS)}, got {cfg.get('variant')!r}")
    if not OmegaConf.missing_keys(cfg):
        report(where, {**core_problems(cfg), **name_problems(cfg, declared)})
    return cfg


def _without_plugins(data: DictConfig) -> DictConfig:
    container = OmegaConf.to_container(data, resolve=False)
    container.pop("plugins", None)
    return OmegaConf.create(container)


def _leaf_keys(tree: Any, prefix: str = "") -> list[str]:
    if not isinstance(tree, dict) or not tree:
        return [prefix[:-1]] if prefix else []
    return [k for key, value in tree.items() for k in _leaf_keys(value, f"{prefix}{key}.")]


def _known(key: str, keys: list[str], opened: list[str]) -> bool:
    return key in keys or any(key.startswith(f"{o}.") or key == o for o in opened)


def apply_variant_defaults(cfg: DictConfig, where: str, declared: Declared) -> None:
    variant = cfg.get("variant")
    if variant not in VARIANTS:
        raise RecipeError(f"{where}: key 'variant': must be one of {', '.join(VARIANTS)}, got {variant!r}")
    for key, value in declared.variant_defaults.get(variant, {}).items():
        if OmegaConf.select(cfg, key, default=0) is None:
            OmegaConf.update(cfg, key, value, merge=False)


def expand_paths(cfg: DictConfig, where: str, keys: list[str]) -> None:
    """``~`` is expanded here, once, so every consumer sees the same path; ``$VAR`` is refused (a literal ``$HOME``
    would become a folder of that name)."""
    for key in keys:
        value = OmegaConf.select(cfg, key, default=None)
        if not isinstance(value, str):
            continue
        if "$" in value:
            raise RecipeError(f"{where}: key {key!r}: {value!r} holds a '$': environment variables are not expanded "
                              f"in paths; write the path itself (or use OmegaConf's ${{oc.env:HOME}})")
        if value.startswith("~"):
            OmegaConf.update(cfg, key, str(Path(value).expanduser()), merge=False)


def report(where: str, problems: dict[str, str]) -> None:
    """Every problem at once, one line each naming the file and the key (exit 2)."""
    if problems:
        raise RecipeError("\n".join(f"{where}: key {key!r}: {why}" for key, why in problems.items()))


def core_problems(cfg: DictConfig) -> dict[str, str]:
    """Every rule of visplay/recipe_rules.py, in schema order."""
    from visplay.recipe_rules import recipe_problems

    return recipe_problems(cfg)


def name_problems(cfg: DictConfig, declared: Declared) -> dict[str, str]:
    """A name no installed plugin serves (``model.backend=tinyy``, ``sampler.reasoner=vlm``), naming the names that
    are served and the closest. A kind is checked only when every plugin serving it declares its names
    (``visplay_names``), so an undeclared third-party provider is never refused."""
    problems = {}
    for key, kind in NAME_KEYS.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None or kind in declared.unchecked_kinds:
            continue
        served = sorted(declared.names.get(kind, ()))
        if str(value) not in served:
            hint = closest_key(str(value), served)
            problems[key] = (f"no installed plugin serves {kind.replace('_', ' ')} {value!r} (served: "
                             f"{', '.join(served) or 'none'})" + (f"; did you mean {hint!r}?" if hint else "")
                             + " (see `visplay plugins`)")
    return problems


RUN_KEYS = ("model.backend", "data.source", "sampler.questioner", "sampler.reasoner", "optimizer.name")
"""The name keys a run cannot start without a plugin serving."""


def require_served(cfg: DictConfig, declared: Declared, where: str) -> None:
    """Before a run creates anything: every name it needs has a plugin that can serve its kind at all (a recipe
    may load without one, e.g. in a test of one plugin; it cannot run without one)."""
    report(where, {key: f"no installed plugin serves any {NAME_KEYS[key].replace('_', ' ')} (asked for "
                        f"{OmegaConf.select(cfg, key)!r}); is the plugin installed and enabled? (`visplay plugins`)"
                   for key in RUN_KEYS if NAME_KEYS[key] in declared.unserved_kinds})


def section_problems(cfg: DictConfig, declared: Declared) -> dict[str, str]:
    """Each plugin section's own ``validate()``, as {dotted key: problem}. A ``validate`` that takes an argument
    gets the names the installed plugins serve ({kind: names}, checked kinds only)."""
    served = {kind: names for kind, names in declared.names.items() if kind not in declared.unchecked_kinds}
    problems = {}
    for name in declared.sections:
        section = plugin_section(cfg, name)
        check = getattr(section, "validate", None)
        if callable(check):
            found = check(served) if inspect.signature(check).parameters else check()
            problems |= {f"plugins.{name}.{key}": why for key, why in found.items()}
    return problems


def explain_docs(sections: dict[str, type]) -> dict[str, str]:
    """{dotted key: documentation} of the core schema and every plugin section, for ``recipe --explain``."""
    import sys

    from visplay.config import field_docs

    docs = field_docs()
    for name, section in sections.items():
        doc = inspect.getdoc(section) or ""
        if doc.startswith(f"{section.__name__}("):  # dataclass's generated signature: the module says more
            doc = inspect.getdoc(sys.modules.get(section.__module__)) or doc
        docs[f"plugins.{name}"] = " ".join(doc.split())
        docs.update(field_docs(section, f"plugins.{name}."))
    return docs
