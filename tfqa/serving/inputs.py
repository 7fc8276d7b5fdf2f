"""The checks of a decoded predict request every front end makes: the same refusals, words and code for all.

A front end decodes its wire format (JSON for REST, TensorProtos for gRPC) into
NumPy arrays; these checks then refuse, with TensorFlow's INVALID_ARGUMENT
(REST: 400), what the signature cannot take: too many instances, a rank or a
fixed dimension it does not have, an empty question or context, question and
context batches of different sizes, more text than one request may make the model read.
"""

from __future__ import annotations

import numpy as np

from tfqa.export.names import CONTEXT, QUESTION, TEXT_INPUTS
from tfqa.serving.errors import Code, ServingFailure
from tfqa.serving.limits import DEFAULT_MAX_TEXT_BYTES, check_instance_count


def check_shapes(arrays: dict[str, np.ndarray], shapes: dict[str, tuple | None], signature_name: str) -> None:
    """Refuses inputs whose rank or fixed dimensions differ from the signature's (None = any size)."""
    for name, array in arrays.items():
        want = shapes[name]
        if want is None:
            continue
        if len(want) != array.ndim or any(w is not None and w != got for w, got in zip(want, array.shape)):
            expected = "[" + ",".join("-1" if w is None else str(w) for w in want) + "]"
            raise ServingFailure(f"input '{name}' has shape {list(array.shape)} but signature '{signature_name}' "
                                 f"expects {expected} (-1: any size)", Code.INVALID_ARGUMENT)


def check_text_inputs(arrays: dict, dtypes: dict[str, str]) -> None:
    """Refuses empty questions/contexts (an empty one has no answer to look for), and question and context
    batches of different sizes."""
    present = [name for name in TEXT_INPUTS if dtypes.get(name) == "string"]
    for name in present:
        for i, value in enumerate(arrays[name].ravel()):
            if not value.strip():
                raise ServingFailure(f"input '{name}' element {i} is an empty string; a {name} needs some text",
                                     Code.INVALID_ARGUMENT)
    if len(present) == 2 and arrays[QUESTION].shape[:1] != arrays[CONTEXT].shape[:1]:
        raise ServingFailure(f"inputs '{QUESTION}' and '{CONTEXT}' have different batch sizes "
                             f"({arrays[QUESTION].shape[0]} and {arrays[CONTEXT].shape[0]})", Code.INVALID_ARGUMENT)


def check_text_bytes(arrays: dict, dtypes: dict[str, str], limit: int) -> None:
    """Refuses requests with more than `limit` bytes in their string inputs: the bound on one request's work."""
    total = sum(len(value) for name, array in arrays.items() if dtypes.get(name) == "string"
                for value in array.ravel())
    if total > limit:
        raise ServingFailure(f"the request has {total} bytes of text; this server takes at most {limit} per request "
                             "(--max-text-bytes): send shorter contexts or fewer instances per request",
                             Code.INVALID_ARGUMENT)


def check_inputs(arrays: dict[str, np.ndarray], signature, max_instances: int,
                 max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> None:
    """All of the above for a request to `signature` (a `tfqa.serving.servables.Signature`)."""
    counts = [array.shape[0] for array in arrays.values() if array.ndim]
    if counts:
        check_instance_count(max(counts), max_instances)
    check_shapes(arrays, signature.shapes, signature.name)
    check_text_inputs(arrays, signature.dtypes)
    check_text_bytes(arrays, signature.dtypes, max_text_bytes)
