"""Run settings as dataclasses; the `train_keras.py` flags are generated from them.

Each setting is defined once, here, with its default and help. Two small
groups have a shape of their own because other parts take them alone:
`FeatureConfig` (how examples become windows: features, caches, the export)
and `DecodeConfig` (how logits become answers: decoding, the export).
`TrainConfig` composes both with the run's own settings. On the command line
and in `tfqa_config.json` all settings are flat (`--max_seq_length`,
`"n_best_size": 20`); `add_to_parser`/`from_args` and `to_dict`/`from_dict`
map between the flat names and the nested dataclasses.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfqa.core.squad import is_tfds_name


def _flag(default, help: str, aliases: tuple[str, ...] = (), choices=None, parse=None):
    return field(default=default, metadata={"help": help, "aliases": aliases, "choices": choices, "parse": parse})


AUTO = "auto"

# The largest value an integer setting may take: TensorFlow counts steps, shapes and batch sizes in int32.
MAX_INT = 2**31 - 1
# The libraries a model can live in (`--backend`; each one's code is tfqa.modeling.backend's to find).
BACKENDS = ("transformers", "keras_hub")
# Upper bounds narrower than MAX_INT, with why: what the code can actually do with the value.
_INT_RANGES = {
    "seed": (0, 2**32 - 1, "TensorFlow's and NumPy's seeds are 32-bit"),
    "gradient_accumulation_steps": (None, 64, "the micro-batches are unrolled into the train step's graph"),
}
_FLOAT32_MAX = 3.4028234663852886e38  # weights, learning rates and losses are float32: more is infinity


def number_or_auto(text: str) -> float | str:
    """A flag value that is a number or "auto" (an argparse type)."""
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or '{AUTO}', got {text!r}") from None


def _range_problems(settings, fields) -> list[str]:
    """Values of `fields` beyond what the code can hold or do (`_INT_RANGES`, MAX_INT, float32), as
    flag-named messages."""
    problems = []
    for f in fields:
        value = getattr(settings, f.name)
        if isinstance(value, bool):
            continue
        if f.type in ("int", int) and isinstance(value, int):
            low, high, why = _INT_RANGES.get(f.name, (None, MAX_INT, "TensorFlow counts in int32"))
            if (low is not None and value < low) or value > high:
                problems.append(f"--{f.name} must be {'at most' if low is None else f'from {low} to'} {high} "
                                f"({why}; got {value})")
        elif f.type in ("float", float) and isinstance(value, (int, float)) and abs(value) > _FLOAT32_MAX:
            problems.append(f"--{f.name} must be at most {_FLOAT32_MAX:.4g} in size (training computes in float32; "
                            f"got {value})")
    return problems


class _SettingsGroup:
    """A small frozen group of settings that can say what is wrong with its values."""

    def problems(self) -> list[str]:
        raise NotImplementedError

    def validate(self) -> None:
        """Raises ValueError naming every problem (see `problems`)."""
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class FeatureConfig(_SettingsGroup):
    """Windowing settings; the defaults are the usual SQuAD fine-tuning ones."""

    max_seq_length: int = _flag(384, "tokens per window (question + context + special tokens)")
    doc_stride: int = _flag(128, "context tokens shared by consecutive windows")
    max_query_length: int = _flag(64, "question tokens kept (longer questions are truncated)")

    def problems(self) -> list[str]:
        """What is wrong with the values, as flag-named messages (empty when fine)."""
        problems = _range_problems(self, dataclasses.fields(self))
        if problems:
            return problems
        problems = [f"--{name} must be positive (got {getattr(self, name)})"
                    for name in ("max_seq_length", "max_query_length") if getattr(self, name) <= 0]
        if self.doc_stride < 0:
            problems.append(f"--doc_stride must not be negative (got {self.doc_stride})")
        elif not problems and self.doc_stride >= self.max_seq_length - self.max_query_length:
            # The context gets max_seq_length − max_query_length − special tokens per window; a stride
            # that large would never advance (e.g. 64-token windows, 16 question tokens: stride < 48).
            problems.append(f"--doc_stride {self.doc_stride} must be smaller than --max_seq_length − "
                            f"--max_query_length ({self.max_seq_length - self.max_query_length})")
        return problems


@dataclass(frozen=True)
class DecodeConfig(_SettingsGroup):
    """How logits become answers (the Python decoder and the exported graph)."""

    n_best_size: int = _flag(20, "candidates per example kept in nbest_predictions.json")
    max_answer_length: int = _flag(30, "longest answer in tokens")
    version_2_with_negative: bool = _flag(False, "SQuAD 2.0: some questions have no answer")
    null_score_diff_threshold: float | str = _flag(
        AUTO, "SQuAD 2.0: answer '' when null score − best span exceeds this; 'auto': after the final evaluation, "
        "the dev set's best_f1_thresh (0.0 until then, and without dev data)", parse=number_or_auto)

    @property
    def auto_threshold(self) -> bool:
        """Whether the threshold is still to be tuned on dev data ("auto")."""
        return self.null_score_diff_threshold == AUTO

    @property
    def null_threshold(self) -> float:
        """The threshold decoding applies: the number, or 0.0 while it is "auto" (not tuned yet)."""
        return 0.0 if self.auto_threshold else float(self.null_score_diff_threshold)

    def problems(self) -> list[str]:
        """What is wrong with the values, as flag-named messages (empty when fine)."""
        problems = _range_problems(self, dataclasses.fields(self))
        problems += [f"--{name} must be positive (got {getattr(self, name)})"
                     for name in ("n_best_size", "max_answer_length") if getattr(self, name) <= 0]
        value = self.null_score_diff_threshold
        if value != AUTO and (isinstance(value, (bool, str)) or not math.isfinite(value)):
            problems.append(f"--null_score_diff_threshold must be a finite number or 'auto' (got {value!r})")
        return problems


class ComposedSettings:
    """Flat keywords for a dataclass that composes settings groups (`FeatureConfig`, `DecodeConfig` fields).

    `Settings(max_seq_length=64)` sets the group's field, `settings.max_seq_length`
    reads it, `dataclasses.replace`/`replace` and `to_dict`/`from_dict` take and
    give flat names: the groups are a shape for the code, not for the user.
    Subclasses are `@dataclass(init=False)`.
    """

    def __init__(self, **settings):
        groups = _groups(type(self))
        unknown = sorted(set(settings) - _flat_names(type(self)) - set(groups))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no setting {unknown[0]!r}")
        for f in dataclasses.fields(self):
            if f.name in groups:
                group = settings.pop(f.name, None) or f.default_factory()
                flat = {k: settings.pop(k) for k in list(settings) if k in groups[f.name]}
                setattr(self, f.name, dataclasses.replace(group, **flat) if flat else group)
            else:
                setattr(self, f.name, settings.pop(f.name, f.default))

    def __getattr__(self, name: str):
        # Only called for names that are not fields: the flat names of the groups' settings.
        for group, names in _groups(type(self)).items():
            if name in names:
                return getattr(object.__getattribute__(self, group), name)
        raise AttributeError(f"{type(self).__name__} has no setting {name!r}")

    def replace(self, **changes):
        """A copy with `changes` applied, by flat setting name (`version_2_with_negative=True`)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every setting under its flat name (what `tfqa_config.json` and history.json hold)."""
        flat: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            flat.update(dataclasses.asdict(value) if f.name in _groups(type(self)) else {f.name: value})
        return flat

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """The settings from flat names; unknown keys (from other tfqa versions) are ignored."""
        return cls(**{k: v for k, v in values.items() if k in _flat_names(cls)})


@functools.cache
def _groups(cls) -> dict[str, frozenset[str]]:
    """{field name: its settings' names} for the fields of `cls` that hold a settings group."""
    return {f.name: frozenset(g.name for g in dataclasses.fields(f.default_factory))
            for f in dataclasses.fields(cls)
            if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory)}


