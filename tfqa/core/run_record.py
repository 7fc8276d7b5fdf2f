"""What a run wrote into its folder (OUTPUT_DIR/tfqa_run.json), and removing exactly that.

A run folder may be one the user already had (`--output_dir .`, a folder with their own
`logs/`), and tfqa never deletes or replaces a file it did not write. So a run records, in
tfqa_run.json (rewritten atomically), the paths it created, relative to the folder:

- before it writes anything, every name of the run layout (`tfqa.core.run_dir`) that is not
  there yet: what appears there later is the run's, a folder whole;
- in a folder of the layout that was there before (the user's `logs/`), the entries that match
  what tfqa writes there (`run_dir.WRITTEN_INSIDE`) and appeared, or were rewritten, during the
  run: looked for after every epoch and at the end (TensorFlow writes them, not tfqa's writer);
- the files `save_pretrained` says it wrote, and at the end whether the run trained to its end.

Names claimed that never appeared are dropped at the end. `clear_run` removes what the record
lists and nothing else, never through a symbolic link; a folder without a record (not a run, or
a run of a tfqa older than the record) loses nothing. No TensorFlow.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import stat
import time
from pathlib import Path, PurePosixPath
from typing import Iterable

from tfqa.core.files import write_json_atomic
from tfqa.core.run_dir import (CHECKPOINTS_DIR, LOCK_FILE, MANIFEST_FILE, RUN_FILES, RUN_FOLDERS, TOP_FILES,
                               WRITTEN_INSIDE, RunDirError, read_manifest)

FORMAT = 1


def _covered(rel: str, created: Iterable[str]) -> bool:
    """Whether `rel` is a recorded path or lies inside a recorded folder."""
    parts = PurePosixPath(rel).parts
    return any(parts[:len(PurePosixPath(c).parts)] == PurePosixPath(c).parts for c in created)


def _inside(out: Path, rel: str) -> Path | None:
    """OUTPUT_DIR/rel, None when `rel` leaves the folder or reaches it through a symbolic link."""
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or any(p in ("..", ".") for p in parts):
        return None
    path = out
    for part in parts[:-1]:
        path = path / part
        if path.is_symlink() or not path.is_dir():
            return None
    return path / parts[-1]


def _entries(out: Path, folder: str) -> dict[str, os.stat_result]:
    """The entries of OUTPUT_DIR/folder that tfqa may write (`WRITTEN_INSIDE`), by name; {} unless a real folder."""
    path = _inside(out, folder)
    if path is None or path.is_symlink() or not path.is_dir():
        return {}
    found = {}
    with os.scandir(path) as it:
        for entry in it:
            if any(fnmatch.fnmatchcase(entry.name, p) for p in WRITTEN_INSIDE[folder]):
                found[entry.name] = entry.stat(follow_symlinks=False)
    return found


class RunRecord:
    """The record of one run being written (see the module docstring): `begin`, `save` often, `finish` once."""

    def __init__(self, out: Path, created: set[str], finished: bool, also: tuple[str, ...]):
        self.out, self.created, self.finished, self.also = out, created, finished, also
        self.start_ns = time.time_ns()
        # What stood in the folders of the layout before this run: those entries stay the user's.
        self.before = {folder: set(_entries(out, folder)) for folder in WRITTEN_INSIDE}

    @classmethod
    def begin(cls, output_dir: str | os.PathLike, also: Iterable[str] = ()) -> "RunRecord":
        """The record of a run about to write into `output_dir` (continuing its tfqa_run.json); writes nothing.

        `also`: more top-level names the run writes (a preset's files). RunDirError when the record is unreadable.
        """
        out, also = Path(output_dir), tuple(also)
        manifest = read_manifest(out) if out.is_dir() else None
        created = set(manifest["created"]) if manifest else set()
        for name in (MANIFEST_FILE, *TOP_FILES, *RUN_FOLDERS, *also):
            if not os.path.lexists(out / name):
                created.add(name)
        return cls(out, created, bool(manifest and manifest.get("finished") is True), also)

    def add(self, paths: Iterable[str | os.PathLike]) -> None:
        """Records files this run wrote (absolute or relative to the folder; others are ignored)."""
        for path in paths:
            rel = Path(os.path.relpath(os.path.abspath(path), os.path.abspath(self.out))).as_posix()
            if _inside(self.out, rel) is not None:
                self.created.add(rel)

    def owns(self, rel: str) -> bool:
        """Whether this run (or an earlier attempt of it) wrote OUTPUT_DIR/rel."""
        return _covered(rel, self.created)

    def save(self) -> None:
        """Records what the run has written so far; writes tfqa_run.json."""
        for folder in WRITTEN_INSIDE:
            if self.owns(folder):
                continue  # the run's own folder: recorded whole
            for name, info in _entries(self.out, folder).items():
                if name not in self.before[folder] or (not stat.S_ISDIR(info.st_mode) and self._rewritten(info)):
                    self.created.add(f"{folder}/{name}")
        for name in (*TOP_FILES, *self.also):  # files of an older tfqa's run that this one wrote over
            if not self.owns(name):
                with contextlib.suppress(FileNotFoundError):
                    if self._rewritten(os.stat(self.out / name, follow_symlinks=False)):
                        self.created.add(name)
        write_json_atomic(self.out / MANIFEST_FILE, {"format": FORMAT, "finished": self.finished,
                                                     "created": sorted(self.created)})

    def discard(self, rel: str) -> None:
        """Removes OUTPUT_DIR/rel if this run wrote it: a file, or a folder that is empty (leftovers of a run)."""
        path = _inside(self.out, rel)
        if path is None or not self.owns(rel) or path.is_symlink():
            return
        with contextlib.suppress(OSError):  # a folder that is not empty stays
            path.rmdir() if path.is_dir() else path.unlink()

    def _rewritten(self, info: os.stat_result) -> bool:
        return not stat.S_ISLNK(info.st_mode) and info.st_mtime_ns >= self.start_ns

    def finish(self, trained: bool) -> None:
        """The run's last record: unrealised claims dropped, and whether it trained to its end."""
        self.finished = self.finished or trained
        self.created = {rel for rel in self.created if rel == MANIFEST_FILE or os.path.lexists(self.out / rel)}
        self.save()


def recorded(output_dir: str | os.PathLike, rel: str) -> bool:
    """Whether tfqa_run.json says tfqa wrote OUTPUT_DIR/rel."""
    manifest = read_manifest(output_dir)
    return bool(manifest) and _covered(rel, manifest["created"])


def clear_run(output_dir: str | os.PathLike) -> list[str] | None:
    """Removes what tfqa_run.json says tfqa wrote into `output_dir` (--overwrite_output_dir); the rest stays.

    Returns the paths removed (relative, folders ending in "/"), None when the folder has no record
    (then nothing is removed). Never follows a symbolic link: a recorded path reached through one,
    or that is one now, stays.
    """
    out = Path(output_dir)
    manifest = read_manifest(out)
    if manifest is None:
        return None
    removed = []
    for rel in sorted(set(manifest["created"]) - {MANIFEST_FILE, LOCK_FILE}):
        path = _inside(out, rel)
        if path is None or path.is_symlink() or not path.exists():
            continue
        try:
            if path.is_dir():
                shutil.rmtree(path)  # fd-based on Linux: removes links inside, never what they point to
                removed.append(rel + "/")
            else:
                path.unlink()
                removed.append(rel)
        except OSError as e:
            raise RunDirError(f"--overwrite_output_dir {out}: cannot remove {rel} ({e.strerror or e})") from None
    (out / MANIFEST_FILE).unlink(missing_ok=True)  # last: a clear cut short still knows what is left to remove
    return removed


def foreign_files(output_dir: str | os.PathLike) -> list[str]:
    """Files a run would write over (fixed names) that tfqa did not write there; [] for an older tfqa's run.

    A folder with a run file but no record is a run of a tfqa older than the record: the run writes
    over its own files, as run_squad.py does.
    """
    out = Path(output_dir)
    if not out.is_dir():
        return []
    manifest = read_manifest(out)
    if manifest is None and any((out / name).is_file() for name in RUN_FILES):
        return []
    created = manifest["created"] if manifest else []
    found = [name for name in TOP_FILES if os.path.lexists(out / name) and not _covered(name, created)]
    found += [f"{CHECKPOINTS_DIR}/{name}" for name in sorted(_entries(out, CHECKPOINTS_DIR))
              if not _covered(f"{CHECKPOINTS_DIR}/{name}", created)]
    return found


def forget_empty_run(output_dir: str | os.PathLike) -> None:
    """Removes a folder that holds nothing but the record of a run that wrote nothing else (one that failed)."""
    out = Path(output_dir)
    try:
        if {p.name for p in out.iterdir()} <= {MANIFEST_FILE} and not out.is_symlink():
            (out / MANIFEST_FILE).unlink(missing_ok=True)
            out.rmdir()
    except OSError:
        pass
