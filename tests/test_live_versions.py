"""Several models and live versions (tfqa.serving.model_config, tfqa.serving.live, `serve --model_config_file`):
the config file read as TF Serving reads it, new versions served without a restart, failed ones skipped."""

from __future__ import annotations

import re
import shutil
import threading
import time

import numpy as np
import pytest
import requests
from serving_helpers import ThreadedServer, TestClient, build_fake_qa_model, start_serve

from tfqa.core.progress import Reporter
from tfqa.rest.server import build_app
from tfqa.serving.live import ServedModels, load_models
from tfqa.serving.model_config import ModelConfigError, VersionPolicy, parse_model_config, read_model_config
from tfqa.serving.servables import ModelDirError, load_model

POLL = 0.3
CONTEXT = "alpha beta gamma"


class Recorder(Reporter):
    """Keeps what the poller reports."""

    def __init__(self):
        self.lines, self.warnings = [], []

    def line(self, text):
        self.lines.append(text)

    def warn(self, text):
        self.warnings.append(text)


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """Version folders to copy into base directories: answering the first word, the last word (+ warm-up)."""
    root = tmp_path_factory.mktemp("templates")
    return {"first": build_fake_qa_model(root / "first"), "last": build_fake_qa_model(root / "last", word="last",
                                                                                       warmup=True)}


def place(template, base, version: int) -> None:
    """Copies a version into `base` as an export writes it: under a temporary name, then renamed."""
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-export-test.{version}"
    shutil.copytree(template, tmp)
    tmp.rename(base / str(version))


def answer_of(client, url: str = "/v1/models/tfqa:predict"):
    response = client.post(url, json={"instances": [{"question": "Which?", "context": CONTEXT}]})
    return response.status_code, response.json()


def test_model_config_file_is_read_as_tf_serving_reads_it():
    specs = parse_model_config('''
        model_config_list {
          config { name: "a" base_path: "/m/a" model_platform: "tensorflow"
                   model_version_policy { specific { versions: 2 versions: 1 } }
                   version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 } }
          config { name: "b" base_path: "rel/b" model_version_policy { all {} } }
          config { name: "c" base_path: "/m/c" model_version_policy { latest { num_versions: 2 } } }
          config { name: "d" base_path: "/m/d" }
        }''')
    assert [(s.name, str(s.base_path), str(s.policy), s.labels) for s in specs] == [
        ("a", "/m/a", "specific {versions: 1 versions: 2}", {"canary": 2, "stable": 1}),
        ("b", "rel/b", "all {}", {}), ("c", "/m/c", "latest {num_versions: 2}", {}),
        ("d", "/m/d", "latest {num_versions: 1}", {})]
    assert VersionPolicy("latest", 2).select([1, 5, 3]) == {3, 5}
    assert VersionPolicy("specific", versions=(1, 4)).select([1, 2, 3]) == {1}
    assert read_model_config("serve/models.config")[0].name == "tfqa"


@pytest.mark.parametrize("text, message", [
    ('model_config_list { config { name: "a" base_pth: "/x" } }',
     r"bad.config: 1:40 : Message type \"tensorflow.serving.ModelConfig\" has no field named \"base_pth\""),
    ('model_config_list { }', r"bad.config: model_config_list has no config"),
    ('model_config_list { config { base_path: "/x" } }',
     r"bad.config: model_config_list.config\[0\]: name must be non-empty"),
    ('model_config_list { config { name: "a" } }',
     r"bad.config: model_config_list.config\[0\] \(name \"a\"\): base_path is empty"),
    ('model_config_list { config { name: "a" base_path: "/x" } config { name: "a" base_path: "/y" } }',
     r"config\[1\] \(name \"a\"\): a second model named \"a\""),
    ('model_config_list { config { name: "a" base_path: "/x" model_platform: "onnx" } }',
     r"config\[0\] \(name \"a\"\): model_platform \"onnx\" is not served here"),
    ('model_config_list { config { name: "a" base_path: "/x" model_version_policy { latest { num_versions: 0 } } } }',
     r"model_version_policy.latest.num_versions must be at least 1, not 0"),
    ('model_config_list { config { name: "a" base_path: "/x" model_version_policy { specific { } } } }',
     r"model_version_policy.specific.versions must list version numbers"),
    ('custom_model_config { }', r"bad.config: custom_model_config is not supported"),
])
def test_model_config_errors_name_the_file_and_the_field(text, message):
    with pytest.raises(ModelConfigError, match=message) as error:
        parse_model_config(text, "bad.config")
    assert "\n" not in str(error.value)


def test_unreadable_model_config_file_is_one_line(tmp_path):
    with pytest.raises(ModelConfigError, match=r"nope.config: cannot read the model config file: No such file"):
        read_model_config(tmp_path / "nope.config")


