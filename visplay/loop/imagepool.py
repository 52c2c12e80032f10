"""The image pool a run uses, as the run log records it, and what changed in it between a kill and a resume.

A run's pool is fingerprinted by content hash: the ``images`` table when the run started, and after a resume that
accepted a changed pool (``visplay resume --accept-changed-images``) the pool that ``image_pool_changed`` event
recorded. The event names every added and removed image and the step after which the new pool took over, so a
later resume compares with the pool in use, and a replay knows which steps ran on images that are gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from visplay.keys import rank

EVENT = "image_pool_changed"
ACCEPT_FLAG = "--accept-changed-images"
NAMED = 10  # images named in a message; the event's payload lists all of them


@dataclass(frozen=True)
class PoolChange:
    """Images (id, source) in the pool now but not in the logged one, and logged ones the pool no longer has."""

    added: tuple[tuple[str, str], ...]
    removed: tuple[tuple[str, str], ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)

    def describe(self) -> str:
        parts = []
        for words, images in (("not in the run log (new or modified)", self.added),
                              ("logged but no longer in the pool (removed or modified)", self.removed)):
            if images:
                names = ", ".join(source for _, source in images[:NAMED])
                more = f" and {len(images) - NAMED} more" if len(images) > NAMED else ""
                parts.append(f"{len(images)} image(s) {words}: {names}{more}")
        return "; ".join(parts)


def logged_pool(runlog: Any) -> dict[str, str]:
    """{image_id: source} of the pool the run uses now: the last accepted change's pool, else the ``images``
    table (every image the run ever used stays there, so after a change the table is more than the pool)."""
    sources = runlog.image_sources()
    changes = pool_events(runlog)
    if not changes or "pool" not in changes[-1]:
        return sources
    return {image_id: sources.get(image_id, image_id) for image_id in changes[-1]["pool"]}


def pool_change(logged: dict[str, str], pool: Any) -> PoolChange:
    """How ``pool`` (ImageRecords) differs from ``logged`` ({image_id: source}), in pool / log order."""
    current = {record.image_id: record.source for record in pool}
    return PoolChange(added=tuple((i, s) for i, s in current.items() if i not in logged),
                      removed=tuple((i, s) for i, s in logged.items() if i not in current))


def log_accepted_change(runlog: Any, change: PoolChange, pool: Any) -> None:
    """The ``image_pool_changed`` event of a resume that continues on a changed pool (inside its transaction)."""
    done = sorted(runlog.done_steps(), key=rank)
    after = list(done[-1]) if done else None
    where = f"after step {tuple(after)}" if after else "before the first step"
    runlog.event(EVENT, f"the image pool changed {where} and the user accepted it ({ACCEPT_FLAG}): "
                        f"{change.describe()}; the run continues on the new pool", source="engine",
                 payload={"accepted": ACCEPT_FLAG, "after": after,
                          "added": [{"image_id": i, "source": s} for i, s in change.added],
                          "removed": [{"image_id": i, "source": s} for i, s in change.removed],
                          "pool": [record.image_id for record in pool]})
    if not done:  # no step used the old pool: the log then reads as if the run had started on the new one
        runlog.db.conn.executemany("DELETE FROM images WHERE image_id = ?", [(i,) for i, _ in change.removed])


def pool_events(runlog: Any) -> list[dict[str, Any]]:
    """The payloads of the run's ``image_pool_changed`` events, oldest first ({} for an event without one)."""
    rows = runlog.rows("events", "kind = ?", [EVENT])
    return [json.loads(row["payload"]) if row.get("payload") else {} for row in sorted(rows, key=lambda r: r["id"])]
