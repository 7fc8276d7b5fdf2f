"""tfqa: extractive question answering with TensorFlow/Keras, from SQuAD files to scored answers.

The data flows one way: source → examples (`tfqa.data`) → features
(`tfqa.features`) → model logits → answers (`tfqa.decoding`) → metrics
(`tfqa.metrics`). Importing `tfqa` does not import TensorFlow.
"""

from tfqa.data import Answer, DataError, Example, load_squad, read_squad
from tfqa.decoding import decode_predictions
from tfqa.features import Features, prepare_features
from tfqa.metrics import squad_metrics

__version__ = "0.1.0"

__all__ = [
    "Answer", "DataError", "Example", "Features", "decode_predictions", "load_squad",
    "prepare_features", "read_squad", "squad_metrics",
]