def test_model_config_serves_two_models_and_a_labelled_version(tmp_path, templates):
    for version, word in ((1, "first"), (2, "last")):
        place(templates[word], tmp_path / "a", version)
    place(templates["first"], tmp_path / "b", 1)
    config = tmp_path / "models.config"
    config.write_text(f'''model_config_list {{
      config {{ name: "a" base_path: "{tmp_path / 'a'}" model_platform: "tensorflow"
               model_version_policy {{ latest {{ num_versions: 1 }} }} version_labels {{ key: "stable" value: 1 }} }}
      config {{ name: "b" base_path: "{tmp_path / 'b'}" }}
    }}''')
    client = TestClient(build_app(load_models(read_model_config(config))))
    assert answer_of(client, "/v1/models/a:predict")[1]["predictions"][0]["answer"] == "gamma"  # newest: 2
    assert answer_of(client, "/v1/models/a/labels/stable:predict")[1]["predictions"][0]["answer"] == "alpha"
    assert answer_of(client, "/v1/models/b:predict")[1]["predictions"][0]["answer"] == "alpha"
    assert [s["version"] for s in client.get("/v1/models/a").json()["model_version_status"]] == ["2", "1"]
    assert client.get("/v1/models/c").status_code == 404


def test_serve_reads_the_repo_model_config_with_paths_adjusted(tmp_path, templates):
    """`serve/models.config`'s model list, its base_path pointed here, plus a second model with a label."""
    place(templates["first"], tmp_path / "tfqa", 1)
    place(templates["first"], tmp_path / "other", 1)
    place(templates["last"], tmp_path / "other", 2)
    text = open("serve/models.config").read().replace('"/models/tfqa"', f'"{tmp_path / "tfqa"}"')
    text = text.rstrip().removesuffix("}") + (f'  config {{ name: "other" base_path: "{tmp_path / "other"}" '
                                              'model_version_policy { all {} } '
                                              'version_labels { key: "stable" value: 1 } }\n}\n')
    (tmp_path / "models.config").write_text(text)
    proc, url, line = start_serve("--model_config_file", str(tmp_path / "models.config"), "--port", "0")
    try:
        assert "(tfqa: version 1; other: versions 1, 2)" in line and url.endswith("/v1/models/tfqa")
        base = url.rsplit("/v1/", 1)[0]
        body = {"instances": [{"question": "Which?", "context": CONTEXT}]}
        answers = [requests.post(f"{base}/v1/models/{path}:predict", json=body, timeout=30).json()
                   for path in ("tfqa", "other", "other/labels/stable")]
        assert [a["predictions"][0]["answer"] for a in answers] == ["alpha", "gamma", "alpha"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_new_version_serves_within_three_polls_and_no_request_fails(tmp_path, templates):
    """8 clients ask while version 2 is renamed into place; then a broken version 3 leaves version 2 serving."""
    base = tmp_path / "tfqa"
    place(templates["first"], base, 1)
    recorder = Recorder()
    models = ServedModels([load_model(base)], recorder)
    results, stop = [], threading.Event()

    def client():
        session = requests.Session()
        while not stop.is_set():
            response = session.post(url, json={"instances": [{"question": "Which?", "context": CONTEXT}]}, timeout=30)
            answer = response.json()["predictions"][0]["answer"] if response.ok else None
            results.append((time.monotonic(), response.status_code, answer))

    with ThreadedServer(build_app(models)) as server:
        url = f"http://127.0.0.1:{server.port}/v1/models/tfqa:predict"
        models.start_polling(POLL)
        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.0)
            place(templates["last"], base, 2)
            renamed = time.monotonic()
            deadline = renamed + 60
            while time.monotonic() < deadline and not any(t > renamed and a == "gamma" for t, _, a in results):
                time.sleep(0.05)
            time.sleep(1.0)  # requests after the switch, while version 1 is unloaded
            shutil.copytree(templates["last"], base / ".tmp-export-broken")
            (base / ".tmp-export-broken" / "saved_model.pb").write_bytes(b"not a SavedModel")
            (base / ".tmp-export-broken").rename(base / "3")
            time.sleep(4 * POLL + 1.0)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            models.close()
    assert [r for r in results if r[1] != 200] == []  # no request failed, through the switch and the broken version
    first_new = min(t for t, _, a in results if a == "gamma")
    allowed = 3 * POLL + models.load_seconds[("tfqa", 2)] + 0.5  # + one request's time under 8 clients
    print(f"version 2 served {first_new - renamed:.2f} s after its rename (allowed {allowed:.2f} s: 3 polls of "
          f"{POLL} s + its load and warm-up {models.load_seconds[('tfqa', 2)]:.2f} s + 0.5 s); "
          f"{len(results)} requests, none failed")
    assert first_new - renamed <= allowed, (first_new - renamed, allowed)
    assert {a for t, _, a in results if t > first_new + 0.5} == {"gamma"}  # version 1 takes no more traffic
    assert sorted(models.models["tfqa"].servables) == [2]
    (warning,) = recorder.warnings
    assert warning.startswith("model tfqa: version 3 not loaded, still serving version 2: ") and "\n" not in warning
    assert any(re.fullmatch(r"model tfqa: serving version 2 \(loaded 2 in [\d.]+ s with its warm-up; unloaded "
                            r"version 1\)", line) for line in recorder.lines), recorder.lines


