"""`python -m tfqa serve` / tfqa.rest.server: TF Serving's REST routes, request formats, errors and concurrency."""

from __future__ import annotations

import json
import signal
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from serving_helpers import ThreadedServer, build_fake_qa_model, expected_answer, start_serve, TestClient

from tfqa.apps.cli import main
from tfqa.rest.json_api import dumps, encode_outputs
from tfqa.rest.server import create_app
from tfqa.serving.servables import ModelDirError, find_versions, load_model

MAX_BODY = 4096
QA = {"question": "Who is it?", "context": "Denver Broncos won"}
SIG_OUTPUTS = {"answer": "DT_STRING", "score": "DT_FLOAT", "answer_start": "DT_INT32", "answer_end": "DT_INT32",
               "null_score_diff": "DT_FLOAT"}


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """export/tfqa with versions 1 (first word) and 2 (last word), plus entries TF Serving ignores."""
    base = tmp_path_factory.mktemp("export") / "tfqa"
    build_fake_qa_model(base / "1", warmup=True)
    build_fake_qa_model(base / "2", word="last")
    (base / ".tmp-3").mkdir()
    (base / "notes.txt").write_text("not a version")
    return base


@pytest.fixture(scope="module")
def app(export_dir):
    return create_app(export_dir, all_versions=True, labels={"stable": 1}, max_body_bytes=MAX_BODY)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


