"""The terminal side of tfqa: where the applications' progress, notes and warnings are printed.

Library code reports through a `tfqa.core.progress.Reporter` and prints
nothing; the commands hand it `CONSOLE`, which writes each line to stderr, so
stdout carries results only (JSON, answers) and can be piped.
"""

from __future__ import annotations

import sys

from tfqa.core.progress import Reporter


class Console(Reporter):
    """Prints every line on stderr, flushed at once (progress must show while a long step runs).

    On a terminal a progress step is one line, rewritten in place by its updates
    and finally by its "done" line; in a log (stderr not a terminal) every
    update is a line of its own.
    """

    _pending = False  # a status line is on the screen, without its newline

    def line(self, text: str) -> None:
        print(("\r\x1b[K" if self._pending else "") + text, file=sys.stderr, flush=True)
        self._pending = False

    def status(self, text: str) -> None:
        if not sys.stderr.isatty():
            return self.line(text)
        print("\r\x1b[K" + text, end="", file=sys.stderr, flush=True)
        self._pending = True


CONSOLE = Console()
