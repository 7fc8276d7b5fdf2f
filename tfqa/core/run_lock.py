"""One run per folder: an advisory lock on OUTPUT_DIR/.tfqa.lock while a run writes there.

`fcntl.flock` locks belong to the open file, and the kernel drops them when the process ends,
however it ends (SIGKILL included): a killed run never leaves its folder locked. The holder
writes its pid and host into the file, so a second run can say who writes there, and removes
the file when it lets go. A run that takes the lock checks it locked the file that is still at
that path (the previous holder may have removed it in between), else it tries again.
No TensorFlow.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

from tfqa.core.errors import TfqaError
from tfqa.core.run_dir import LOCK_FILE

_TAG = "tfqa run lock"


class RunLockedError(TfqaError):
    """Another run is writing into the folder (or its lock file cannot be used); one line."""


def _holder(fd: int) -> str:
    """Who holds the lock, from the file's "tfqa run lock: pid N on HOST" line ("" when it does not say)."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace")
    except OSError:
        return ""
    return text.split(": ", 1)[1].strip() if text.startswith(_TAG + ": ") else ""


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


@contextlib.contextmanager
def run_lock(output_dir: str | os.PathLike, flag: str = "--output_dir") -> Iterator[Path]:
    """Holds OUTPUT_DIR/.tfqa.lock for the block; RunLockedError naming the folder (and the holder) when taken.

    The folder must exist. A file of that name that is not a tfqa lock is refused, not overwritten.
    """
    out = Path(output_dir)
    path = out / LOCK_FILE
    for _ in range(20):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as e:
            reason = "is a symbolic link" if e.errno == errno.ELOOP else (e.strerror or str(e))
            raise RunLockedError(f"{flag} {out}: cannot open its lock file {LOCK_FILE} ({reason})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunLockedError(f"{flag} {out}: another tfqa run ({holder or 'another process'}) is writing "
                                     "into it; wait for it to end, or choose another folder") from None
            raise RunLockedError(f"{flag} {out}: cannot lock {LOCK_FILE} ({e.strerror or e})") from None
        if _same_file(fd, path):
            break
        os.close(fd)  # locked a file its last holder has just removed: take the one at the path now
    else:
        raise RunLockedError(f"{flag} {out}: could not take its lock {LOCK_FILE} (other runs keep taking it)")
    try:
        old = os.pread(fd, 200, 0)
        if old and not old.startswith(_TAG.encode()):
            raise RunLockedError(f"{flag} {out}: holds a file {LOCK_FILE} that is not tfqa's lock; "
                                 "move it away, or choose another folder")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{_TAG}: process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield path
    finally:
        if _same_file(fd, path) and _holder(fd).startswith(f"process {os.getpid()} "):
            path.unlink(missing_ok=True)  # while still locked: a waiting run then retries on a new file
        os.close(fd)
