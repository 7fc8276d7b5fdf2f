"""The layout of an export base folder: integer version subfolders, as TensorFlow Serving reads it.

    export/tfqa/            the base: what TF Serving's --model_base_path points at
      1/  2/  ...           one SavedModel per version; the newest is served by default
        assets.extra/tf_serving_warmup_requests
      .tmp-export-HOST.PID.XXXX/  an export in progress (TF Serving ignores non-integer names)

No TensorFlow: the REST server, the demo and `inspect` list versions without loading anything.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
TEMP_PREFIX = ".tmp-export-"
_VERSION_NAME = re.compile(r"\d+", re.ASCII)


def is_version_name(name: str) -> bool:
    """Whether `name` is how TF Serving names a version folder (decimal digits only)."""
    return _VERSION_NAME.fullmatch(name) is not None


def version_dirs(base_dir: str | os.PathLike) -> dict[int, Path]:
    """{version: directory} of the integer-named subdirectories (empty when `base_dir` is not a folder)."""
    base = Path(base_dir)
    if not base.is_dir():
        return {}
    return {int(p.name): p for p in sorted(base.iterdir()) if p.is_dir() and is_version_name(p.name)}


def is_export(path: str | os.PathLike) -> bool:
    """Whether `path` is a SavedModel export: one version (saved_model.pb) or a base folder of versions."""
    return (Path(path) / "saved_model.pb").exists() or bool(version_dirs(path))


def next_version(base_dir: str | os.PathLike) -> int:
    """One more than the highest integer name in `base_dir` (1 for a new base).

    Every entry counts, not only folders: a stray file or a dangling symlink
    named `3` would otherwise be chosen as the next version's name forever.
    """
    base = Path(base_dir)
    if not base.is_dir():
        return 1
    return max((int(p.name) for p in base.iterdir() if is_version_name(p.name)), default=0) + 1


def temp_prefix() -> str:
    """The name start of this process's export folders in progress: `.tmp-export-HOST.PID.`.

    The host and process id let a later export tell the leftovers of a killed exporter
    (SIGKILL, a power cut: no `finally` ran) from the work of one still running.
    """
    return f"{TEMP_PREFIX}{socket.gethostname()}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, as another user's process
        return True
    return True


def remove_stale_exports(base_dir: str | os.PathLike) -> list[Path]:
    """Removes the export folders in progress left in `base_dir` by dead processes of this host; returns them.

    `.tmp-export-myhost.4242.k2j3/` goes when process 4242 no longer runs here; folders of
    other hosts (a shared file system) and of older tfqa versions (no host/pid) are left alone.
    """
    base, host, removed = Path(base_dir), socket.gethostname(), []
    if not base.is_dir():
        return removed
    for entry in base.iterdir():
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        parts = entry.name[len(TEMP_PREFIX):].rsplit(".", 2)
        if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _alive(int(parts[1])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed
