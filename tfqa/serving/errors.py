"""TensorFlow's canonical error codes by name, and the two errors of the serving layer.

Front ends turn a `ServingFailure`'s code into their own status (REST:
`tfqa.rest.http.http_status`; gRPC's status codes are the same numbers).
"""

from __future__ import annotations

import enum

from tfqa.core.errors import TfqaError


class Code(enum.IntEnum):
    """tensorflow/core/protobuf/error_codes.proto (the same numbers as gRPC's status codes)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class ModelDirError(TfqaError, ValueError):
    """The export directory cannot be served; the message is one line naming the path and the problem."""


class ServingFailure(TfqaError):
    """A request the loaded model cannot serve; `code` is TensorFlow's canonical error code for it."""

    def __init__(self, message: str, code: int = Code.INVALID_ARGUMENT):
        super().__init__(message)
        self.code = code
