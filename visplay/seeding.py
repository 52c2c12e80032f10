"""Seed derivation: one root seed, a separate generator per draw.

Every random draw in a run uses a seed derived from (root seed, path), where the path names the draw, e.g.
``(iteration, "questioner", step, "images")``. Strings in the path are hashed with sha256 (never Python's
``hash``, which changes between processes), and numpy's SeedSequence mixes the path into the seed.
"""

from __future__ import annotations

import hashlib

import numpy as np

PathPart = int | str


def _encode(part: PathPart) -> int:
    if isinstance(part, bool) or not isinstance(part, (int, str)):
        raise TypeError(f"seed path parts are ints or strings, got {part!r}")
    if isinstance(part, int):
        if part < 0:
            raise ValueError(f"seed path ints must be >= 0, got {part}")
        return part
    return int.from_bytes(hashlib.sha256(part.encode()).digest()[:8], "little")


def derive_seed(root: int, *path: PathPart) -> int:
    """A 63-bit seed for the draw named by ``path`` under ``root``."""
    seq = np.random.SeedSequence(entropy=int(root), spawn_key=tuple(_encode(p) for p in path))
    low, high = (int(w) for w in seq.generate_state(2, dtype=np.uint32))
    return (low | (high << 32)) >> 1


def rng(root: int, *path: PathPart) -> np.random.Generator:
    """A numpy Generator for the draw named by ``path``."""
    return np.random.default_rng(derive_seed(root, *path))
