"""Knowledge distillation during fine-tuning (`--teacher_model`): a fine-tuned teacher guides the student.

The student learns from the hard labels and from the teacher's start/end
distributions at once (the loss: `tfqa.training.distill_loss`). The teacher's
logits are computed on the fly: `DistillationModel` holds the student and the
frozen teacher, and its `train_step` runs both, so it trains with
`tfqa.training.fitting.fit` under any strategy like a plain model. Predicting
with it (the per-epoch evaluation) runs the student only, and
`save_pretrained` saves the student only. That wrapper is tf-keras (the
transformers backend); a keras_hub student trains in its Keras 3 sibling,
`tfqa.training.keras3_distill.Keras3DistillationModel`, on the same losses.
Teacher and student are always of one Keras: a teacher of the other backend
is refused (`teacher_problem`), saying how to convert it.
"""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

from tfqa.core.run_dir import KERAS_MODEL_FILE, saved_model_backend
from tfqa.training.callbacks import TrainingError
from tfqa.training.distill_loss import batch_losses, check_weights, model_inputs
from tfqa.training.train_step import for_replicas, qa_logits

PROBE = ("Who painted the front door of the old mill in 1884? "
         "Talvek painted it teal, then moved to Oslo; the café's bread costs €3.50.")


class TeacherError(TrainingError):
    """The teacher cannot be used (it does not load, or its tokenizer does not match the student's): bad input."""

    exit_status = 2


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
        check_weights(alpha, temperature)
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

    def call(self, inputs, training=False):
        """The student's start/end logits (what `predict` and the per-epoch evaluation see)."""
        start_logits, end_logits = qa_logits(self.student(model_inputs(self.student, inputs), training=training))
        return {"start_logits": start_logits, "end_logits": end_logits}

    def _distillation_step_losses(self, data, training: bool) -> dict:
        x, y, _ = tf.keras.utils.unpack_x_y_sample_weight(data)
        return batch_losses(self.student, self.teacher, x, y, self.alpha, self.temperature, training)

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


TF_WEIGHTS = "tf_model.h5"  # what save_pretrained writes for a transformers TF model (and keras-hub cannot read)
KERAS_HUB_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # a PyTorch-saved checkpoint's


def teacher_problem(path: str, backend: str) -> str:
    """Why the folder `path` cannot teach a student on `backend` ("" when it can, or when only loading can tell).

    Cheap (file names only), so a run refuses before any data or model loads. The
    teacher runs inside the student's train step, and a tf-keras model inside a
    Keras 3 step (or the reverse) is two Keras sharing one graph: refused, with the fix.
    """
    folder = Path(path)
    keras3_run = saved_model_backend(folder) == "keras_hub"
    if backend == "transformers" and keras3_run:
        return (f"--teacher_model {path}: a keras_hub run ({KERAS_MODEL_FILE}, Keras 3) cannot teach a "
                f"--backend transformers (tf-keras) student; pass --backend keras_hub")
    tf_keras_only = (folder / TF_WEIGHTS).is_file() and not any((folder / f).is_file() for f in KERAS_HUB_WEIGHTS)
    if backend == "keras_hub" and not keras3_run and tf_keras_only:
        return (f"--teacher_model {path}: a transformers model ({TF_WEIGHTS}, tf-keras) cannot teach a --backend "
                f"keras_hub (Keras 3) student; convert it: python -m tfqa convert --model {path} --to keras_hub "
                f"--output DIR, then pass --teacher_model DIR")
    return ""


def check_teacher(path: str, backend: str) -> None:
    """Raises TeacherError when `path` is no folder or cannot teach a student on `backend` (`teacher_problem`)."""
    if not os.path.isdir(path):
        raise TeacherError(f"--teacher_model {path}: no such directory")
    problem = teacher_problem(path, backend)
    if problem:
        raise TeacherError(problem)


def load_teacher(path: str, student_tokenizer=None, probes=(), backend: str = "transformers"):
    """The teacher model at `path` (frozen) for a student on `backend`, after checking its tokenizer against the
    student's. A keras_hub student's teacher is a keras_hub run or a checkpoint keras-hub reads (loaded on the
    keras_hub backend); a transformers student's, a transformers run or checkpoint."""
    from tfqa.modeling.backend import load_model
    from tfqa.modeling.checkpoints import ModelLoadError

    check_teacher(path, backend)
    try:
        teacher, tokenizer = load_model(path, flag="--teacher_model", backend=backend)
    except ModelLoadError as e:
        raise TeacherError(f"--teacher_model {path}: {e}") from e
    if student_tokenizer is not None:
        check_tokenizers(student_tokenizer, tokenizer, path, probes)
    teacher.trainable = False
    return teacher


def with_teacher(student, tokenizer, config, strategy=None, probes=()):
    """The model `tfqa.training.fitting.fit` trains when `config.teacher_model` is set (built in `strategy`'s
    scope): a `DistillationModel`, or on the keras_hub backend a `Keras3DistillationModel`."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        teacher = load_teacher(config.teacher_model, tokenizer, probes, backend=config.backend)
        if config.backend == "keras_hub":
            from tfqa.training.keras3_distill import Keras3DistillationModel

            wrapper = Keras3DistillationModel
        else:
            wrapper = DistillationModel
        return wrapper(student, teacher, alpha=config.distill_alpha, temperature=config.distill_temperature)
