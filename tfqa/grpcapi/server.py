"""The gRPC server of `tfqa model-server --port`: grpcio with TF Serving's two services on the served models."""

from __future__ import annotations

from concurrent import futures

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from tfqa.core.errors import TfqaError
from tfqa.grpcapi.service import ModelService, PredictionService
from tfqa.serving.batching import Batcher
from tfqa.serving.limits import DEFAULT_MAX_TEXT_BYTES
from tfqa.serving.metrics import ServingMetrics
from tfqa.serving.live import ServedModels
from tfqa.serving.servables import Model

# Threads answering RPCs at once; more concurrent calls wait in grpcio's queue (the model call is the bottleneck).
DEFAULT_WORKERS = 16


class GrpcStartupError(TfqaError, RuntimeError):
    """The gRPC port cannot be had; one line."""


def start_grpc_server(model: Model | ServedModels, host: str, port: int, *, max_message_bytes: int, max_instances: int,
                      max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES, batcher: Batcher | None = None,
                      metrics: ServingMetrics | None = None, workers: int = DEFAULT_WORKERS) -> tuple[grpc.Server, int]:
    """Starts serving `model` on host:port (0: a free port) and returns (server, the port it listens on).

    `max_message_bytes` caps a request (REST's body limit), `max_instances` and
    `max_text_bytes` are REST's per-request limits; the same `batcher` as
    the REST app's merges requests from both. Stop it with `server.stop(grace)`.
    """
    if not 0 <= port <= 65535:
        raise GrpcStartupError(f"--port {port} is not a TCP port (0-65535; 0 picks a free one)")
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", -1),
               ("grpc.so_reuseport", 0)]  # else a second server binds the busy port silently
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tfqa-grpc"),
                         options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(model, max_instances=max_instances, max_elements=max_message_bytes,
                          max_text_bytes=max_text_bytes, batcher=batcher, metrics=metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(model, metrics), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as e:
        raise GrpcStartupError(f"cannot listen on {address} for gRPC: {e}") from None
    if not bound:
        raise GrpcStartupError(f"cannot listen on {address} for gRPC (the port is busy or the address is not local)")
    server.start()
    return server, bound
