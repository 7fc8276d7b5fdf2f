"""`python -m tfqa demo`: a one-page web demo of a question-answering export.

A person pastes (or picks) a passage, asks a question and sees the answer
highlighted in the passage, its score and the next best candidates. The page
(`demo_page.html`, self-contained) only talks to this backend, on the same
origin:

    GET  /              the page
    GET  /api/info      {"model": what answers (no local paths), "max_passage_chars": ...}
    GET  /api/samples   {"samples": [{"title", "question", "passage"}, ...]}
    POST /api/answer    {"question", "context"} → {"answer", "score", "answer_start",
                        "answer_end", "null_score_diff", "candidates": [{"text", "score",
                        "start", "end"}, ...]}; errors: 4xx/5xx {"error": "..."}

Every answer, errors and unknown routes included, is JSON with `nosniff`.
Questions must be same-origin `application/json` POSTs (a cross-site form or
`text/plain` fetch cannot run the model), and `run_demo` answers only Host
names it listens as (no DNS rebinding of a local demo).

Answers come from one `Backend` with two implementations: `LocalBackend`
(the newest version of an export directory, `tfqa.serving.export_answerer`, the
loader `tfqa.QuestionAnswerer` uses) and `RemoteBackend` (TF Serving or `python -m
tfqa serve`, through `tfqa.rest.client.ServingClient`). Both return a TF Serving
JSON prediction row, read as one `tfqa.serving.answers.Answer` into the page's answer.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tfqa.core.progress import SILENT, Reporter
from tfqa.rest.client import ServingClient, ServingError
from tfqa.rest.http import (RequestError, StartupError, base_url, http_status, json_http_exception, listen, read_body,
                            run_server)
from tfqa.export.names import CONTEXT, NULL_SCORE_DIFF, QUESTION, SCORE
from tfqa.rest.json_api import utf8
from tfqa.serving.answers import Answer, AnswerFormatError
from tfqa.serving.batching import Batcher
from tfqa.serving.batching_config import BatchingParameters
from tfqa.serving.export_answerer import ExportAnswerer
from tfqa.serving.servables import ModelDirError, ServingFailure, find_versions

MAX_PASSAGE_CHARS = 20_000
MAX_QUESTION_CHARS = 1_000
# 20,000 characters are at most 240 KB as JSON (\ud83d\udc4d escapes for emoji); anything bigger is not a passage.
MAX_BODY_BYTES = 512 * 1024
# The page is inline HTML/CSS/JS: forbid everything else, so it can load nothing from other origins.
_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
log = logging.getLogger("tfqa.apps.demo")


class Backend:
    """Where answers come from: `predict` returns one TF Serving JSON prediction row (serving_default)."""

    description = ""

    def predict(self, question: str, context: str) -> dict:
        raise NotImplementedError


class LocalBackend(Backend):
    """The newest version of an export directory, loaded in this process."""

    def __init__(self, model_dir: str, batching: BatchingParameters | None = None):
        # With `batching`, questions asked at the same time share model calls, as with `serve --enable_batching`.
        self.batcher = Batcher(batching) if batching else None
        find_versions(model_dir)  # a base directory, as `serve` takes; ModelDirError (one line) otherwise
        self.answerer = ExportAnswerer(model_dir, "the demo")
        # The folder's name only: the page is public to whoever reaches it, the server's paths are not.
        self.description = f"{Path(model_dir).resolve().name} (version {self.answerer.version}, loaded locally)"

    def predict(self, question: str, context: str) -> dict:
        try:
            answer = self.answerer.answer([question], [context], batcher=self.batcher)[0]
        except ServingFailure as e:  # the model refused the input (a TF op error): the status TF Serving gives
            raise RequestError(str(e), http_status(e.code)) from None
        return answer.to_row()


class RemoteBackend(Backend):
    """A running TF Serving / `python -m tfqa serve`, over its REST API."""

    def __init__(self, server: str, timeout: float = 30.0):
        self.url, self.timeout = server, timeout
        # Builds a client now so that a malformed URL is a ValueError at start-up, not at the first question.
        self.description = f"{ServingClient(server, timeout=timeout).model_url} (model server)"
        self._local = threading.local()

    def predict(self, question: str, context: str) -> dict:
        # requests.Session is not documented as thread-safe: one client per worker thread.
        if not hasattr(self._local, "client"):
            self._local.client = ServingClient(self.url, timeout=self.timeout)
        return self._local.client.predict({QUESTION: [question], CONTEXT: [context]})[0]


def _number(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None  # NaN is not JSON the browser can parse


def to_answer(row: dict) -> dict:
    """The page's answer from a prediction row; exports without `candidate_*` outputs get no candidates."""
    try:
        answer = Answer.from_row(row)
    except AnswerFormatError as e:
        raise RequestError(f"{e}; is it a raw-text tfqa export?", 502) from None
    # The row without its candidate_* columns, finite numbers only, and the candidates as a list of spans.
    null = answer.null_score_diff
    return {**answer.to_row(candidates=False), SCORE: _number(answer.score),
            NULL_SCORE_DIFF: None if null is None else _number(null),
            "candidates": [{"text": s.text, "score": _number(s.score), "start": s.start, "end": s.end}
                           for s in answer.candidates]}


