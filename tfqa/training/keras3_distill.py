"""Distillation on Keras 3 (the keras_hub backend): a keras-hub student learns from a frozen keras-hub teacher.

The Keras 3 sibling of `tfqa.training.distill.DistillationModel`: the same
losses (`tfqa.training.distill_loss.batch_losses`, hence
`tfqa.training.loss`), the same logged "loss", "soft_loss" and "hard_loss",
and the same step as `tfqa.training.keras3_step` (the loss scaled per replica,
then by a mixed-float16 LossScaleOptimizer, Keras' own loss tracker as the
running mean `history.json` recovers per-step losses from). Only Keras 3
objects here: a tf-keras teacher is refused before it loads
(`tfqa.training.distill.teacher_problem`), as a tf-keras layer, optimizer or
metric on Keras 3 tensors does nothing useful.

The run saves the student alone (`tfqa.training.run` saves the model it built,
not this wrapper), so a distilled run is a plain keras_hub run.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfqa.training.distill_loss import batch_losses, check_weights, model_inputs
from tfqa.training.keras3_step import build_without_a_batch, step_logs
from tfqa.training.train_step import for_replicas


class Keras3DistillationModel(keras.Model):
    """Student + frozen teacher (both Keras 3 QA models); `fit` trains the student on the distillation loss.

    Batches are `(inputs, {start_positions, end_positions})`; each model gets the
    inputs it takes. Compile it with the student's optimizer
    (`tfqa.training.keras3_step.make_keras3_optimizer`); only the student's
    variables get gradients. Predicting runs the student alone.
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, alpha: float = 0.5, temperature: float = 2.0,
                 **kwargs):
        # The student's policy: compile() then wraps the optimizer for loss scaling under mixed_float16.
        kwargs.setdefault("dtype", student.dtype_policy)
        super().__init__(**kwargs)
        check_weights(alpha, temperature)
        self.student, self.teacher = student, teacher
        self.alpha, self.temperature = float(alpha), float(temperature)
        teacher.trainable = False
        self.soft_tracker = keras.metrics.Mean(name="soft_loss")
        self.hard_tracker = keras.metrics.Mean(name="hard_loss")
        self.built = True  # both models are built: fit need not trace this wrapper symbolically
        build_without_a_batch(self)  # as the QA step: several workers cannot reduce a first batch to build it

    @property
    def inputs(self) -> list:
        """The input tensors either model takes, one per name (what the keras_hub backend's `input_names`
        reads, so the datasets carry every input: a BERT teacher may take `token_type_ids`, its student not)."""
        named = {t.name: t for t in self.teacher.inputs}
        named.update({t.name: t for t in self.student.inputs})
        return list(named.values())

    def call(self, inputs, training=False):
        """The student's `{"start_logits", "end_logits"}` (what `predict` and the per-epoch evaluation see)."""
        return self.student(model_inputs(self.student, inputs), training=training)

    def _step_losses(self, data, training: bool) -> dict:
        x, y = data[0], data[1]
        return batch_losses(self.student, self.teacher, x, y, self.alpha, self.temperature, training)

    def _update_trackers(self, losses: dict, windows) -> dict:
        # Weighted by the batch's windows, as keras3_step's loss: the epoch's running mean is over windows.
        for tracker, key in ((self._loss_tracker, "loss"), (self.soft_tracker, "soft"),
                             (self.hard_tracker, "hard")):
            tracker.update_state(losses[key], sample_weight=windows)
        return {"loss": self._loss_tracker.result(), "soft_loss": self.soft_tracker.result(),
                "hard_loss": self.hard_tracker.result()}

    def train_step(self, data):
        variables = self.student.trainable_variables
        with tf.GradientTape() as tape:
            losses = self._step_losses(data, training=True)
            # Replicas' gradients are summed: each contributes its share of the global-batch mean.
            scaled = self.optimizer.scale_loss(for_replicas(losses["loss"]))  # no-op unless mixed_float16
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return step_logs(self._update_trackers(losses, tf.shape(data[1]["start_positions"])[0]))

    def test_step(self, data):
        return self._update_trackers(self._step_losses(data, training=False), tf.shape(data[1]["start_positions"])[0])
