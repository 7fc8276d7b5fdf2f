"""tfqa's QA loss and train step reproduce what transformers' TF QA models computed for themselves."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_examples

from tfqa.core.config import TrainConfig
from tfqa.core.features import prepare_features
from tfqa.modeling.checkpoints import tiny_distilbert
from tfqa.modeling.pipeline import input_names
from tfqa.modeling.precision import float32_logits, precision
from tfqa.training.datasets import train_dataset
from tfqa.training.fitting import make_optimizer
from tfqa.training.loss import qa_loss, qa_window_losses
from tfqa.training.train_step import use_qa_train_step

SETTINGS = dict(max_seq_length=32, doc_stride=8, max_query_length=12)


def test_qa_loss_is_the_models_own_loss():
    model = tiny_distilbert(60, 24, dim=16, n_layers=1, n_heads=2, seed=2)
    rng = np.random.default_rng(0)
    ids = tf.constant(rng.integers(5, 60, size=(5, 20)), tf.int32)
    mask = tf.constant((np.arange(20) < rng.integers(8, 21, size=(5, 1))).astype(np.int32))
    start, end = tf.constant([0, 3, 19, 7, 0]), tf.constant([2, 5, 19, 7, 0])
    theirs = model({"input_ids": ids, "attention_mask": mask, "start_positions": start, "end_positions": end})
    mine = model({"input_ids": ids, "attention_mask": mask})
    assert "loss" not in mine or mine["loss"] is None  # no labels in the inputs: the model computes no loss
    windows = qa_window_losses(start, end, mine["start_logits"], mine["end_logits"])
    np.testing.assert_allclose(windows.numpy(), np.asarray(theirs.loss).reshape(-1), rtol=1e-6, atol=1e-6)
    loss = qa_loss(start, end, mine["start_logits"], mine["end_logits"])
    assert loss.dtype == tf.float32 and loss.shape == ()
    np.testing.assert_allclose(loss.numpy(), np.mean(theirs.loss), rtol=1e-6, atol=1e-6)
    # Over all positions, padding included (Hugging Face's choice): not a softmax over the real tokens only.
    logits = mine["start_logits"].numpy()[1]
    assert np.isclose(-np.log(np.exp(logits[3]) / np.exp(logits).sum()),
                      tf.nn.sparse_softmax_cross_entropy_with_logits(start[1:2], logits[None]).numpy()[0])


def test_float16_logits_are_cast_to_float32():
    logits = tf.constant([[0.0, 12.0, -3.0, 11.5]], tf.float16)
    loss = qa_loss([1], [3], logits, logits)
    expected = qa_loss([1], [3], tf.cast(logits, tf.float32), tf.cast(logits, tf.float32))
    assert loss.dtype == tf.float32 and loss.numpy() == expected.numpy()


def _train(tokenizer, ours: bool, mode: str = "no", steps: int = 2):
    """(trainable weights, logged losses) after `steps` optimizer steps from the same start and data.

    `ours`: tfqa's train step on (inputs, labels) batches; else transformers' own train step with the
    labels in the input dict (how tfqa trained before it owned the loss).
    """
    features = prepare_features(tiny_examples(), tokenizer, **SETTINGS)
    config = TrainConfig(learning_rate=1e-3, warmup_ratio=0.0, mixed_precision=mode, **SETTINGS)
    with precision(mode):
        model = float32_logits(tiny_distilbert(len(tokenizer), 32, dim=16, n_layers=1, n_heads=2, seed=0))
        model.compile(optimizer=make_optimizer(config, steps))
    data = train_dataset(features, 8, seed=0, input_names=input_names(model))
    if ours:
        use_qa_train_step(model)
    else:
        data = data.map(lambda inputs, labels: {**inputs, **labels})
    history = model.fit(data, epochs=steps, steps_per_epoch=1, verbose=0)
    return [w.numpy() for w in model.trainable_weights], history.history["loss"]


@pytest.mark.parametrize("mode", ["no", "fp16"])
def test_the_train_step_trains_as_the_models_internal_loss_did(wordpiece_tokenizer, mode):
    ours, our_losses = _train(wordpiece_tokenizer, ours=True, mode=mode)
    theirs, their_losses = _train(wordpiece_tokenizer, ours=False, mode=mode)
    start = [w.numpy() for w in tiny_distilbert(len(wordpiece_tokenizer), 32, dim=16, n_layers=1, n_heads=2,
                                                seed=0).trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(ours, start))  # it trained
    # Measured bit-identical (the same ops in the same order); the tolerance only allows for kernel noise.
    np.testing.assert_allclose(our_losses, their_losses, rtol=1e-6)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_batches_without_separate_labels_are_refused(wordpiece_tokenizer):
    features = prepare_features(tiny_examples(), wordpiece_tokenizer, **SETTINGS)
    model = tiny_distilbert(len(wordpiece_tokenizer), 32, dim=16, n_layers=1, n_heads=2, seed=0)
    model.compile(optimizer=make_optimizer(TrainConfig(**SETTINGS), 1))
    use_qa_train_step(model)
    merged = train_dataset(features, 8, seed=0, input_names=input_names(model)).map(lambda x, y: {**x, **y})
    with pytest.raises(TypeError, match=r"takes \(inputs, \{'start_positions', 'end_positions'\}\) batches"):
        model.fit(merged, epochs=1, steps_per_epoch=1, verbose=0)


def test_a_second_fit_keeps_one_logged_loss(wordpiece_tokenizer):
    model = tiny_distilbert(len(wordpiece_tokenizer), 32, dim=16, n_layers=1, n_heads=2, seed=0)
    model.compile(optimizer=make_optimizer(TrainConfig(**SETTINGS), 2))
    weights = len(model.weights)
    use_qa_train_step(model)
    use_qa_train_step(model, accumulation_steps=2)
    assert [m.name for m in model.metrics] == ["loss"]
    assert len(model.weights) == weights  # the tracker is not saved with the model's weights
