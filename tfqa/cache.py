"""An on-disk TFRecord cache of features, so later runs skip tokenization.

An entry is keyed by a hash of what determines the features: the examples
(ids, questions, contexts, answers), the tokenizer (its full serialized
definition and padding side) and the window settings. Change any of them and
the key changes; nothing is ever reused stale. An entry is one TFRecord file of
`tf.train.Example`s, one per window, and a small JSON file that describes it and
is written last: a run killed while writing leaves no entry that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from tfqa.features import Features, prepare_features
from tfqa.files import write_json_atomic

FORMAT = 1
_ROW_FIELDS = ("input_ids", "attention_mask", "token_type_ids", "offsets", "token_is_max_context")
_SCALAR_FIELDS = ("example_index", "start_positions", "end_positions", "cls_index")


def cache_key(examples, tokenizer, settings: dict) -> str:
    """Hex digest identifying the features `prepare_features(examples, tokenizer, **settings)` makes."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": FORMAT, "settings": settings, "padding": tokenizer.padding_side},
                             sort_keys=True).encode())
    digest.update(tokenizer.backend_tokenizer.to_str().encode())
    for e in examples:
        record = [e.id, e.question, e.context, e.is_impossible, [(a.text, a.start) for a in e.answers]]
        digest.update(json.dumps(record, ensure_ascii=False).encode())
    return digest.hexdigest()[:32]


def cached_features(examples, tokenizer, cache_dir: str | os.PathLike, **settings) -> tuple[Features, bool]:
    """(features, reused): read from `cache_dir` when an entry matches, else prepared and stored there."""
    folder = Path(cache_dir)
    key = cache_key(examples, tokenizer, settings)
    records, meta = folder / f"features-{key}.tfrecord", folder / f"features-{key}.json"
    if meta.exists():
        return read_features(records, json.loads(meta.read_text())), True
    features = prepare_features(examples, tokenizer, **settings)
    folder.mkdir(parents=True, exist_ok=True)
    write_features(features, records)
    write_json_atomic(meta, {"format": FORMAT, "windows": len(features), "seq_length": features.input_ids.shape[1],
                             "token_type_ids": features.token_type_ids is not None, "settings": settings})
    return features, False


def write_features(features: Features, path: Path) -> None:
    """One `tf.train.Example` per window, written to a temporary file renamed into place."""
    import tensorflow as tf

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    columns = {name: getattr(features, name) for name in _ROW_FIELDS + _SCALAR_FIELDS
               if getattr(features, name) is not None}
    columns = {name: array.reshape(len(features), -1).astype(np.int64).tolist() for name, array in columns.items()}
    tmp = path.with_name(path.name + ".tmp")
    with tf.io.TFRecordWriter(str(tmp)) as writer:
        for row in range(len(features)):
            example = tf.train.Example(features=tf.train.Features(
                feature={name: ints(values[row]) for name, values in columns.items()}))
            writer.write(example.SerializeToString())
    os.replace(tmp, path)


def read_features(path: Path, meta: dict) -> Features:
    """The Features stored by `write_features` (`meta` gives the window length and fields)."""
    import tensorflow as tf

    seq = meta["seq_length"]
    shapes = {"input_ids": [seq], "attention_mask": [seq], "offsets": [seq, 2], "token_is_max_context": [seq],
              **{name: [] for name in _SCALAR_FIELDS}}
    if meta["token_type_ids"]:
        shapes["token_type_ids"] = [seq]
    spec = {name: tf.io.FixedLenFeature(shape, tf.int64) for name, shape in shapes.items()}
    parts: dict[str, list] = {name: [] for name in spec}
    for batch in tf.data.TFRecordDataset(str(path)).batch(4096).map(lambda s: tf.io.parse_example(s, spec)):
        for name, tensor in batch.items():
            parts[name].append(tensor.numpy())
    arrays = {name: np.concatenate(chunks) if chunks else np.zeros([0, *shapes[name]], np.int64)
              for name, chunks in parts.items()}
    if len(arrays["input_ids"]) != meta["windows"]:
        raise OSError(f"{path}: holds {len(arrays['input_ids'])} windows, its index says {meta['windows']}")
    dtypes = {"offsets": np.int32, "token_is_max_context": bool}
    arrays.setdefault("token_type_ids", None)
    return Features(**{name: None if a is None else a.astype(dtypes.get(name, np.int32)) for name, a in arrays.items()})
