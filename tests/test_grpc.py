"""tfqa.grpcapi: TF Serving's gRPC API answers what the REST API answers, with the same error codes.

The client side uses only `tensorflow_serving.apis` (stubs, request protos) and
`tf.make_tensor_proto`/`tf.make_ndarray`, as a client written for TF Serving does.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from serving_helpers import TestClient, expected_answer, two_version_export
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)

from tfqa.grpcapi.server import GrpcStartupError, start_grpc_server
from tfqa.rest.http import http_status
from tfqa.rest.server import build_app
from tfqa.serving.batching import Batcher
from tfqa.serving.batching_config import BatchingParameters
from tfqa.serving.servables import load_model

MAX_BODY, MAX_INSTANCES = 4096, 4
QA = {"question": "Who is it?", "context": "Denver Broncos won"}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """export/tfqa versions 1 (first word) and 2 (last word), both loaded, `stable` labelling version 1."""
    return load_model(two_version_export(tmp_path_factory, "grpc"), all_versions=True, labels={"stable": 1})


@pytest.fixture(scope="module")
def batcher():
    batcher = Batcher(BatchingParameters(max_batch_size=8, num_batch_threads=1))
    yield batcher
    batcher.close()


@pytest.fixture(scope="module")
def rest(model):
    return TestClient(build_app(model, max_body_bytes=MAX_BODY, max_instances=MAX_INSTANCES, batching=None))


@pytest.fixture(scope="module")
def channel(model, batcher):
    server, port = start_grpc_server(model, "127.0.0.1", 0, max_message_bytes=MAX_BODY, max_instances=MAX_INSTANCES,
                                     batcher=batcher)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    server.stop(None)


@pytest.fixture(scope="module")
def predictions(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict_request(inputs: dict, name: str = "tfqa", signature: str = "", version: int | None = None,
                    label: str | None = None, dtypes: dict | None = None) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = name, signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value, dtype=(dtypes or {}).get(key)))
    return request


def rows_of(response: predict_pb2.PredictResponse) -> list[dict]:
    """The response's outputs as REST's row-format predictions (strings decoded, floats as JSON has them)."""
    arrays = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    size = len(next(iter(arrays.values())))
    return [{name: value[i].decode() if isinstance(value[i], bytes) else value[i].item()
             for name, value in arrays.items()} for i in range(size)]


def test_grpc_predict_answers_what_rest_answers(rest, predictions):
    questions, contexts = ["Who won?", "What does the café serve?"], ["Denver Broncos won", "Zürich café serves tea"]
    for version, label, url in [(None, None, "/v1/models/tfqa"), (1, None, "/v1/models/tfqa/versions/1"),
                                (None, "stable", "/v1/models/tfqa/labels/stable")]:
        want = rest.post(url + ":predict", json={"instances": [{"question": q, "context": c}
                                                               for q, c in zip(questions, contexts)]}).json()
        response = predictions.Predict(predict_request({"question": questions, "context": contexts},
                                                       version=version, label=label), timeout=30)
        assert rows_of(response) == want["predictions"], url
        assert response.model_spec.name == "tfqa" and response.model_spec.signature_name == "serving_default"
        assert response.model_spec.version.value == (2 if url == "/v1/models/tfqa" else 1)
    assert rows_of(predictions.Predict(predict_request(
        {"question": [QA["question"]], "context": [QA["context"]]}), timeout=30)) == [
        expected_answer(**QA, word="last")]


def test_grpc_output_filter_and_token_ids_signature(rest, predictions):
    ids, mask = [[5, 7, 9], [2, 4, 0]], [[1, 1, 1], [1, 1, 0]]
    response = predictions.Predict(predict_request({"input_ids": ids, "attention_mask": mask}, signature="token_ids",
                                                   dtypes={"input_ids": tf.int32, "attention_mask": tf.int32}),
                                   timeout=30)
    want = rest.post("/v1/models/tfqa:predict", json={"signature_name": "token_ids", "inputs": {
        "input_ids": ids, "attention_mask": mask}}).json()["outputs"]
    assert {k: tf.make_ndarray(v).tolist() for k, v in response.outputs.items()} == want
    request = predict_request({"question": ["Who?"], "context": ["a b"]})
    request.output_filter.append("answer")
    assert list(predictions.Predict(request, timeout=30).outputs) == ["answer"]


def test_grpc_status_and_metadata_are_rest_answers(rest, channel, predictions):
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    for version, label, url in [(None, None, "/v1/models/tfqa"), (1, None, "/v1/models/tfqa/versions/1"),
                                (None, "stable", "/v1/models/tfqa/labels/stable")]:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "tfqa"
        if version:
            request.model_spec.version.value = version
        if label:
            request.model_spec.version_label = label
        got = json_format.MessageToDict(models.GetModelStatus(request, timeout=30),
                                        always_print_fields_with_no_presence=True, preserving_proto_field_name=True)
        assert got == rest.get(url).json(), url
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = "tfqa"
        if version:
            request.model_spec.version.value = version
        if label:
            request.model_spec.version_label = label
        response = predictions.GetModelMetadata(request, timeout=30)
        defs = get_model_metadata_pb2.SignatureDefMap()
        assert response.metadata["signature_def"].Unpack(defs)
        want = rest.get(url + "/metadata").json()
        assert json_format.MessageToDict(defs, always_print_fields_with_no_presence=True,
                                         preserving_proto_field_name=True) == want["metadata"]["signature_def"]
        assert response.model_spec.version.value == int(want["model_spec"]["version"])


I32 = tf.int32
# (REST request: url suffix or None for :predict, JSON body) vs (the gRPC request for the same thing).
# Taken from the bad requests of test_server.py and test_rest_hostile.py that a PredictRequest can express.
PAIRED_BAD_REQUESTS = [
    ({"signature_name": "nope", "instances": [QA]}, dict(inputs=QA, signature="nope"),
     'Serving signature name: "nope" not found'),
    ({"inputs": {"question": ["a"]}}, dict(inputs={"question": ["a"]}), None),
    ({"inputs": {"question": ["a"], "context": ["b"], "cntext": ["b"]}},
     dict(inputs={"question": ["a"], "context": ["b"], "cntext": ["b"]}), None),
    ({"instances": [{"question": 3, "context": "b"}]}, dict(inputs={"question": [3], "context": ["b"]}), None),
    ({"instances": [{"question": ["a"], "context": ["b"]}]}, dict(inputs={"question": [["a"]], "context": [["b"]]}),
     "expects [-1]"),
    ({"instances": [{"question": "", "context": "b"}]}, dict(inputs={"question": [""], "context": ["b"]}),
     "input 'question' element 0 is an empty string"),
    ({"inputs": {"question": ["a", "b"], "context": ["c", "  "]}},
     dict(inputs={"question": ["a", "b"], "context": ["c", "  "]}), "input 'context' element 1 is an empty"),
    ({"inputs": {"question": ["a", "b"], "context": ["c"]}}, dict(inputs={"question": ["a", "b"], "context": ["c"]}),
     "different batch sizes (2 and 1)"),
    ({"inputs": {"question": "a", "context": "b"}}, dict(inputs={"question": "a", "context": "b"}),
     "input 'context' has shape [] but signature"),
    ({"signature_name": "token_ids", "inputs": {"input_ids": [[1, 2.5]], "attention_mask": [[1, 1]]}},
     dict(inputs={"input_ids": [[1, 2.5]], "attention_mask": [[1, 1]]}, signature="token_ids",
          dtypes={"attention_mask": I32}), None),
    ({"signature_name": "token_ids", "inputs": {"input_ids": [[1, 2]], "attention_mask": [[1, 1, 1]]}},
     dict(inputs={"input_ids": [[1, 2]], "attention_mask": [[1, 1, 1]]}, signature="token_ids",
          dtypes={"input_ids": I32, "attention_mask": I32}), "Incompatible shapes"),
    ({"instances": [QA] * 5}, dict(inputs={"question": ["a"] * 5, "context": ["b c"] * 5}), "at most 4 per request"),
    (("/v1/models/other", {"instances": [QA]}), dict(inputs=QA, name="other"),
     "Servable not found for request: Latest(other)"),
    (("/v1/models/tfqa/versions/7", {"instances": [QA]}), dict(inputs=QA, version=7),
     "Servable not found for request: Specific(tfqa, 7)"),
    (("/v1/models/tfqa/labels/beta", {"instances": [QA]}), dict(inputs=QA, label="beta"),
     "Unrecognized servable version label: beta"),
]


@pytest.mark.parametrize("rest_request, grpc_request, message", PAIRED_BAD_REQUESTS,
                         ids=[str(i) for i in range(len(PAIRED_BAD_REQUESTS))])
def test_grpc_bad_requests_get_the_status_rest_answers(rest, predictions, rest_request, grpc_request, message):
    url, body = rest_request if isinstance(rest_request, tuple) else ("/v1/models/tfqa", rest_request)
    request = predict_request(**grpc_request)
    answer = rest.post(url + ":predict", content=json.dumps(body).encode())
    with pytest.raises(grpc.RpcError) as raised:
        predictions.Predict(request, timeout=30)
    code = raised.value.code()
    assert http_status(code.value[0]) == answer.status_code, (code, answer.json())
    if message is not None:
        assert message in raised.value.details() and message in answer.json()["error"]
    assert predictions.Predict(predict_request({"question": ["Who?"], "context": ["a b"]}),
                               timeout=30).outputs  # the server still answers


def test_grpc_refuses_what_rest_refuses_without_a_predict_body(rest, channel, predictions):
    """Status of unknown versions/models, :classify, a body over the size limit, a shape too big for its bytes."""
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    for spec, url in [(dict(name="tfqa", version=3), "/v1/models/tfqa/versions/3"),
                      (dict(name="other"), "/v1/models/other")]:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = spec["name"]
        if "version" in spec:
            request.model_spec.version.value = spec["version"]
        with pytest.raises(grpc.RpcError) as raised:
            models.GetModelStatus(request, timeout=30)
        answer = rest.get(url)
        assert http_status(raised.value.code().value[0]) == answer.status_code == 404
        assert raised.value.details() == answer.json()["error"]
    with pytest.raises(grpc.RpcError) as raised:
        predictions.Classify(classification_pb2.ClassificationRequest(), timeout=30)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert rest.post("/v1/models/tfqa:classify", json={"examples": []}).status_code == http_status(12) == 501
    big = {"question": ["q"], "context": ["x " * MAX_BODY]}
    with pytest.raises(grpc.RpcError) as raised:
        predictions.Predict(predict_request(big), timeout=30)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # REST: 413, over --max-body-bytes
    request = predict_request({"question": ["Who?"], "context": ["a b"]})
    request.inputs["context"].tensor_shape.dim[0].size = 10**12  # one value "broadcast" to a trillion rows
    with pytest.raises(grpc.RpcError) as raised:
        predictions.Predict(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "more elements" in raised.value.details()


def test_grpc_requests_go_through_the_shared_batching_queue(predictions, batcher):
    before = batcher.batches_run

    def ask(i):
        response = predictions.Predict(predict_request({"question": ["q" * (i + 1)], "context": [f"a b{i}"]}),
                                       timeout=30)
        return rows_of(response)[0] == expected_answer("q" * (i + 1), f"a b{i}", word="last")

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(ask, range(8)))
    assert before < batcher.batches_run <= before + 8


def test_grpc_busy_port_is_a_one_line_error(model):
    server, port = start_grpc_server(model, "127.0.0.1", 0, max_message_bytes=MAX_BODY, max_instances=1)
    try:
        with pytest.raises(GrpcStartupError, match=f"cannot listen on 127.0.0.1:{port} for gRPC"):
            start_grpc_server(model, "127.0.0.1", port, max_message_bytes=MAX_BODY, max_instances=1)
        with pytest.raises(GrpcStartupError, match="--port 70000 is not a TCP port"):
            start_grpc_server(model, "127.0.0.1", 70000, max_message_bytes=MAX_BODY, max_instances=1)
    finally:
        server.stop(None)


def test_grpc_dtype_mismatch_names_the_input_and_both_dtypes(predictions):
    request = predict_request({"question": np.array([1], np.int32), "context": ["b"]})
    with pytest.raises(grpc.RpcError) as raised:
        predictions.Predict(request, timeout=30)
    assert raised.value.details() == "input 'question' is a int32 tensor but signature 'serving_default' expects string"


def test_grpc_request_past_its_deadline_is_not_run(model, monkeypatch):
    """A request still queued when its deadline passes gets DEADLINE_EXCEEDED without a model call."""
    from tfqa.grpcapi.service import PredictionService

    class Expired:
        def time_remaining(self):
            return 0.0

        def abort(self, code, details):
            raise RuntimeError(code, details)

    calls = []
    monkeypatch.setattr(model.latest, "run", lambda *args: calls.append(args))
    service = PredictionService(model, max_instances=4, max_elements=MAX_BODY)
    with pytest.raises(RuntimeError) as aborted:
        service.Predict(predict_request({"question": ["Who?"], "context": ["a b"]}), Expired())
    assert aborted.value.args == (grpc.StatusCode.DEADLINE_EXCEEDED, "the request's deadline passed before it could run")
    assert calls == []


def test_grpc_requests_never_fail_while_a_new_version_is_switched_in(tmp_path, model):
    """4 gRPC clients ask while version 2 is renamed into place and polled in: every request answered."""
    import shutil
    import threading

    from tfqa.serving.live import ServedModels
    from tfqa.serving.servables import load_model as load

    base = tmp_path / "tfqa"
    shutil.copytree(model.servables[1].path, base / "1")
    models = ServedModels([load(base)])
    server, port = start_grpc_server(models, "127.0.0.1", 0, max_message_bytes=MAX_BODY, max_instances=4)
    stop, answers, failures = threading.Event(), [], []

    def client():
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not stop.is_set():
                try:
                    answers.append(rows_of(stub.Predict(predict_request({"question": ["Who?"], "context": ["a b"]}),
                                                        timeout=30))[0]["answer"])
                except grpc.RpcError as e:
                    failures.append((e.code(), e.details()))

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 60
        while len(answers) + len(failures) < count and time.monotonic() < deadline:
            time.sleep(0.01)

    threads = [threading.Thread(target=client) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        wait_for(20)
        shutil.copytree(model.servables[2].path, base / ".tmp-export-2")
        (base / ".tmp-export-2").rename(base / "2")
        models.poll()
        wait_for(len(answers) + 20)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        server.stop(None)
    assert failures == []
    assert answers[0] == "a" and answers[-1] == "b"  # version 1 answers the first word, version 2 the last
    assert sorted(models.models["tfqa"].servables) == [2]
