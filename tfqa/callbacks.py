"""Keras callbacks of a training run: NaN stop, history + plot recording, prediction progress.

They only collect numbers and hand them on: plotting is `tfqa.plots`/`tfqa.report`,
scoring is `tfqa.training.EvaluateEachEpoch`.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402

from tfqa.files import write_json_atomic  # noqa: E402
from tfqa.progress import Progress  # noqa: E402
from tfqa.report import (HISTORY_FILE, PLOT_FILE, load_history, plot_title,  # noqa: E402
                         step_losses_from_running_means, write_training_plot)


class TrainingError(RuntimeError):
    """A run that cannot go on (e.g. the loss became NaN); the message says why."""


class StopOnNaN(tf.keras.callbacks.Callback):
    """Stops training with a clear error as soon as the loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingError(f"the training loss became {loss} at step {batch + 1}; lower --learning_rate, "
                                "or check the data")


class PredictProgress(tf.keras.callbacks.Callback):
    """Reports predicted batches to a `Progress` (which prints at most every few seconds), on stderr.

    Keras' own progress bar would go to stdout, which carries results only.
    """

    def __init__(self, progress: Progress, batches: int):
        super().__init__()
        self.progress, self.batches = progress, batches
        self._supports_tf_logs = True  # the outputs in the logs are not read: spare their copy to NumPy

    def on_predict_batch_end(self, batch, logs=None):
        self.progress.update(f"{batch + 1:,} of {self.batches:,} batches")


class RecordHistory(tf.keras.callbacks.Callback):
    """Keeps every step's loss and every epoch's metrics in history.json and draws training.png from them.

    Both files are rewritten (atomically) after every epoch, so a long run can
    be watched while it trains, and when training stops in the middle of an
    epoch; a normal end needs no redraw, the last epoch's files are current.
    The step losses are recovered from the running means in tf-keras' batch
    logs (`tfqa.report.step_losses_from_running_means`). A run resumed by
    BackupAndRestore keeps the epochs its history has before the one it
    resumes at and drops any later ones (from the cut-off attempt).
    Place it after `tfqa.training.EvaluateEachEpoch` (`evaluator`), whose metrics it records.
    """

    def __init__(self, output_dir, info: dict, evaluator=None):
        super().__init__()
        self.out, self.evaluator = Path(output_dir), evaluator
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
        record["step_losses"] = [_finite(x, 7) for x in step_losses_from_running_means(self._means)]
        self.history["epochs"].append(record)
        self._epoch, self._means = 0, []
        write_json_atomic(self.out / HISTORY_FILE, self.history)
        try:
            write_training_plot(self.out / PLOT_FILE, self.history, plot_title(self.out, self.history))
        except Exception as e:  # noqa: BLE001 - a plot must never cost a training run
            print(f"tfqa: warning: could not draw {self.out / PLOT_FILE}: {type(e).__name__}: {e}", file=sys.stderr)


def _finite(value, digits: int | None = None):
    """`value` as a float (rounded to `digits` significant digits), None when missing or not finite (JSON)."""
    if value is None or not math.isfinite(float(value)):
        return None
    return float(f"{float(value):.{digits}g}") if digits else float(value)
