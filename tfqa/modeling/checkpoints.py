"""Building and loading Transformers' TF question-answering models.

Any checkpoint `TFAutoModelForQuestionAnswering` knows works: DistilBERT (the
default), BERT, RoBERTa, ALBERT, ELECTRA... from the hub or a local directory,
with TF weights (`tf_model.h5`) or PyTorch safetensors (converted on load; this
needs transformers ≤ 4.54, see DEVELOPERS.md). Training never asks them for a
loss: it reads their `start_logits`/`end_logits` and computes tfqa's own
(`tfqa.training.loss`, the same formula as Hugging Face's).
"""

from __future__ import annotations

import json
import os

from tfqa.core.errors import TfqaError


class ModelLoadError(TfqaError, RuntimeError):
    """The checkpoint could not be loaded (offline, wrong path, unsupported files)."""


class TransformersVersionError(ModelLoadError):
    """The installed transformers has no usable TF model classes (the transformers backend cannot run)."""


HUB_HOST = "huggingface.co"
# The transformers releases whose TF classes tfqa runs on: 4.55+ cannot load PyTorch safetensors into TF
# models ('builtins.safe_open' object is not iterable) and 5.x has no TF classes at all (DEVELOPERS.md).
TF_CLASSES_VERSIONS = ((4, 46), (4, 55))  # [first, end)
TF_CLASSES_PIN = "transformers>=4.46,<4.55"


# Position-embedding tables that start after the padding index: RoBERTa's 514 rows hold 512 positions.
_OFFSET_POSITIONS = frozenset({"roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text"})
_MESSAGE_LIMIT = 300  # characters of a library's message quoted (one lists every model type it knows: 4 KB)


def max_positions(model_config) -> int | None:
    """How many tokens a window may have for a model with this (transformers) config; None when unknown."""
    positions = getattr(model_config, "max_position_embeddings", None)
    if not isinstance(positions, int) or isinstance(positions, bool):
        return None
    if getattr(model_config, "model_type", "") in _OFFSET_POSITIONS:
        positions -= (getattr(model_config, "pad_token_id", 1) or 0) + 1
    return positions


def sequence_problem(model_config, max_seq_length: int, flag: str = "--max_seq_length", name: str = "") -> str:
    """Why `max_seq_length` tokens per window is too many for the model ("" when it is not).

    A longer window has no position embedding: TensorFlow would fail (or first
    allocate [batch, heads, length, length] attention scores: 100,000 tokens ate 23 GB).
    """
    return window_problem(max_positions(model_config), max_seq_length, flag, name)


def window_problem(limit: int | None, max_seq_length: int, flag: str = "--max_seq_length", name: str = "") -> str:
    """Why `max_seq_length` tokens per window is more than `limit` positions ("" when it is not, or no limit)."""
    if limit is not None and max_seq_length > limit:
        model = f"the model {name}" if name else "the model"
        return f"{flag} {max_seq_length} is more than {model} can take ({limit} positions)"
    return ""


def checkpoint_problems(name_or_path: str, max_seq_length: int, flag: str = "--max_seq_length") -> list[str]:
    """Problems the settings have with a local checkpoint, read from its config.json without loading it.

    Hub names are checked once loaded (`sequence_problem`); an unreadable config.json is the loader's to report.
    """
    try:
        with open(os.path.join(name_or_path, "config.json"), encoding="utf-8") as f:
            values = json.load(f)
    except (OSError, ValueError, RecursionError):
        return []
    if not isinstance(values, dict):
        return []
    problem = sequence_problem(_Values(values), max_seq_length, flag, name_or_path)
    return [problem] if problem else []


class _Values:
    """A config.json dict read like a transformers config object (attributes)."""

    def __init__(self, values: dict):
        self.__dict__.update({k: v for k, v in values.items() if isinstance(k, str)})


def require_tf_classes(instead: str = "pass --backend keras_hub") -> None:
    """Raises `TransformersVersionError` unless the installed transformers has the TF classes tfqa uses.

    Read from the package metadata, without importing transformers (4.x imports TensorFlow, 5.x prints
    that PyTorch is missing), so it is cheap enough to call before a run writes anything: one line that
    says what to install or, `instead`, to do, rather than an ImportError deep in a run.
    """
    from importlib import metadata

    try:
        installed = metadata.version("transformers")
    except metadata.PackageNotFoundError:
        installed = None
    if installed is not None and TF_CLASSES_VERSIONS[0] <= _major_minor(installed) < TF_CLASSES_VERSIONS[1]:
        return
    found = f"transformers {installed} is installed" if installed else "transformers is not installed"
    raise TransformersVersionError(
        f"the transformers backend needs transformers 4.46-4.54 (its TF model classes; {found}): "
        f"pip install '{TF_CLASSES_PIN}', or {instead}")


