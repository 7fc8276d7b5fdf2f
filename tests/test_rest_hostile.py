"""Hostile requests to `python -m tfqa serve` (issue 15): every answer is JSON, 4xx for bad input, never 5xx.

Request-level bugs run in-process (Starlette's TestClient); connection-level ones
(slow clients, caps, malformed HTTP, disconnects) against a real guarded uvicorn
on a socket. Hypothesis throws random JSON at the predict route.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time

import pytest
import requests
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from serving_helpers import TestClient, ThreadedServer, fake_export

from tfqa.apps.cli import main
from tfqa.rest.limits import ConnectionLimits
from tfqa.rest.server import create_app
from tfqa.serving.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_TEXT_BYTES

QA = {"question": "Who won?", "context": "Denver Broncos won"}
PREDICT = "/v1/models/tfqa:predict"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return fake_export(tmp_path_factory, "hostile")


@pytest.fixture(scope="module")
def app(export_dir):
    return create_app(export_dir, max_instances=4, read_timeout=1.0)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


def post(client, body, url=PREDICT):
    return client.post(url, content=body if isinstance(body, bytes) else json.dumps(body).encode(),
                       headers={"content-type": "application/json"})


def check_json_error(response, status, *fragments):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert all(f in error for f in fragments), error
    assert "\n" not in error and "Traceback" not in error


def nested(depth: int) -> bytes:
    return b'{"inputs": {"context": ["x"], "question": ' + b"[" * depth + b'"x"' + b"]" * depth + b"}}"


@pytest.mark.parametrize("body, fragment", [
    (nested(70), "nested more than 32 lists deep"),  # was 500: NumPy holds at most 64 dimensions
    (b'{"instances": ' + b"[" * 100_000, "nested too deeply"),
    (nested(900), "nested more than 32 lists deep"),
    (b'{"signature_name": "serving_default", "x": ' + b"7" * 5000 + b', "instances": [1]}',
     "Number too big to be stored in double"),  # was 500 (int() refuses 4,300+ digits)
    (b'{"instances": [{"question": "a", "context": ' + b"9" * 30 + b"}]}", "is not of expected type: string"),
], ids=["70-deep", "100k-open", "900-deep", "5000-digits", "30-digit-int"])
def test_deep_nesting_and_huge_numbers_are_400(client, body, fragment):
    check_json_error(post(client, body), 400, fragment)


def test_huge_version_numbers_are_400(client):
    digits = "9" * 5000
    check_json_error(client.get(f"/v1/models/tfqa/versions/{digits}"), 400, "Failed to convert version")
    check_json_error(post(client, {"instances": [QA]}, f"/v1/models/tfqa/versions/{digits}:predict"), 400,
                     "Failed to convert version")
    check_json_error(client.get(f"/v1/models/tfqa/versions/{2**63}"), 400, "Failed to convert version")
    check_json_error(client.get(f"/v1/models/tfqa/versions/{2**63 - 1}"), 404, "Could not find version")


def test_lone_surrogates_are_refused_naming_the_element_and_input(client):
    """The rule of every tfqa input: refuse, naming the record and field (offsets would shift otherwise, #7)."""
    body = b'{"instances": [{"question": "Who?", "context": "Ada Lovelace"}, ' \
           b'{"question": "Who?", "context": "a Lovelace \\udfff"}]}'
    check_json_error(post(client, body), 400, "Failed to process element: 1 key: context",
                     "lone surrogate \\udfff at character 11")
    body = b'{"inputs": {"question": ["\\ud800 Who?"], "context": ["Ada"]}}'
    check_json_error(post(client, body), 400, "input 'question'", "lone surrogate \\ud800 at character 0")
    # A real pair is one character: answered, with code point offsets.
    response = post(client, b'{"instances": [{"question": "Who?", "context": "\\ud83d\\ude00 Ada"}]}')
    assert response.status_code == 200
    assert response.json()["predictions"][0]["answer"] == "\U0001F600"


def test_instances_over_the_cap_get_400_like_tf_serving(client):
    assert post(client, {"instances": [QA] * 4}).status_code == 200
    check_json_error(post(client, {"instances": [QA] * 5}), 400, "5 instances", "at most 4", "--max-instances")
    check_json_error(post(client, {"inputs": {"question": ["a"] * 6, "context": ["b c"] * 6}}), 400, "6 instances")
    # Counted before the instances are decoded: 10,000 malformed ones get the cap error, not a type error.
    check_json_error(post(client, {"instances": [1] * 10_000}), 400, "10000 instances")


def test_text_over_the_work_bound_gets_400_and_the_server_keeps_serving(client):  # issue 20 #14
    big = "Denver Broncos won " * (DEFAULT_MAX_TEXT_BYTES // 19 + 1)  # under the body limit, over the text bound
    assert len(json.dumps({"instances": [{"question": "Who?", "context": big}]})) < DEFAULT_MAX_BODY_BYTES
    check_json_error(post(client, {"instances": [{"question": "Who?", "context": big}]}), 400,
                     f"bytes of text; this server takes at most {DEFAULT_MAX_TEXT_BYTES} per request",
                     "--max-text-bytes")
    # Every instance counts: 4 contexts of a third of the bound each are over it together.
    third = "x " * (DEFAULT_MAX_TEXT_BYTES // 6)
    check_json_error(post(client, {"inputs": {"question": ["a"] * 4, "context": [third] * 4}}), 400,
                     "--max-text-bytes")
    assert post(client, {"instances": [{"question": "Who?", "context": big[:DEFAULT_MAX_TEXT_BYTES // 2]}]}
                ).status_code == 200
    assert post(client, {"instances": [QA]}).status_code == 200


def test_the_text_bound_is_a_serve_flag(export_dir):  # issue 20 #14
    app = create_app(export_dir, max_text_bytes=100)
    check_json_error(post(TestClient(app), {"instances": [{"question": "Who?", "context": "x" * 97}]}), 400,
                     "101 bytes of text", "at most 100")
    assert post(TestClient(app), {"instances": [QA]}).status_code == 200
    assert main(["serve", "--model", str(export_dir), "--max-text-bytes", "0"]) == 2


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND"])
def test_unknown_methods_get_json(client, method):
    check_json_error(client.request(method, "/v1/models/tfqa"), 405, "Method Not Allowed")


def test_cli_refuses_bad_port_label_and_name(export_dir, capsys):
    for argv, message in [(["--port", "70000"], "--port 70000 is not a TCP port"),
                          (["--port", "-1"], "--port -1 is not a TCP port"),
                          (["--label", "stable=" + "1" * 5000], "is beyond int64"),
                          (["--name", "a/b:c"], "model name 'a/b:c'"),
                          (["--max-instances", "0"], "--max-instances must be positive"),
                          (["--read-timeout", "nan"], "--read-timeout must be a positive number"),
                          # issue 20 #10: asyncio cannot wait that long (OverflowError once a client connected)
                          (["--read-timeout", "1e308"], "--read-timeout must be a positive number of seconds up to"),
                          (["--idle-timeout", "inf"], "--idle-timeout must be a positive number of seconds up to")]:
        assert main(["serve", "--model", str(export_dir), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("tfqa: error: ") and message in err and err.count("\n") == 1, err
        assert len(err) < 300


# --- Connections: a real server on a socket ---------------------------------------------------------------

LIMITS = ConnectionLimits(max_connections=4, read_timeout=1.0, idle_timeout=1.0)


@pytest.fixture(scope="module")
def server(app):
    with ThreadedServer(app, LIMITS) as running:
        yield running


def raw_exchange(port: int, *chunks: bytes, pause: float = 0.0, timeout: float = 5.0) -> tuple[bytes, float]:
    """Sends `chunks` (sleeping `pause` between them), then reads until the server closes: (reply, seconds)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
                time.sleep(pause)
        except OSError:  # the server already answered and closed
            pass
        reply = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            reply += data
    return reply, time.monotonic() - started


def reply_json(reply: bytes) -> tuple[int, dict]:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), reply
    return int(head.split()[1]), json.loads(body)


def test_bad_content_length_gets_a_json_400(server):
    reply, _ = raw_exchange(server.port, b"POST /v1/models/tfqa:predict HTTP/1.1\r\nHost: x\r\n"
                                         b"Content-Length: abc\r\n\r\n{}")
    status, body = reply_json(reply)
    assert status == 400 and body["error"].startswith("Malformed HTTP request")


def test_silent_and_trickling_clients_are_cut_with_408(server):
    reply, seconds = raw_exchange(server.port)  # connects, sends nothing
    assert reply_json(reply) == (408, {"error": "no complete request headers within 1 s (--read-timeout)"})
    assert seconds < 3
    trickle = [bytes([b]) for b in b"GET /v1/models/tfqa HTTP/1.1\r\nHost: x\r\n"]
    reply, seconds = raw_exchange(server.port, *trickle, pause=0.2)  # would take 8 s
    assert reply_json(reply)[0] == 408 and seconds < 4


def test_a_body_shorter_than_its_content_length_gets_408(server):
    reply, seconds = raw_exchange(server.port, b"POST /v1/models/tfqa:predict HTTP/1.1\r\nHost: x\r\n"
                                               b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"in")
    status, body = reply_json(reply)
    assert status == 408 and "did not arrive within 1 s" in body["error"] and "4 of 100 bytes" in body["error"]
    assert seconds < 3


def test_idle_keep_alive_connections_are_closed(server):
    with requests.Session() as session:
        assert session.get(f"http://127.0.0.1:{server.port}/v1/models/tfqa").status_code == 200
        time.sleep(1.5)
        # The pooled connection was closed by the server; requests reconnects transparently.
        assert session.get(f"http://127.0.0.1:{server.port}/v1/models/tfqa").status_code == 200


def test_connections_beyond_the_cap_get_503_and_the_server_recovers(server):
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(LIMITS.max_connections)]
    try:
        time.sleep(0.2)
        reply, seconds = raw_exchange(server.port, b"GET /v1/models/tfqa HTTP/1.1\r\nHost: x\r\n\r\n")
        status, body = reply_json(reply)
        assert status == 503 and "--max-connections" in body["error"] and seconds < 1
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert requests.get(f"http://127.0.0.1:{server.port}/v1/models/tfqa", timeout=5).status_code == 200


def test_client_gone_mid_body_logs_no_traceback(server, caplog):
    caplog.set_level(logging.DEBUG)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /v1/models/tfqa:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"instances\": [")
        time.sleep(0.2)
    time.sleep(0.3)
    assert requests.post(f"http://127.0.0.1:{server.port}{PREDICT}", json={"instances": [QA]}).status_code == 200
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text


def test_fd_exhaustion_is_logged_once(tmp_path):
    """With the fd limit reached, accept() fails every second; one log line in all, no tracebacks (#5)."""
    import subprocess
    import sys

    from helpers import ROOT

    script = tmp_path / "serve_few_fds.py"
    script.write_text(
        "import resource, socket, sys\n"
        "from starlette.applications import Starlette\n"
        "from tfqa.rest.connections import GuardedServer\n"
        "from tfqa.rest.limits import ConnectionLimits\n"
        "from tfqa.serving.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_TEXT_BYTES\n"
        "sock = socket.socket(); sock.bind(('127.0.0.1', 0)); sock.listen(512)\n"
        "print(sock.getsockname()[1], flush=True)\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))\n"
        "GuardedServer(Starlette(), ConnectionLimits(max_connections=1000, read_timeout=30), "
        "log_level='warning', timeout_graceful_shutdown=1).run(sockets=[sock])\n")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    clients = []
    try:
        port = int(proc.stdout.readline())
        for _ in range(120):
            try:
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        time.sleep(3.5)  # asyncio retries the failing accept() once a second
    finally:
        for sock in clients:
            sock.close()
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert err.count("out of file descriptors") == 1, err[-2000:]
    assert "Traceback" not in err and "Too many open files" in err


# --- Hypothesis: random JSON never gets a 5xx --------------------------------------------------------------

_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                    st.integers(min_value=-10**40, max_value=10**40))
_JSON = st.recursive(_SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=6), inner, max_size=3),
                                                      st.fixed_dictionaries({"b64": st.text(max_size=8)})),
                     max_leaves=12)
_TEXTS = st.lists(st.one_of(st.text(max_size=12), _JSON), min_size=1, max_size=5)
_REQUEST = st.one_of(
    _JSON,
    st.fixed_dictionaries({"instances": st.one_of(_JSON, st.lists(st.fixed_dictionaries(
        {"question": st.one_of(st.text(max_size=12), _JSON), "context": st.one_of(st.text(max_size=12), _JSON)}),
        max_size=5))}, optional={"signature_name": st.one_of(st.sampled_from(["token_ids", "serving_default"]), _JSON)}),
    st.fixed_dictionaries({"inputs": st.one_of(_JSON, st.fixed_dictionaries({"question": _TEXTS, "context": _TEXTS}),
                                               st.fixed_dictionaries({"input_ids": _JSON, "attention_mask": _JSON}))},
                          optional={"signature_name": st.sampled_from(["token_ids", "nope", ""])}),
)


@seed(15)
@settings(max_examples=150, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=_REQUEST, route=st.sampled_from([PREDICT, "/v1/models/tfqa/versions/1:predict",
                                            "/v1/models/tfqa/labels/x:predict"]))
def test_property_random_json_requests_get_2xx_or_4xx_never_5xx(client, doc, route):
    body = json.dumps(doc, allow_nan=True).encode()
    response = post(client, body, route)
    assert response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert set(answer) <= {"predictions", "outputs"} if response.status_code == 200 else set(answer) == {"error"}


@seed(15)
@settings(max_examples=60, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=64))
def test_property_random_bytes_bodies_get_4xx(client, body):
    response = post(client, body)
    assert 400 <= response.status_code < 500 and set(response.json()) == {"error"}, response.text