def status_of(*versions):
    return {"model_version_status": [{"version": str(v), "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}} for v in versions]}


def test_model_status_routes(client):
    assert client.get("/v1/models/tfqa").json() == status_of(2, 1)  # newest first, as TF Serving lists them
    assert client.get("/v1/models/tfqa/versions/1").json() == status_of(1)
    assert client.get("/v1/models/tfqa/labels/stable").json() == status_of(1)
    for url, code, message in [("/v1/models/tfqa/versions/3", 404, "Could not find version 3 of model tfqa"),
                               ("/v1/models/other", 404, "Could not find any versions of model other"),
                               ("/v1/models/tfqa/labels/beta", 400, "Unrecognized servable version label: beta"),
                               ("/v1/models", 400, "Missing model name in request.")]:
        response = client.get(url)
        assert (response.status_code, response.json()) == (code, {"error": message}), url
        assert response.headers["content-type"] == "application/json"


def test_default_policy_serves_the_newest_version_only(export_dir):
    """Like TF Serving's default `latest` version policy; .tmp-3 and notes.txt are not versions."""
    assert sorted(find_versions(export_dir)) == [1, 2]
    client = TestClient(create_app(export_dir))
    assert client.get("/v1/models/tfqa").json() == status_of(2)
    response = client.post("/v1/models/tfqa/versions/1:predict", json={"instances": [QA]})
    assert response.status_code == 404 and response.json() == {"error": "Servable not found for request: "
                                                                         "Specific(tfqa, 1)"}


def test_metadata(client):
    meta = client.get("/v1/models/tfqa/metadata").json()
    assert meta["model_spec"] == {"name": "tfqa", "signature_name": "", "version": "2"}
    defs = meta["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "token_ids"} <= set(defs)
    default = defs["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert set(default["inputs"]) == {"question", "context"}
    assert default["inputs"]["question"]["dtype"] == "DT_STRING"
    assert default["inputs"]["question"]["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}],
                                                             "unknown_rank": False}
    assert {k: v["dtype"] for k, v in default["outputs"].items()} == SIG_OUTPUTS
    assert {k: v["dtype"] for k, v in defs["token_ids"]["inputs"].items()} == {"input_ids": "DT_INT32",
                                                                              "attention_mask": "DT_INT32"}
    assert client.get("/v1/models/tfqa/versions/1/metadata").json()["model_spec"]["version"] == "1"
    assert client.get("/v1/models/tfqa/labels/stable/metadata").json()["model_spec"]["version"] == "1"
    assert client.get("/v1/models/tfqa/versions/9/metadata").status_code == 404


def test_predict_row_and_columnar(client):
    contexts = ["Denver Broncos won", "Zürich café serves tea"]
    questions = ["Who won?", "What does the café serve?"]
    row = client.post("/v1/models/tfqa:predict", json={
        "signature_name": "serving_default", "instances": [{"question": q, "context": c}
                                                           for q, c in zip(questions, contexts)]})
    columnar = client.post("/v1/models/tfqa:predict", json={"inputs": {"question": questions, "context": contexts}})
    assert row.status_code == columnar.status_code == 200
    expected = [expected_answer(q, c, word="last") for q, c in zip(questions, contexts)]
    assert row.json() == {"predictions": expected}
    assert columnar.json() == {"outputs": {k: [e[k] for e in expected] for k in SIG_OUTPUTS}}
    for url in ("/v1/models/tfqa/versions/1:predict", "/v1/models/tfqa/labels/stable:predict",
                "/V1/MODELS/tfqa/versions/1:PREDICT"):  # TF Serving matches routes case-insensitively
        assert client.post(url, json={"instances": [QA]}).json() == {"predictions": [expected_answer(**QA)]}


def test_token_ids_signature_both_formats(client):
    ids, mask = [[5, 7, 9], [2, 4, 0]], [[1, 1, 1], [1, 1, 0]]
    row = client.post("/v1/models/tfqa:predict", json={"signature_name": "token_ids", "instances": [
        {"input_ids": i, "attention_mask": m} for i, m in zip(ids, mask)]}).json()
    columnar = client.post("/v1/models/tfqa:predict", json={"signature_name": "token_ids", "inputs": {
        "input_ids": ids, "attention_mask": mask}}).json()
    start = [[5.0, 7.0, 9.0], [2.0, 4.0, 0.0]]
    assert [p["start_logits"] for p in row["predictions"]] == columnar["outputs"]["start_logits"] == start
    assert columnar["outputs"]["end_logits"][0] == [-5.0, -7.0, -9.0]


def test_single_input_single_output_signature_is_flattened(tmp_path):
    """TF Serving's rules: plain instances/inputs for one input, output name left out for one output."""
    build_fake_qa_model(tmp_path / "words" / "1", single_output=True)
    client = TestClient(create_app(tmp_path / "words"))
    contexts = ["alpha beta", "gamma"]
    assert client.post("/v1/models/words:predict", json={"instances": contexts}).json() == {
        "predictions": ["alpha", "gamma"]}
    assert client.post("/v1/models/words:predict", json={"instances": [{"context": c} for c in contexts]}).json() == {
        "predictions": ["alpha", "gamma"]}
    assert client.post("/v1/models/words:predict", json={"inputs": contexts}).json() == {"outputs": ["alpha", "gamma"]}
    assert client.post("/v1/models/words:predict", json={"inputs": {"context": contexts}}).json() == {
        "outputs": ["alpha", "gamma"]}


def test_b64_inputs_and_output_encoding(client):
    body = {"instances": [{"question": {"b64": "V2hvPw=="}, "context": {"b64": "w6l0w6kgY2hhdWQ="}}]}  # "été chaud"
    assert client.post("/v1/models/tfqa/versions/1:predict", json=body).json()["predictions"][0]["answer"] == "été"
    outputs = {"text": np.array([b"ok", b"\xff"], dtype=object), "raw_bytes": np.array([b"ok", b"a"], dtype=object),
               "score": np.array([0.2, float("nan")], dtype=np.float32)}
    encoded = encode_outputs(outputs, "row")
    assert encoded == {"predictions": [{"raw_bytes": {"b64": "b2s="}, "score": 0.2, "text": "ok"},
                                       {"raw_bytes": {"b64": "YQ=="}, "score": pytest.approx(np.nan, nan_ok=True),
                                        "text": {"b64": "/w=="}}]}
    assert b'"score":NaN' in dumps(encoded)  # TF Serving writes NaN/Infinity tokens too


BAD_REQUESTS = [
    (b"", 400, "JSON Parse error: The document is empty"),
    (b'{"instances": [', 400, "JSON Parse error"),
    (b"\xff\xfe", 400, "JSON Parse error"),
    (b"[1, 2]", 400, "Is not object"),
    (b'{"signature_name": 7, "instances": []}', 400, "'signature_name' key must be a string value"),
    (b'{"signature_name": "nope", "instances": [1]}', 400, 'Serving signature name: "nope" not found'),
    (b'{"instances": [], "inputs": {}}', 400, "expecting only one of 'inputs' or 'instances'"),
    (b'{"examples": []}', 400, "Missing 'inputs' or 'instances' key"),
    (b'{"instances": {"question": "a"}}', 400, "'instances' to be an list/array"),
    (b'{"instances": []}', 400, "No values in 'instances' array"),
    (b'{"instances": ["a b"]}', 400, "instances is a plain list, but expecting list of objects"),
    (b'{"instances": [{"question": "a"}]}', 400, "keys must be equal to: context,question"),
    (b'{"instances": [{"question": "a", "context": "b", "extra": 1}]}', 400, "keys must be equal to"),
    (b'{"instances": [{"question": "a", "context": "b"}, "c"]}', 400, "Expecting object but got list at item 1"),
    (b'{"instances": [{"question": 3, "context": "b"}]}', 400, "JSON Value: 3 Type: Number is not of expected "
                                                               "type: string"),
    (b'{"instances": [{"question": ["a"], "context": ["b"]}]}', 400, "expects [-1]"),
    (b'{"instances": [{"question": {"b64": "%%%"}, "context": "b"}]}', 400, "Unable to base64 decode"),
    (b'{"instances": [{"question": "", "context": "b"}]}', 400, "input 'question' element 0 is an empty string"),
    (b'{"inputs": {"question": ["a", "b"], "context": ["c", "  "]}}', 400, "input 'context' element 1 is an empty"),
    (b'{"inputs": ["a"]}', 400, "inputs is a plain value/list, but expecting an object"),
    (b'{"inputs": {"question": ["a"]}}', 400, "Missing named input: context in 'inputs' object."),
    (b'{"inputs": {"question": ["a"], "context": ["b"], "cntext": ["b"]}}', 400, "Unknown named input: cntext"),
    (b'{"inputs": {"question": ["a", "b"], "context": ["c"]}}', 400, "different batch sizes (2 and 1)"),
    (b'{"inputs": {"question": "a", "context": "b"}}', 400, "input 'context' has shape [] but signature"),
    (b'{"signature_name": "token_ids", "inputs": {"input_ids": [[1, 2.5]], "attention_mask": [[1, 1]]}}', 400,
     "JSON Value: 2.5 Type: Number is not of expected type: int32"),
    (b'{"signature_name": "token_ids", "inputs": {"input_ids": [[1, true]], "attention_mask": [[1, 1]]}}', 400,
     "Type: True is not of expected type: int32"),
    (b'{"signature_name": "token_ids", "inputs": {"input_ids": [[1, 2], [3]], "attention_mask": [[1, 1]]}}', 400,
     "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
    (b'{"signature_name": "token_ids", "inputs": {"input_ids": [[1, 2]], "attention_mask": [[1, 1, 1]]}}', 400,
     "Incompatible shapes"),  # raised inside the model: TF's InvalidArgument → 400, as in TF Serving
]


@pytest.mark.parametrize("body, status, message", BAD_REQUESTS, ids=[str(i) for i in range(len(BAD_REQUESTS))])
def test_bad_predict_requests_get_tf_serving_errors(client, body, status, message):
    response = client.post("/v1/models/tfqa:predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert message in response.json()["error"] and "Traceback" not in response.text
    assert client.post("/v1/models/tfqa:predict", json={"instances": [QA]}).status_code == 200


@pytest.mark.parametrize("method, url, status, message", [
    ("POST", "/v1/models/other:predict", 404, "Servable not found for request: Latest(other)"),
    ("POST", "/v1/models/tfqa/versions/7:predict", 404, "Servable not found for request: Specific(tfqa, 7)"),
    ("POST", "/v1/models/tfqa/labels/beta:predict", 400, "Unrecognized servable version label: beta"),
    ("POST", "/v1/models/tfqa:classify", 501, "classify is not implemented"),
    ("GET", "/v1/models/tfqa:predict", 400, "Malformed request: GET /v1/models/tfqa:predict"),
    ("PUT", "/v1/models/tfqa", 400, "Malformed request: PUT /v1/models/tfqa"),
    ("GET", "/v1/models/tfqa/versions/x", 400, "Malformed request"),
    ("GET", "/healthz", 404, "Not found: /healthz"),
])
def test_bad_routes(client, method, url, status, message):
    response = client.request(method, url, json={"instances": [QA]})
    assert response.status_code == status and message in response.json()["error"]


def test_body_over_the_limit_gets_413(client):
    big = json.dumps({"instances": [{"question": "q", "context": "x " * MAX_BODY}]}).encode()
    response = client.post("/v1/models/tfqa:predict", content=big)
    assert response.status_code == 413 and "exceeds the limit of 4096 bytes" in response.json()["error"]
    chunked = client.post("/v1/models/tfqa:predict", content=iter([big[:3000], big[3000:]]))  # no Content-Length
    assert chunked.status_code == 413
    assert client.post("/v1/models/tfqa:predict", json={"instances": [QA]}).status_code == 200


def test_unexpected_model_exception_is_a_json_500(app, client, monkeypatch):
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(app.state.model.latest, "run", broken)
    response = client.post("/v1/models/tfqa:predict", json={"instances": [QA]})
    assert response.status_code == 500 and response.json() == {"error": "Internal error: RuntimeError: boom"}
    monkeypatch.undo()
    assert client.post("/v1/models/tfqa:predict", json={"instances": [QA]}).status_code == 200


def test_concurrent_clients_all_get_their_answers(app):
    """8 clients × 25 requests against uvicorn; bad requests mixed in do not disturb the good ones."""
    def worker(t):
        wrong, session = [], requests.Session()
        for i in range(25):
            questions = ["q" * (t + i + 1), "why" * (i + 1)]
            contexts = [f"start{t} middle end{t}x{i}", f"other text w{i}y{t}"]
            if i % 6 == 5:
                bad = session.post(url, json={"instances": [{"question": "", "context": "x"}]}, timeout=30)
                wrong += [] if bad.status_code == 400 else [("bad request accepted", t, i)]
            if i % 2:
                body = {"inputs": {"question": questions, "context": contexts}}
            else:
                body = {"instances": [{"question": q, "context": c} for q, c in zip(questions, contexts)]}
            got = session.post(url, json=body, timeout=30).json()
            rows = got["predictions"] if i % 2 == 0 else [
                {k: v[j] for k, v in got["outputs"].items()} for j in range(2)]
            want = [expected_answer(q, c, word="last") for q, c in zip(questions, contexts)]
            wrong += [] if rows == want else [(t, i, rows, want)]
        return wrong

    with ThreadedServer(app) as server:
        url = f"http://127.0.0.1:{server.port}/v1/models/tfqa:predict"
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(worker, range(8)))
    assert [w for ws in results for w in ws] == []


def test_serve_command_end_to_end(export_dir):
    proc, url, line = start_serve("--model", str(export_dir), "--port", "0", "--name", "qa", "--label", "stable=1")
    try:
        assert line.startswith(f"Serving {export_dir} versions 1, 2 at http://127.0.0.1:")
        assert url.endswith("/v1/models/qa")
        assert requests.get(url, timeout=10).json() == status_of(2, 1)  # the newest plus the labelled version
        response = requests.post(url + "/labels/stable:predict", json={"instances": [QA]}, timeout=30)
        assert response.json() == {"predictions": [expected_answer(**QA)]}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no such directory"),
    (lambda d: d.write_text("x"), "not a directory"),
    (lambda d: (d / "latest").mkdir(parents=True), "no version subdirectory"),
    (lambda d: (d.mkdir(), (d / "saved_model.pb").write_bytes(b"")), "it is itself a SavedModel: pass its parent"),
    (lambda d: (d / "3").mkdir(parents=True), "3: no saved_model.pb"),
    (lambda d: ((d / "3").mkdir(parents=True), (d / "3" / "saved_model.pb").write_bytes(b"junk")),
     "cannot load the SavedModel"),
])
def test_bad_model_dirs_are_one_line_errors(tmp_path, capsys, setup, message):
    model_dir = tmp_path / "tfqa"
    setup(model_dir)
    assert main(["serve", "--model", str(model_dir), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfqa: error: ") and message in err and err.count("\n") == 1


def test_failing_warmup_and_bad_labels_stop_the_load(tmp_path, export_dir):
    build_fake_qa_model(tmp_path / "m" / "1", single_output=True, warmup=True)  # warmup feeds `question` too
    with pytest.raises(ModelDirError, match="tf_serving_warmup_requests: warmup request 0 failed"):
        load_model(tmp_path / "m")
    with pytest.raises(ModelDirError, match="label stable points at version 5, which is not there"):
        load_model(export_dir, labels={"stable": 5})
    assert main(["serve", "--model", str(export_dir), "--label", "stable"]) == 2


def test_busy_port_is_a_one_line_error(export_dir, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        assert main(["serve", "--model", str(export_dir), "--port", str(busy.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfqa: error: cannot listen on 127.0.0.1:") and err.count("\n") == 1
