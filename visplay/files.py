"""Content hashes of files (what the run log records for every checkpoint and optimizer state file), and writes
in a run folder that never follow a link."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from visplay.log.errors import RunLogError


def sha256_file(path: str | Path) -> str:
    """The sha256 of one file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(directory: str | Path) -> dict[str, str]:
    """{path relative to ``directory``: sha256} for every file under it, sorted by path."""
    root = Path(directory)
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


class UnsafeFileError(RunLogError):
    """A path visplay writes in a run folder is a link, a folder or another kind of non-file; nothing was written
    (a RunLogError: the CLI reports it as one, exit 1)."""


def check_writable_file(path: str | Path) -> Path:
    """``path`` if it is absent or a regular file (not followed if a link); raise UnsafeFileError naming it else."""
    path = Path(path)
    if path.is_symlink():
        raise UnsafeFileError(f"{path} is a symbolic link (to {os.readlink(path)}); visplay never writes through a "
                              f"link in a run folder: remove it and try again")
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise UnsafeFileError(f"{path} is {kind}; visplay writes a file there: remove it and try again")
    return path


def check_run_subfolder(path: str | Path) -> Path:
    """``path``, a folder visplay writes in a run folder (``report/``, ``export/``), if it is absent or a real
    folder; a link planted there (to a folder outside the run) is refused naming it, never written into."""
    path = Path(path)
    if path.is_symlink():
        raise UnsafeFileError(f"{path} is a symbolic link (to {os.readlink(path)}); visplay never writes through a "
                              f"link in a run folder: remove it and try again, or pass --out")
    if path.exists() and not path.is_dir():
        raise UnsafeFileError(f"{path} is not a folder; visplay writes a folder there: remove it and try again")
    return path


def write_file(path: str | Path, data: str | bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` without following links: into a new file beside it, then renamed over it (a
    link planted at ``path`` is replaced, never written through; a killed write leaves the old file or none)."""
    path = check_writable_file(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
