"""Progress lines for long steps (tokenizing, evaluating, exporting), on stderr.

stdout carries results only; a long step writes a start line, at most one
update every few seconds while it runs, and an end line with its duration:

    tokenizing 87,599 training questions …
    tokenizing 87,599 training questions … 40,960 of 88,641 windows (6 s)
    tokenizing 87,599 training questions … done in 11 s (88,641 windows)
"""

from __future__ import annotations

import sys
import time


def duration(seconds: float) -> str:
    """A short human duration: 0.42 s, 23 s, 4 min 05 s."""
    if seconds < 10:
        return f"{seconds:.2g} s" if seconds < 1 else f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


class Progress:
    """One long step: a start line now, throttled `update`s, and `done`."""

    def __init__(self, what: str, every: float = 5.0, stream=None):
        self.what, self.every = what, every
        self.stream = stream if stream is not None else sys.stderr
        self.start = self.last = time.monotonic()
        self._print(f"{what} …")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def update(self, message: str) -> None:
        """Prints `message` unless the last line was printed less than `every` seconds ago (cheap to call often)."""
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._print(f"{self.what} … {message} ({duration(now - self.start)})")

    def done(self, detail: str = "") -> float:
        """Prints the end line ("… done in 1.2 s" + detail); returns the seconds taken."""
        seconds = self.elapsed
        self._print(f"{self.what} … done in {duration(seconds)}{detail}")
        return seconds

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
