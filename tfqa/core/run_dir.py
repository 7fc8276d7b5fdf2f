"""A training run's output folder: the names of its files, and its settings saved and read back.

    OUTPUT_DIR/
      config.json, tf_model.h5, tokenizer files   the model (Hugging Face save_pretrained)
      tfqa_config.json                            the run's TrainConfig (`save_settings` / `load_settings`)
      eval_results.json, predictions.json, nbest_predictions.json, null_odds.json (SQuAD 2.0)
      history.json, training.png                  per-step losses, per-epoch metrics (`tfqa.core.history`)
      checkpoints/epoch-NN.h5, logs/ (TensorBoard), backup/ (resume)
      export/tfqa/<version>/                      the TF Serving export (default place)
      data/train.json, data/dev.json              a preset's data (--preset smoke)
      tfqa_run.json                               what tfqa wrote here, and whether the run finished
                                                  (`tfqa.core.run_record`: --overwrite_output_dir removes only that)
      .tfqa.lock                                  held while a run writes here (`tfqa.core.run_lock`)

Everything that reads or writes one of these files takes its name from here.
No TensorFlow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tfqa.core.config import AUTO, TrainConfig
from tfqa.core.errors import TfqaError
from tfqa.core.files import write_json_atomic

SETTINGS_FILE = "tfqa_config.json"
RESULTS_FILE = "eval_results.json"
HISTORY_FILE = "history.json"
PLOT_FILE = "training.png"
MODEL_CONFIG_FILE = "config.json"
KERAS_MODEL_FILE = "model.keras"  # a keras_hub run's model (Keras 3; `keras.saving.load_model` reads it)
PREDICTIONS_FILE = "predictions.json"
NBEST_FILE = "nbest_predictions.json"
NULL_ODDS_FILE = "null_odds.json"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
BACKUP_DIR = "backup"
EXPORT_DIR = "export"
DEFAULT_EXPORT = Path(EXPORT_DIR) / "tfqa"
DATA_DIR = "data"
MANIFEST_FILE = "tfqa_run.json"
LOCK_FILE = ".tfqa.lock"
RUN_FILES = (SETTINGS_FILE, RESULTS_FILE, HISTORY_FILE)  # any one of them makes a folder a tfqa run
# What Hugging Face's save_pretrained writes for the TF models and tokenizers tfqa trains (and a keras_hub model).
MODEL_FILES = (MODEL_CONFIG_FILE, KERAS_MODEL_FILE, "tf_model.h5", "tf_model.h5.index.json", "generation_config.json",
               "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
               "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model")
# Every file tfqa writes at the top of a run folder under a fixed name.
TOP_FILES = (*RUN_FILES, PLOT_FILE, PREDICTIONS_FILE, NBEST_FILE, NULL_ODDS_FILE, *MODEL_FILES)
# Inside the run's folders: the names (globs) of what tfqa (or TensorFlow for it) writes there. Where such a
# folder was the user's before the run, only new entries matching these are the run's.
WRITTEN_INSIDE = {
    CHECKPOINTS_DIR: ("epoch-*.h5",),
    LOGS_DIR: ("train", "validation"),  # TensorBoard's writers
    f"{LOGS_DIR}/train": ("events.out.tfevents.*", "plugins"),
    f"{LOGS_DIR}/validation": ("events.out.tfevents.*",),
    BACKUP_DIR: ("chief", "workertemp_*", "latest.weights.h5", "training_metadata.json"),  # BackupAndRestore:
    # tf-keras', then Keras 3's (keras_hub backend)
    EXPORT_DIR: ("tfqa",),
    DEFAULT_EXPORT.as_posix(): ("[0-9]*", ".tmp-export-*"),  # tfqa.export.versions
    DATA_DIR: ("train.json", "dev.json"),
}
RUN_FOLDERS = (CHECKPOINTS_DIR, LOGS_DIR, BACKUP_DIR, EXPORT_DIR, DATA_DIR)  # made by a run at its top


class RunDirError(TfqaError):
    """The directory is not (or not a readable) training run's output directory; one line."""


def saved_model_backend(path: str | os.PathLike) -> str | None:
    """The backend whose trained model a folder holds: "keras_hub" (model.keras), "transformers" (a save_pretrained
    config.json), None (neither)."""
    path = Path(path)
    if (path / KERAS_MODEL_FILE).is_file():
        return "keras_hub"
    return "transformers" if (path / MODEL_CONFIG_FILE).is_file() else None


def _weights_suffix(backend: str) -> str:
    # Keras 3 (the keras_hub backend) saves weights only to names ending in .weights.h5; tf-keras takes .h5.
    return ".weights.h5" if backend == "keras_hub" else ".h5"


def checkpoint_path(output_dir: str | os.PathLike, epoch: int | str, backend: str = "transformers") -> Path:
    """The per-epoch weights file (`epoch` may be Keras' "{epoch:02d}" placeholder) of a run on `backend`."""
    name = f"epoch-{epoch}" if isinstance(epoch, str) else f"epoch-{epoch:02d}"
    return Path(output_dir) / CHECKPOINTS_DIR / (name + _weights_suffix(backend))


def step_checkpoint_path(output_dir: str | os.PathLike, backend: str = "transformers") -> Path:
    """The --save_steps weights files, with Keras' placeholders: checkpoints/epoch-01-step-00500.h5."""
    return Path(output_dir) / CHECKPOINTS_DIR / ("epoch-{epoch:02d}-step-{batch:05d}" + _weights_suffix(backend))


def finished_run(output_dir: str | os.PathLike) -> bool:
    """Whether `output_dir` holds a training run that ran to its end.

    Two records say so, either is enough: tfqa_run.json's "finished" (written last) and history.json's
    final entry (runs of older tfqa versions have only that one). An unreadable tfqa_run.json is a
    RunDirError: the folder may hold anything. An interrupted run has neither: the same command resumes it.
    """
    manifest = read_manifest(output_dir)
    if manifest is not None and manifest.get("finished") is True:
        return True
    path = Path(output_dir) / HISTORY_FILE
    try:
        return "final" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, TypeError):
        return False


def read_manifest(output_dir: str | os.PathLike) -> dict | None:
    """OUTPUT_DIR/tfqa_run.json (see `tfqa.core.run_record`), None when there is none; RunDirError when unreadable."""
    path = Path(output_dir) / MANIFEST_FILE
    if not path.is_file() and not path.is_symlink():
        return None
    manifest = read_run_json(path)
    created = manifest.get("created")
    if not isinstance(created, list) or not all(isinstance(p, str) for p in created):
        raise RunDirError(f"{path}: 'created' must be a list of paths; remove the file or choose another folder")
    return manifest


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
