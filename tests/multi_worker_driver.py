"""Runs `train_keras.py` flags in this process and saves the trained weights: `driver.py WEIGHTS.npz FLAGS...`.

Used by tests/test_multi_worker.py: a non-chief worker keeps no files, so the
weights every worker ends with are saved here, outside the run's folders.
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from tfqa.training import run as training  # noqa: E402
from tfqa.apps.train import train_main  # noqa: E402

models = []
_build = training.build_model_and_tokenizer


def _capture(config, texts):
    model, tokenizer = _build(config, texts)
    models.append(model)
    return model, tokenizer


training.build_model_and_tokenizer = _capture

if __name__ == "__main__":
    status = train_main(sys.argv[2:])
    if status == 0 and models:
        # A Keras 3 variable's name is its own ("kernel"); its path is unique, like a tf-keras variable's name.
        weights = {getattr(w, "path", w.name): np.asarray(w.numpy()) for w in models[-1].weights}
        np.savez(sys.argv[1], **weights)
    raise SystemExit(status)
