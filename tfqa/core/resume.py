"""Resuming an interrupted run: what must match the saved run, what may change, and what a resume says.

tf-keras' BackupAndRestore (OUTPUT_DIR/backup/) holds the weights, the optimizer state and the
epoch reached. It only fits a model and data shaped as before: another window size, model or
batch size fails deep inside TensorFlow ("incompatible tensor with shape (64, 64) … (96, 64)") or,
worse, trains on silently. So a rerun into an interrupted run compares `FIXED_ON_RESUME` with the
settings in history.json (recorded when training started) and refuses a mismatch naming the flag,
before anything is written. The settings of `RECORDED_PER_EPOCH` may change on resume; every
epoch record keeps the values it was trained with (`trained_with`), so no summary claims the new
value for the epochs trained at the old one. No TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

from tfqa.core.config import TrainConfig
from tfqa.core.errors import TfqaError
from tfqa.core.history import load_history
from tfqa.core.run_dir import BACKUP_DIR

# What shapes the model and the data the backup was trained on.
# Files are compared as paths; the batch size and accumulation fix the steps of an epoch.
FIXED_ON_RESUME = ("preset", "backend", "model_name_or_path", "config_name", "tokenizer_name", "teacher_model",
                   "max_seq_length", "doc_stride", "max_query_length", "train_file", "max_train_samples",
                   "per_replica_batch_size", "gradient_accumulation_steps", "mixed_precision", "seed")
FILE_SETTINGS = frozenset({"train_file", "model_name_or_path", "config_name", "tokenizer_name", "teacher_model"})
# The training schedule: a resume may change it, and each epoch records the values it used.
RECORDED_PER_EPOCH = ("learning_rate", "num_train_epochs", "max_steps", "warmup_ratio", "warmup_steps",
                      "weight_decay", "adam_epsilon", "max_grad_norm")


def trained_with(settings: dict) -> dict:
    """The `RECORDED_PER_EPOCH` values of a run's flat settings, as an epoch record keeps them."""
    return {name: settings.get(name) for name in RECORDED_PER_EPOCH}


def interrupted_run(output_dir: str | Path) -> dict:
    """The history.json of a run a rerun into `output_dir` continues ({} when it would start afresh).

    That is a run without its final entry whose backup is on disk (tf-keras resumes from it), or
    whose every planned epoch is recorded (the rerun evaluates and exports the last epoch's weights).
    """
    history = load_history(output_dir)
    if "final" in history or not isinstance(history.get("config"), dict):
        return {}
    if _has_backup(output_dir):
        return history
    planned = history.get("epochs_planned")
    return history if isinstance(planned, int) and 0 < planned <= _complete_epochs(history) else {}


def resume_problems(settings: dict, output_dir: str | Path) -> list[str]:
    """One line per `FIXED_ON_RESUME` setting that differs from the interrupted run's in `output_dir`.

    `settings` are the flat settings the rerun will train with (data paths as they will be used).
    """
    history = interrupted_run(output_dir)
    saved = history.get("config") or {}
    problems = []
    for name in FIXED_ON_RESUME:
        if name in saved and not _same(name, settings.get(name), saved[name]):
            was = _shown(saved[name])
            problems.append(f"--{name} {_shown(settings.get(name))}: the interrupted run in {output_dir} was trained "
                            f"with {was}; resume with --{name} {was} or pass --overwrite_output_dir")
    return problems


class ResumeError(TfqaError):
    """A rerun whose settings do not fit the interrupted run it would resume; one line naming the flags."""


def check_resume(config: TrainConfig, output_dir: str | Path) -> None:
    """ResumeError listing every `resume_problems` line, if there are any."""
    problems = resume_problems(config.to_dict(), output_dir)
    if problems:
        raise ResumeError("; ".join(problems))


def resume_summary(settings: dict, output_dir: str | Path) -> str:
    """What a rerun continues from, e.g. "resuming the interrupted run in runs/x at epoch 2 of 4 (after 127
    steps; 1 epoch complete); changed: --learning_rate 0.001 → 0.002"; "" when it starts afresh."""
    history = interrupted_run(output_dir)
    if not history or not _has_backup(output_dir):  # no backup: `fit` starts again from epoch 1
        return ""
    done = _complete_epochs(history)
    steps = sum(len(e.get("step_losses") or []) for e in history.get("epochs", [])
                if not e.get("partial") and e.get("epoch", 0) <= done)
    planned = history.get("epochs_planned")
    text = (f"resuming the interrupted run in {output_dir} at epoch {done + 1}" + (f" of {planned}" if planned else "")
            + f" (after {steps:,} steps; {done} epoch{'s' * (done != 1)} complete)")
    saved = history["config"]
    changed = [f"--{name} {_shown(saved.get(name))} → {_shown(settings.get(name))}" for name in RECORDED_PER_EPOCH
               if name in saved and saved.get(name) != settings.get(name)]
    return text + ("; changed: " + ", ".join(changed) if changed else "; no setting changed")


def _has_backup(output_dir: str | Path) -> bool:
    backup = Path(output_dir) / BACKUP_DIR
    return backup.is_dir() and any(p.is_file() for p in backup.rglob("*"))


def _complete_epochs(history: dict) -> int:
    """The last epoch before the first one missing from the history (the backup's, see interruption_summary)."""
    done = {e.get("epoch") for e in history.get("epochs", []) if not e.get("partial")}
    epoch = 0
    while epoch + 1 in done:
        epoch += 1
    return epoch


def _same(name: str, value, saved) -> bool:
    if name in FILE_SETTINGS and value and saved and isinstance(value, str) and isinstance(saved, str):
        return value == saved or Path(value).resolve() == Path(saved).resolve()
    return value == saved


def _shown(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e6 else f"{value:g}"
    return f"{value:g}" if isinstance(value, float) else str(value) if value != "" else "''"
