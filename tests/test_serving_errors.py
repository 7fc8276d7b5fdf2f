"""TensorFlow's canonical error codes by name (tfqa.serving.errors.Code) and what the REST front end answers."""

from __future__ import annotations

from tfqa.rest.http import http_status
from tfqa.serving.errors import Code, ServingFailure


def test_error_code_names_are_tensorflows_numbers():
    from tensorflow.core.protobuf import error_codes_pb2

    assert {c.name: c.value for c in Code} == {name: number for name, number in error_codes_pb2.Code.items()
                                               if not name.startswith("DO_NOT_USE")}


def test_rest_statuses_of_the_named_codes_are_tf_servings():
    assert [http_status(c) for c in (Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.UNAVAILABLE, Code.INTERNAL,
                                     Code.CANCELLED, Code.DEADLINE_EXCEEDED)] == [400, 404, 503, 500, 499, 504]
    assert http_status(3) == 400 and http_status(99) == 500  # TensorFlow's own errors carry plain ints
    assert ServingFailure("bad").code == Code.INVALID_ARGUMENT == 3
