"""Keras callbacks of a training run, and the one place that orders them (`training_callbacks`).

NaN stop, dev evaluation after every epoch, history + plot recording, and
tf-keras' own backup, checkpoint and TensorBoard callbacks. They collect
numbers and hand them on: the history format and the plot are
`tfqa.core.history`'s, scoring is `tfqa.core.metrics`'.
"""

from __future__ import annotations

import math
from pathlib import Path

import tensorflow as tf

from tfqa.core.config import TrainConfig
from tfqa.core.errors import TfqaError
from tfqa.core.files import write_json_atomic
from tfqa.core.history import load_history, plot_title, step_losses_from_running_means, write_training_plot
from tfqa.core.metrics import exact_match_of, squad_metrics
from tfqa.core.progress import SILENT, Reporter
from tfqa.core.resume import trained_with
from tfqa.core.run_dir import BACKUP_DIR, HISTORY_FILE, LOGS_DIR, PLOT_FILE, checkpoint_path, step_checkpoint_path
from tfqa.modeling.prediction import predict_answers


class TrainingError(TfqaError, RuntimeError):
    """A run that cannot go on (e.g. the loss became NaN); the message says why. Not bad input: exit status 1."""

    exit_status = 1


class StopOnNaN(tf.keras.callbacks.Callback):
    """Stops training with a clear error as soon as the loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingError(f"the training loss became {loss} at step {batch + 1}; lower --learning_rate, "
                                "or check the data")


class TrainingProgress(tf.keras.callbacks.Callback):
    """Training progress through a Reporter (stderr), in place of Keras' progress bar (stdout).

    One `Progress` per epoch: "epoch 2/4: training 127 steps … step 60/127, loss 0.9573 (5 s)" at most
    every few seconds, then "… done in 11 s: loss 0.6642".
    """

    def __init__(self, reporter: Reporter = SILENT, every: float = 5.0):
        super().__init__()
        self.reporter, self.every, self.progress = reporter, every, None

    def on_epoch_begin(self, epoch, logs=None):
        self.steps = self.params.get("steps") or 0
        self.progress = self.reporter.progress(f"epoch {epoch + 1}/{self.params.get('epochs')}: training "
                                               f"{self.steps:,} steps", self.every)

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        self.progress.update(f"step {batch + 1:,}/{self.steps:,}" + (f", loss {loss:.4f}" if loss is not None else ""))

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        self.progress.done(f": loss {loss:.4f}" if loss is not None else "")


class EvaluateEachEpoch(tf.keras.callbacks.Callback):
    """Scores the dev set after every epoch; adds `eval_exact`/`eval_f1` to the epoch logs."""

    def __init__(self, features, examples, config: TrainConfig, batch_size: int, reporter: Reporter = SILENT):
        super().__init__()
        self.features, self.examples, self.config, self.batch_size = features, examples, config, batch_size
        self.reporter = reporter
        self.history: list[dict] = []

    def on_epoch_end(self, epoch, logs=None):
        progress = self.reporter.progress(f"epoch {epoch + 1}: evaluating {len(self.examples):,} questions "
                                          f"({len(self.features):,} windows)")
        predictions, _, null_odds = predict_answers(self.model, self.features, self.examples, self.config.decoding,
                                                    self.batch_size, progress)
        metrics = squad_metrics(self.examples, predictions, na_probs=null_odds or None)
        exact = exact_match_of(metrics)
        if logs is not None:
            logs["eval_exact"], logs["eval_f1"] = exact, metrics["f1"]
        self.history.append({"epoch": epoch + 1, "loss": (logs or {}).get("loss"), **metrics})
        progress.done(f": eval EM {exact:.2f} F1 {metrics['f1']:.2f}")


class RecordHistory(tf.keras.callbacks.Callback):
    """Keeps every step's loss and every epoch's metrics in history.json and draws training.png from them.

    Both files are rewritten (atomically) after every epoch, so a long run can
    be watched while it trains, and when training stops in the middle of an
    epoch; a normal end needs no redraw, the last epoch's files are current.
    The step losses are recovered from the running means in tf-keras' batch
    logs (`tfqa.core.history.step_losses_from_running_means`). A run resumed by
    BackupAndRestore keeps the epochs its history has before the one it
    resumes at and drops any later ones (from the cut-off attempt).
    Place it after `EvaluateEachEpoch` (`evaluator`), whose metrics it records.
    """

    def __init__(self, output_dir, info: dict, evaluator=None, reporter: Reporter = SILENT):
        super().__init__()
        self.out, self.evaluator, self.reporter = Path(output_dir), evaluator, reporter
        self.history = {**info, "epochs": load_history(self.out).get("epochs", [])}
        self._means: list[float] = []  # running mean losses of the current epoch
        self._epoch = 0  # the current epoch (1-based), 0 between epochs

    def on_train_begin(self, logs=None):
        self.history["steps_per_epoch"] = self.params.get("steps")
        self.history["epochs_planned"] = self.params.get("epochs")

    def on_epoch_begin(self, epoch, logs=None):
        self.history["epochs"] = [e for e in self.history["epochs"] if e.get("epoch", 0) <= epoch]
        self._epoch, self._means = epoch + 1, []

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None:
            self._means.append(float(loss))

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, "loss": _finite((logs or {}).get("loss"))}
        if self.evaluator is not None and self.evaluator.history and self.evaluator.history[-1]["epoch"] == epoch + 1:
            record.update(self.evaluator.history[-1])
        self._close_epoch(record)

    def on_train_end(self, logs=None):
        self.stopped()

    def stopped(self) -> None:
        """Records the steps of an epoch cut short (stop_training, an error) and saves, if there are any."""
        if self._epoch and self._means:
            self._close_epoch({"epoch": self._epoch, "loss": _finite(self._means[-1]), "partial": True})

    def epochs(self) -> list[dict]:
        """The finished epochs' records without their step losses."""
        return [{k: v for k, v in e.items() if k != "step_losses"} for e in self.history["epochs"]
                if not e.get("partial")]

    def finish(self, **extra) -> None:
        """Adds `extra` (final metrics, the export) to history.json."""
        self.history.update(extra)
        write_json_atomic(self.out / HISTORY_FILE, self.history)

    def _close_epoch(self, record: dict) -> None:
        record["trained_with"] = trained_with(self.history.get("config") or {})  # a resume may change them
        record["step_losses"] = [_finite(x, 7) for x in step_losses_from_running_means(self._means)]
        self.history["epochs"].append(record)
        self._epoch, self._means = 0, []
        write_json_atomic(self.out / HISTORY_FILE, self.history)
        try:
            write_training_plot(self.out / PLOT_FILE, self.history, plot_title(self.out, self.history))
        except Exception as e:  # noqa: BLE001 - a plot must never cost a training run
            self.reporter.warn(f"could not draw {self.out / PLOT_FILE}: {type(e).__name__}: {e}")


