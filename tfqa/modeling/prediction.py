"""Prediction: examples → windows → the model's logits → answers, and the prediction files.

What `python -m tfqa predict`, training's per-epoch and final evaluation and
the benchmarks share. No training here: a saved model and a tokenizer are enough.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfqa.core.config import DecodeConfig, FeatureConfig
from tfqa.core.decoding import decode_predictions
from tfqa.core.features import Features, prepare_features
from tfqa.core.files import write_json_atomic
from tfqa.core.progress import SILENT, Progress, Reporter
from tfqa.core.run_dir import NBEST_FILE, NULL_ODDS_FILE, PREDICTIONS_FILE
from tfqa.modeling.pipeline import input_names, predict_dataset


def tokenize(examples, tokenizer, config: FeatureConfig, what: str = "questions",
             reporter: Reporter = SILENT) -> Features:
    """`prepare_features` with a progress line ("tokenizing 10,570 questions … done in 2 s (10,784 windows)")."""
    progress = reporter.progress(f"tokenizing {len(examples):,} {what}")
    features = prepare_features(examples, tokenizer, config=config, progress=progress.update)
    progress.done(f" ({len(features):,} windows)")
    return features


class PredictProgress(tf.keras.callbacks.Callback):
    """Reports predicted batches to a `Progress` (which prints at most every few seconds).

    Keras' own progress bar would go to stdout, which carries results only.
    """

    def __init__(self, progress: Progress, batches: int):
        super().__init__()
        self.progress, self.batches = progress, batches
        self._supports_tf_logs = True  # the outputs in the logs are not read: spare their copy to NumPy

    def on_predict_batch_end(self, batch, logs=None):
        self.progress.update(f"{batch + 1:,} of {self.batches:,} batches")


def predict_answers(model, features: Features, examples, decoding: DecodeConfig, batch_size: int,
                    progress: Progress | None = None, reporter: Reporter = SILENT):
    """Runs the model over the features and decodes: (predictions, nbest, null_odds).

    Reports its progress through `progress` when given (the caller ends it),
    else with its own start and end lines through `reporter`.
    """
    own = progress is None
    if own:
        progress = reporter.progress(f"predicting {len(examples):,} questions ({len(features):,} windows)")
    batches = math.ceil(len(features) / batch_size)
    outputs = model.predict(predict_dataset(features, batch_size, input_names(model), trim=True), verbose=0,
                            callbacks=[PredictProgress(progress, batches)])
    width = features.input_ids.shape[1]
    answers = decode_predictions(examples, features, full_width(outputs["start_logits"], width),
                                 full_width(outputs["end_logits"], width), config=decoding)
    if own:
        progress.done()
    return answers


def full_width(logits, width: int) -> np.ndarray:
    """The logits of batches trimmed to their longest window as one [windows, width] array (-inf beyond).

    `model.predict` concatenates batches of different widths into a RaggedTensor, e.g. widths 3 and 5
    → rows of 3 and 5 values; decoding wants the features' shape, and never ranks padding anyway.
    """
    if isinstance(logits, tf.RaggedTensor):
        return logits.to_tensor(default_value=-np.inf, shape=[None, width]).numpy()
    logits = np.asarray(logits)
    return np.pad(logits, [(0, 0), (0, width - logits.shape[1])], constant_values=-np.inf)


def write_prediction_files(out: str | Path, predictions, nbest, null_odds) -> list[Path]:
    """predictions.json, nbest_predictions.json and (SQuAD 2.0) null_odds.json, each written atomically."""
    out = Path(out)
    written = [write_json_atomic(out / PREDICTIONS_FILE, predictions),
               write_json_atomic(out / NBEST_FILE, dict(nbest))]
    if null_odds:
        written.append(write_json_atomic(out / NULL_ODDS_FILE, null_odds))
    return written
