"""tfqa.rest.client and `python -m tfqa ask`: batching, both request formats, versions, and one-line errors."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys

import pytest
import requests
from helpers import ROOT
from serving_helpers import ThreadedServer, build_fake_qa_model, expected_answer, free_port
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tfqa.apps.cli import main
from tfqa.rest.client import ServingClient, ServingError
from tfqa.rest.server import create_app

CONTEXT = "Denver Broncos won Super Bowl 50"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """An in-thread uvicorn server: versions 1 (first word) and 2 (last word), label stable → 1."""
    base = tmp_path_factory.mktemp("export") / "tfqa"
    build_fake_qa_model(base / "1")
    build_fake_qa_model(base / "2", word="last")
    with ThreadedServer(create_app(base, all_versions=True, labels={"stable": 1})) as running:
        yield f"http://127.0.0.1:{running.port}/v1/models/tfqa"


class CountingSession(requests.Session):
    def __init__(self):
        super().__init__()
        self.posts = []

    def request(self, method, url, **kwargs):
        if method == "POST":
            self.posts.append(json.loads(kwargs["data"]))
        return super().request(method, url, **kwargs)


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_answer_batches_questions(server, batch_size):
    questions = [f"question {'?' * i}" for i in range(10)]
    contexts = [f"word{i} and more w{i}" for i in range(10)]
    session = CountingSession()
    results = ServingClient(server, batch_size=batch_size, session=session).answer(questions, contexts)
    assert len(session.posts) == math.ceil(10 / batch_size)
    assert all(len(body["instances"]) <= batch_size for body in session.posts)
    assert results == [expected_answer(q, c, word="last") for q, c in zip(questions, contexts)]


def test_row_and_columnar_give_the_same_answers(server):
    questions = ["Who won?", "What was won?", "Which one?"]
    session = CountingSession()
    row = ServingClient(server, format="row").answer(questions, CONTEXT)
    columnar = ServingClient(server, format="columnar", session=session).answer(questions, CONTEXT)
    assert row == columnar == [expected_answer(q, CONTEXT, word="last") for q in questions]
    assert session.posts == [{"signature_name": "serving_default",
                              "inputs": {"question": questions, "context": [CONTEXT] * 3}}]


def test_versions_labels_status_and_metadata(server):
    first = expected_answer("Who?", CONTEXT)
    assert ServingClient(server, version=1).answer("Who?", CONTEXT) == [first]
    assert ServingClient(server, label="stable").answer("Who?", CONTEXT) == [first]
    assert ServingClient(server + "/versions/1").answer(["Who?"], [CONTEXT]) == [first]
    assert ServingClient(server, label="stable").model_url == server + "/labels/stable"
    client = ServingClient(server)
    assert [s["version"] for s in client.status()["model_version_status"]] == ["2", "1"]
    assert ServingClient(server, version=1).status()["model_version_status"][0]["version"] == "1"
    meta = client.metadata()
    assert meta["model_spec"]["version"] == "2"
    assert "serving_default" in meta["metadata"]["signature_def"]["signature_def"]
    with pytest.raises(ValueError, match="a version or a label, not both"):
        ServingClient(server, version=1, label="stable")
    with pytest.raises(ValueError, match="is not a model URL"):
        ServingClient("http://localhost:8501/v1/tfqa")


def test_connection_refused_is_a_clear_serving_error():
    url = f"http://127.0.0.1:{free_port()}/v1/models/tfqa"
    with pytest.raises(ServingError, match="connection refused: no server answers there") as err:
        ServingClient(url).answer("Who?", CONTEXT)
    assert url in str(err.value) and isinstance(err.value, RuntimeError)


def test_timeout_says_the_seconds():
    with socket.socket() as silent:  # accepts connections (kernel backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1/models/tfqa"
        with pytest.raises(ServingError, match=r"no answer within 0\.3 s \(timeout"):
            ServingClient(url, timeout=0.3).answer("Who?", CONTEXT)


def test_http_errors_carry_tf_servings_message(server):
    with pytest.raises(ServingError, match=r"HTTP 404 Not Found: Servable not found for request: Specific\(tfqa, 9\)"):
        ServingClient(server, version=9).answer("Who?", CONTEXT)
    with pytest.raises(ServingError, match=r'HTTP 400 Bad Request: Serving signature name: "nope" not found'):
        ServingClient(server, signature_name="nope").answer("Who?", CONTEXT)
    with pytest.raises(ServingError, match="HTTP 400 Bad Request: input 'question' element 0 is an empty string"):
        ServingClient(server).answer("", CONTEXT)


def test_invalid_and_unexpected_responses():
    async def not_json(request):
        return PlainTextResponse("<html>oops</html>")

    async def proxy_error(request):
        return PlainTextResponse("Bad Gateway from proxy", status_code=502)

    async def wrong_shape(request):
        return Response('{"predictions": [1, 2, 3]}', media_type="application/json")

    async def not_qa(request):
        return Response('{"predictions": [{"start_logits": [1.0]}]}', media_type="application/json")

    app = Starlette(routes=[Route("/a/v1/models/m", not_json), Route("/b/v1/models/m", proxy_error),
                            Route("/c/v1/models/m:predict", wrong_shape, methods=["POST"]),
                            Route("/d/v1/models/m:predict", not_qa, methods=["POST"])])
    with ThreadedServer(app) as running:
        base = f"http://127.0.0.1:{running.port}"
        with pytest.raises(ServingError, match="the response is not a JSON object: '<html>oops</html>'"):
            ServingClient(base + "/a/v1/models/m").status()
        with pytest.raises(ServingError, match="HTTP 502 Bad Gateway: Bad Gateway from proxy"):
            ServingClient(base + "/b/v1/models/m").status()
        with pytest.raises(ServingError, match="unexpected predict response .*3 results for 1 examples"):
            ServingClient(base + "/c/v1/models/m").answer("Who?", CONTEXT)
        with pytest.raises(ServingError, match=r"outputs \(start_logits\) have no 'answer'"):
            ServingClient(base + "/d/v1/models/m").answer("Who?", CONTEXT)


def ask(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "tfqa", "ask", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_ask_cli_end_to_end(server, tmp_path):
    done = ask("--server", server, "--question", "Who won?", "--question", "What?", "--context", CONTEXT)
    assert (done.returncode, done.stdout, done.stderr) == (0, "50\n50\n", "")
    done = ask("--server", server, "--version", "1", "--question", "Who won?", "--json", "--format", "columnar",
               stdin=CONTEXT)
    assert done.returncode == 0
    assert json.loads(done.stdout) == {"question": "Who won?", **expected_answer("Who won?", CONTEXT)}
    (tmp_path / "context.txt").write_text("Zürich café\n", encoding="utf-8")
    done = ask("--server", server, "--label", "stable", "--question", "Where?", "--context-file",
               str(tmp_path / "context.txt"))
    assert (done.returncode, done.stdout) == (0, "Zürich\n")


def test_ask_cli_errors_are_one_line(server, capsys):
    url = f"http://127.0.0.1:{free_port()}/v1/models/tfqa"
    done = ask("--server", url, "--question", "Who?", "--context", CONTEXT)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"tfqa: error: {url}:predict: connection refused") and done.stderr.count("\n") == 1
    for argv, message in [(["--server", server, "--version", "9"], "HTTP 404 Not Found: Servable not found"),
                          (["--server", server + "x/versions/a"], "is not a model URL"),
                          (["--server", server, "--context-file", "/nonexistent"], "cannot read the context"),
                          (["--server", server, "--context", "  "], "must contain some text")]:
        argv = ["ask", "--question", "Who?"] + argv + ([] if "--context-file" in argv or "--context" in argv
                                                      else ["--context", CONTEXT])
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("tfqa: error: ") and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("value", ["nan", "inf", "1e308", "0", "-1"])
def test_ask_timeouts_beyond_a_day_or_not_positive_are_one_line(server, capsys, value):  # issue 20 #10
    code = main(["ask", "--server", server, "--question", "Who?", "--context", CONTEXT, "--timeout", value])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "--timeout must be a positive number of seconds up to 86400" in err


@pytest.mark.parametrize("value", ["-1", str(2**63)])
def test_ask_versions_outside_int64_are_one_line(server, capsys, value):  # issue 20 #9: the CLIs' audit
    code = main(["ask", "--server", server, "--question", "Who?", "--context", CONTEXT, "--version", value])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--version must be a model version from 0 to" in err, err


@pytest.mark.parametrize("timeout", [math.nan, math.inf, 1e308, 0, "30"])
def test_client_refuses_timeouts_it_cannot_wait(timeout):  # issue 20 #10: OverflowError/ValueError later before
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        ServingClient("http://localhost:8501/v1/models/tfqa", timeout=timeout)


def test_labels_are_sent_as_one_quoted_path_segment(server):  # issue 20 #16: "../x" reached /v1/models/x:predict
    seen = []

    class Recording(requests.Session):
        def request(self, method, url, **kwargs):
            seen.append(url)
            return super().request(method, url, **kwargs)

    client = ServingClient(server, label="../x", session=Recording())
    assert client.model_url == server + "/labels/..%2Fx"
    with pytest.raises(ServingError, match="HTTP 4"):
        client.answer("Who?", CONTEXT)
    assert seen == [server + "/labels/..%2Fx:predict"]
    assert ServingClient(server + "/labels/stable").answer("Who?", CONTEXT)  # a label in the URL is kept as written
