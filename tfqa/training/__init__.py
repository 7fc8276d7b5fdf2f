"""The training run: fit, strategies, callbacks, distillation, feature caches and shards, presets.

`tfqa.training.run.train_and_evaluate(config)` is what `train_keras.py` runs.
"""
