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
    `features` may also be `tfqa.shards.FeatureShards`: the same batches then
    stream from its files (`stream_train_dataset`).
    """
    from tfqa.shards import FeatureShards

    if isinstance(features, FeatureShards):
        return stream_train_dataset(features, global_batch_size, seed, drop_remainder, input_names)
    tensors = model_tensors(features, input_names)
    tensors.update({name: getattr(features, name) for name in LABELS})
    ds = tf.data.Dataset.from_tensor_slices(tensors)
    ds = ds.shuffle(len(features), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(global_batch_size, drop_remainder=drop_remainder)
    right_padded = len(features) and bool(features.attention_mask[:, 0].all())
    if right_padded and not drop_remainder:
        ds = ds.map(_trim_padding, num_parallel_calls=tf.data.AUTOTUNE)
    return _sharded(ds.prefetch(tf.data.AUTOTUNE))


SHUFFLE_BUFFER = 16384  # windows, serialized (~1.5 KB at 384 tokens: ~25 MB): what streaming holds
CYCLE_LENGTH = 8  # shard files read at once


def stream_train_dataset(shards, global_batch_size: int, seed: int, drop_remainder: bool = False,
                         input_names=None, input_context: tf.distribute.InputContext | None = None,
                         num_workers: int | None = None, shuffle_buffer: int = SHUFFLE_BUFFER,
                         cycle_length: int = CYCLE_LENGTH) -> tf.data.Dataset:
    """`train_dataset`'s batches, read from `tfqa.shards.FeatureShards` files instead of memory.

    Files (shuffled every pass) are read `cycle_length` at a time, interleaved
    window by window, through a seeded shuffle buffer that reshuffles every
    pass; then repeat, global batches, only the training columns parsed, and
    padding trimmed. Every window comes once per pass; the order is a
    buffered approximation of a full shuffle (exact when the buffer holds all).

    Several input pipelines split the files between them when there are at
    least as many files as pipelines, else the windows: explicitly for an
    `input_context` (`strategy.distribute_datasets_from_function`; batches are
    then per pipeline), through the auto-shard policy for a multi-worker `fit`
    (`num_workers`, default: the tasks in TF_CONFIG).
    """
    from tfqa.cache import record_spec
    from tfqa.shards import num_workers_from_tf_config

    pipelines, pipeline_id = 1, 0
    if input_context is not None:
        pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
        global_batch_size = input_context.get_per_replica_batch_size(global_batch_size) * \
            input_context.num_replicas_in_sync // pipelines
    files = list(shards.files)
    by_file = len(files) >= pipelines
    if by_file:
        files = files[pipeline_id::pipelines]  # what Dataset.shard(pipelines, pipeline_id) keeps
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if shards.token_type_ids else [])
    names = [n for n in names if input_names is None or n in input_names] + list(LABELS)
    spec = record_spec(shards.seq_length, shards.token_type_ids, names)

    ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(cycle_length, len(files)), block_length=1,
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if not by_file:
        ds = ds.shard(pipelines, pipeline_id)
    # Shuffle the serialized records, parse whole batches: one vectorized parse per step.
    ds = ds.shuffle(max(1, min(shuffle_buffer, len(shards))), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(global_batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda records: {k: tf.cast(v, tf.int32) for k, v in tf.io.parse_example(records, spec).items()},
                num_parallel_calls=tf.data.AUTOTUNE)
    if shards.right_padded and not drop_remainder:
        ds = ds.map(_trim_padding, num_parallel_calls=tf.data.AUTOTUNE)
    workers = num_workers or num_workers_from_tf_config()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.FILE if len(shards.files) >= workers
        else tf.data.experimental.AutoShardPolicy.DATA)
    options.deterministic = True
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def predict_dataset(features, global_batch_size: int, input_names=None) -> tf.data.Dataset:
    """Batches of model inputs in feature order (no labels), for `model.predict`."""
    ds = tf.data.Dataset.from_tensor_slices(model_tensors(features, input_names)).batch(global_batch_size)
    return _sharded(ds.prefetch(tf.data.AUTOTUNE))
