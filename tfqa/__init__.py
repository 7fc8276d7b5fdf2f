"""tfqa: extractive question answering with TensorFlow/Keras, from SQuAD files to scored answers.

The data flows one way, through one subpackage per layer, each importing only
from the layers below it (checked by import-linter, see pyproject.toml):

    tfqa.core      SQuAD → examples → features; logits → answers → metrics; settings, run folder (no TensorFlow)
    tfqa.modeling  the TF model: loading/building, precision, tf.data for prediction, prediction
    tfqa.export    the SavedModel TF Serving answers: raw question + context in, answer text out
    tfqa.training  the run: fit, strategies, callbacks, distillation, feature caches, presets
    tfqa.rest      serving runtime: loaded versions, TF Serving's REST JSON, the local server, the client
    tfqa.apps      the command line, the demo, the run report

Importing `tfqa` does not import TensorFlow; `tfqa.QuestionAnswerer` (answers in one call, see
`tfqa.apps.answerer`) imports it when first used.
"""

import os

# The one place tfqa asks for Keras 2 (tf-keras): transformers' TF classes need it, and TensorFlow reads
# the variable when it is first imported. Every tfqa module is imported after this package's __init__.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tfqa.core.decoding import decode_predictions  # noqa: E402
from tfqa.core.errors import TfqaError  # noqa: E402
from tfqa.core.features import Features, prepare_features  # noqa: E402
from tfqa.core.metrics import squad_metrics  # noqa: E402
from tfqa.core.squad import Answer, DataError, Example, load_squad, read_squad  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Answer", "DataError", "Example", "Features", "QuestionAnswerer", "TfqaError", "decode_predictions", "load_squad",
    "prepare_features", "read_squad", "squad_metrics",
]


def __getattr__(name: str):
    # `tfqa.QuestionAnswerer` loads models (TensorFlow): imported on first use, so `import tfqa` stays light.
    if name == "QuestionAnswerer":
        from tfqa.apps.answerer import QuestionAnswerer

        return QuestionAnswerer
    raise AttributeError(f"module 'tfqa' has no attribute {name!r}")
