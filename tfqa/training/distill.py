"""Knowledge distillation during fine-tuning (`--teacher_model`): a fine-tuned teacher guides the student.

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

The teacher's logits are computed on the fly: `DistillationModel` holds the
student and the frozen teacher, and its `train_step` runs both, so it trains
with `tfqa.training.fitting.fit` under any strategy like a plain model. Predicting with
it (the per-epoch evaluation) runs the student only, and `save_pretrained`
saves the student only.
"""

from __future__ import annotations

import os

import tensorflow as tf

from tfqa.modeling.pipeline import LABELS
from tfqa.training.callbacks import TrainingError
from tfqa.training.loss import qa_window_losses
from tfqa.training.train_step import for_replicas, qa_logits

MASKED = -1e9  # the logit given to padding: exp(MASKED / T − max) is exactly 0 in float32
PROBE = ("Who painted the front door of the old mill in 1884? "
         "Talvek painted it teal, then moved to Oslo; the café's bread costs €3.50.")


class TeacherError(TrainingError):
    """The teacher cannot be used (it does not load, or its tokenizer does not match the student's): bad input."""

    exit_status = 2


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


def _signature(model) -> dict:
    return dict(getattr(model, "input_signature", {}) or {})


class DistillationModel(tf.keras.Model):
    """Student + frozen teacher; `fit` trains the student on the distillation loss.

    The training batches are `(inputs, {start_positions, end_positions})`
    (`tfqa.training.datasets.train_dataset`); each model gets the inputs
    it takes (a BERT teacher may take `token_type_ids` a DistilBERT student does
    not). Compile it with the student's optimizer; only the student's variables
    are trained. The logged "loss" is the combined loss, "soft_loss" its
    distillation term (before α) and "hard_loss" the label term.
    """

    def __init__(self, student, teacher, alpha: float = 0.5, temperature: float = 2.0, **kwargs):
        # The student's policy: compile() then wraps the optimizer for loss scaling under mixed_float16.
        kwargs.setdefault("dtype", getattr(student, "dtype_policy", None))
        super().__init__(**kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1] (got {alpha})")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive (got {temperature})")
        self.student, self.teacher = student, teacher
        self.alpha, self.temperature = float(alpha), float(temperature)
        teacher.trainable = False
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")
        self.soft_tracker = tf.keras.metrics.Mean(name="soft_loss")
        self.hard_tracker = tf.keras.metrics.Mean(name="hard_loss")

    @property
    def input_signature(self) -> dict:
        """The inputs either model takes (`tfqa.training.run.input_names` reads it to build the datasets)."""
        return {**_signature(self.teacher), **_signature(self.student)}

    @property
    def metrics(self):
        return [self.loss_tracker, self.soft_tracker, self.hard_tracker]

    @staticmethod
    def _model_inputs(model, data) -> dict:
        names = _signature(model)
        return {k: v for k, v in data.items() if k in names and k not in LABELS}

    def call(self, inputs, training=False):
        """The student's start/end logits (what `predict` and the per-epoch evaluation see)."""
        start_logits, end_logits = qa_logits(self.student(self._model_inputs(self.student, inputs), training=training))
        return {"start_logits": start_logits, "end_logits": end_logits}

    def _distillation_step_losses(self, data, training: bool) -> dict:
        x, y, _ = tf.keras.utils.unpack_x_y_sample_weight(data)
        teacher = qa_logits(self.teacher(self._model_inputs(self.teacher, x), training=False))
        teacher_logits = tuple(tf.stop_gradient(logits) for logits in teacher)
        student = qa_logits(self.student(self._model_inputs(self.student, x), training=training))
        losses = distillation_losses(student, teacher_logits, (y["start_positions"], y["end_positions"]),
                                     x.get("attention_mask"), self.alpha, self.temperature)
        return {k: tf.reduce_mean(v) for k, v in losses.items()}

    def _update_trackers(self, losses: dict) -> dict:
        self.loss_tracker.update_state(losses["loss"])
        self.soft_tracker.update_state(losses["soft"])
        self.hard_tracker.update_state(losses["hard"])
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            losses = self._distillation_step_losses(data, training=True)
            loss = losses["loss"]
            if self.student.losses:  # regularization losses, if any (none in the Transformers QA models)
                loss += tf.add_n([tf.cast(l, tf.float32) for l in self.student.losses])
            # Replicas' gradients are summed: each contributes its share of the global-batch mean.
            loss = for_replicas(loss)
        # minimize() applies a LossScaleOptimizer's scaling (mixed_float16) and the optimizer's clipping.
        self.optimizer.minimize(loss, self.student.trainable_variables, tape=tape)
        return self._update_trackers(losses)

    def test_step(self, data):
        return self._update_trackers(self._distillation_step_losses(data, training=False))

    def save_pretrained(self, *args, **kwargs):
        """Saves the student (the teacher is only a means of training it)."""
        return self.student.save_pretrained(*args, **kwargs)


def check_tokenizers(student_tokenizer, teacher_tokenizer, teacher_path: str, probes=()) -> None:
    """Raises TeacherError unless both tokenizers give the same ids on the probe texts.

    The soft loss compares the two models position by position, so the teacher
    must tokenize exactly like the student (the same vocabulary and rules).
    """
    pairs = [tuple(PROBE.split("? ", 1))] + [(text, None) for text in probes if text]
    for first, second in pairs:
        mine = student_tokenizer(first, second, truncation=True, max_length=512)["input_ids"]
        theirs = teacher_tokenizer(first, second, truncation=True, max_length=512)["input_ids"]
        if list(mine) != list(theirs):
            at = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
            raise TeacherError(
                f"--teacher_model {teacher_path}: its tokenizer does not match the student's (on the probe text "
                f"{first[:50]!r}... they differ at token {at}: student ids {mine[at:at + 5]}, teacher ids "
                f"{theirs[at:at + 5]}); distillation compares the two models position by position, so the "
                f"teacher needs the student's vocabulary (student vocab {len(student_tokenizer)}, teacher vocab "
                f"{len(teacher_tokenizer)})")


def load_teacher(path: str, student_tokenizer=None, probes=()):
    """The teacher model at `path` (frozen), after checking its tokenizer against the student's."""
    from tfqa.modeling.checkpoints import ModelLoadError, load_qa_model

    if not os.path.isdir(path):
        raise TeacherError(f"--teacher_model {path}: no such directory")
    try:
        teacher, tokenizer = load_qa_model(path)
    except ModelLoadError as e:
        raise TeacherError(f"--teacher_model {path}: {e}") from e
    if student_tokenizer is not None:
        check_tokenizers(student_tokenizer, tokenizer, path, probes)
    teacher.trainable = False
    return teacher


def with_teacher(student, tokenizer, config, strategy=None, probes=()) -> DistillationModel:
    """The model `tfqa.training.fitting.fit` trains when `config.teacher_model` is set (built in `strategy`'s scope)."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        teacher = load_teacher(config.teacher_model, tokenizer, probes)
        return DistillationModel(student, teacher, alpha=config.distill_alpha,
                                 temperature=config.distill_temperature)
