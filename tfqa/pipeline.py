"""Features → `tf.data` pipelines for Keras `fit` and `predict`.

The training pipeline reshuffles every epoch from a fixed seed (so runs repeat),
batches at the *global* batch size (per-replica × replicas: the distribution
strategy splits each batch across devices) and shards by DATA, which is what
works for in-memory datasets on one or several workers.
"""

from __future__ import annotations

import tensorflow as tf

LABELS = ("start_positions", "end_positions")


def _sharded(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return ds.with_options(options)


def model_tensors(features, input_names=None) -> dict:
    """The feature arrays a model takes: all of `features.model_inputs()`, or only `input_names`
    (DistilBERT, for one, has no `token_type_ids` even when a BERT tokenizer makes them)."""
    inputs = features.model_inputs()
    return {k: v for k, v in inputs.items() if input_names is None or k in input_names}


def train_dataset(features, global_batch_size: int, seed: int, drop_remainder: bool = False,
                  input_names=None) -> tf.data.Dataset:
    """Infinite, reshuffled-each-pass batches of model inputs plus `start_positions`/`end_positions`.

    Transformers' TF QA models compute their own loss (mean of the start and end
    cross-entropies) when the labels are part of the input dict. Use with
    `steps_per_epoch`; `drop_remainder=True` gives the fixed shapes XLA wants.
    """
    tensors = model_tensors(features, input_names)
    tensors.update({name: getattr(features, name) for name in LABELS})
    ds = tf.data.Dataset.from_tensor_slices(tensors)
    ds = ds.shuffle(len(features), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(global_batch_size, drop_remainder=drop_remainder)
    return _sharded(ds.prefetch(tf.data.AUTOTUNE))


def predict_dataset(features, global_batch_size: int, input_names=None) -> tf.data.Dataset:
    """Batches of model inputs in feature order (no labels), for `model.predict`."""
    ds = tf.data.Dataset.from_tensor_slices(model_tensors(features, input_names)).batch(global_batch_size)
    return _sharded(ds.prefetch(tf.data.AUTOTUNE))
