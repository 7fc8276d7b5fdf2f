"""`tfqa model-server`: tensorflow_model_server's flags and config files, gRPC and REST from one process, metrics."""

from __future__ import annotations

import re
import shutil
import signal
import time

import grpc
import pytest
import requests
import tensorflow as tf
import yaml
from helpers import ROOT
from prometheus_client.parser import text_string_to_metric_families
from serving_helpers import TestClient, expected_answer, free_port, start_serve, two_version_export
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tfqa.apps.cli import main
from tfqa.apps.model_server import parse_model_server_args
from tfqa.grpcapi.server import start_grpc_server
from tfqa.rest.server import build_app
from tfqa.serving.batching import Batcher
from tfqa.serving.batching_config import BatchingParameters
from tfqa.serving.live import load_models
from tfqa.serving.metrics import MonitoringConfigError, ServingMetrics, read_monitoring_config
from tfqa.serving.model_config import read_model_config

QA = {"question": "Who is it?", "context": "Denver Broncos won"}


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return two_version_export(tmp_path_factory, "model_server")


def adjusted_models_config(export_dir, tmp_path, second_model: bool = False):
    """serve/models.config with its base_path pointing at `export_dir` (and a labelled second model)."""
    text = (ROOT / "serve" / "models.config").read_text().replace('"/models/tfqa"', f'"{export_dir}"')
    assert str(export_dir) in text
    if second_model:
        text = text.rstrip().removesuffix("}") + f'''  config {{
    name: "tfqa_pinned"
    base_path: "{export_dir}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
    version_labels {{ key: "stable" value: 1 }}
  }}
}}
'''
    path = tmp_path / "models.config"
    path.write_text(text)
    return path


def grpc_predict(port: int, name: str, label: str | None = None, inputs=QA) -> dict:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if label:
        request.model_spec.version_label = label
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto([value]))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    return {k: (lambda v: v.decode() if isinstance(v, bytes) else v.item())(tf.make_ndarray(p)[0])
            for k, p in response.outputs.items()}


