"""Fine-tune a QA model on SQuAD with Keras `fit`, evaluate it, and save it.

    python train_keras.py --preset smoke          # offline: synthetic data, tiny model (README: Measured)
    python train_keras.py                         # distilbert-base-uncased on SQuAD v1.1 (TFDS)
    python train_keras.py --help                  # every flag, with its default

Intentionally kept short: the run is `tfqa.training.run.train_and_evaluate`, the
flags come from `tfqa.core.config.TrainConfig`.
"""

from tfqa.apps.train import train_main

if __name__ == "__main__":
    raise SystemExit(train_main())