def _finite(value, digits: int | None = None):
    """`value` as a float (rounded to `digits` significant digits), None when missing or not finite (JSON)."""
    if value is None or not math.isfinite(float(value)):
        return None
    return float(f"{float(value):.{digits}g}") if digits else float(value)


def training_callbacks(output_dir: str | Path, config: TrainConfig, recorder: RecordHistory,
                       evaluator: EvaluateEachEpoch | None = None, backup_dir: str | Path | None = None,
                       reporter: Reporter = SILENT, keras=None) -> list:
    """The run's callbacks, in the order they must run at each epoch's end.

    1. StopOnNaN: a NaN loss ends the run before anything records it; TrainingProgress says the epoch is done.
    2. EvaluateEachEpoch (with dev data): the epoch's EM/F1 go into the logs...
    3. RecordHistory: ...which it writes to history.json/training.png...
    4. BackupAndRestore: ...before the backup marks the epoch done, so a resumed
       run never lacks an epoch in its history.
    5. ModelCheckpoint and TensorBoard: the epoch's weights (and every --save_steps steps') and logs.
    `backup_dir` defaults to OUTPUT_DIR/backup (every worker's, see `tfqa.training.strategies`).
    `keras` is the Keras the model lives in (`Backend.keras()`; tf-keras by default): Keras' own callbacks
    must come from it, while tfqa's (plain hooks on the logs) serve both.
    """
    keras = keras or tf.keras
    out = Path(output_dir)
    return [
        StopOnNaN(),
        TrainingProgress(reporter),
        *([evaluator] if evaluator is not None else []),
        recorder,
        backup_and_restore(keras, backup_dir or out / BACKUP_DIR),  # a restarted run resumes here
        keras.callbacks.ModelCheckpoint(str(checkpoint_path(out, "{epoch:02d}", config.backend)),
                                        save_weights_only=True),
        *([keras.callbacks.ModelCheckpoint(str(step_checkpoint_path(out, config.backend)), save_weights_only=True,
                                           save_freq=config.save_steps)] if config.save_steps else []),
        keras.callbacks.TensorBoard(str(out / LOGS_DIR), update_freq=config.logging_steps),
    ]


def backup_and_restore(keras, backup_dir: str | Path):
    """The BackupAndRestore callback of the Keras the model lives in, writing `backup_dir`.

    tf-keras' knows about several workers (the chief writes `backup/chief`, every
    worker restores from it). Keras 3's does not: every worker wrote the same
    `latest.weights.h5` at once, and the second failed ("Unable to synchronously
    create file (unable to lock file …)"). Here only the chief writes and deletes
    it; every worker restores from it (their weights are the same, all-reduced).
    """
    if keras is tf.keras:
        return keras.callbacks.BackupAndRestore(str(backup_dir))
    from tfqa.training.strategies import chief_process

    chief = chief_process()

    class ChiefBackupAndRestore(keras.callbacks.BackupAndRestore):
        def _save_model(self):
            if chief:
                super()._save_model()

        def on_train_end(self, logs=None):
            if chief:
                super().on_train_end(logs)

    return ChiefBackupAndRestore(str(backup_dir))
