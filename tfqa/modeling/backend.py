"""The one seam between tfqa and the library that holds the QA model.

Everything above `tfqa.modeling` reaches a model through a `Backend`: load a
checkpoint (with the Hugging Face fast tokenizer tfqa's features run on), build
a tiny one from a config (smoke runs), which inputs it takes and how many
positions, its `(start_logits, end_logits)` for a batch, and saving a trained
run. A second library is one more `Backend` here, not edits across the layers.

- `transformers` (the default): Hugging Face's TF classes
  (`TFAutoModelForQuestionAnswering`) on tf-keras (Keras 2).
- `keras_hub`: a keras-hub backbone + QA head on Keras 3.

A model is never asked which backend it came from by name: `backend_of`
recognises it by its class (Keras 3 classes live in the `keras` package,
tf-keras' in `tf_keras`), so loaded runs, distillation wrappers and exports
all find their backend the same way.
"""

from __future__ import annotations

from typing import Protocol

from tfqa.core.config import BACKENDS
from tfqa.core.errors import TfqaError


class UnknownBackendError(TfqaError, ValueError):
    """A backend name tfqa does not have."""


class Backend(Protocol):
    """What tfqa needs from a model library (see the module docstring)."""

    name: str

    def use(self) -> None:
        """Readies this process for the backend (the Keras it needs, `tfqa.core.keras_choice`), or raises a
        `TfqaError` (one line: what to install or pass instead) when it cannot run it: the transformers backend
        beside transformers 5, or where `tf.keras` is already Keras 3. Cheap: imports no model library; entry
        points call it before anything imports TensorFlow."""

    def keras(self):
        """The Keras the models live in (tf-keras or Keras 3): training takes its optimizers and callbacks from it."""

    def load(self, name_or_path: str, flag: str = "--model_name_or_path", config_name: str = "",
             tokenizer_name: str = ""):
        """(model, tokenizer) from a hub/preset name or a local directory; a `ModelLoadError` when it cannot."""

    def tiny(self, vocab_size: int, max_positions: int, seed: int = 0):
        """A small randomly initialised QA model (smoke runs, tests), built inside the caller's strategy scope."""

    def input_names(self, model) -> frozenset:
        """The tfqa tensor names the model takes (`input_ids`, `attention_mask`[, `token_type_ids`])."""

    def max_positions(self, model) -> int | None:
        """How many tokens a window may have; None when unknown."""

    def logits(self, model, inputs: dict, training: bool = False):
        """(start_logits, end_logits), float32 [batch, length], for a dict of input tensors."""

    def save(self, model, tokenizer, out) -> list:
        """Writes a trained model + tokenizer into the folder `out`; returns the paths written."""


def backend_named(name: str) -> Backend:
    """The backend called `name` (one of `BACKENDS`)."""
    if name == "transformers":
        from tfqa.modeling.transformers_backend import TRANSFORMERS

        return TRANSFORMERS
    if name == "keras_hub":
        from tfqa.modeling.keras_hub_backend import KERAS_HUB

        return KERAS_HUB
    raise UnknownBackendError(f"unknown backend '{name}' (tfqa has: {', '.join(BACKENDS)})")


def load_model(name_or_path: str, flag: str = "--model", backend: str | None = None):
    """(model, tokenizer) of a checkpoint or a trained run folder; `backend` None: the one that saved the folder
    (`tfqa.core.run_dir.saved_model_backend`), else transformers (hub names, Hugging Face checkpoints)."""
    from tfqa.core.run_dir import saved_model_backend

    chosen = backend_named(backend or saved_model_backend(name_or_path) or "transformers")
    chosen.use()
    return chosen.load(name_or_path, flag=flag)


def is_keras3(model) -> bool:
    """Whether `model` is a Keras 3 object (its classes come from the `keras` package, not `tf_keras`)."""
    return any(c.__module__.split(".")[0] == "keras" for c in type(model).__mro__)


def backend_of(model) -> Backend:
    """The backend a model belongs to: keras_hub for Keras 3 models, else transformers."""
    return backend_named("keras_hub" if is_keras3(model) else "transformers")


class WindowTooLongError(TfqaError, ValueError):
    """--max_seq_length is more than the model's position embeddings can take."""


def check_window(model, max_seq_length: int, flag: str = "--max_seq_length", name: str = "") -> None:
    """Raises WindowTooLongError when `model` (of any backend) cannot take windows of `max_seq_length` tokens."""
    from tfqa.modeling.checkpoints import window_problem

    problem = window_problem(backend_of(model).max_positions(model), max_seq_length, flag, name)
    if problem:
        raise WindowTooLongError(problem)
