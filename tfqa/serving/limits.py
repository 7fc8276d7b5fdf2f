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


def check_instance_count(count: int, limit: int) -> None:
    """ServingFailure (INVALID_ARGUMENT) for a request of more than `limit` instances (--max-instances)."""
    if count > limit:
        raise ServingFailure(f"the request has {count} instances; this server takes at most {limit} per request "
                             "(--max-instances): send them in several requests", Code.INVALID_ARGUMENT)
