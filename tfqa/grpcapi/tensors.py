"""`TensorProto`s of a gRPC PredictRequest ⇄ the NumPy arrays the serving layer runs, as TF Serving converts them.

Inputs are read with `tf.make_ndarray` after the checks a hostile request
needs first: the input names must be the signature's (TF Serving's message),
each tensor's dtype the signature's, and its shape must not hold more elements
than a message of the size limit could carry (a TensorProto may send one value
for a shape of a billion elements, which `make_ndarray` would then allocate).
Outputs are written with `tf.make_tensor_proto`, so a client reads them back
with `tf.make_ndarray` exactly as from TF Serving.
"""

from __future__ import annotations

import numpy as np

from tfqa.serving.errors import Code, ServingFailure
from tfqa.serving.servables import Signature


def _names(names) -> str:
    return ",".join(sorted(names))


def check_input_names(sent, signature: Signature) -> None:
    """TF Serving's refusal of a request whose inputs are not the signature's (predict_util.cc)."""
    sent, wanted = set(sent), set(signature.dtypes)
    if sent != wanted:
        raise ServingFailure(
            f"input size does not match signature: {len(sent)}!={len(wanted)} len({{{_names(sent)}}}) != "
            f"len({{{_names(wanted)}}}). Sent extra: {{{_names(sent - wanted)}}}. Missing but required: "
            f"{{{_names(wanted - sent)}}}.", Code.INVALID_ARGUMENT)


def decode_inputs(inputs, signature: Signature, max_elements: int) -> dict[str, np.ndarray]:
    """{input name: array} of a PredictRequest's `inputs` map, checked against `signature`."""
    import tensorflow as tf

    check_input_names(inputs, signature)
    arrays = {}
    for name in sorted(inputs):
        proto = inputs[name]
        try:
            got = tf.dtypes.as_dtype(proto.dtype).name
        except TypeError:
            got = f"invalid (enum {proto.dtype})"
        want = signature.dtypes[name]
        if got != want:
            raise ServingFailure(f"input '{name}' is a {got} tensor but signature '{signature.name}' expects {want}",
                                 Code.INVALID_ARGUMENT)
        dims = [d.size for d in proto.tensor_shape.dim]
        if any(d < 0 for d in dims) or proto.tensor_shape.unknown_rank:
            raise ServingFailure(f"input '{name}' has shape {dims}: a request tensor needs a known, non-negative "
                                 "size in every dimension", Code.INVALID_ARGUMENT)
        if int(np.prod(dims, dtype=object)) > max_elements:
            raise ServingFailure(f"input '{name}' has shape {dims}, more elements than a request of at most "
                                 f"{max_elements} bytes can carry", Code.INVALID_ARGUMENT)
        try:
            arrays[name] = tf.make_ndarray(proto)
        except (ValueError, TypeError) as e:
            raise ServingFailure(f"input '{name}': the TensorProto's values do not fill its shape {dims}: "
                                 f"{str(e).splitlines()[0] if str(e) else type(e).__name__}",
                                 Code.INVALID_ARGUMENT) from None
    return arrays


def select_outputs(names, output_filter) -> list[str]:
    """The outputs a request asks for (`output_filter`; all when empty), with TF Serving's errors."""
    if not output_filter:
        return sorted(names)
    seen = []
    for alias in output_filter:
        if alias not in names:
            raise ServingFailure(f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                                 f"the set {{{_names(names)}}}.", Code.INVALID_ARGUMENT)
        if alias in seen:
            raise ServingFailure(f"duplicate output tensor alias: {alias}", Code.INVALID_ARGUMENT)
        seen.append(alias)
    return seen


def encode_outputs(outputs: dict[str, np.ndarray], names: list[str], response_outputs) -> None:
    """Writes the chosen `outputs` into a PredictResponse's `outputs` map."""
    import tensorflow as tf

    for name in names:
        response_outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
