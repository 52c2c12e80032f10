"""Memory of an image pool with N generated images in a folder: streamed (today) vs decoded up front (before).

    python reproduce/image_rss.py --images 20000 --folder /tmp/visplay-rss-images

Writes N JPEG files (procedural shapes, 256 px, quality 90) into the folder once, then runs each mode in a fresh
subprocess and reads its resident set size (VmRSS, /proc/self/status) after the imports, after opening the pool
(``data.source: folder``, ``resize: fixed``, 224 px) and after every image's pixels were used once:

- ``stream``: the pool as the images plugin builds it (ids, sources, sizes; an LRU of ``--cache`` decoded images);
- ``eager``: the same records, plus every decoded image held in a list, as pools did before issue 14.

Linux only (reads /proc). Prints one table; the machine it ran on may be shared, so RSS includes the allocator's
slack: compare the growth columns, not the absolute sizes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_folder(folder: Path, n: int) -> None:
    from visplay_images.sources import draw_shapes

    folder.mkdir(parents=True, exist_ok=True)
    have = len(list(folder.glob("*.jpg")))
    for i in range(have, n):
        draw_shapes(seed=i, side=256)[0].save(folder / f"{i:06d}.jpg", quality=90)


def measure(folder: Path, mode: str, cache: int) -> dict[str, float]:
    from visplay_images.decode import DecodeLimits
    from visplay_images.sources import open_folder

    start = rss_mb()
    started = time.perf_counter()
    pool = open_folder(str(folder), DecodeLimits(resize="fixed", size=224), lambda s, r: None, cache_size=cache)
    opened, open_seconds = rss_mb(), time.perf_counter() - started
    held = []
    for record in pool:  # every image used once, as epochs over the pool do
        image = record.image
        if mode == "eager":
            held.append(image)
    return {"images": len(pool), "rss_start_mb": start, "rss_open_mb": opened, "rss_used_mb": rss_mb(),
            "open_seconds": open_seconds, "cached": len(pool.cache) if mode == "stream" else len(held)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/visplay-rss-images"))
    parser.add_argument("--cache", type=int, default=256)
    parser.add_argument("--mode", choices=["stream", "eager"], help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.folder, args.mode, args.cache)))
        return 0
    make_folder(args.folder, args.images)
    print(f"{args.images} images in {args.folder}; cache {args.cache} decoded images")
    print(f"{'mode':<8}{'images':>8}{'open s':>8}{'RSS start':>11}{'after open':>12}{'after use':>11}"
          f"{'growth MB':>11}{'per image kB':>14}")
    for mode in ("stream", "eager"):
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--folder", str(args.folder),
                              "--cache", str(args.cache)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        growth = r["rss_used_mb"] - r["rss_start_mb"]
        print(f"{mode:<8}{r['images']:>8}{r['open_seconds']:>8.0f}{r['rss_start_mb']:>11.0f}{r['rss_open_mb']:>12.0f}"
              f"{r['rss_used_mb']:>11.0f}{growth:>11.0f}{growth * 1024 / r['images']:>14.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
