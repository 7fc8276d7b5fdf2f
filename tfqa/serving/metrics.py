"""TF Serving's Prometheus metrics, recorded by both front ends and exposed with `prometheus_client`.

`--monitoring_config_file` is TF Serving's `MonitoringConfig` text proto:

    prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }

The metric names, labels and buckets are TF Serving's (util.cc, batching_session.cc,
TensorFlow's saved_model loader), with `/` written `:` as its exporter writes them:

- `:tensorflow:serving:request_count{model_name, status}`: every request, by TF error code name;
- `:tensorflow:serving:request_latency{model_name, API, entrypoint}`: microseconds of successful ones
  (entrypoint REST or GRPC);
- `:tensorflow:serving:batching_session:queuing_latency{thread_pool_name}`: microseconds a batched
  request waited before its model call;
- `:tensorflow:cc:saved_model:load_attempt_count{model_path, status}`: version loads, success or fail.

One difference: TF Serving's exporter writes counters under their own name,
while prometheus_client's text format would append `_total` to a counter; the
two counts are therefore exposed as untyped samples under TF Serving's exact
names, so a dashboard written for TF Serving reads them unchanged.

`MonitoringConfig` (tensorflow_serving/config/monitoring_config.proto) is not
shipped in tensorflow-serving-api, so its two messages are declared here with
TF Serving's field numbers and the file is read by protobuf's text-format parser.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from functools import lru_cache

from tfqa.core.errors import TfqaError
from tfqa.serving.errors import Code

DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"  # the content type of the exposition
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
QUEUING_LATENCY = ":tensorflow:serving:batching_session:queuing_latency"
LOAD_ATTEMPT_COUNT = ":tensorflow:cc:saved_model:load_attempt_count"


class MonitoringConfigError(TfqaError, ValueError):
    """An unreadable monitoring config file; one line naming the file and the problem."""


def _exponential(scale: float, growth: float, count: int) -> tuple[float, ...]:
    return tuple(scale * growth**i for i in range(count))  # monitoring::Buckets::Exponential


class _Counts:
    """A prometheus_client collector of counters under TF Serving's exact sample names (see the module doc)."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, str]):
        self.name, self.documentation, self.labels = name, documentation, labels
        self.counts: Counter = Counter()
        self.lock = threading.Lock()

    def add(self, *values: str) -> None:
        with self.lock:
            self.counts[values] += 1

    def collect(self):
        from prometheus_client.core import Metric

        metric = Metric(self.name, self.documentation, "unknown")
        with self.lock:
            for values, count in sorted(self.counts.items()):
                metric.add_sample(self.name, dict(zip(self.labels, values)), count)
        yield metric


class ServingMetrics:
    """The metrics of one server process; `exposition()` is the text a Prometheus scrape gets."""

    def __init__(self, path: str = DEFAULT_METRICS_PATH):
        from prometheus_client import CollectorRegistry, Histogram

        self.path = path
        self.registry = CollectorRegistry()
        self.requests = _Counts(REQUEST_COUNT, "The total number of requests.", ("model_name", "status"))
        self.loads = _Counts(LOAD_ATTEMPT_COUNT, "The number of times a SavedModel was loaded.",
                             ("model_path", "status"))
        self.registry.register(self.requests)
        self.registry.register(self.loads)
        self._request_latency = Histogram(
            REQUEST_LATENCY, "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"], buckets=_exponential(10, 1.8, 33), registry=self.registry)
        self._queuing_latency = Histogram(
            QUEUING_LATENCY, "Distribution of wall time spent (in microseconds) in queuing", ["thread_pool_name"],
            buckets=_exponential(100, 1.2, 52), registry=self.registry)

    def request(self, model_name: str, code: int, api: str, entrypoint: str, seconds: float) -> None:
        """Counts one request with its TF error `code`; a successful one's latency goes into the histogram."""
        self.requests.add(model_name, Code(code).name if code in Code._value2member_map_ else Code.UNKNOWN.name)
        if code == Code.OK:
            self._request_latency.labels(model_name, api, entrypoint).observe(seconds * 1e6)

    def queued(self, thread_pool_name: str, seconds: float) -> None:
        """A batched request waited `seconds` in the queue before its model call."""
        self._queuing_latency.labels(thread_pool_name).observe(seconds * 1e6)

    def load(self, model_path: str | os.PathLike, ok: bool) -> None:
        """One attempt to load a version directory."""
        self.loads.add(str(model_path), "success" if ok else "fail")

    def exposition(self) -> bytes:
        """Prometheus text format (version 0.0.4) of every metric."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


@lru_cache(maxsize=1)
def _message_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="tfqa/monitoring_config.proto", package="tensorflow.serving",
                                               syntax="proto3")
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    config = proto.message_type.add(name="MonitoringConfig")
    config.field.add(name="prometheus_config", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                     type_name=".tensorflow.serving.PrometheusConfig")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


def read_monitoring_config(path: str | os.PathLike) -> ServingMetrics | None:
    """The metrics `--monitoring_config_file` asks for, or None when its Prometheus export is not enabled."""
    from google.protobuf import text_format

    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as e:
        raise MonitoringConfigError(f"{path}: cannot read the monitoring config file: "
                                    f"{getattr(e, 'strerror', None) or e}") from None
    message = _message_class()()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise MonitoringConfigError(f"{path}: {e}") from None
    prometheus = message.prometheus_config
    if not prometheus.enable:
        return None
    metrics_path = prometheus.path or DEFAULT_METRICS_PATH
    if not metrics_path.startswith("/") or metrics_path.lower().startswith("/v1/"):
        raise MonitoringConfigError(f"{path}: prometheus_config path {metrics_path!r} must start with / and not "
                                    "with /v1/ (the model API's routes)")
    return ServingMetrics(metrics_path)
