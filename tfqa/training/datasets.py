"""Features → the `tf.data` pipelines Keras `fit` trains on.

The training pipeline reshuffles every epoch from a fixed seed (so runs repeat),
batches at the *global* batch size (per-replica × replicas: the distribution
strategy splits each batch across devices) and shards by DATA, which is what
works for in-memory datasets on one or several workers. Features too large for
memory stream from TFRecord shards (`tfqa.training.feature_shards`).
"""

from __future__ import annotations

import tensorflow as tf

from tfqa.modeling.pipeline import LABELS, model_tensors, right_padded, sharded, trim_padding
from tfqa.training.feature_cache import record_spec
from tfqa.training.feature_shards import FeatureShards
from tfqa.training.strategies import training_workers


def train_dataset(features, global_batch_size: int, seed: int, drop_remainder: bool = False,
                  input_names=None) -> tf.data.Dataset:
    """Infinite, reshuffled-each-pass `(inputs, labels)` batches: model inputs, {`start_positions`, `end_positions`}.

    The labels stay out of the inputs: the train step computes the loss from
    the model's logits (`tfqa.training.train_step`, `tfqa.training.loss`). Use with
    `steps_per_epoch`. `drop_remainder=True` gives the fixed shapes XLA wants;
    otherwise right-padded batches are trimmed to their longest window.
    `features` may also be `tfqa.training.feature_shards.FeatureShards`: the same batches then
    stream from its files (`stream_train_dataset`).
    """
    if isinstance(features, FeatureShards):
        return stream_train_dataset(features, global_batch_size, seed, drop_remainder, input_names)
    tensors = model_tensors(features, input_names)
    tensors.update({name: getattr(features, name) for name in LABELS})
    ds = tf.data.Dataset.from_tensor_slices(tensors)
    ds = ds.shuffle(len(features), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(global_batch_size, drop_remainder=drop_remainder)
    trim = right_padded(features) and not drop_remainder
    ds = ds.map(lambda batch: inputs_and_labels(batch, trim), num_parallel_calls=tf.data.AUTOTUNE)
    return sharded(ds.prefetch(tf.data.AUTOTUNE))


def inputs_and_labels(batch: dict, trim: bool = False) -> tuple[dict, dict]:
    """A batch dict → (model inputs, {`start_positions`, `end_positions`}); `trim`: `trim_padding` first."""
    if trim:
        batch = trim_padding(batch)
    return ({k: v for k, v in batch.items() if k not in LABELS}, {k: batch[k] for k in LABELS})


SHUFFLE_BUFFER = 16384  # windows, serialized (~1.5 KB at 384 tokens: ~25 MB): what streaming holds
CYCLE_LENGTH = 8  # shard files read at once


def stream_train_dataset(shards, global_batch_size: int, seed: int, drop_remainder: bool = False,
                         input_names=None, input_context: tf.distribute.InputContext | None = None,
                         num_workers: int | None = None, shuffle_buffer: int = SHUFFLE_BUFFER,
                         cycle_length: int = CYCLE_LENGTH) -> tf.data.Dataset:
    """`train_dataset`'s batches, read from `tfqa.training.feature_shards.FeatureShards` files instead of memory.

    Files (shuffled every pass) are read `cycle_length` at a time, interleaved
    window by window, through a seeded shuffle buffer that reshuffles every
    pass; then repeat, global batches, only the training columns parsed, and
    padding trimmed, as `(inputs, labels)`. Every window comes once per pass; the order is a
    buffered approximation of a full shuffle (exact when the buffer holds all).

    Several input pipelines split the files between them when there are at
    least as many files as pipelines, else the windows: explicitly for an
    `input_context` (`strategy.distribute_datasets_from_function`; batches are
    then per pipeline), through the auto-shard policy for a multi-worker `fit`
    (`num_workers`, default: the tasks in TF_CONFIG).
    """
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
    trim = shards.right_padded and not drop_remainder
    ds = ds.map(lambda records: inputs_and_labels(
        {k: tf.cast(v, tf.int32) for k, v in tf.io.parse_example(records, spec).items()}, trim),
        num_parallel_calls=tf.data.AUTOTUNE)
    workers = num_workers or training_workers()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.FILE if len(shards.files) >= workers
        else tf.data.experimental.AutoShardPolicy.DATA)
    options.deterministic = True
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)
