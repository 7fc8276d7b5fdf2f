"""tfqa: extractive question answering with TensorFlow/Keras, from SQuAD files to scored answers.

The data flows one way, through one subpackage per layer, each importing only
from the layers below it (checked by import-linter, see pyproject.toml):

    tfqa.core      SQuAD → examples → features; logits → answers → metrics; settings, run folder (no TensorFlow)
    tfqa.modeling  the TF model: loading/building, precision, tf.data for prediction, prediction
    tfqa.export    the SavedModel TF Serving answers: raw question + context in, answer text out
    tfqa.training  the run: fit, strategies, callbacks, distillation, feature caches, presets
    tfqa.rest      serving runtime: loaded versions, TF Serving's REST JSON, the local server, the client
    tfqa.apps      the command line, the demo, the run report

Importing `tfqa` neither imports TensorFlow nor chooses its Keras; `tfqa.QuestionAnswerer` (answers in one
call, see `tfqa.apps.answerer`) imports it when first used, and `use_backend` readies a program that imports
TensorFlow itself for a backend (`tfqa.core.keras_choice`).
"""

from tfqa.core.decoding import decode_predictions
from tfqa.core.errors import TfqaError
from tfqa.core.features import Features, prepare_features
from tfqa.core.metrics import squad_metrics
from tfqa.core.squad import Answer, DataError, Example, load_squad, read_squad

__version__ = "0.1.0"

__all__ = [
    "Answer", "DataError", "Example", "Features", "QuestionAnswerer", "TfqaError", "decode_predictions", "load_squad",
    "prepare_features", "read_squad", "squad_metrics", "use_backend",
]


def use_backend(name: str) -> None:
    """Readies this process for the backend `name` ("transformers" or "keras_hub"); call it before importing
    TensorFlow. The transformers backend needs `tf.keras` to be tf-keras (Keras 2): this sets
    TF_USE_LEGACY_KERAS=1 while TensorFlow has not bound `tf.keras` yet, and raises a `TfqaError` saying what to
    do when it is already Keras 3 or the backend cannot run here (transformers 5 has no TF classes)."""
    from tfqa.modeling.backend import backend_named

    backend_named(name).use()


def __getattr__(name: str):
    # `tfqa.QuestionAnswerer` loads models (TensorFlow): imported on first use, so `import tfqa` stays light.
    if name == "QuestionAnswerer":
        from tfqa.apps.answerer import QuestionAnswerer

        return QuestionAnswerer
    raise AttributeError(f"module 'tfqa' has no attribute {name!r}")
