"""Quiet terminals: the start-up chatter of TensorFlow and transformers kept off a person's screen.

A plain `import tensorflow` on a CPU-only machine prints 6–8 lines before tfqa
says anything (absl's "All log messages before absl::InitializeLog()", CUDA
probing, "failed call to cuInit", the CPU-feature banner), and loading a
checkpoint adds transformers' deprecation notice and "All model checkpoint
layers were used" block. `quiet_startup()` runs first in the command-line
entry points (`tfqa`, `train_keras.py`), before TensorFlow is imported:

- `TF_CPP_MIN_LOG_LEVEL=1` drops TensorFlow's C++ INFO lines (warnings and
  errors still print);
- the lines printed before absl is initialised ignore that variable, so the C
  side of stderr (file descriptor 2) goes through a filter that drops exactly
  the known start-up lines (`NOISE`) and passes every other line on;
- Python's `sys.stderr` is a direct copy of the original stderr, so tfqa's
  own lines and any traceback never wait on the filter;
- transformers' logger (its TF deprecation notice, "All model checkpoint
  layers were used"), and the `tensorflow` and `absl` Python loggers show
  errors only.

Nothing happens when the user set `TF_CPP_MIN_LOG_LEVEL` (they chose what to
see) or passed `--verbose`.

The library (`tfqa.QuestionAnswerer`) must not change a user's process like
that: `quiet_while()` is the same filter for one block only (the first import
of TensorFlow and the loading of a model). It sets the variables and logger
levels for the block and puts back what was there; file descriptor 2 goes to
a temporary file, whose lines, the noise left out, are written to stderr when
the block ends (delayed, never lost). One thing outlives the block: TensorFlow
reads `TF_CPP_MIN_LOG_LEVEL` once, so its C++ INFO lines stay off afterwards.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import sys
import tempfile
import threading

# The C++ lines TensorFlow prints at start-up on a machine like this one, and nothing else.
NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:. ]+\d+ \S+\.cc:\d+\] "  # C++ INFO lines printed before absl applies TF_CPP_MIN_LOG_LEVEL
    r"|E\d{4} [\d:. ]+\d+ cuda_(?:platform|diagnostics|driver)\.cc:\d+\] failed call to cuInit"
    r"|E\d{4} [\d:. ]+\d+ cuda_\w+\.cc:\d+\] Unable to register cu(?:DNN|FFT|BLAS) factory"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
    r"|oneDNN custom operations are on\. .*TF_ENABLE_ONEDNN_OPTS=0`\."
    r"|computation placer already registered"
    r"|E\d{4} [\d:. ]+\d+ util\.cc:\d+\] oneDNN supports DT_INT64 only on platforms with AVX-512"  # first run
)

_LOGGERS = ("tensorflow", "absl", "h5py")  # Python loggers that show errors only
_started = False


def quiet_startup(verbose: bool = False) -> bool:
    """Silences start-up chatter for the rest of the process unless `verbose` or TF_CPP_MIN_LOG_LEVEL is set.

    Call it before TensorFlow or transformers are imported. Returns whether it
    quietened anything (False when the user asked to see everything).
    """
    global _started
    if verbose or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return False
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is first imported
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if "transformers" in sys.modules:  # already imported: its verbosity variable was read then
        sys.modules["transformers"].logging.set_verbosity_error()
    if not _started:
        _started = _filter_c_stderr()
    return True


@contextlib.contextmanager
def quiet_while(verbose: bool = False):
    """Keeps start-up chatter off stderr during the block only, then restores the settings (see the module doc).

    Does nothing when `verbose`, when an entry point already quietened the process (`quiet_startup`) or when
    the user set TF_CPP_MIN_LOG_LEVEL.
    """
    if verbose or _started or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        yield
        return
    variables = {"TF_CPP_MIN_LOG_LEVEL": "1", "TRANSFORMERS_VERBOSITY": "error"}
    saved_env = {name: os.environ.get(name) for name in variables}
    os.environ.update({k: v for k, v in variables.items() if saved_env[k] is None})
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    transformers = sys.modules.get("transformers")
    verbosity = transformers.logging.get_verbosity() if transformers else None
    if transformers:
        transformers.logging.set_verbosity_error()
    try:
        with _captured_fd2() as captured:
            yield
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if "transformers" in sys.modules:  # back to what it was, or transformers' default (warnings) if new
            sys.modules["transformers"].logging.set_verbosity(verbosity or logging.WARNING)
        _replay(captured)


@contextlib.contextmanager
def _captured_fd2():
    """File descriptor 2 into a temporary file for the block; yields the file (None when fd 2 cannot move)."""
    try:
        sink, original = tempfile.TemporaryFile(), os.dup(2)
    except OSError:
        yield None
        return
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os.dup2(sink.fileno(), 2)
    try:
        yield sink
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(original, 2)
        os.close(original)


def _replay(captured) -> None:
    """Writes the captured lines that are not start-up noise to stderr."""
    if captured is None:
        return
    with captured:
        captured.seek(0)
        for line in captured:
            if not NOISE.search(line.decode("utf-8", "replace")):
                os.write(2, line)


def _filter_c_stderr() -> bool:
    """Routes file descriptor 2 through a thread that drops `NOISE` lines; Python's sys.stderr bypasses it."""
    try:
        original = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:
        return False
    sys.stderr.flush()
    # Python-level writes (tfqa's progress, warnings, tracebacks) go straight to the original stderr.
    sys.stderr = os.fdopen(os.dup(original), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                           errors="backslashreplace")
    os.dup2(write_end, 2)
    os.close(write_end)
    thread = threading.Thread(target=_pump, args=(read_end, original), name="tfqa-stderr-filter", daemon=True)
    thread.start()

    def restore():
        # Back to the real stderr; the pipe then has no writer left, so the thread sees its end and stops.
        os.dup2(original, 2)
        thread.join(timeout=2)

    atexit.register(restore)
    return True


def _pump(read_end: int, out: int) -> None:
    """Copies lines from the pipe to `out`, leaving out the start-up noise."""
    with os.fdopen(read_end, "rb") as source:
        for line in source:
            if not NOISE.search(line.decode("utf-8", "replace")):
                os.write(out, line)
