"""The serving layer as the gRPC front end uses it: the one module to repoint when `tfqa.serving` lands.

Issue 23 moves the transport-free serving code (servables, batching, the
request checks) out of `tfqa.rest` into `tfqa.serving`. Until then the gRPC
front end reaches it only through this module, and the request checks that
still raise the REST layer's `RequestError` are turned here into the
transport-free `ServingFailure` with TensorFlow's INVALID_ARGUMENT, the code TF
Serving answers them with (REST's 400). The layering contract lets this one
module import `tfqa.rest`; nothing else in `tfqa.grpcapi` does.
"""

from __future__ import annotations

import numpy as np

from tfqa.rest.batching import Batcher
from tfqa.rest.http import RequestError
from tfqa.rest.json_api import check_batch_size, check_shapes, signature_name_of
from tfqa.rest.servables import INVALID_ARGUMENT, NOT_FOUND, Model, Servable, ServingFailure, Signature
from tfqa.rest.server import check_text_inputs

__all__ = ["Batcher", "INVALID_ARGUMENT", "NOT_FOUND", "Model", "Servable", "ServingFailure", "Signature",
           "check_inputs", "signature_or_default"]


def check_inputs(arrays: dict[str, np.ndarray], signature: Signature, max_instances: int) -> None:
    """REST's checks of decoded inputs (instances per request, shapes, empty texts), as ServingFailures."""
    try:
        check_batch_size({}, arrays, max_instances)
        check_shapes(arrays, signature.shapes, signature.name)
        check_text_inputs(arrays, signature.dtypes)
    except RequestError as e:
        raise ServingFailure(str(e), INVALID_ARGUMENT) from None


def signature_or_default(name: str) -> str:
    """The signature a request names; the default one (as for REST) when the name is empty."""
    return signature_name_of({"signature_name": name})
