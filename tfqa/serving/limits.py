"""The serving limits every front end applies, and their defaults: one owner for the servers, the demo and flags.

The defaults fit a small machine (2 CPU cores, a few GB of RAM) serving a
MiniLM/DistilBERT export; README "Reliability" lists them. What a connection
may hold (HTTP read deadlines, the connection cap) is the REST front end's:
`tfqa.rest.limits`.
"""

from __future__ import annotations

from tfqa.serving.errors import Code, ServingFailure

# A request body (REST) or message (gRPC) larger than this is refused before it is parsed.
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


def check_instance_count(count: int, limit: int) -> None:
    """ServingFailure (INVALID_ARGUMENT) for a request of more than `limit` instances (--max-instances)."""
    if count > limit:
        raise ServingFailure(f"the request has {count} instances; this server takes at most {limit} per request "
                             "(--max-instances): send them in several requests", Code.INVALID_ARGUMENT)
