"""serve/: the TF Serving model config, batching config and compose file are valid and agree with tfqa."""

from __future__ import annotations

import re

import pytest
import yaml
from helpers import ROOT
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

SERVE = ROOT / "serve"
# BatchingParameters (tensorflow_serving/servables/tensorflow/session_bundle_config.proto) is not in
# tensorflow-serving-api, so its fields are listed here.
BATCHING_FIELDS = {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
                   "allowed_batch_sizes", "pad_variable_length_inputs", "thread_pool_name"}


def requirement(name: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith(f"{name}=="):
            return line.split("==")[1].split()[0]
    raise AssertionError(f"{name} is not pinned in requirements.txt")


def test_model_config_parses_and_names_the_export():
    config = text_format.Parse((SERVE / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == "tfqa" and model.base_path == "/models/tfqa" and model.model_platform == "tensorflow"
    assert model.model_version_policy.latest.num_versions == 1


@pytest.mark.parametrize("name", ["batching.config", "batching_cpu.config"])
def test_batching_config_uses_known_fields(name):
    fields = re.findall(r"^\s*(\w+)\s*\{\s*value:\s*\w+\s*\}", (SERVE / name).read_text(), re.M)
    assert fields and set(fields) <= BATCHING_FIELDS
    assert "max_batch_size" in fields


def test_compose_pins_the_serving_release_matching_tensorflow():
    compose = yaml.safe_load((SERVE / "docker-compose.yml").read_text())
    service = compose["services"]["tfqa"]
    image, tag = service["image"].split(":")
    assert image == "tensorflow/serving" and tag == requirement("tensorflow-serving-api")
    assert tag.rsplit(".", 1)[0] == requirement("tensorflow").rsplit(".", 1)[0]
    args = " ".join(service["command"])
    for path in ("/config/models.config", "/config/batching.config"):
        assert path in args and (SERVE / path.split("/")[-1]).exists()
    assert "8501:8501" in service["ports"] and any(v.startswith("../export:/models") for v in service["volumes"])
