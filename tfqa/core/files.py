"""Files: the one atomic writer, and UTF-8/.gz reads.

Every file tfqa writes goes through `atomic_path`: the content is written to a
uniquely named temporary file beside the target and renamed over it, so a
reader (or TF Serving, or a second worker sharing the folder) sees the old file
or the complete new one, never a partial write, and two writers never share a
temporary name. Folders that appear whole (an export version) are built in a
`scratch_dir` and renamed by their owner.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def open_text(path: str | os.PathLike):
    """Opens a UTF-8 text file for reading, transparently gunzipping `.gz` files."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, "r", encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _file_mode() -> int:
    """The mode a plain `open(path, "w")` would give (0644 under umask 022); mkstemp's is 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path` to write; renamed to `path` when the block succeeds.

    On an error (or an interrupt) the temporary file is removed and `path`
    keeps its old content. The file gets the usual mode for the umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def scratch_dir(parent: str | os.PathLike, prefix: str) -> Iterator[Path]:
    """A new uniquely named folder in `parent`, removed with whatever is left in it when the block ends."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Writes `data` to `path` atomically (see `atomic_path`), synced to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Writes `text` (UTF-8) to `path` atomically (see `atomic_path`)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Writes `obj` as JSON to `path` atomically (see `atomic_path`)."""
    return write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")
