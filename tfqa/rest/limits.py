"""The serving limits and their defaults: one owner for the server, the demo and their flags.

The defaults fit a small machine (2 CPU cores, a few GB of RAM) serving a
MiniLM/DistilBERT export; README "Reliability" lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
# 10,000 QA instances in one request took the server from 0.9 to 4.9 GB (issue 15, #4); TF Serving's
# batching refuses batches over its maximum likewise.
DEFAULT_MAX_INSTANCES = 256
# Text is the work a request causes: the export runs the model over every window of every context. A 9 MB
# context (under the body limit) kept the server computing for more than 8 minutes after its client gave up
# (issue 20 #14); 512 KiB is ~500 windows of 384 tokens, 256 SQuAD-sized contexts or 32 questions about a
# 16 KB article.
DEFAULT_MAX_TEXT_BYTES = 512 * 1024
# Timeouts are bounded: asyncio, sockets and threading refuse (OverflowError) waits beyond what their clocks hold,
# and a wait of more than a day is a mistake, not a setting.
MAX_TIMEOUT_SECONDS = 24 * 3600.0


def seconds_problem(value, name: str) -> str | None:
    """What is wrong with `value` as a timeout called `name` (None when fine): it must be in (0, a day]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT_SECONDS:
        return f"{name} must be a positive number of seconds up to {MAX_TIMEOUT_SECONDS:g}, not {value}"
    return None


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-process connection limits (`serve`/`demo` flags of the same names)."""

    max_connections: int = 256  # open connections; more get 503 (each holds a file descriptor)
    read_timeout: float = 30.0  # seconds to receive a request's headers, and again its body; else 408
    idle_timeout: float = 5.0  # seconds a keep-alive connection may wait for its next request

    def problems(self) -> list[str]:
        """What makes these limits unusable (empty when they are fine)."""
        out = [f"--max-connections must be at least 1, not {self.max_connections}"] if self.max_connections < 1 else []
        for name in ("read_timeout", "idle_timeout"):
            problem = seconds_problem(getattr(self, name), f"--{name.replace('_', '-')}")
            out += [problem] if problem else []
        return out
