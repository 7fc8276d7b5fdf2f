"""What a slow, silent or hostile client may hold: read timeouts, a connection cap, JSON refusals.

uvicorn closes idle keep-alive connections, but waits forever for the headers
of a request, answers malformed requests and its own refusals in plain text,
and lets the event loop log one traceback per failed accept() once the
process runs out of file descriptors. The server and the demo run under
`GuardedServer`, whose protocol adds, per connection:

- a cap: a connection beyond `max_connections` gets 503 and is closed at once,
  so the process keeps file descriptors for the model and for the clients it serves;
- a header deadline: a request whose headers are not complete `read_timeout`
  seconds after the connection opened (or after its previous response) gets
  408 and is closed (one byte every 2 s never completes);
- the body deadline is the app's: `tfqa.rest.http.read_body` (408);
- JSON for every refusal: `{"error": "..."}`, as the apps answer.

Out of file descriptors, accept() fails about once a second while it lasts:
that is logged as one line at most once a minute, not once per attempt.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from tfqa.rest.limits import ConnectionLimits

log = logging.getLogger("tfqa.rest.connections")
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE)
_REASONS = {400: "Bad Request", 408: "Request Timeout", 503: "Service Unavailable"}


def json_refusal(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response `{"error": message}` that closes the connection."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap, a header deadline and JSON refusals."""

    limits = ConnectionLimits()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, f"the server has {self.limits.max_connections} open connections, its limit "
                              "(--max-connections); try again shortly")
            return
        self._arm_header_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._between_requests():
            self._arm_header_timer()  # the first bytes of a keep-alive connection's next request
        super().data_received(data)
        if not self._between_requests():
            self._cancel_header_timer()

    def send_400_response(self, msg: str) -> None:
        # Malformed requests (a bad Content-Length, broken chunking, header lines too long).
        self.logger.info("refused a malformed request: %s", msg)
        self._refuse(400, f"Malformed HTTP request: {msg.rstrip('.')} (bad request line, header or body framing)")

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.limits.read_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._between_requests() and not self.transport.is_closing():
            self._refuse(408, f"no complete request headers within {self.limits.read_timeout:g} s (--read-timeout)")

    def _refuse(self, status: int, message: str) -> None:
        # Written raw: h11 may be mid-message (a body never finished) and refuse to frame a response.
        self._cancel_header_timer()
        self.transport.write(json_refusal(status, message))
        self.transport.close()


class _FdLog:
    """Logs running out of file descriptors at most once a minute (asyncio retries accept() every second)."""

    every = 60.0
    last = None

    @classmethod
    def handle(cls, loop, context: dict) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_FDS:
            if cls.last is None or loop.time() - cls.last >= cls.every:
                cls.last = loop.time()
                log.error("out of file descriptors (%s): new connections wait until some close; lower "
                          "--max-connections or raise the limit (ulimit -n)", exc.strerror)
            return
        handle = context.get("handle")
        if isinstance(exc, ValueError) and "_start_serving" in repr(handle):
            return  # shutting down while accept() waited to be retried: the listening socket is already closed
        loop.default_exception_handler(context)


class GuardedServer(uvicorn.Server):
    """uvicorn's server with `GuardedProtocol` connections and fd exhaustion logged once."""

    def __init__(self, app, limits: ConnectionLimits = ConnectionLimits(), **config):
        protocol = type("GuardedProtocol", (GuardedProtocol,), {"limits": limits})
        super().__init__(uvicorn.Config(app, http=protocol, ws="none",
                                        timeout_keep_alive=limits.idle_timeout, **config))

    async def serve(self, sockets=None) -> None:
        asyncio.get_running_loop().set_exception_handler(_FdLog.handle)
        await super().serve(sockets=sockets)
