"""visplay images plugin: the ``folder``, ``parquet`` and ``procedural`` image sources.

Decoding settings: the plugin's own section ``plugins.images`` (visplay_images/options.py). Pools stream their pixels
(visplay_images.stream): records hold ids and sources, ``plugins.images.image_cache`` decoded images stay in memory. Answers ``visplay_image_source`` for those three names and returns None for any other (the games plugin owns
``games``). Skipped files are logged as ``image_skipped`` events (one per file, with the reason) and a single
``images_opened`` event with the counts.
"""

from __future__ import annotations

import logging
from typing import Any

from visplay.api import hookimpl, plugin_section
from visplay_images.decode import DecodeLimits
from visplay_images.options import ImagesOptions
from visplay_images.sources import ImagePool, open_folder, open_parquet, open_procedural
from visplay_images.stream import DEFAULT_CACHE_SIZE

log = logging.getLogger("visplay.images")

SOURCES = ("folder", "parquet", "procedural")


@hookimpl
def visplay_recipe_sections() -> dict[str, type]:
    return {"images": ImagesOptions}


@hookimpl
def visplay_names() -> dict[str, list[str]]:
    return {"image_source": list(SOURCES)}


@hookimpl
def visplay_image_source(ctx: Any, name: str, options: dict[str, Any]) -> ImagePool | None:
    if name not in SOURCES:
        return None
    section: ImagesOptions = plugin_section(ctx.recipe, "images")
    limits = DecodeLimits.from_options(section)
    max_images = section.max_images
    cache_size = int(section.image_cache or DEFAULT_CACHE_SIZE)
    skipped: list[tuple[str, str]] = []

    def on_skip(source: str, reason: str) -> None:
        skipped.append((source, reason))
        log.warning("skipping image %s: %s", source, reason)
        if ctx.log is not None:
            ctx.log.event("image_skipped", f"{source}: {reason}", source="images",
                          payload={"path": source, "reason": reason})

    if name == "procedural":
        pool = open_procedural(int(options.get("num_images") or 0), limits,
                               lambda i: ctx.seed_for("data", "procedural", i), cache_size)
    else:
        path = options.get("images")
        if not path:
            raise ValueError(f"data.source={name!r} needs data.images (a {'folder' if name == 'folder' else 'parquet file'})")
        opener = open_folder if name == "folder" else open_parquet
        pool = opener(str(path), limits, on_skip, max_images, cache_size)
    if ctx.log is not None:
        ctx.log.event("images_opened", f"{name}: {len(pool)} images from {pool.origin}, {pool.skipped} skipped, "
                      f"{pool.duplicates} duplicates", level="info", source="images",
                      payload={"source": name, "origin": pool.origin, "usable": len(pool),
                               "skipped": pool.skipped, "duplicates": pool.duplicates})
    return pool


@hookimpl
def visplay_check_inputs(ctx: Any, skip: frozenset[str]) -> list[str] | None:
    """``data.images`` exists for the folder and parquet sources (its files are checked when the pool opens)."""
    from pathlib import Path

    from visplay.api import RecipeError

    data = ctx.recipe.data
    if data.source not in ("folder", "parquet") or "data.images" in skip:
        return None
    hint = f"\n{ctx.recipe.setup.strip()}" if ctx.recipe.get("setup") else ""
    if not data.images:
        raise RecipeError(f"data.images is required for data.source={data.source}{hint}")
    target = Path(str(data.images)).expanduser()
    if not target.exists():
        raise RecipeError(f"data.images={target} does not exist{hint}")
    return [f"data.images {target}"]
