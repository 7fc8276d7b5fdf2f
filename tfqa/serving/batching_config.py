"""TF Serving's `--batching_parameters_file`: the `BatchingParameters` text proto, read as TF Serving reads it.

    max_batch_size { value: 32 }
    batch_timeout_micros { value: 0 }
    max_enqueued_batches { value: 100 }
    num_batch_threads { value: 2 }
    allowed_batch_sizes: 8
    allowed_batch_sizes: 32

`BatchingParameters` (tensorflow_serving/servables/tensorflow/session_bundle_config.proto)
is not shipped in tensorflow-serving-api, so its fields are declared here, with
TF Serving's field numbers and wrapper types, and the file is parsed by protobuf's
own text-format parser: the syntax TF Serving accepts is the syntax accepted here,
and a typo is an error naming the line rather than a silently ignored setting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

from tfqa.core.errors import TfqaError
from tfqa.serving.limits import MAX_TIMEOUT_SECONDS

# (name, field number, type): the BatchingParameters fields TF Serving 2.x documents for --batching_parameters_file.
_FIELDS = (("max_batch_size", 1, "Int64Value"), ("batch_timeout_micros", 2, "Int64Value"),
           ("max_enqueued_batches", 3, "Int64Value"), ("num_batch_threads", 4, "Int64Value"),
           ("thread_pool_name", 5, "StringValue"), ("allowed_batch_sizes", 6, "repeated int64"),
           ("pad_variable_length_inputs", 7, "BoolValue"))


# Upper bounds: what this server can honour, beyond TF Serving's own checks (issue 20 #12, #13).
MAX_BATCH_SIZE = 65536  # rows in one model call: a 1-row request may be padded to the next allowed size
MAX_BATCH_THREADS = 256  # each holds a thread and its stack; 200,000 left every request "can't start new thread"
MAX_BATCH_TIMEOUT_MICROS = int(MAX_TIMEOUT_SECONDS * 1e6)  # a day: longer waits overflow the clocks
_UPPER = {"max_batch_size": MAX_BATCH_SIZE, "num_batch_threads": MAX_BATCH_THREADS,
          "batch_timeout_micros": MAX_BATCH_TIMEOUT_MICROS, "max_enqueued_batches": 2**31 - 1}


class BatchingConfigError(TfqaError, ValueError):
    """An unreadable or inconsistent batching parameters file; one line naming the file and the problem."""


@dataclass(frozen=True)
class BatchingParameters:
    """Server-side batching settings; the defaults are TF Serving's when --enable_batching comes without a file.

    `num_batch_threads` defaults to the number of CPUs (TF Serving: port::MaxParallelism()).
    `pad_variable_length_inputs` and `thread_pool_name` are accepted for compatibility; requests whose
    inputs differ beyond the batch dimension are batched separately instead of padded.
    """

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    thread_pool_name: str = "model_server_batch_threads"

    def validate(self, where: str = "batching parameters") -> None:
        """Raises BatchingConfigError for settings TF Serving refuses too."""
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise BatchingConfigError(f"{where}: {name} must be at least 1, not {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise BatchingConfigError(f"{where}: batch_timeout_micros must be >= 0, not {self.batch_timeout_micros}")
        for name, upper in _UPPER.items():
            if getattr(self, name) > upper:
                raise BatchingConfigError(f"{where}: {name} must be at most {upper}, not {getattr(self, name)}")
        sizes = self.allowed_batch_sizes
        if sizes:
            if any(b <= a for a, b in zip(sizes, sizes[1:])) or sizes[0] < 1:
                raise BatchingConfigError(f"{where}: allowed_batch_sizes entries must be positive and "
                                          f"monotonically increasing, not {list(sizes)}")
            if sizes[-1] != self.max_batch_size:
                raise BatchingConfigError(f"{where}: the last entry in allowed_batch_sizes must match "
                                          f"max_batch_size; last entry was {sizes[-1]}; expected "
                                          f"{self.max_batch_size}")

    def padded_size(self, size: int) -> int:
        """The batch size a batch of `size` rows runs at: the next allowed size (e.g. 5 → 8 of [4, 8, 32])."""
        return next((s for s in self.allowed_batch_sizes if s >= size), size)


@lru_cache(maxsize=1)
def _message_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(wrappers_pb2.DESCRIPTOR.serialized_pb))
    proto = descriptor_pb2.FileDescriptorProto(name="tfqa/batching_parameters.proto", package="tensorflow.serving",
                                               syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    message = proto.message_type.add(name="BatchingParameters")
    F = descriptor_pb2.FieldDescriptorProto
    for name, number, kind in _FIELDS:
        if kind == "repeated int64":
            message.field.add(name=name, number=number, type=F.TYPE_INT64, label=F.LABEL_REPEATED)
        else:
            message.field.add(name=name, number=number, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                              type_name=f".google.protobuf.{kind}")
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def parse_batching_parameters(text: str, where: str = "batching parameters") -> BatchingParameters:
    """BatchingParameters from text-proto `text`; fields left out keep TF Serving's defaults."""
    from google.protobuf import text_format

    message = _message_class()()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise BatchingConfigError(f"{where}: {e}") from None
    values = {name: getattr(message, name).value for name, _, kind in _FIELDS
              if kind != "repeated int64" and message.HasField(name)}
    params = BatchingParameters(**values, allowed_batch_sizes=tuple(message.allowed_batch_sizes))
    params.validate(where)
    return params


def read_batching_parameters(path: str | os.PathLike | None) -> BatchingParameters:
    """The parameters of `--batching_parameters_file` (TF Serving's defaults when `path` is None)."""
    if path is None:
        return BatchingParameters()
    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as e:
        raise BatchingConfigError(f"{path}: cannot read the batching parameters file: "
                                  f"{getattr(e, 'strerror', None) or e}") from None
    return parse_batching_parameters(text, str(path))
