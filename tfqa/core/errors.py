"""The root of tfqa's exceptions: every expected failure is a `TfqaError`.

Each layer raises its own subclass with a one-line message naming the file,
record, flag or URL and the problem (`DataError` for input data,
`ModelLoadError` for checkpoints, `ExportError`, `ServableError`, ...), so an
entry point catches this one type and prints the message without a traceback.
Anything else that escapes is a bug.
"""

from __future__ import annotations


class TfqaError(Exception):
    """An expected failure; `str(error)` is one line for a person to read.

    `exit_status` is what a command ends with when it stops on this error: 2 for bad
    input (flags, files, data), which is most of them; a subclass may say otherwise.
    """

    exit_status = 2
