"""visplay images plugin: the ``folder``, ``parquet`` and ``procedural`` image sources.

Pools stream their pixels (visplay_images.stream): records hold ids and sources, ``data.image_cache`` decoded
images stay in memory. Answers ``visplay_image_source`` for those three names and returns None for any other (the games plugin owns
``games``). Skipped files are logged as ``image_skipped`` events (one per file, with the reason) and a single
``images_opened`` event with the counts.
"""

from __future__ import annotations

import logging
from typing import Any

from visplay.hookspecs import hookimpl
from visplay_images.decode import DecodeLimits
from visplay_images.sources import ImagePool, open_folder, open_parquet, open_procedural
from visplay_images.stream import DEFAULT_CACHE_SIZE

log = logging.getLogger("visplay.images")

SOURCES = ("folder", "parquet", "procedural")


@hookimpl
def visplay_image_source(ctx: Any, name: str, options: dict[str, Any]) -> ImagePool | None:
    if name not in SOURCES:
        return None
    limits = DecodeLimits.from_options(options)
    max_images = options.get("max_images")
    cache_size = int(options.get("image_cache") or DEFAULT_CACHE_SIZE)
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
