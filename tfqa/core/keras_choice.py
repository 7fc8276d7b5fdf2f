"""Which Keras `tf.keras` is in this process: chosen by the entry point, once it knows the backend.

TensorFlow binds `tf.keras` when it is first used, from the environment variable
TF_USE_LEGACY_KERAS: "1" gives tf-keras (Keras 2), unset gives Keras 3. The
transformers backend needs tf-keras (Hugging Face's TF classes are tf-keras
models, and tfqa's training code around them subclasses `tf.keras`); the
keras_hub backend lives in Keras 3 through `import keras`, which is Keras 3
whatever `tf.keras` is, so it runs in either kind of process.

`import tfqa` therefore chooses nothing. `train_keras.py`, `python -m tfqa` and
`tfqa.QuestionAnswerer` ask for tf-keras (`use_tf_keras`) when the backend they
are about to load is transformers, before anything touches `tf.keras`; a program
that imports TensorFlow itself calls `tfqa.use_backend("transformers")` first.
A process where `tf.keras` is already Keras 3 cannot switch: it gets one line
that says what to do, not a transformers traceback. (transformers 4's TF
modules set the variable themselves when first imported, after the fact if
`tf.keras` is bound by then: hence the check here, before any of them loads.)
"""

from __future__ import annotations

import os
import sys
from importlib.util import find_spec

from tfqa.core.errors import TfqaError

LEGACY_KERAS_VARIABLE = "TF_USE_LEGACY_KERAS"
_LEGACY_VALUES = ("true", "True", "1")  # what TensorFlow's lazy loader accepts


class KerasChoiceError(TfqaError, RuntimeError):
    """This process cannot give a backend the Keras it needs; one line saying what to do instead."""


def tf_keras_bound() -> str | None:
    """Which Keras `tf.keras` already is: "tf-keras", "keras 3", or None while TensorFlow has not bound it."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return None
    loader = tf.__dict__.get("keras")
    # TensorFlow's lazy loader answers these two names without binding (tensorflow/python/util/lazy_loader.py).
    if loader is not None and getattr(loader, "_tfll_initialized", True) is False:
        return None
    return "tf-keras" if tf.keras.layers.Layer.__module__.startswith("tf_keras") else "keras 3"


def use_tf_keras(who: str, environ=None) -> None:
    """Makes `tf.keras` tf-keras (Keras 2) for `who` (e.g. "the transformers backend"), or raises KerasChoiceError.

    Sets TF_USE_LEGACY_KERAS=1 while TensorFlow has not bound `tf.keras` yet; afterwards only checks.
    """
    environ = os.environ if environ is None else environ
    bound = tf_keras_bound()
    if bound == "tf-keras":
        return
    if bound == "keras 3":
        raise KerasChoiceError(
            f"{who} needs tf.keras to be tf-keras (Keras 2), but this process already uses Keras 3 as tf.keras: "
            f"call tfqa.use_backend('transformers') before importing TensorFlow or tfqa's model and training "
            f"modules (or set {LEGACY_KERAS_VARIABLE}=1 before starting Python), or use the keras_hub backend")
    if find_spec("tf_keras") is None:
        raise KerasChoiceError(f"{who} needs tf-keras (Keras 2): pip install 'tf-keras>=2.21,<2.22', "
                               "or use the keras_hub backend (Keras 3)")
    if environ.get(LEGACY_KERAS_VARIABLE) not in _LEGACY_VALUES:
        environ[LEGACY_KERAS_VARIABLE] = "1"
