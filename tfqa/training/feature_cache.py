"""An on-disk TFRecord cache of features, so later runs skip tokenization.

An entry is keyed by a hash of what determines the features: the examples
(ids, questions, contexts, answers), the tokenizer (its full serialized
definition and padding side) and the window settings. Change any of them and
the key changes; nothing is ever reused stale. An entry is one TFRecord file of
`tf.train.Example`s, one per window, and a small JSON file that describes it and
is written last: a run killed while writing leaves no entry that looks complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from tfqa.core.config import FeatureConfig
from tfqa.core.features import Features, prepare_features
from tfqa.core.files import atomic_path, write_json_atomic

FORMAT = 1
_ROW_FIELDS = ("input_ids", "attention_mask", "token_type_ids", "offsets", "token_is_max_context")
_SCALAR_FIELDS = ("example_index", "start_positions", "end_positions", "cls_index")
FIELDS = _ROW_FIELDS + _SCALAR_FIELDS


def cache_key(examples, tokenizer, config: FeatureConfig) -> str:
    """Hex digest identifying the features `prepare_features(examples, tokenizer, config=config)` makes."""
    settings = dataclasses.asdict(config)
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": FORMAT, "settings": settings, "padding": tokenizer.padding_side},
                             sort_keys=True).encode())
    digest.update(tokenizer.backend_tokenizer.to_str().encode())
    for e in examples:
        record = [e.id, e.question, e.context, e.is_impossible, [(a.text, a.start) for a in e.answers]]
        digest.update(json.dumps(record, ensure_ascii=False).encode())
    return digest.hexdigest()[:32]


def cached_features(examples, tokenizer, cache_dir: str | os.PathLike,
                    config: FeatureConfig, overwrite: bool = False) -> tuple[Features, bool]:
    """(features, reused): read from `cache_dir` when an entry matches, else prepared and stored there.

    `overwrite` (--overwrite_cache): prepare and store them again even when an entry matches.
    """
    folder = Path(cache_dir)
    key = cache_key(examples, tokenizer, config)
    records, meta = folder / f"features-{key}.tfrecord", folder / f"features-{key}.json"
    if meta.exists() and not overwrite:
        return read_features(records, json.loads(meta.read_text())), True
    features = prepare_features(examples, tokenizer, config=config)
    folder.mkdir(parents=True, exist_ok=True)
    write_features(features, records)
    write_json_atomic(meta, {"format": FORMAT, "windows": len(features), "seq_length": features.input_ids.shape[1],
                             "token_type_ids": features.token_type_ids is not None,
                             "settings": dataclasses.asdict(config)})
    return features, False


def serialized_windows(features: Features, fields=FIELDS, batch: int = 1024):
    """Each window as a serialized `tf.train.Example` (one int64 list per field of `fields`), in row order.

    The protobuf wire format is assembled with NumPy: building `tf.train.Example`
    objects costs milliseconds a window, which made writing the features of a
    large corpus take longer than tokenizing it.
    """
    columns = [(name.encode(), getattr(features, name)) for name in fields if getattr(features, name) is not None]
    for begin in range(0, len(features), batch):
        encoded = []
        for key, array in columns:
            data, sizes = _varints(array[begin:begin + batch].reshape(min(batch, len(features) - begin), -1))
            encoded.append((key, data.tobytes(), np.concatenate([[0], np.cumsum(sizes)]).tolist()))
        for row in range(min(batch, len(features) - begin)):
            fields = []
            for key, data, bounds in encoded:
                values = data[bounds[row]:bounds[row + 1]]
                int64_list = b"\x0a" + _varint(len(values)) + values  # Int64List.value, packed
                feature = b"\x1a" + _varint(len(int64_list)) + int64_list  # Feature.int64_list
                entry = b"\x0a" + _varint(len(key)) + key + b"\x12" + _varint(len(feature)) + feature  # map entry
                fields.append(b"\x0a" + _varint(len(entry)) + entry)  # Features.feature
            body = b"".join(fields)
            yield b"\x0a" + _varint(len(body)) + body  # Example.features


def _varint(value: int) -> bytes:
    if value < len(_SMALL_VARINTS):
        return _SMALL_VARINTS[value]
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = [bytes([v]) if v < 128 else bytes([v & 0x7F | 0x80, v >> 7]) for v in range(1 << 14)]


def _varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf int64 varints of a [rows, k] array: (the bytes row after row, bytes per row).

    Negative values take 10 bytes (two's complement), as protobuf encodes them.
    """
    u = values.astype(np.int64).view(np.uint64)
    length = np.ones(u.shape, np.int64)
    for j in range(1, 10):
        longer = u >= np.uint64(1 << (7 * j))
        if not longer.any():
            break
        length += longer
    width = int(length.max(initial=1))
    out = np.empty(u.shape + (width,), np.uint8)
    for j in range(width):
        group = ((u >> np.uint64(7 * j)) & np.uint64(0x7F)).astype(np.uint8)
        out[..., j] = group | ((length > j + 1).astype(np.uint8) << 7)
    keep = np.arange(width) < length[..., None]
    return out[keep], length.reshape(len(values), -1).sum(1)


def write_features(features: Features, path: Path) -> None:
    """One `tf.train.Example` per window, written atomically (`tfqa.core.files.atomic_path`)."""
    import tensorflow as tf

    with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for record in serialized_windows(features):
            writer.write(record)


def record_spec(seq_length: int, token_type_ids: bool, names=None) -> dict:
    """`tf.io.parse_example` spec of the stored windows: every field, or only `names`."""
    import tensorflow as tf

    seq = seq_length
    shapes = {"input_ids": [seq], "attention_mask": [seq], "offsets": [seq, 2], "token_is_max_context": [seq],
              **{name: [] for name in _SCALAR_FIELDS}}
    if token_type_ids:
        shapes["token_type_ids"] = [seq]
    return {name: tf.io.FixedLenFeature(shape, tf.int64) for name, shape in shapes.items()
            if names is None or name in names}


def read_columns(paths: list, spec: dict, windows: int) -> dict[str, np.ndarray]:
    """The columns named by `spec` (`record_spec`) of every record in `paths`, in order, as int64 arrays."""
    import tensorflow as tf

    paths = [str(p) for p in paths]
    parts: dict[str, list] = {name: [] for name in spec}
    for batch in tf.data.TFRecordDataset(paths).batch(4096).map(lambda s: tf.io.parse_example(s, spec)):
        for name, tensor in batch.items():
            parts[name].append(tensor.numpy())
    arrays = {name: np.concatenate(chunks) if chunks else np.zeros([0, *spec[name].shape], np.int64)
              for name, chunks in parts.items()}
    if len(arrays["input_ids"]) != windows:
        raise OSError(f"{', '.join(paths)}: holds {len(arrays['input_ids'])} windows, its index says {windows}")
    return arrays


def read_features(path: Path, meta: dict) -> Features:
    """The Features stored by `write_features` (`meta` gives the window length and fields)."""
    arrays = read_columns([path], record_spec(meta["seq_length"], meta["token_type_ids"]), meta["windows"])
    dtypes = {"offsets": np.int32, "token_is_max_context": bool}
    arrays.setdefault("token_type_ids", None)
    return Features(**{name: None if a is None else a.astype(dtypes.get(name, np.int32)) for name, a in arrays.items()})