def test_unloaded_version_finishes_its_running_requests_first(tmp_path, templates):
    base = tmp_path / "tfqa"
    place(templates["first"], base, 1)
    model = load_model(base)
    models = ServedModels([model])
    with model.serving("tfqa") as running:
        place(templates["last"], base, 2)
        poller = threading.Thread(target=models.poll)
        poller.start()
        deadline = time.monotonic() + 60
        while 2 not in model.servables and time.monotonic() < deadline:
            time.sleep(0.05)
        assert model.resolve("tfqa").version == 2  # new requests go to version 2 at once...
        time.sleep(0.3)
        assert poller.is_alive() and running.loaded is not None  # ... while version 1 waits for this one
        arrays = {"question": np.array([b"Q?"], dtype=object), "context": np.array([b"x y"], dtype=object)}
        outputs = running.run(running.signature("serving_default"), arrays)
        assert outputs["answer"].tolist() == [b"x"]
    poller.join(timeout=30)
    assert not poller.is_alive() and running.loaded is None and sorted(model.servables) == [2]


def test_deleted_version_stops_being_served_and_half_written_ones_never_load(tmp_path, templates):
    base = tmp_path / "tfqa"
    place(templates["first"], base, 1)
    place(templates["last"], base, 2)
    models = ServedModels([load_model(base, all_versions=True)])
    client = TestClient(build_app(models))
    shutil.copytree(templates["last"], base / ".tmp-export-host.1.abcd")  # an export in progress
    shutil.rmtree(base / "2")
    models.poll()
    assert sorted(models.models["tfqa"].servables) == [1]
    status, body = answer_of(client, "/v1/models/tfqa/versions/2:predict")
    assert status == 404 and body == {"error": "Servable not found for request: Specific(tfqa, 2)"}
    assert answer_of(client)[1]["predictions"][0]["answer"] == "alpha"
    shutil.rmtree(base / "1")
    models.poll()
    assert answer_of(client) == (404, {"error": "Servable not found for request: Latest(tfqa)"})


def test_polling_zero_seconds_is_off(tmp_path, templates):
    place(templates["first"], tmp_path / "tfqa", 1)
    models = ServedModels([load_model(tmp_path / "tfqa")])
    models.start_polling(0)
    assert models._thread is None
    models.close()


def test_serve_refuses_bad_poll_and_model_flags(tmp_path, capsys):
    from tfqa.apps.cli import main

    assert main(["serve", "--model", str(tmp_path), "--file_system_poll_wait_seconds", "-1"]) == 2
    assert "--file_system_poll_wait_seconds must be 0 (no polling) or more, not -1.0" in capsys.readouterr().err
    assert main(["serve"]) == 2
    assert "serve needs --model DIR or --model_config_file FILE" in capsys.readouterr().err
    assert main(["serve", "--model_config_file", "x.config", "--name", "a"]) == 2
    assert "are set per model in --model_config_file" in capsys.readouterr().err


def test_versions_follow_latest_n_and_specific_policies(tmp_path, templates):
    base = tmp_path / "tfqa"
    for version in (1, 2):
        place(templates["first"], base, version)
    latest_two = ServedModels([load_model(base, policy=VersionPolicy("latest", 2))])
    pinned = ServedModels([load_model(base, policy=VersionPolicy("specific", versions=(1, 3)))])
    assert sorted(latest_two.models["tfqa"].servables) == [1, 2] and sorted(pinned.models["tfqa"].servables) == [1]
    place(templates["last"], base, 3)
    latest_two.poll()
    pinned.poll()
    assert sorted(latest_two.models["tfqa"].servables) == [2, 3]  # 1 left the policy
    assert sorted(pinned.models["tfqa"].servables) == [1, 3]  # 3 was waited for; 2 is not listed
    with pytest.raises(ModelDirError, match=r"tfqa: none of the versions there \(1, 2, 3\) is in the version policy "
                                            r"specific \{versions: 7\}"):
        load_model(base, policy=VersionPolicy("specific", versions=(7,)))


def test_a_broken_newest_version_falls_back_to_the_newest_that_loads(tmp_path, templates):
    """latest {1}, version 2 served; 3 (good) and 4 (broken) arrive in one poll: 3 is served, not nothing."""
    base = tmp_path / "tfqa"
    place(templates["first"], base, 2)
    recorder = Recorder()
    models = ServedModels([load_model(base)], recorder)
    place(templates["last"], base, 3)
    shutil.copytree(templates["last"], base / ".tmp-export-broken")
    (base / ".tmp-export-broken" / "saved_model.pb").write_bytes(b"not a SavedModel")
    (base / ".tmp-export-broken").rename(base / "4")
    models.poll()
    assert sorted(models.models["tfqa"].servables) == [3]
    assert [w.split(":")[0] for w in recorder.warnings] == ["model tfqa"]
    models.poll()  # the broken version is not tried again until its folder changes
    assert len(recorder.warnings) == 1 and sorted(models.models["tfqa"].servables) == [3]
