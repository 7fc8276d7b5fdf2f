"""Ctrl-C held back for the length of a step that must not be cut in the middle.

TensorFlow's SavedModel writer runs Python weakref callbacks; a KeyboardInterrupt
landing in one of them is printed as "Exception ignored in: <WeakKeyDictionary…>"
and lost, and the export goes on anyway. `deferred_interrupts` makes the first
Ctrl-C wait for the end of the block (saying so), then raises it there; a
second Ctrl-C stops at once, as usual.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator


@contextlib.contextmanager
def deferred_interrupts(notice: Callable[[str], None], what: str) -> Iterator[None]:
    """Runs the block with SIGINT deferred to its end (main thread only; elsewhere a plain block).

    `notice` is told once, when the first Ctrl-C arrives, e.g. "Ctrl-C: finishing the export first".
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.getsignal(signal.SIGINT)

    def hold(signum, frame):
        if received:  # a second Ctrl-C: the person means it
            raise KeyboardInterrupt
        received.append(signum)
        notice(f"Ctrl-C: finishing {what} first (Ctrl-C again to stop at once)")

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
