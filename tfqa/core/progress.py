"""Telling a person what a long step is doing, without library code choosing to print.

Library functions take a `Reporter` and return data; the silent default prints
nothing, and the applications pass one that writes to stderr
(`tfqa.apps.console.console`), so stdout carries results only. A long step is
a `Progress`: a start line, at most one update every few seconds while it
runs, and an end line with its duration:

    tokenizing 87,599 training questions …
    tokenizing 87,599 training questions … 40,960 of 88,641 windows (6 s)
    tokenizing 87,599 training questions … done in 11 s (88,641 windows)
"""

from __future__ import annotations

import sys
import time
from typing import Callable


def duration(seconds: float) -> str:
    """A short human duration: 0.42 s, 23 s, 4 min 05 s."""
    if seconds < 10:
        return f"{seconds:.2g} s" if seconds < 1 else f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


class Progress:
    """One long step: a start line now, throttled `update`s, and `done`.

    The lines go to `sink` (a function taking one line), else to `stream`
    (default: stderr); the start line and the updates go to `status` when one
    is given (a terminal shows them on one line that the next replaces).
    """

    def __init__(self, what: str, every: float = 5.0, stream=None, sink: Callable[[str], None] | None = None,
                 status: Callable[[str], None] | None = None):
        self.what, self.every = what, every
        if sink is None:
            out = stream if stream is not None else sys.stderr
            sink = lambda line: print(line, file=out, flush=True)  # noqa: E731
        self._sink, self._status = sink, status or sink
        self.start = self.last = time.monotonic()
        self._status(f"{what} …")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def update(self, message: str) -> None:
        """Prints `message` unless the last line was printed less than `every` seconds ago (cheap to call often)."""
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._status(f"{self.what} … {message} ({duration(now - self.start)})")

    def done(self, detail: str = "") -> float:
        """Prints the end line ("… done in 1.2 s" + detail); returns the seconds taken."""
        seconds = self.elapsed
        self._sink(f"{self.what} … done in {duration(seconds)}{detail}")
        return seconds


class Reporter:
    """Where library code reports what it does. This base class is silent; subclasses override `line`."""

    def line(self, text: str) -> None:
        """One line for the person running tfqa (progress, notes, warnings)."""

    def status(self, text: str) -> None:
        """A line that the next one may replace (a progress update); by default an ordinary line."""
        self.line(text)

    def note(self, text: str) -> None:
        self.line(f"note: {text}")

    def warn(self, text: str) -> None:
        self.line(f"tfqa: warning: {text}")

    def progress(self, what: str, every: float = 5.0) -> Progress:
        """A `Progress` whose lines go through this reporter."""
        return Progress(what, every, sink=self.line, status=self.status)


SILENT = Reporter()
