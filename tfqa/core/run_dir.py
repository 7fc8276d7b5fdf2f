"""A training run's output folder: the names of its files, and its settings saved and read back.

    OUTPUT_DIR/
      config.json, tf_model.h5, tokenizer files   the model (Hugging Face save_pretrained)
      tfqa_config.json                            the run's TrainConfig (`save_settings` / `load_settings`)
      eval_results.json, predictions.json, nbest_predictions.json, null_odds.json (SQuAD 2.0)
      history.json, training.png                  per-step losses, per-epoch metrics (`tfqa.core.history`)
      checkpoints/epoch-NN.h5, logs/ (TensorBoard), backup/ (resume)
      export/tfqa/<version>/                      the TF Serving export (default place)

Everything that reads or writes one of these files takes its name from here.
No TensorFlow.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tfqa.core.config import AUTO, TrainConfig
from tfqa.core.errors import TfqaError
from tfqa.core.files import write_json_atomic

SETTINGS_FILE = "tfqa_config.json"
RESULTS_FILE = "eval_results.json"
HISTORY_FILE = "history.json"
PLOT_FILE = "training.png"
MODEL_CONFIG_FILE = "config.json"
PREDICTIONS_FILE = "predictions.json"
NBEST_FILE = "nbest_predictions.json"
NULL_ODDS_FILE = "null_odds.json"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
BACKUP_DIR = "backup"
DEFAULT_EXPORT = Path("export") / "tfqa"
RUN_FILES = (SETTINGS_FILE, RESULTS_FILE, HISTORY_FILE)  # any one of them makes a folder a tfqa run


class RunDirError(TfqaError):
    """The directory is not (or not a readable) training run's output directory; one line."""


def checkpoint_path(output_dir: str | os.PathLike, epoch: int | str) -> Path:
    """The per-epoch weights file (`epoch` may be Keras' "{epoch:02d}" placeholder)."""
    name = f"epoch-{epoch}.h5" if isinstance(epoch, str) else f"epoch-{epoch:02d}.h5"
    return Path(output_dir) / CHECKPOINTS_DIR / name


def step_checkpoint_path(output_dir: str | os.PathLike) -> Path:
    """The --save_steps weights files, with Keras' placeholders: checkpoints/epoch-01-step-00500.h5."""
    return Path(output_dir) / CHECKPOINTS_DIR / "epoch-{epoch:02d}-step-{batch:05d}.h5"


def finished_run(output_dir: str | os.PathLike) -> bool:
    """Whether `output_dir` holds a training run that ran to its end (history.json has its final entry).

    An interrupted run has no final entry yet: the same command resumes it.
    """
    path = Path(output_dir) / HISTORY_FILE
    try:
        return "final" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def clear_run(output_dir: str | os.PathLike) -> None:
    """Removes what a training run wrote into `output_dir` (--overwrite_output_dir); other files stay."""
    out = Path(output_dir)
    for name in (*RUN_FILES, PLOT_FILE, PREDICTIONS_FILE, NBEST_FILE, NULL_ODDS_FILE):
        (out / name).unlink(missing_ok=True)
    for name in (CHECKPOINTS_DIR, LOGS_DIR, BACKUP_DIR, DEFAULT_EXPORT):
        shutil.rmtree(out / name, ignore_errors=True)


def export_base(config: TrainConfig) -> str:
    """Where training exports to: --export_dir, else OUTPUT_DIR/export/tfqa ("" for --export_dir none)."""
    if config.export_dir == "none":
        return ""
    return config.export_dir or str(Path(config.output_dir) / DEFAULT_EXPORT)


def read_run_json(path: str | os.PathLike) -> dict:
    """A JSON object file of a run; RunDirError naming the file and the problem otherwise."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as e:
        raise RunDirError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(value, dict):
        raise RunDirError(f"{path}: not a JSON object")
    return value


def save_settings(output_dir: str | os.PathLike, config: TrainConfig) -> Path:
    """Writes the run's settings (flat, every flag by name) to OUTPUT_DIR/tfqa_config.json, atomically."""
    return write_json_atomic(Path(output_dir) / SETTINGS_FILE, config.to_dict())


def load_settings(model_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig a model directory was trained with (defaults when it has no tfqa_config.json).

    The result points at `model_dir` as its checkpoint and has no preset: it
    describes the trained model, not how to rebuild it. A settings file that
    cannot be read, or holds values of the wrong type, is a RunDirError.
    """
    path = Path(model_dir) / SETTINGS_FILE
    if not path.exists():
        return TrainConfig(model_name_or_path=str(model_dir))
    values = read_run_json(path)
    defaults = TrainConfig().to_dict()
    for key, value in values.items():
        expected = defaults.get(key)
        if key in defaults and not _same_kind(value, expected):
            raise RunDirError(f"{path}: {key!r} must be {type(expected).__name__}, not {_clip(value)}")
    config = TrainConfig.from_dict(values).replace(model_name_or_path=str(model_dir), preset="")
    problems = config.features.problems() + config.decoding.problems()
    if problems:
        raise RunDirError(f"{path}: {'; '.join(problems)}")
    return config


def _clip(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _same_kind(value, default) -> bool:
    if default == AUTO:  # a setting that is a number or "auto" (null_score_diff_threshold)
        return value == AUTO or _same_kind(value, 0.0)
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))