@functools.cache
def _flat_names(cls) -> frozenset[str]:
    groups = _groups(cls)
    return frozenset(f.name for f in dataclasses.fields(cls) if f.name not in groups).union(*groups.values())


@dataclass(init=False)
class TrainConfig(ComposedSettings):
    """Everything a training/evaluation run needs.

    Built from flat keywords like the command line
    (`TrainConfig(max_seq_length=64, learning_rate=1e-3)`) or with the
    composed groups themselves (`features=FeatureConfig(...)`); both read back
    flat too (`config.max_seq_length` is `config.features.max_seq_length`).
    """

    model_name_or_path: str = _flag("distilbert-base-uncased", "hub name or local directory of the pretrained "
                                    "checkpoint (TF tf_model.h5 or PyTorch safetensors)")
    backend: str = _flag("transformers", "the library that holds the model: transformers (Hugging Face's TF classes, "
                         "tf-keras) or keras_hub (a keras-hub backbone + QA head, Keras 3; see tfqa.modeling.backend)",
                         choices=BACKENDS)
    model_type: str = _flag("", "accepted for compatibility; the architecture is read from the checkpoint's config")
    config_name: str = _flag("", "model config (hub name or folder) when not the one of --model_name_or_path")
    tokenizer_name: str = _flag("", "tokenizer (hub name or folder) when not the one of --model_name_or_path")
    data_dir: str = _flag("", "folder that relative --train_file/--predict_file names are read from; alone, its "
                          "train-v1.1.json and dev-v1.1.json (v2.0 with --version_2_with_negative), as in run_squad.py")
    train_file: str = _flag("squad/v1.1:train", "SQuAD JSON (.json/.json.gz) or TFDS name for training")
    predict_file: str = _flag("squad/v1.1:validation", "SQuAD JSON or TFDS name for evaluation")
    output_dir: str = _flag("runs/squad", "where checkpoints, logs, predictions and the final model go")
    preset: str = _flag("", "'smoke': offline run on a generated corpus with a tiny model; "
                        "the presets are tfqa.training.presets")
    do_train: bool = _flag(False, "train (default when neither --do_train nor --do_eval is given: both)")
    do_eval: bool = _flag(False, "evaluate on --predict_file")
    do_lower_case: bool = _flag(False, "accepted for compatibility; casing follows the checkpoint's tokenizer")
    per_replica_batch_size: int = _flag(12, "training batch per device; the global batch is this × replicas",
                                        aliases=("--per_gpu_train_batch_size", "--per_device_train_batch_size"))
    eval_batch_size: int = _flag(64, "evaluation batch per device", aliases=("--per_gpu_eval_batch_size",))
    gradient_accumulation_steps: int = _flag(1, "average the gradients of N batches of --per_gpu_train_batch_size "
                                             "before each optimizer step (the effective batch is N times larger; "
                                             "steps count optimizer steps)")
    learning_rate: float = _flag(3e-5, "peak learning rate of AdamW")
    adam_epsilon: float = _flag(1e-8, "epsilon of AdamW")
    num_train_epochs: float = _flag(2.0, "training epochs (fractions allowed)")
    max_steps: int = _flag(-1, "if > 0: train exactly this many optimizer steps (overrides --num_train_epochs)")
    warmup_ratio: float = _flag(0.1, "fraction of the steps spent warming the learning rate up linearly")
    warmup_steps: int = _flag(0, "if > 0: warm the learning rate up over this many steps (overrides --warmup_ratio)")
    weight_decay: float = _flag(0.01, "AdamW weight decay (not applied to LayerNorm and bias)")
    max_grad_norm: float = _flag(1.0, "clip gradients to this global norm (0: no clipping)")
    seed: int = _flag(42, "random seed (shuffling, initialisation, dropout)")
    max_train_samples: int = _flag(0, "use only the first N training questions (0: all)")
    max_eval_samples: int = _flag(0, "use only the first N evaluation questions (0: all)")
    jit_compile: bool = _flag(False, "compile the train step with XLA (batches padded to max_seq_length and the "
                              "last partial batch dropped, so it compiles once)")
    mixed_precision: str = _flag("no", "Keras mixed precision: fp16 (with loss scaling; GPUs), bf16 (GPUs/TPUs, "
                                 "recent CPUs); logits and loss stay float32", choices=("no", "fp16", "bf16"))
    cache_dir: str = _flag("", "keep tokenized features here as TFRecord files and reuse them "
                            "(keyed by a hash of data, tokenizer and settings; run_squad.py's downloaded-model cache "
                            "is HF_HOME here)")
    overwrite_cache: bool = _flag(False, "with --cache_dir: tokenize again and replace the cached features")
    stream_features: bool = _flag(False, "with --cache_dir: write the training features there as sharded TFRecord "
                                  "files, tokenized in chunks, and train streaming from them (memory stays flat "
                                  "as the data grows)")
    logging_steps: int = _flag(50, "log the training loss to TensorBoard every N steps")
    save_steps: int = _flag(0, "also save the weights every N optimizer steps into checkpoints/ (0: after every "
                            "epoch only)")
    strategy: str = _flag("auto", "tf.distribute strategy: auto = multi_worker when TF_CONFIG names several "
                          "workers, a TPU when attached, else mirrored over the GPUs (see tfqa.training.strategies)",
                          choices=("auto", "mirrored", "multi_worker", "tpu", "one_device"))
    export_dir: str = _flag("", "after training, export a TF Serving SavedModel as the next version in this folder "
                            "(default: OUTPUT_DIR/export/tfqa; 'none': do not export)")
    teacher_model: str = _flag("", "distil a fine-tuned QA checkpoint directory (same vocabulary) into the model "
                               "while fine-tuning: see tfqa.training.distill")
    distill_alpha: float = _flag(0.5, "with --teacher_model: weight of the teacher's soft targets (1 − this: the labels)")
    distill_temperature: float = _flag(2.0, "with --teacher_model: softmax temperature of the soft targets")
    features: FeatureConfig = field(default_factory=FeatureConfig)
    decoding: DecodeConfig = field(default_factory=DecodeConfig)

    def for_squad_version(self, version: str) -> "TrainConfig":
        """This config for data of SQuAD `version`: decoding switches to 2.0 when the data has unanswerable
        questions (the config itself when nothing changes, so callers can tell and say so)."""
        if version == "2.0" and not self.version_2_with_negative:
            return self.replace(version_2_with_negative=True)
        return self

    def validate(self, check_files: bool = True) -> list[str]:
        """Problems with the values, as messages (empty when fine); checked before any heavy work.

        `check_files=False` leaves out whether --train_file/--predict_file exist (a preset writes them later).
        """
        problems = [f"--{f.name} must be a finite number (got {getattr(self, f.name)})"
                    for f in _flat_fields(type(self)) if f.type in ("float", float)
                    and not math.isfinite(getattr(self, f.name))]
        if problems:  # NaN compares false with everything: the range checks below would pass it or repeat it
            return problems
        # The groups' own ranges are in their problems(), below.
        problems = _range_problems(self, [f for f in dataclasses.fields(self) if f.name not in _groups(type(self))])
        if problems:
            return problems
        problems = self.features.problems() + self.decoding.problems()
        for name in ("per_replica_batch_size", "eval_batch_size", "logging_steps", "gradient_accumulation_steps"):
            if getattr(self, name) <= 0:
                problems.append(f"--{name} must be positive (got {getattr(self, name)})")
        for name in ("max_train_samples", "max_eval_samples", "weight_decay", "max_grad_norm", "warmup_steps",
                     "save_steps"):
            if getattr(self, name) < 0:
                problems.append(f"--{name} must not be negative (got {getattr(self, name)})")
        for name in ("learning_rate", "num_train_epochs"):
            if getattr(self, name) <= 0:
                problems.append(f"--{name} must be positive (got {getattr(self, name)})")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"--warmup_ratio must be in [0, 1) (got {self.warmup_ratio})")
        for name in ("train_file", "predict_file") if check_files else ():
            value = getattr(self, name)
            if value and not is_tfds_name(value) and not Path(value).exists():
                problems.append(f"--{name} {value}: no such file")
        if not 0 <= self.distill_alpha <= 1:
            problems.append(f"--distill_alpha must be in [0, 1] (got {self.distill_alpha})")
        if self.distill_temperature <= 0:
            problems.append(f"--distill_temperature must be positive (got {self.distill_temperature})")
        if self.teacher_model and not Path(self.teacher_model).is_dir():
            problems.append(f"--teacher_model {self.teacher_model}: no such directory")
        if not 0 < self.adam_epsilon < 1:
            problems.append(f"--adam_epsilon must be in (0, 1) (got {self.adam_epsilon})")
        if self.gradient_accumulation_steps > 1 and self.teacher_model:
            problems.append("--gradient_accumulation_steps cannot be combined with --teacher_model")
        if self.data_dir and not Path(self.data_dir).is_dir():
            problems.append(f"--data_dir {self.data_dir}: no such directory")
        if self.stream_features and not self.cache_dir:
            problems.append("--stream_features needs --cache_dir (the feature shards are written there)")
        return problems

    def with_data_dir(self) -> "TrainConfig":
        """The data files as run_squad.py finds them with --data_dir (the config itself without one).

        Relative --train_file/--predict_file names are read from the folder; a file
        left at its TFDS default becomes the folder's official SQuAD file name,
        e.g. --data_dir squad → squad/train-v1.1.json and squad/dev-v1.1.json.
        """
        if not self.data_dir:
            return self
        version = "2.0" if self.version_2_with_negative else "1.1"
        defaults = {"train_file": f"train-v{version}.json", "predict_file": f"dev-v{version}.json"}
        changes = {}
        for name, official in defaults.items():
            value = getattr(self, name)
            if value == _default(name):
                changes[name] = str(Path(self.data_dir) / official)
            elif not is_tfds_name(value) and not Path(value).is_absolute():
                changes[name] = str(Path(self.data_dir) / value)
        return self.replace(**changes)

    @property
    def effective_batch_size(self) -> int:
        """Examples per optimizer step on one replica: the batch × --gradient_accumulation_steps."""
        return self.per_replica_batch_size * self.gradient_accumulation_steps

    @property
    def train(self) -> bool:
        return self.do_train or not (self.do_train or self.do_eval)

    @property
    def evaluate(self) -> bool:
        return self.do_eval or not (self.do_train or self.do_eval)