def _major_minor(version: str) -> tuple[int, int]:
    """(4, 54) for "4.54.1", (5, 0) for "5.0.0rc1"; (0, 0) when unreadable (refused as too old)."""
    import re

    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def load_qa_model(name_or_path: str, flag: str = "--model_name_or_path", config_name: str = "",
                  tokenizer_name: str = ""):
    """(model, tokenizer) from a hub name or a local checkpoint directory.

    `config_name` / `tokenizer_name` (run_squad.py's flags) take the model
    config or the tokenizer from another name or folder.

    When the hub cannot be reached, only the local Hugging Face cache is tried:
    otherwise the hub client retries for about a minute before giving up.
    `flag` is the option that named the checkpoint, for the error message.
    """
    # A local folder (a transformers run, a TF checkpoint) can still be used beside transformers 5: converted.
    require_tf_classes(f"convert it: python -m tfqa convert --model {name_or_path} --to keras_hub --output DIR"
                       if os.path.isdir(name_or_path) else "pass --backend keras_hub")
    from transformers import AutoConfig, AutoTokenizer, TFAutoModelForQuestionAnswering

    from tfqa.core.squad import host_reachable

    names = [name_or_path, config_name, tokenizer_name]
    local_only = not all(os.path.isdir(n) for n in names if n) and not host_reachable(HUB_HOST)
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_name or name_or_path, use_fast=True,
                                                  local_files_only=local_only)
        config = AutoConfig.from_pretrained(config_name, local_files_only=local_only) if config_name else None
        model = TFAutoModelForQuestionAnswering.from_pretrained(name_or_path, config=config,
                                                               local_files_only=local_only)
    except (OSError, ValueError) as e:
        raise _load_error(name_or_path, flag, e) from e
    _check_fast(tokenizer, tokenizer_name or name_or_path)
    return model, tokenizer


def load_fast_tokenizer(name_or_path: str, flag: str = "--model_name_or_path"):
    """The Hugging Face fast tokenizer of a hub name or a local directory (what tfqa's features run on)."""
    from transformers import AutoTokenizer

    from tfqa.core.squad import host_reachable

    local_only = not os.path.isdir(name_or_path) and not host_reachable(HUB_HOST)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, use_fast=True, local_files_only=local_only)
    except (OSError, ValueError) as e:
        raise _load_error(name_or_path, flag, e) from e
    _check_fast(tokenizer, name_or_path)
    return tokenizer


def _load_error(name_or_path: str, flag: str, e: Exception) -> ModelLoadError:
    offline = not os.path.isdir(name_or_path)
    hint = (f"could not download '{name_or_path}' from the Hugging Face hub (is there a network?); "
            f"pass {flag} with a local checkpoint directory"
            if offline else f"could not load the checkpoint in {name_or_path}")
    return ModelLoadError(f"{hint}: {_clip(str(e).splitlines()[0] if str(e) else type(e).__name__)}")


def _check_fast(tokenizer, name_or_path: str) -> None:
    if not tokenizer.is_fast:
        raise ModelLoadError(f"{name_or_path}: tfqa needs a fast tokenizer (tokenizer.json or a vocab it can convert)")


def _clip(message: str, limit: int = _MESSAGE_LIMIT) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def tiny_distilbert(vocab_size: int, max_position_embeddings: int, dim: int = 64, n_layers: int = 2,
                    n_heads: int = 4, seed: int = 0, initializer_range: float = 0.1):
    """A small randomly initialised TFDistilBertForQuestionAnswering (offline smoke runs and tests).

    Why `initializer_range` 0.1 and not DistilBERT's 0.02: a model this small
    trained from scratch starts with near-zero attention logits, so every token
    attends uniformly and the question is invisible to the context; on the
    smoke corpus the loss then sits at ~1.2 for ~700 steps before it learns to
    look at the question. With 0.1 it leaves that plateau within ~250 steps
    (measured over 4 seeds, batch 32, lr 1e-3).
    """
    require_tf_classes()
    import tensorflow as tf
    from transformers import DistilBertConfig, TFDistilBertForQuestionAnswering

    config = DistilBertConfig(vocab_size=vocab_size, dim=dim, n_layers=n_layers, n_heads=n_heads,
                              hidden_dim=2 * dim, max_position_embeddings=max_position_embeddings,
                              initializer_range=initializer_range, dropout=0.0, attention_dropout=0.0, qa_dropout=0.0)
    tf.keras.utils.set_random_seed(seed)
    model = TFDistilBertForQuestionAnswering(config)
    model(model.dummy_inputs)  # create the weights now, inside the caller's strategy scope
    return model
