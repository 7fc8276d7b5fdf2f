"""The QA loss tfqa trains with: the mean of the start and end cross-entropies, over all positions.

    loss = mean over the windows of (CE(start_positions, start_logits) + CE(end_positions, end_logits)) / 2

with CE the sparse softmax cross-entropy over every position of the window,
padding included (as Hugging Face's `TFQuestionAnsweringLoss.hf_compute_loss`
computes it, so a run trains to the same numbers as when the model computed
its own loss). The one owner of this formula: the train step
(`tfqa.training.train_step`, plain `fit` and gradient accumulation) and
distillation's hard term (`tfqa.training.distill`) call it. It takes tensors,
not a model's output object, so any backend whose model gives
`start_logits`/`end_logits` ([batch, positions]) can train with it.
"""

from __future__ import annotations

import tensorflow as tf


def qa_window_losses(start_positions, end_positions, start_logits, end_logits) -> tf.Tensor:
    """Per window ([batch], float32): (CE_start + CE_end) / 2, the cross-entropies over all positions.

    Logits are cast to float32 first: under mixed precision a float16 softmax
    over a whole window overflows or loses the small probabilities.
    """
    # int64 labels, then CE, then (start + end) / 2.0: Keras' SparseCategoricalCrossentropy in HF's own order.
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits
    start = ce(labels=tf.cast(start_positions, tf.int64), logits=tf.cast(start_logits, tf.float32))
    end = ce(labels=tf.cast(end_positions, tf.int64), logits=tf.cast(end_logits, tf.float32))
    return (start + end) / 2.0


def qa_loss(start_positions, end_positions, start_logits, end_logits) -> tf.Tensor:
    """The QA loss of a batch (a float32 scalar): the mean over its windows of `qa_window_losses`."""
    return _batch_mean(qa_window_losses(start_positions, end_positions, start_logits, end_logits))


def _batch_mean(window_losses) -> tf.Tensor:
    # Σ / n as Keras' SUM_OVER_BATCH_SIZE reduces (what HF's compiled loss ran): the same float order.
    return tf.math.divide_no_nan(tf.reduce_sum(window_losses), tf.cast(tf.size(window_losses), window_losses.dtype))