def _default(name: str):
    return next(f.default for f in _flat_fields(TrainConfig) if f.name == name)


def _flat_fields(cls):
    """The setting fields of `cls` with its groups' fields in place of the group fields."""
    groups = _groups(cls)
    for f in dataclasses.fields(cls):
        yield from dataclasses.fields(f.default_factory) if f.name in groups else (f,)


_SPELLED = "spelled_as"  # the Namespace attribute: {"--setting": "--alias the user typed"}


class _StoreSpelled(argparse.Action):
    """argparse's store (store_true with `const`), also noting an alias the user typed for the setting."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)
        if option_string and option_string != self.option_strings[0]:
            setattr(namespace, _SPELLED, {**spelled_as(namespace), self.option_strings[0]: option_string})


def spelled_as(args: argparse.Namespace) -> dict[str, str]:
    """{"--per_replica_batch_size": "--per_gpu_train_batch_size"}: the settings the user gave under an alias."""
    return dict(getattr(args, _SPELLED, {}))


def as_typed(message: str, spelled: dict[str, str]) -> str:
    """`message` with each setting's flag named as the user typed it (`spelled_as`)."""
    for flag, typed in spelled.items():
        message = re.sub(re.escape(flag) + r"(?![\w-])", typed, message)
    return message


def add_to_parser(parser: argparse.ArgumentParser, cls=TrainConfig) -> None:
    """Adds one option per setting (booleans become flags), composed settings included; an alias used is
    noted (`spelled_as`) so that errors can name the flag as typed."""
    for f in _flat_fields(cls):
        names = [f"--{f.name}", *f.metadata.get("aliases", ())]
        help_text = f"{f.metadata['help']} (default: {f.default!r})"
        if f.type in ("bool", bool):
            parser.add_argument(*names, dest=f.name, action=_StoreSpelled, nargs=0, const=True, default=False,
                                help=help_text)
        else:
            kind = f.metadata.get("parse") or {"int": int, "float": float, "str": str}[
                f.type if isinstance(f.type, str) else f.type.__name__]
            parser.add_argument(*names, dest=f.name, action=_StoreSpelled, type=kind, default=f.default,
                                help=help_text, choices=f.metadata.get("choices"))


def from_args(args: argparse.Namespace, cls=TrainConfig):
    """The dataclass filled from parsed arguments."""
    return cls(**{f.name: getattr(args, f.name) for f in _flat_fields(cls)})
