"""`python -m tfqa serve`: a local server that answers TensorFlow Serving's REST API.

For machines without Docker, and for tests: the same routes, request formats,
response shapes and error answers as TF Serving's REST API
(https://www.tensorflow.org/tfx/serving/api_rest), so a client written against
one works against the other. Production deployments use the
`tensorflow/serving` image.

    GET  /v1/models/NAME[/versions/N|/labels/L]            model status
    GET  /v1/models/NAME[/versions/N|/labels/L]/metadata   signature defs
    POST /v1/models/NAME[/versions/N|/labels/L]:predict    row or columnar predict

A Starlette app served by uvicorn; parsing and TensorFlow calls run in a thread
pool so the event loop keeps accepting requests while a model runs. The models,
their versions (several models from `--model_config_file`, new versions picked
up by polling) and batching are the transport-free `tfqa.serving`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tfqa.core.progress import SILENT, Reporter
from tfqa.rest.http import (RequestError, StartupError, base_url, error_code, http_status, json_http_exception, listen,
                            read_body, run_server)
from tfqa.rest.json_api import (check_batch_size, decode_inputs, dumps, encode_outputs, parse_json_object,
                                signature_name_of)
from tfqa.rest.limits import ConnectionLimits
from tfqa.serving.batching import Batcher
from tfqa.serving.batching_config import BatchingParameters
from tfqa.serving.errors import Code
from tfqa.serving.inputs import check_inputs
from tfqa.serving.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INSTANCES, DEFAULT_MAX_TEXT_BYTES
from tfqa.serving.live import ServedModels, load_models
from tfqa.serving.metrics import PROMETHEUS_TEXT, ServingMetrics
from tfqa.serving.model_config import read_model_config
from tfqa.serving.servables import (Model, ModelDirError, ServingFailure, check_model_name, find_versions, load_model,
                                    release_memory)

# After requests this big, freed memory is handed back to the OS (see servables.release_memory).
_BIG_BODY_BYTES = 256 * 1024
# TF Serving's URL patterns (http_rest_api_util.cc), matched case-insensitively on the decoded path.
_VERSION_OR_LABEL = r"(?:/versions/(\d+)|/labels/([^/:]+))?"
PREDICT_PATH = re.compile(rf"/v1/models/([^/:]+){_VERSION_OR_LABEL}:(classify|regress|predict)", re.I)
STATUS_PATH = re.compile(rf"/v1/models(?:/([^/:]+))?{_VERSION_OR_LABEL}(?:/(metadata))?", re.I)
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
log = logging.getLogger("tfqa.rest.server")


def _json_response(obj, status: int = 200) -> Response:
    return Response(dumps(obj), status_code=status, media_type="application/json")


def predict(model: Model | ServedModels, name: str, version: int | None, label: str | None, body: bytes,
            max_instances: int = DEFAULT_MAX_INSTANCES, batcher: Batcher | None = None,
            max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> dict:
    """A whole predict request, in TF Serving's order: JSON, servable, signature, inputs, run, encode.

    With a `batcher` (--enable_batching) the model call is merged with concurrent requests'. The version
    stays loaded until the request is answered, even when polling unloads it meanwhile.
    """
    doc = parse_json_object(body)
    signature_name = signature_name_of(doc)
    with model.serving(name, version, label) as servable:
        signature = servable.signature(signature_name)
        check_batch_size(doc, None, max_instances)
        request_format, arrays = decode_inputs(doc, signature.dtypes)
        check_inputs(arrays, signature, max_instances, max_text_bytes)
        try:
            outputs = batcher.run(servable, signature, arrays) if batcher else servable.run(signature, arrays)
            return encode_outputs(outputs, request_format)
        finally:
            if len(body) >= _BIG_BODY_BYTES:
                del doc, arrays
                release_memory()


def version_number(text: str | None) -> int | None:
    """The version of a /versions/N URL (None without one); 400 beyond int64, as TF Serving answers."""
    if text is None:
        return None
    if len(text) > 19 or int(text) >= 2**63:
        raise RequestError(f"Failed to convert version: {text[:30]}{'...' if len(text) > 30 else ''} to numeric.")
    return int(text)


def build_app(model: Model | ServedModels, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
              max_instances: int = DEFAULT_MAX_INSTANCES, read_timeout: float = ConnectionLimits.read_timeout,
              batching: BatchingParameters | None = None, max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES, *,
              batcher: Batcher | None = None, metrics: ServingMetrics | None = None,
              request_timeout: float | None = None) -> Starlette:
    """The ASGI app serving an already loaded model (or models); `batching` turns on server-side batching.

    `batcher` shares an existing batching queue (the gRPC server's); `metrics`
    counts every request and answers Prometheus scrapes at `metrics.path`;
    a predict not answered within `request_timeout` seconds gets TF Serving's
    DEADLINE_EXCEEDED (504), like its --rest_api_timeout_in_ms.
    """
    shared_batcher = batcher is not None
    batcher = batcher or (Batcher(batching) if batching else None)

    async def endpoint(request: Request) -> Response:
        if metrics is None or request.url.path == metrics.path:
            return await respond(request)
        start = time.perf_counter()
        response = await respond(request)
        name, api = getattr(request.state, "model_name", ""), getattr(request.state, "api", "")
        metrics.request(name, error_code(response.status_code), api, "REST", time.perf_counter() - start)
        return response

    async def predict_in_thread(*args):
        if request_timeout is None:
            return await run_in_threadpool(predict, *args)
        try:
            return await asyncio.wait_for(run_in_threadpool(predict, *args), request_timeout)
        except TimeoutError:
            raise ServingFailure(f"the request took longer than {request_timeout * 1000:g} ms "
                                 "(--rest_api_timeout_in_ms)", Code.DEADLINE_EXCEEDED) from None

    async def respond(request: Request) -> Response:
        method, path = request.method, request.url.path
        try:
            if metrics is not None and method == "GET" and path == metrics.path:
                return Response(metrics.exposition(), media_type=PROMETHEUS_TEXT)
            if not path.lower().startswith("/v1/"):
                raise RequestError(f"Not found: {path} (this server answers TensorFlow Serving's REST API "
                                   f"under /v1/models/{model.name})", 404)
            match = PREDICT_PATH.fullmatch(path) if method == "POST" else None
            if match:
                name, version, label, verb = match.groups()
                request.state.model_name, request.state.api = name, verb.lower()
                body = await read_body(request, max_body_bytes, f"the request body exceeds the limit of "
                                                                f"{max_body_bytes} bytes (--max-body-bytes)",
                                       read_timeout)
                if verb.lower() != "predict":
                    raise RequestError(f"{verb.lower()} is not implemented by this server; use :predict", 501)
                return _json_response(await predict_in_thread(model, name, version_number(version), label, body,
                                                              max_instances, batcher, max_text_bytes))
            match = STATUS_PATH.fullmatch(path) if method == "GET" else None
            if match:
                name, version, label, metadata = match.groups()
                request.state.model_name = name or ""
                if not name:
                    raise RequestError("Missing model name in request.")
                answer = model.metadata if metadata else model.status
                return _json_response(answer(name, version_number(version), label))
            raise RequestError(f"Malformed request: {method} {path}")
        except asyncio.CancelledError:
            # SIGTERM, and the graceful-shutdown wait (5 s) ran out while the model computed: an answer, not
            # a CancelledError traceback per request (issue 20 #12).
            return _json_response({"error": "the server is shutting down; the request was not finished"}, 503)
        except RequestError as e:
            return _json_response({"error": str(e)}, e.status)
        except ServingFailure as e:
            return _json_response({"error": str(e)}, http_status(e.code))
        except Exception as e:  # noqa: BLE001 - the client gets JSON, the server log the traceback
            log.exception("error while answering %s %s", method, path)
            return _json_response({"error": f"Internal error: {type(e).__name__}: {e}"}, 500)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        if batcher and not shared_batcher:
            await run_in_threadpool(batcher.close)

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=_METHODS)],
                    exception_handlers={HTTPException: json_http_exception}, lifespan=lifespan)
    app.state.model, app.state.batcher = model, batcher
    return app


def create_app(model_dir: str | Path, name: str | None = None, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               all_versions: bool = False, labels: dict[str, int] | None = None,
               max_instances: int = DEFAULT_MAX_INSTANCES,
               read_timeout: float = ConnectionLimits.read_timeout,
               batching: BatchingParameters | None = None,
               max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> Starlette:
    """Loads the export directory `model_dir` (see `tfqa.serving.servables.load_model`) and returns the ASGI app.

    Raises `ModelDirError` (one line) when the directory cannot be served.
    """
    return build_app(load_model(model_dir, name, all_versions=all_versions, labels=labels), max_body_bytes,
                     max_instances, read_timeout, batching, max_text_bytes)


def serve(model_dir: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 8501,
          name: str | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, all_versions: bool = False,
          labels: dict[str, int] | None = None, max_instances: int = DEFAULT_MAX_INSTANCES,
          limits: ConnectionLimits = ConnectionLimits(), batching: BatchingParameters | None = None,
          model_config_file: str | Path | None = None, poll_seconds: float = 1.0,
          reporter: Reporter = SILENT, max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> None:
    """Loads the model (or the models of `model_config_file`) and serves it until interrupted (SIGINT/SIGTERM).

    Reports one line with the model URL once requests are accepted; `port=0`
    picks a free port (the line says which). Every `poll_seconds` (0: never) the
    base directories are read again and new versions served (`tfqa.serving.live`).
    Raises StartupError (one line) when a directory or the config file cannot be
    served or the port cannot be had.
    """
    problems = limits.problems()
    problems += [f"--max-body-bytes must be positive, not {max_body_bytes}"] if max_body_bytes < 1 else []
    problems += [f"--max-instances must be positive, not {max_instances}"] if max_instances < 1 else []
    problems += [f"--max-text-bytes must be positive, not {max_text_bytes}"] if max_text_bytes < 1 else []
    problems += ([f"--file_system_poll_wait_seconds must be 0 (no polling) or more, not {poll_seconds}"]
                 if not 0 <= poll_seconds < float("inf") else [])
    if (model_dir is None) == (model_config_file is None):
        problems.append("give an export directory (--model) or a --model_config_file, not both or neither")
    if problems:
        raise StartupError("; ".join(problems))
    try:
        if model_config_file is not None:
            specs = read_model_config(model_config_file)
            for spec in specs:
                find_versions(spec.base_path)  # fails fast, before the port and TensorFlow
        else:
            check_model_name(name)
            find_versions(model_dir)
        sock = listen(host, port)
        models = (load_models(specs, reporter) if model_config_file is not None else
                  ServedModels([load_model(model_dir, name, all_versions=all_versions, labels=labels)], reporter))
    except ModelDirError as e:
        raise StartupError(str(e)) from None
    app = build_app(models, max_body_bytes, max_instances, limits.read_timeout, batching, max_text_bytes)
    batched = f" (batching up to {batching.max_batch_size} rows per model call)" if batching else ""
    if model_config_file is None:
        served = f"{model_dir} {_versions(models.models[models.name])}"
    else:
        served = f"{model_config_file} (" + "; ".join(f"{m.name}: {_versions(m)}" for m in models.models.values()) + ")"
    models.start_polling(poll_seconds)
    try:
        run_server(app, sock, f"Serving {served}{batched} at {base_url(host, sock)}/v1/models/{models.name}",
                   reporter, limits)
    finally:
        models.close()


def _versions(model: Model) -> str:
    return f"version{'s' if len(model.servables) > 1 else ''} {', '.join(map(str, model.servables))}"
