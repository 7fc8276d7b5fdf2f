"""The error boundary of an entry point: how every way a command can end becomes an exit status.

`python -m tfqa` and `train_keras.py` run their work through `guarded`, the one
place that decides what a person sees when something goes wrong:

- an expected failure (`TfqaError`), a path the system refuses (`OSError`),
  text that is not valid in its encoding, or input nested too deeply
  → one line `PROG: error: …` naming the file/record/flag, exit status 2
  (an error class may say otherwise with `exit_status`: a NaN loss is 1);
- Ctrl-C → one line (the caller may say what was kept and how to go on), 130;
- anything else is a bug: its traceback, then one line asking for a report, 1.

Example: `python -m tfqa evaluate dev.json /etc` ends with
`tfqa: error: /etc: Is a directory` and status 2, not an IsADirectoryError traceback.
"""

from __future__ import annotations

import sys
import traceback
from typing import Callable

from tfqa.core.errors import TfqaError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command ended by Ctrl-C
EXIT_BUG = 1
MAX_LINE = 1000  # characters of a message kept: one line, even when a library quotes a whole file back

ISSUES_HINT = "this is a bug in tfqa; please report it with the traceback above and the command you ran"


def one_line(message: str, limit: int = MAX_LINE) -> str:
    """`message` on one line, at most `limit` characters ("a\\n  b" → "a b")."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(error: BaseException) -> tuple[str, int] | None:
    """(message, exit status) for an error a person can fix, None for a bug."""
    if isinstance(error, TfqaError):
        return str(error), getattr(error, "exit_status", EXIT_BAD_INPUT)
    if isinstance(error, OSError) and (error.filename is not None or error.strerror):
        # e.g. IsADirectoryError(21, 'Is a directory', '/etc') → "/etc: Is a directory"
        names = [str(n) for n in (error.filename, error.filename2) if n is not None]
        return ": ".join(names + [error.strerror or type(error).__name__]), EXIT_BAD_INPUT
    if isinstance(error, UnicodeError):
        return f"text that is not valid {getattr(error, 'encoding', '') or 'Unicode'}: {error}", EXIT_BAD_INPUT
    if isinstance(error, RecursionError):
        return "input nested too deeply to process", EXIT_BAD_INPUT
    return None


def guarded(prog: str, body: Callable[[], int], interrupted: Callable[[], str] | None = None) -> int:
    """Runs `body` and returns its exit status, or the boundary's for what it raised (see the module doc).

    `interrupted()` says what Ctrl-C leaves behind (default: "interrupted").
    """
    try:
        return body()
    except KeyboardInterrupt:
        message = "interrupted"
        if interrupted is not None:
            try:
                message = interrupted()
            except Exception:  # noqa: BLE001 - the interrupt is the news; a failed summary must not hide it
                pass
        print(f"{prog}: {one_line(message)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - this is the boundary: everything ends here
        described = describe(error)
        if described is None:
            traceback.print_exc()
            print(f"{prog}: internal error ({type(error).__name__}): {ISSUES_HINT}", file=sys.stderr)
            return EXIT_BUG
        message, status = described
        print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
        return status
