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


def _trim_padding(batch: dict) -> dict:
    """Cuts a right-padded batch to its longest window ("dynamic padding").

    Padding is masked, so the logits of the real tokens do not change; the
    model just skips the padded columns, and the start/end softmax no longer
    spans padding beyond the batch's longest window (as with Hugging Face's
    PyTorch trainer without pad_to_max_length). E.g. with max_seq_length 384 a
    batch whose longest window has 201 tokens costs about half as much.
    """
    length = tf.reduce_max(tf.reduce_sum(batch["attention_mask"], axis=1))
    return {k: v[:, :length] if k not in LABELS else v for k, v in batch.items()}


def train_dataset(features, global_batch_size: int, seed: int, drop_remainder: bool = False,
                  input_names=None) -> tf.data.Dataset:
    """Infinite, reshuffled-each-pass batches of model inputs plus `start_positions`/`end_positions`.

    Transformers' TF QA models compute their own loss (mean of the start and end
    cross-entropies) when the labels are part of the input dict. Use with
    `steps_per_epoch`. `drop_remainder=True` gives the fixed shapes XLA wants;
    otherwise right-padded batches are trimmed to their longest window.
    """
    tensors = model_tensors(features, input_names)
    tensors.update({name: getattr(features, name) for name in LABELS})
    ds = tf.data.Dataset.from_tensor_slices(tensors)
    ds = ds.shuffle(len(features), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(global_batch_size, drop_remainder=drop_remainder)
    right_padded = len(features) and bool(features.attention_mask[:, 0].all())
    if right_padded and not drop_remainder:
        ds = ds.map(_trim_padding, num_parallel_calls=tf.data.AUTOTUNE)
    return _sharded(ds.prefetch(tf.data.AUTOTUNE))


def predict_dataset(features, global_batch_size: int, input_names=None) -> tf.data.Dataset:
    """Batches of model inputs in feature order (no labels), for `model.predict`."""
    ds = tf.data.Dataset.from_tensor_slices(model_tensors(features, input_names)).batch(global_batch_size)
    return _sharded(ds.prefetch(tf.data.AUTOTUNE))
