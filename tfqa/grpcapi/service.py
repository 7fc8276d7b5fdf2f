"""TF Serving's gRPC services on the serving layer: `PredictionService` (Predict, GetModelMetadata) and
`ModelService` (GetModelStatus), from tensorflow-serving-api's generated stubs on grpcio.

They answer what the REST server answers for the same request: the same
servable lookups and their errors (`Model.resolve`, `status`, `metadata`), the
same input checks and messages (instances per request, shapes, empty texts),
the same model call (through the same `Batcher` when the process batches), with
TensorFlow's error codes as `grpc.StatusCode`s, the number TF Serving passes on
too. Requests over the message size limit are refused by grpcio itself
(RESOURCE_EXHAUSTED); one whose deadline has passed is not run. Classify,
Regress and MultiInference are left to the stubs' UNIMPLEMENTED, as REST
answers :classify with 501.
"""

from __future__ import annotations

import logging
import time

import grpc
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from tfqa.export.names import SERVING_DEFAULT
from tfqa.grpcapi.tensors import decode_inputs, encode_outputs, select_outputs
from tfqa.serving.batching import Batcher
from tfqa.serving.errors import Code, ServingFailure
from tfqa.serving.inputs import check_inputs
from tfqa.serving.limits import DEFAULT_MAX_TEXT_BYTES
from tfqa.serving.metrics import ServingMetrics
from tfqa.serving.live import ServedModels
from tfqa.serving.servables import Model

log = logging.getLogger("tfqa.grpcapi.service")
_STATUS = {code.value[0]: code for code in grpc.StatusCode}


def status_code(code: int) -> grpc.StatusCode:
    """The grpc.StatusCode of a TF canonical error code (UNKNOWN for numbers outside the list)."""
    return _STATUS.get(code, grpc.StatusCode.UNKNOWN)


def _version_choice(spec) -> tuple[int | None, str | None]:
    """(version, label) a ModelSpec asks for; neither means the newest version."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return spec.version.value, None
    return None, (spec.version_label if choice == "version_label" else None)


class _Calls:
    """What every method does around its answer: ServingFailures → status, deadlines, bugs logged, metrics."""

    def __init__(self, metrics: ServingMetrics | None):
        self.metrics = metrics

    def answer(self, context, model_name: str, api: str, compute):
        start, code = time.perf_counter(), Code.OK
        try:
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                raise ServingFailure("the request's deadline passed before it could run", Code.DEADLINE_EXCEEDED)
            return compute()
        except ServingFailure as e:
            code = e.code
            context.abort(status_code(e.code), str(e))
        except Exception as e:  # noqa: BLE001 - the client gets INTERNAL, the server log the traceback
            code = Code.INTERNAL
            log.exception("error while answering %s for model %s", api, model_name)
            context.abort(grpc.StatusCode.INTERNAL, f"Internal error: {type(e).__name__}: {e}")
        finally:
            if self.metrics is not None:
                self.metrics.request(model_name, code, api, "GRPC", time.perf_counter() - start)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata of the served model(s)."""

    def __init__(self, model: Model | ServedModels, *, max_instances: int, max_elements: int,
                 max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES, batcher: Batcher | None = None,
                 metrics: ServingMetrics | None = None):
        self.model, self.batcher = model, batcher
        self.max_instances, self.max_elements, self.max_text_bytes = max_instances, max_elements, max_text_bytes
        self._calls = _Calls(metrics)

    def Predict(self, request, context):  # noqa: N802 - the generated stub's name
        return self._calls.answer(context, request.model_spec.name, "Predict", lambda: self.predict(request))

    def predict(self, request) -> predict_pb2.PredictResponse:
        """A PredictResponse, in REST's order: servable, signature, inputs, checks, run, encode."""
        spec = request.model_spec
        with self.model.serving(spec.name, *_version_choice(spec)) as servable:  # not unloaded mid-request
            signature_name = spec.signature_name or SERVING_DEFAULT
            signature = servable.signature(signature_name)
            arrays = decode_inputs(request.inputs, signature, self.max_elements)
            check_inputs(arrays, signature, self.max_instances, self.max_text_bytes)
            outputs = (self.batcher.run(servable, signature, arrays) if self.batcher
                       else servable.run(signature, arrays))
        response = predict_pb2.PredictResponse()
        response.model_spec.name, response.model_spec.signature_name = spec.name, signature_name
        response.model_spec.version.value = servable.version
        encode_outputs(outputs, select_outputs(outputs, request.output_filter), response.outputs)
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        return self._calls.answer(context, request.model_spec.name, "GetModelMetadata", lambda: self.metadata(request))

    def metadata(self, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """The signature defs of the version asked for, with TF Serving's checks of `metadata_field`."""
        from google.protobuf import json_format

        if not request.HasField("model_spec"):
            raise ServingFailure("Missing ModelSpec", Code.INVALID_ARGUMENT)
        if not request.metadata_field:
            raise ServingFailure("GetModelMetadataRequest must specify at least one metadata_field",
                                 Code.INVALID_ARGUMENT)
        for field in request.metadata_field:
            if field != "signature_def":
                raise ServingFailure(f"Metadata field {field} is not supported", Code.INVALID_ARGUMENT)
        answer = self.model.metadata(request.model_spec.name, *_version_choice(request.model_spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        json_format.ParseDict(answer["model_spec"], response.model_spec)
        signature_defs = json_format.ParseDict(answer["metadata"]["signature_def"],
                                               get_model_metadata_pb2.SignatureDefMap())
        response.metadata["signature_def"].Pack(signature_defs)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus of the served model(s) (HandleReloadConfigRequest is left UNIMPLEMENTED)."""

    def __init__(self, model: Model | ServedModels, metrics: ServingMetrics | None = None):
        self.model = model
        self._calls = _Calls(metrics)

    def GetModelStatus(self, request, context):  # noqa: N802
        return self._calls.answer(context, request.model_spec.name, "GetModelStatus", lambda: self.status(request))

    def status(self, request) -> get_model_status_pb2.GetModelStatusResponse:
        """The states of the loaded versions, as REST's status route lists them."""
        from google.protobuf import json_format

        answer = self.model.status(request.model_spec.name, *_version_choice(request.model_spec))
        return json_format.ParseDict(answer, get_model_status_pb2.GetModelStatusResponse())
