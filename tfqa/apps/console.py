"""The terminal side of tfqa: where the applications' progress, notes and warnings are printed.

Library code reports through a `tfqa.core.progress.Reporter` and prints
nothing; the commands hand it `CONSOLE`, which writes each line to stderr, so
stdout carries results only (JSON, answers) and can be piped.
"""

from __future__ import annotations

import sys

from tfqa.core.progress import Reporter


class Console(Reporter):
    """Prints every line on stderr, flushed at once (progress must show while a long step runs)."""

    def line(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


CONSOLE = Console()
