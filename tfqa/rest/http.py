"""What the REST server and the demo share: the status-carrying error, body limits, listening, start-up.

`RequestError` is the one error that carries an HTTP status. The model
layer (`tfqa.serving`) raises transport-free `ServingFailure`s with
TensorFlow's canonical error codes; `http_status` maps them as TF Serving's
REST server does, so both servers answer a failing model call alike.
"""

from __future__ import annotations

import asyncio
import socket

from tfqa.core.errors import TfqaError
from tfqa.core.progress import SILENT, Reporter
from tfqa.rest.connections import GuardedServer
from tfqa.rest.limits import ConnectionLimits
from tfqa.serving.errors import Code

# TF canonical error codes → HTTP statuses, as TF Serving's REST server maps them (http_server.cc).
_HTTP_STATUS = {Code.CANCELLED: 499, Code.UNKNOWN: 500, Code.INVALID_ARGUMENT: 400, Code.DEADLINE_EXCEEDED: 504,
                Code.NOT_FOUND: 404, Code.ALREADY_EXISTS: 409, Code.PERMISSION_DENIED: 403,
                Code.RESOURCE_EXHAUSTED: 429, Code.FAILED_PRECONDITION: 400, Code.ABORTED: 409,
                Code.OUT_OF_RANGE: 400, Code.UNIMPLEMENTED: 501, Code.INTERNAL: 500, Code.UNAVAILABLE: 503,
                Code.DATA_LOSS: 500, Code.UNAUTHENTICATED: 401}
_ERROR_CODE = {**{status: code for code, status in sorted(_HTTP_STATUS.items(), reverse=True)},
               500: Code.INTERNAL, 413: Code.RESOURCE_EXHAUSTED, 408: Code.DEADLINE_EXCEEDED, 405: Code.UNIMPLEMENTED}


class RequestError(TfqaError, ValueError):
    """A request to refuse; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class ClientGone(RequestError):
    """The client closed the connection before its request was complete (499, as TF Serving's CANCELLED)."""

    def __init__(self):
        super().__init__("the client closed the connection before sending the whole request", 499)


class StartupError(TfqaError, RuntimeError):
    """A server cannot start (bad model directory or URL, busy port); one line."""


def http_status(code: int) -> int:
    """The HTTP status TF Serving answers for a TF canonical error `code` (500 for unknown ones)."""
    return _HTTP_STATUS.get(code, 500)


def error_code(status: int) -> int:
    """The TF canonical error code an HTTP status stands for (the metrics' `status` label): 0 for 2xx.

    Statuses several codes share go to the first of them (400: INVALID_ARGUMENT); the
    server's own refusals: 413 (body too big) RESOURCE_EXHAUSTED, 408 (too slow) DEADLINE_EXCEEDED.
    """
    if 200 <= status < 300:
        return 0
    return _ERROR_CODE.get(status, 2)


async def read_body(request, limit: int, too_big: str | None = None,
                    timeout: float = ConnectionLimits.read_timeout) -> bytes:
    """The whole body of a Starlette `request`, or RequestError 413 once it exceeds `limit` bytes.

    Chunked bodies have no Content-Length, so the bytes are counted as they arrive.
    A body not complete within `timeout` seconds (a trickle, or a Content-Length
    larger than what is sent) is RequestError 408; a client gone mid-body is
    `ClientGone` (nobody to answer, nothing to log).
    """
    from starlette.requests import ClientDisconnect

    error = RequestError(too_big or f"the request body exceeds the limit of {limit} bytes", 413)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise error
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise error
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(f"the request body did not arrive within {timeout:g} s (--read-timeout): "
                           f"{size} of {declared or 'an unknown number of'} bytes came", 408) from None
    except ClientDisconnect:
        raise ClientGone() from None
    return b"".join(chunks)


async def json_http_exception(request, exc):
    """Starlette's own refusals (404 no such route, 405 method not allowed: TRACE, ...) as {"error": ...}."""
    from starlette.responses import JSONResponse

    return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"}, exc.status_code,
                        headers=dict(exc.headers or {}))


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: any free one), not yet listening; StartupError when it cannot bind."""
    if not 0 <= port <= 65535:  # getaddrinfo would take 70000 as 70000 % 65536 = 4464
        raise StartupError(f"--port {port} is not a TCP port (0-65535; 0 picks a free one)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        raise StartupError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def base_url(host: str, sock: socket.socket) -> str:
    """http://HOST:PORT of a bound socket (IPv6 hosts in brackets)."""
    url_host = f"[{host}]" if ":" in host else host
    return f"http://{url_host}:{sock.getsockname()[1]}"


def run_server(app, sock: socket.socket, banner: str, reporter: Reporter = SILENT,
               limits: ConnectionLimits = ConnectionLimits()) -> None:
    """Serves the ASGI `app` on `sock` under uvicorn, with `limits`, until SIGINT/SIGTERM.

    The socket listens before `banner` is reported, so the URL in it works as
    soon as a person (or a test) reads it.
    """
    sock.listen(128)
    reporter.line(banner)
    GuardedServer(app, limits, log_level="warning", timeout_graceful_shutdown=5).run(sockets=[sock])
