"""Distillation's loss (`--teacher_model`): the student learns from the labels and from a frozen teacher's logits.

As in DistilBERT's best SQuAD v1.1 result, the student learns from the hard
labels and from a fine-tuned QA teacher's start/end distributions at once:

    loss = α · T² · (CE_T(teacher_start, student_start) + CE_T(teacher_end, student_end)) / 2
           + (1 − α) · (CE(start_positions, student_start) + CE(end_positions, student_end)) / 2

where CE_T is the cross-entropy between softmax(teacher / T) and
softmax(student / T) over the window's real tokens (padding, attention_mask 0,
is masked out of both softmaxes), and the hard term is tfqa's QA loss per window
(`tfqa.training.loss.qa_window_losses`, what plain training averages).
Everything is computed in float32 (also under mixed precision). T² keeps the
soft term's gradients on the scale of the hard one's (Hinton et al.).

TensorFlow ops on the models' logits only, so both distillation wrappers — the
tf-keras `tfqa.training.distill.DistillationModel` and the Keras 3
`tfqa.training.keras3_distill.Keras3DistillationModel` — step on `batch_losses`.
"""

from __future__ import annotations

import tensorflow as tf

from tfqa.modeling.pipeline import LABELS, input_names
from tfqa.training.loss import qa_window_losses
from tfqa.training.train_step import qa_logits

MASKED = -1e9  # the logit given to padding: exp(MASKED / T − max) is exactly 0 in float32


def _masked(logits, attention_mask, temperature):
    logits = tf.cast(logits, tf.float32) / tf.cast(temperature, tf.float32)
    if attention_mask is None:
        return logits
    return tf.where(tf.cast(attention_mask, tf.bool), logits, tf.constant(MASKED, tf.float32))


def soft_cross_entropy(student_logits, teacher_logits, attention_mask, temperature):
    """Per window: −Σ softmax(teacher / T) · log softmax(student / T) over the unmasked positions ([batch])."""
    teacher = tf.nn.softmax(_masked(teacher_logits, attention_mask, temperature), axis=-1)
    student = tf.nn.log_softmax(_masked(student_logits, attention_mask, temperature), axis=-1)
    return -tf.reduce_sum(teacher * student, axis=-1)


def distillation_losses(student, teacher, labels, attention_mask, alpha: float, temperature: float) -> dict:
    """Per-window losses: {"loss", "soft", "hard"}; `student`/`teacher` are (start_logits, end_logits) pairs.

    "soft" is T² × the mean of the start and end soft cross-entropies; "loss" is
    α · soft + (1 − α) · hard.
    """
    t2 = tf.cast(temperature, tf.float32) ** 2
    soft = t2 * (soft_cross_entropy(student[0], teacher[0], attention_mask, temperature)
                 + soft_cross_entropy(student[1], teacher[1], attention_mask, temperature)) / 2.0
    hard = qa_window_losses(labels[0], labels[1], student[0], student[1])
    alpha = tf.cast(alpha, tf.float32)
    return {"loss": alpha * soft + (1.0 - alpha) * hard, "soft": soft, "hard": hard}


def check_weights(alpha: float, temperature: float) -> None:
    """Raises ValueError unless α is in [0, 1] and T is positive (both wrappers' constructors)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (got {alpha})")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive (got {temperature})")


def model_inputs(model, x: dict) -> dict:
    """The tensors of the batch `x` that `model` takes (a BERT teacher may take `token_type_ids`, a DistilBERT
    student not)."""
    names = input_names(model)
    return {k: v for k, v in x.items() if k in names and k not in LABELS}


def batch_losses(student, teacher, x: dict, y: dict, alpha: float, temperature: float, training: bool) -> dict:
    """The batch means of `distillation_losses` ({"loss", "soft", "hard"}) of `student` and the frozen `teacher`
    on the inputs `x` and labels `y`; a model of either backend (both of one Keras)."""
    teacher_logits = qa_logits(teacher(model_inputs(teacher, x), training=False))
    teacher_logits = tuple(tf.stop_gradient(logits) for logits in teacher_logits)
    student_logits = qa_logits(student(model_inputs(student, x), training=training))
    losses = distillation_losses(student_logits, teacher_logits, (y["start_positions"], y["end_positions"]),
                                 x.get("attention_mask"), alpha, temperature)
    return {k: tf.reduce_mean(v) for k, v in losses.items()}
