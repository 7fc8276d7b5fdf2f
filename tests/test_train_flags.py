"""run_squad.py's command line in tfqa: gradient accumulation, step-based schedules, the output-folder rules."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfqa.core.config import TrainConfig
from tfqa.modeling.checkpoints import tiny_distilbert
from tfqa.training.fitting import fit

from helpers import tiny_examples


def _train(wordpiece_tokenizer, **settings):
    """Weights and per-step losses after a few steps on the tiny examples, from the same initial weights."""
    from tfqa.core.features import prepare_features

    config = TrainConfig(max_seq_length=32, doc_stride=8, max_query_length=12, learning_rate=1e-3, seed=3,
                         warmup_ratio=0.0, **settings)
    features = prepare_features(tiny_examples(), wordpiece_tokenizer, config=config.features)
    model = tiny_distilbert(len(wordpiece_tokenizer), 32, dim=32, n_layers=1, seed=0)
    strategy = tf.distribute.get_strategy()
    history = fit(model, features, config, strategy, verbose=0)
    return [w.numpy() for w in model.trainable_weights], history.history["loss"], history.params["steps"]


def test_gradient_accumulation_equals_a_larger_batch(wordpiece_tokenizer):
    big_weights, big_loss, big_steps = _train(wordpiece_tokenizer, per_replica_batch_size=8, max_steps=6)
    acc_weights, acc_loss, acc_steps = _train(wordpiece_tokenizer, per_replica_batch_size=4,
                                              gradient_accumulation_steps=2, max_steps=6)
    small_weights, _, _ = _train(wordpiece_tokenizer, per_replica_batch_size=4, max_steps=6)
    assert big_steps == acc_steps  # steps are optimizer steps
    np.testing.assert_allclose(acc_loss, big_loss, rtol=1e-4)
    for a, b in zip(acc_weights, big_weights):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-5)  # float32 sums in another order
    # ...and not what the smaller batch alone gives (the check above could not pass by accident).
    assert max(np.abs(a - b).max() for a, b in zip(small_weights, big_weights)) > 1e-3


def test_max_steps_and_warmup_steps_set_the_schedule(wordpiece_tokenizer):
    _, losses, steps = _train(wordpiece_tokenizer, per_replica_batch_size=4, max_steps=5, warmup_steps=2)
    assert steps * len(losses) >= 5 and len(losses) == 1  # 5 steps fit in one pass of the tiny data


def test_data_dir_finds_the_official_file_names(tmp_path):
    config = TrainConfig(data_dir=str(tmp_path)).with_data_dir()
    assert (config.train_file, config.predict_file) == (str(tmp_path / "train-v1.1.json"),
                                                        str(tmp_path / "dev-v1.1.json"))
    config = TrainConfig(data_dir=str(tmp_path), version_2_with_negative=True, train_file="mine.json").with_data_dir()
    assert (config.train_file, config.predict_file) == (str(tmp_path / "mine.json"), str(tmp_path / "dev-v2.0.json"))
    assert TrainConfig(train_file="squad/v1.1:train", data_dir=str(tmp_path)).with_data_dir().train_file \
        == str(tmp_path / "train-v1.1.json")