def test_docker_compose_command_runs_locally_with_paths_adjusted(export_dir, tmp_path):
    """serve/docker-compose.yml's `command:` as it is, with /config/ and the ports moved to this machine."""
    compose = yaml.safe_load((ROOT / "serve" / "docker-compose.yml").read_text())["services"]["tfqa"]
    assert compose["entrypoint"] == ["tensorflow_model_server"]
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    adjusted_models_config(export_dir, config_dir)
    (config_dir / "batching.config").write_text((ROOT / "serve" / "batching.config").read_text())
    grpc_port, rest_port = free_port(), free_port()
    command = [arg.replace("/config/", f"{config_dir}/").replace("=8500", f"={grpc_port}")
               .replace("=8501", f"={rest_port}") for arg in compose["command"]]
    assert sum(a != b for a, b in zip(command, compose["command"])) == 4  # two paths, two ports
    proc, url, line = start_serve(*command, command="model-server")
    try:
        assert line == (f"Serving tfqa (version 2) over gRPC at 127.0.0.1:{grpc_port} and REST at "
                        f"http://127.0.0.1:{rest_port}/v1/models/tfqa")
        notes = [seen for seen in proc.seen if seen.startswith("note: ignoring")]
        assert notes == ["note: ignoring TF Serving flags this server does not implement: "
                         "--model_config_file_poll_wait_seconds=60 --rest_api_num_threads=8\n"]
        rest = requests.post(url + ":predict", json={"instances": [QA]}, timeout=30).json()
        assert rest == {"predictions": [expected_answer(**QA, word="last")]}
        assert grpc_predict(grpc_port, "tfqa") == rest["predictions"][0]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_models_config_serves_two_models_and_a_labelled_version(export_dir, tmp_path):
    """serve/models.config's list (path adjusted) plus a second, pinned model with a label, through the command."""
    config = adjusted_models_config(export_dir, tmp_path, second_model=True)
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n')
    grpc_port = free_port()
    proc, url, line = start_serve(f"--model_config_file={config}", f"--port={grpc_port}",
                                  f"--rest_api_port={free_port()}", "--file_system_poll_wait_seconds=0",
                                  f"--monitoring_config_file={monitoring}", command="model-server")
    try:
        assert line.startswith(f"Serving tfqa (version 2), tfqa_pinned (versions 1, 2) over gRPC at 127.0.0.1:{grpc_port}")
        root = url.rsplit("/", 1)[0]
        for name, label, path, word in [("tfqa", None, "/tfqa", "last"), ("tfqa_pinned", None, "/tfqa_pinned", "last"),
                                        ("tfqa_pinned", "stable", "/tfqa_pinned/labels/stable", "first")]:
            answer = requests.post(root + path + ":predict", json={"instances": [QA]}, timeout=30).json()
            assert answer["predictions"][0] == expected_answer(**QA, word=word) == grpc_predict(grpc_port, name, label)
        assert requests.get(root + "/tfqa_pinned/versions/1", timeout=30).status_code == 200
        assert requests.get(root + "/tfqa/versions/1", timeout=30).status_code == 404  # latest policy: 2 only
        assert requests.get(root + "/other", timeout=30).json() == {"error": "Could not find any versions of model other"}
        scrape = requests.get(url.split("/v1/")[0] + "/monitoring/prometheus/metrics", timeout=30).text
        counts = {(s[1]["model_name"], s[1]["status"]): s[2] for s in samples(scrape)[":tensorflow:serving:request_count"]}
        # the 3 REST + 3 gRPC predicts, the 3 status requests; the scrape itself is not counted
        assert counts == {("tfqa", "OK"): 2, ("tfqa_pinned", "OK"): 5, ("tfqa", "NOT_FOUND"): 1,
                          ("other", "NOT_FOUND"): 1}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_the_commands_own_polling_serves_a_version_exported_while_it_runs(export_dir, tmp_path):
    """--file_system_poll_wait_seconds 1: version 2 copied in as an export writes it (a temporary name, then a
    rename) is served over REST and gRPC within 3 polls plus its load, without a restart."""
    base = tmp_path / "tfqa"
    shutil.copytree(export_dir / "1", base / "1")
    grpc_port = free_port()
    proc, url, line = start_serve(f"--port={grpc_port}", f"--rest_api_port={free_port()}", "--model_name=tfqa",
                                  f"--model_base_path={base}", "--file_system_poll_wait_seconds=1",
                                  command="model-server")
    try:
        assert "tfqa (version 1)" in line
        assert grpc_predict(grpc_port, "tfqa") == expected_answer(**QA, word="first")
        shutil.copytree(export_dir / "2", base / ".tmp-export-copy")  # half-written: never loaded
        time.sleep(1.5)
        assert requests.get(url, timeout=30).json()["model_version_status"][0]["version"] == "1"
        (base / ".tmp-export-copy").rename(base / "2")
        renamed, served = time.monotonic(), None
        while time.monotonic() - renamed < 3 * 1 + 60:  # 3 polls + loading and warming a SavedModel up
            status = requests.get(url, timeout=30).json()["model_version_status"]
            if [s["version"] for s in status if s["state"] == "AVAILABLE"] == ["2"]:
                served = time.monotonic() - renamed
                break
            time.sleep(0.2)
        assert served is not None, status
        answer = requests.post(url + ":predict", json={"instances": [QA]}, timeout=30).json()
        assert answer["predictions"][0] == expected_answer(**QA, word="last") == grpc_predict(grpc_port, "tfqa")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_grpc_only_server_answers_and_stops_on_sigterm(export_dir):
    """--rest_api_port 0 (TF Serving's default): gRPC alone, until SIGTERM, exit 0."""
    import subprocess
    import sys

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tfqa", "model-server", f"--port={port}", "--model_name=tfqa",
                             f"--model_base_path={export_dir}", "--file_system_poll_wait_seconds=0"], cwd=ROOT,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        banner = next(line for line in proc.stderr if line.startswith("Serving "))
        assert banner.strip() == f"Serving tfqa (version 2) over gRPC at 127.0.0.1:{port}"
        assert grpc_predict(port, "tfqa") == expected_answer(**QA, word="last")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_unknown_tf_serving_flags_are_returned_to_be_noted_not_refused():
    args, ignored = parse_model_server_args(["--model_base_path=/x", "--tensorflow_intra_op_parallelism=2",
                                             "--enable_batching=false", "--rest_api_num_threads=8"])
    assert ignored == ["--tensorflow_intra_op_parallelism=2", "--rest_api_num_threads=8"]
    assert (args.model_name, args.port, args.rest_api_port, args.enable_batching) == ("default", 8500, 0, False)
    assert parse_model_server_args(["--model_base_path=/x", "--enable_batching"])[0].enable_batching is True


