"""Features → the tensors a model takes, and the `tf.data` pipeline for `predict`.

What training and prediction share: which inputs a model takes
(`input_names`), the feature arrays under those names (`model_tensors`),
trimming right-padded batches to their longest window (`trim_padding`) and
the sharding options every pipeline gets. The training pipelines are
`tfqa.training.datasets`.
"""

from __future__ import annotations

import tensorflow as tf

LABELS = ("start_positions", "end_positions")


def sharded(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return ds.with_options(options)


def input_names(model) -> frozenset[str]:
    """The tfqa tensor names a model takes (`input_ids`, `attention_mask`[, `token_type_ids`]), from its backend."""
    from tfqa.modeling.backend import backend_of

    return backend_of(model).input_names(model)


def model_tensors(features, input_names=None) -> dict:
    """The feature arrays a model takes: all of `features.model_inputs()`, or only `input_names`
    (DistilBERT, for one, has no `token_type_ids` even when a BERT tokenizer makes them)."""
    inputs = features.model_inputs()
    return {k: v for k, v in inputs.items() if input_names is None or k in input_names}


def trim_padding(batch: dict) -> dict:
    """Cuts a right-padded batch to its longest window ("dynamic padding").

    Padding is masked, so the logits of the real tokens do not change; the
    model just skips the padded columns, and the start/end softmax no longer
    spans padding beyond the batch's longest window (as with Hugging Face's
    PyTorch trainer without pad_to_max_length). E.g. with max_seq_length 384 a
    batch whose longest window has 201 tokens costs about half as much.
    """
    length = tf.reduce_max(tf.reduce_sum(batch["attention_mask"], axis=1))
    return {k: v[:, :length] if k not in LABELS else v for k, v in batch.items()}


def right_padded(features) -> bool:
    """Whether every window starts with a real token, so that trimming the right end only cuts padding."""
    return bool(len(features)) and bool(features.attention_mask[:, 0].all())


def predict_dataset(features, global_batch_size: int, input_names=None, trim: bool = False) -> tf.data.Dataset:
    """Batches of model inputs in feature order (no labels), for `model.predict`.

    `trim`: each right-padded batch is cut to its longest window (`trim_padding`); `model.predict` then
    returns ragged outputs when the widths differ (see `tfqa.modeling.prediction`).
    """
    ds = tf.data.Dataset.from_tensor_slices(model_tensors(features, input_names)).batch(global_batch_size)
    if trim and right_padded(features):
        ds = ds.map(trim_padding)
    return sharded(ds.prefetch(tf.data.AUTOTUNE))
