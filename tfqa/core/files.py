"""Files: the one atomic writer, and UTF-8/.gz reads (bounded: `read_text`).

Every file tfqa writes goes through `atomic_path`: the content is written to a
uniquely named temporary file beside the target and renamed over it, so a
reader (or TF Serving, or a second worker sharing the folder) sees the old file
or the complete new one, never a partial write, and two writers never share a
temporary name. Folders that appear whole (an export version) are built in a
`scratch_dir` and renamed by their owner.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gzip
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

from tfqa.core.errors import TfqaError


class OutputPathError(TfqaError):
    """An output path that cannot be written: a file where a folder is meant, no such folder, no permission."""


# The most a data file tfqa reads may hold (after gunzipping): SQuAD v2.0 train is 42 MB; a read without a bound
# took `check /dev/zero` (or a gzip bomb) until memory ran out (issue 20 #11).
MAX_INPUT_BYTES = 1024**3


class InputFileError(TfqaError):
    """A file that cannot be read as data: a device, or more than the bound; the message names the path."""


def open_text(path: str | os.PathLike):
    """Opens a UTF-8 text file for reading, transparently gunzipping `.gz` files."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, "r", encoding="utf-8")


def read_text(path: str | os.PathLike, max_bytes: int = MAX_INPUT_BYTES) -> str:
    """The UTF-8 text of a file (`.gz` gunzipped), at most `max_bytes` of it, else InputFileError.

    Devices (/dev/zero, /dev/stdin on a terminal) are refused before reading; pipes are read up to the bound.
    The errors of reading (OSError, UnicodeDecodeError, gzip's) are the callers' to name.
    """
    path = Path(path)
    with contextlib.suppress(OSError):  # a missing or unreadable file: open() says so below
        mode = os.stat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISDIR(mode)):
            raise InputFileError(f"{path}: not a regular file (a device or socket); give a data file")
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputFileError(f"{path}: more than {max_bytes:,} bytes{' once gunzipped' if path.suffix == '.gz' else ''}"
                             f"; data files this large are not read (split it)")
    return data.decode("utf-8")


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
    if path.is_dir():  # else the temporary file would go into its parent, and the rename fail after the work
        raise IsADirectoryError(errno.EISDIR, "is a directory (a file name is needed)", str(path))
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


def json_text(obj: Any, *, indent: int | None = 2) -> str:
    """`obj` as the JSON text `write_json_atomic` writes."""
    return json.dumps(obj, ensure_ascii=False, indent=indent) + "\n"


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Writes `obj` as JSON to `path` atomically (see `atomic_path`)."""
    return write_text_atomic(path, json_text(obj, indent=indent))


def _probe(folder: Path) -> None:
    """Creates and removes a file in `folder`: the only test of writability that also holds for root and /proc."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".tfqa-write-test-")
    os.close(fd)
    os.unlink(name)


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """Creates the output folder `path` (and its parents) and checks a file can be written in it.

    Called before heavy work, so that `--output_dir some_file` fails in a second,
    not after an hour of training. Raises OutputPathError naming `flag` and the problem.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag} {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        _probe(path)
    except OSError as e:
        raise OutputPathError(f"{flag} {path}: cannot write there ({e.strerror or e})") from None
    return path


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """Checks that the file `path` can be written (atomically) without creating anything.

    Its folder must exist already: a typo in a folder name should not create it.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a folder (a file name is needed)")
    folder = path.parent
    if not folder.exists():
        raise OutputPathError(f"{flag} {path}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputPathError(f"{flag} {path}: {folder} is not a folder")
    try:
        _probe(folder)
    except OSError as e:
        raise OutputPathError(f"{flag} {path}: cannot write in {folder} ({e.strerror or e})") from None
    return path