@pytest.mark.parametrize("text, message", [
    ('model_config_list { config { name: "tfqa" base_path: "BASE" model_version_policy { specific { versions: 7 } } '
     '} }', "is in the version policy specific {versions: 7}"),
    ('model_config_list { config { name: "a" base_path: "BASE" } config { name: "a" base_path: "BASE" } }',
     'a second model named "a"'),
    ('model_config_list { config { nme: "tfqa" } }', 'has no field named "nme"'),
    ("", "model_config_list has no config"),
])
def test_bad_model_config_files_are_one_line_errors(export_dir, tmp_path, capsys, text, message):
    path = tmp_path / "models.config"
    path.write_text(text.replace("BASE", str(export_dir)))
    assert main(["model-server", f"--model_config_file={path}", "--port=0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfqa: error: ") and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("flags, message", [
    (["--port=70000"], "--port 70000 is not a TCP port"),
    (["--rest_api_port=-1"], "--rest_api_port -1 is not a TCP port"),
    (["--port=8600", "--rest_api_port=8600"], "gRPC and REST need a port each"),
    (["--rest_api_timeout_in_ms=0"], "--rest_api_timeout_in_ms must be 1-2147483647, not 0"),
    (["--file_system_poll_wait_seconds=-1"], "--file_system_poll_wait_seconds must be 0-"),
    (["--batching_parameters_file=x"], "--batching_parameters_file is read only with --enable_batching"),
    (["--enable_batching", "--batching_parameters_file=/nonexistent"], "/nonexistent: cannot read"),
    (["--monitoring_config_file=/nonexistent"], "/nonexistent: cannot read the monitoring config file"),
    (["--tensorflow_intra_op_parallelism", "2"], "unexpected argument '2' (TF Serving flags are written --name=value)"),
])
def test_bad_flag_values_are_one_line_errors(export_dir, capsys, flags, message):
    assert main(["model-server", f"--model_base_path={export_dir}", "--model_name=tfqa", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfqa: error: ") and message in err and err.count("\n") == 1, err


def test_without_a_model_the_server_says_which_flags_to_give(capsys):
    assert main(["model-server", "--tensorflow_intra_op_parallelism=2"]) == 2
    assert "give --model_base_path (with --model_name) or --model_config_file" in capsys.readouterr().err


def test_monitoring_config_file_is_tf_servings_text_proto(tmp_path):
    path = tmp_path / "monitoring.config"
    path.write_text('prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n')
    assert read_monitoring_config(path).path == "/monitoring/prometheus/metrics"
    path.write_text("prometheus_config { enable: false }")
    assert read_monitoring_config(path) is None
    path.write_text("prometheus_config { enable: true }")
    assert read_monitoring_config(path).path == "/monitoring/prometheus/metrics"  # TF Serving's default path
    path.write_text('prometheus_config { enable: true path: "/v1/models/metrics" }')
    with pytest.raises(MonitoringConfigError, match="must start with / and not with /v1/"):
        read_monitoring_config(path)
    path.write_text("prometheus_config { enabled: true }")
    with pytest.raises(MonitoringConfigError, match='has no field named "enabled"'):
        read_monitoring_config(path)


def samples(text: str) -> dict:
    """{metric family name: [(sample name, labels, value)]} of a Prometheus scrape."""
    return {f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)}


def test_metrics_count_every_rest_and_grpc_request_and_live_loads(export_dir, tmp_path):
    """Also: a broken newest version (4) beside a good new one (3) gets 3 served in the same poll."""
    metrics = ServingMetrics("/metrics")
    base = tmp_path / "tfqa"
    shutil.copytree(export_dir / "2", base / "2")
    models = load_models(read_model_config(adjusted_models_config(base, tmp_path)))
    models.on_load = metrics.load  # what tfqa model-server does: live loads are counted
    shutil.copytree(export_dir / "1", base / ".tmp-3")  # as an export writes a version: a temporary name, renamed
    (base / ".tmp-3").rename(base / "3")
    (base / "4").mkdir()
    (base / "4" / "saved_model.pb").write_bytes(b"broken")
    models.poll()
    # 4 failed to load, so the policy (the newest) picks 3 in the same poll: never a moment with no version.
    assert sorted(models.models["tfqa"].servables) == [3]
    batcher = Batcher(BatchingParameters(max_batch_size=4, num_batch_threads=1), metrics)
    rest = TestClient(build_app(models, batcher=batcher, metrics=metrics))
    server, port = start_grpc_server(models, "127.0.0.1", 0, max_message_bytes=1 << 20, max_instances=8,
                                     batcher=batcher, metrics=metrics)
    try:
        for i in range(5):
            assert rest.post("/v1/models/tfqa:predict", json={"instances": [QA]}).status_code == 200
        assert rest.post("/v1/models/tfqa:predict", json={"instances": []}).status_code == 400
        assert rest.get("/v1/models/tfqa").status_code == 200
        for i in range(3):
            grpc_predict(port, "tfqa")
        with pytest.raises(grpc.RpcError):
            grpc_predict(port, "other")
        scrape = rest.get("/metrics")
    finally:
        server.stop(None)
        batcher.close()
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = samples(scrape.text)
    counts = {(s[1]["model_name"], s[1]["status"]): s[2] for s in got[":tensorflow:serving:request_count"]}
    assert counts == {("tfqa", "OK"): 9, ("tfqa", "INVALID_ARGUMENT"): 1, ("other", "NOT_FOUND"): 1}
    assert re.search(r"^:tensorflow:serving:request_count\{model_name=\"tfqa\",status=\"OK\"\} 9\.0$", scrape.text,
                     re.M)  # TF Serving's exact sample name, no _total
    latency = {(s[1]["API"], s[1]["entrypoint"]): s[2] for s in got[":tensorflow:serving:request_latency"]
               if s[0].endswith("_count")}
    assert latency == {("predict", "REST"): 5, ("", "REST"): 1, ("Predict", "GRPC"): 3}
    queued = [s[2] for s in got[":tensorflow:serving:batching_session:queuing_latency"] if s[0].endswith("_count")]
    assert queued == [8]  # every batched predict, REST and gRPC
    loads = {(s[1]["model_path"], s[1]["status"]): s[2] for s in got[":tensorflow:cc:saved_model:load_attempt_count"]}
    assert loads == {(str(base / "3"), "success"): 1, (str(base / "4"), "fail"): 1}


def test_rest_api_timeout_answers_504(export_dir, monkeypatch):
    from tfqa.serving.servables import load_model

    model = load_model(export_dir)
    slow = model.latest.run

    def sleepy(*args):
        time.sleep(0.5)
        return slow(*args)

    monkeypatch.setattr(model.latest, "run", sleepy)
    response = TestClient(build_app(model, request_timeout=0.05)).post("/v1/models/tfqa:predict",
                                                                      json={"instances": [QA]})
    assert response.status_code == 504
    assert response.json() == {"error": "the request took longer than 50 ms (--rest_api_timeout_in_ms)"}
