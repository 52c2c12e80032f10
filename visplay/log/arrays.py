"""Compact arrays for the run log: token ids and log-probs as little-endian binary BLOBs.

A paper iteration logs ~900k generations of hundreds of tokens; as JSON text that is ~20 bytes per log-prob and
several GB per iteration. Here each array is one BLOB: a one-byte type code followed by the values, little-endian,
with no padding (docs/runlog.md):

- ``b"i"`` + int32 values: token ids (any vocabulary below 2**31);
- ``b"f"`` + float32 values: log-probs, whenever every value is exactly a float32 (the samplers compute in float32,
  so this is the normal case: 4 + 4 = 8 bytes per token for ids and log-probs);
- ``b"d"`` + float64 values: the lossless fallback for log-probs that are not float32 values.

Decoding gives back the very floats that were written (float32 -> Python float is exact), so replay and diff
compare decoded values bit for bit. ``decode`` also accepts the JSON text of run logs written before this format,
so every reader handles both. Nothing here touches SQL; ``visplay.log.runlog`` registers :data:`SQL_FUNCTIONS`
on its connections and the datasette plugin (``visplay.log.datasette_plugin``) does the same for datasette.
"""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Sequence
from typing import Any

_LITTLE = sys.byteorder == "little"
_INT32 = (-(2**31), 2**31 - 1)


def _pack(code: str, values: Sequence[Any]) -> bytes:
    arr = array(code, values)
    if not _LITTLE:  # pragma: no cover - big-endian hosts still write little-endian logs
        arr.byteswap()
    return code.encode() + arr.tobytes()


def encode_ids(values: Sequence[int] | None) -> bytes | None:
    """Token ids -> ``b"i"`` + int32 LE. Raises ValueError naming the id when one does not fit int32."""
    if values is None:
        return None
    try:
        return _pack("i", values)
    except OverflowError as exc:
        bad = next(v for v in values if not _INT32[0] <= int(v) <= _INT32[1])
        raise ValueError(f"token id {bad} does not fit int32") from exc


def encode_floats(values: Sequence[float] | None) -> bytes | None:
    """Floats -> ``b"f"`` + float32 LE when that is lossless for every value, else ``b"d"`` + float64 LE."""
    if values is None:
        return None
    single = array("f", values)
    # lossless iff widening the float32s back gives the very same float64 bits (this also keeps -0.0 and NaNs)
    if array("d", single.tolist()).tobytes() == array("d", values).tobytes():
        if not _LITTLE:  # pragma: no cover
            single.byteswap()
        return b"f" + single.tobytes()
    return _pack("d", values)


def decode(value: bytes | str | None) -> list | None:
    """A logged array as a Python list: a binary BLOB (above), legacy JSON text, or None."""
    if value is None:
        return None
    if isinstance(value, str):
        return json.loads(value)
    value = bytes(value)
    if not value:
        raise ValueError("empty array blob (no type code)")
    code = chr(value[0])
    if code not in "ifd":
        raise ValueError(f"unknown array type code {code!r} (expected i, f or d)")
    arr = array(code)
    body = len(value) - 1
    if body % arr.itemsize:
        raise ValueError(f"array blob of type {code!r} holds {body} bytes after its type code, not a multiple of "
                         f"{arr.itemsize} (truncated or damaged)")
    arr.frombytes(value[1:])
    if not _LITTLE:  # pragma: no cover
        arr.byteswap()
    return arr.tolist()


def problem(value: bytes | str | None) -> str | None:
    """Why a logged array cannot be read (type code, length, JSON), or None when it can."""
    try:
        decode(value)
    except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        return str(exc)
    return None


def as_json(value: bytes | str | None) -> str | None:
    """A logged array as canonical JSON text (the form run logs used before the binary format)."""
    if value is None:
        return None
    return json.dumps(decode(value), separators=(",", ":"))


def length(value: bytes | str | None) -> int | None:
    """How many values a logged array holds (without building the list for blobs)."""
    if value is None:
        return None
    if isinstance(value, str):
        return len(json.loads(value))
    size = 8 if value[:1] == b"d" else 4
    if not value or value[:1] not in (b"i", b"f", b"d") or (len(value) - 1) % size:
        decode(value)  # raises, saying what is wrong
    return (len(value) - 1) // size


def element(value: bytes | str | None, index: int) -> float | int | None:
    """One value of a logged array (negative index from the end); None when out of range."""
    values = decode(value)
    if values is None or not -len(values) <= index < len(values):
        return None
    return values[index]


def array_sum(value: bytes | str | None) -> float | None:
    """The sum of a logged array (for log-probs: the sequence log-probability)."""
    values = decode(value)
    return None if values is None else float(sum(values))


# name -> (number of arguments, function): registered on run-log connections and by the datasette plugin.
SQL_FUNCTIONS = {
    "vp_json": (1, as_json),
    "vp_len": (1, length),
    "vp_at": (2, element),
    "vp_sum": (1, array_sum),
}