def parse_question(body: bytes) -> tuple[str, str]:
    """(question, context) from the page's JSON, or RequestError with the message the page shows."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # also 100,000 nested [ and 5,000-digit numbers
        doc = None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("question", "context")):
        raise RequestError('send a JSON object {"question": "...", "context": "..."} with two strings')
    question, context = doc["question"], doc["context"]
    for name, text in (("question", question), ("passage", context)):
        try:
            utf8(text)
        except RequestError as e:  # the rule of every tfqa input: refuse lone surrogates, naming the field
            raise RequestError(f"The {name} is not valid text: {e}") from None
    if not context.strip():
        raise RequestError("The passage is empty: paste a passage or pick a sample first.")
    if not question.strip():
        raise RequestError("The question is empty: type a question first.")
    if len(context) > MAX_PASSAGE_CHARS:
        raise RequestError(f"The passage has {len(context):,} characters; the limit is {MAX_PASSAGE_CHARS:,}. "
                         "Shorten it and ask again.", 413)
    if len(question) > MAX_QUESTION_CHARS:
        raise RequestError(f"The question has {len(question):,} characters; the limit is {MAX_QUESTION_CHARS:,}.", 413)
    return question, context


def _host_name(host_header: str) -> str:
    """The host of a Host header without its port: "[::1]:8080" → "::1", "localhost:80" → "localhost"."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


def allowed_hosts(host: str) -> frozenset[str] | None:
    """Host header names the demo answers when listening on `host` (None: any, for 0.0.0.0 / ::).

    A page on attacker.example whose DNS name is re-pointed at 127.0.0.1 (DNS
    rebinding) reaches a local demo as the same origin: its requests still
    carry `Host: attacker.example`, which is refused. A demo listening on all
    interfaces is public anyway and cannot know its names.
    """
    if host in ("0.0.0.0", "::", ""):
        return None
    return frozenset({"127.0.0.1", "localhost", "::1", host.strip("[]").lower()})


class _Guard:
    """ASGI middleware: Host check (DNS rebinding), same-origin JSON-only POSTs, nosniff on every response."""

    def __init__(self, app, hosts: frozenset[str] | None):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope["method"], headers)

        async def send_nosniff(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]}
            await send(message)

        if refusal:
            return await JSONResponse({"error": refusal[1]}, refusal[0])(scope, receive, send_nosniff)
        await self.app(scope, receive, send_nosniff)

    def _refusal(self, method: str, headers: dict) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.hosts is not None and _host_name(host).lower() not in self.hosts:
            return 400, f"this demo answers for {', '.join(sorted(self.hosts))}, not the host '{host[:100]}'"
        if method != "POST":
            return None
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return 415, "send the question as Content-Type: application/json"
        origin, site = headers.get("origin"), headers.get("sec-fetch-site", "same-origin")
        if (origin is not None and origin.partition("://")[2] != host) or site not in ("same-origin", "none"):
            return 403, "questions are accepted from this demo's own page only (cross-origin request refused)"
        return None


def _page(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()


def create_demo_app(backend: Backend, hosts: frozenset[str] | None = None):
    """The demo's ASGI app around a ready backend, answering Host headers in `hosts` (None: any)."""
    page, samples = _page("demo_page.html"), json.loads(_page("demo_samples.json"))

    async def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": _CSP})

    async def info(request: Request) -> Response:
        return JSONResponse({"model": backend.description, "max_passage_chars": MAX_PASSAGE_CHARS,
                             "max_question_chars": MAX_QUESTION_CHARS})

    async def sample_list(request: Request) -> Response:
        return JSONResponse({"samples": samples})

    async def answer(request: Request) -> Response:
        try:
            body = await read_body(request, MAX_BODY_BYTES, f"The request is over {MAX_BODY_BYTES:,} bytes; passages "
                                                           f"are limited to {MAX_PASSAGE_CHARS:,} characters.")
            question, context = parse_question(body)
        except RequestError as e:
            return JSONResponse({"error": str(e)}, e.status)
        try:
            # The model call blocks for a while: keep the event loop free for other visitors.
            row = await run_in_threadpool(backend.predict, question, context)
        except ServingError as e:  # the model server is down, slow or refused the request
            return JSONResponse({"error": f"The model server did not answer: {e}"}, 502)
        except RequestError as e:  # the local model refused the input (a TF op error)
            return JSONResponse({"error": f"The model could not answer: {e}"}, e.status)
        except Exception as e:  # noqa: BLE001 - the page gets one line, the log the traceback
            log.exception("error while answering")
            return JSONResponse({"error": f"Model error: {type(e).__name__}: {e}"}, 500)
        try:
            return JSONResponse(to_answer(row))
        except RequestError as e:
            return JSONResponse({"error": str(e)}, e.status)

    app = Starlette(routes=[Route("/", index), Route("/api/info", info), Route("/api/samples", sample_list),
                            Route("/api/answer", answer, methods=["POST"])],
                    exception_handlers={HTTPException: json_http_exception})
    return _Guard(app, hosts)


def run_demo(*, model: str | None = None, server: str | None = None, host: str = "127.0.0.1",
             port: int = 8080, batching: BatchingParameters | None = None, reporter: Reporter = SILENT) -> None:
    """Starts the demo for an export directory (`model`) or a model server URL (`server`) until interrupted.

    Reports `Demo at URL (model: ...)` once the page can be loaded; `port=0`
    picks a free port. Raises StartupError (one line) when it cannot start.
    """
    try:
        if model is not None:
            find_versions(model)  # a wrong path fails now, before TensorFlow loads
        sock = listen(host, port)
        backend = LocalBackend(model, batching) if model is not None else RemoteBackend(server)
    except (ModelDirError, ValueError) as e:
        raise StartupError(str(e)) from None
    if isinstance(backend, RemoteBackend):
        try:
            ServingClient(server, timeout=5).status()
        except ServingError as e:  # it may come up later; meanwhile the page shows this same error
            reporter.warn(str(e))
    run_server(create_demo_app(backend, allowed_hosts(host)), sock, f"Demo at {base_url(host, sock)}/ (model: {backend.description})",
               reporter)
