"""The model seam (`tfqa.modeling.backend`): both backends answer the same calls, and tfqa's prediction and
export run on either through it (tiny models, offline)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from helpers import tiny_examples
from tfqa.core.config import FeatureConfig
from tfqa.core.features import prepare_features
from tfqa.modeling.backend import (BACKENDS, UnknownBackendError, WindowTooLongError, backend_named, backend_of,
                                   check_window)
from tfqa.modeling.pipeline import input_names


@pytest.fixture(scope="module", params=BACKENDS)
def tiny(request, wordpiece_tokenizer):
    backend = backend_named(request.param)
    return backend, backend.tiny(len(wordpiece_tokenizer), 64, seed=0)


def test_a_model_finds_its_own_backend(tiny):
    backend, model = tiny
    assert backend_of(model) is backend
    assert input_names(model) == backend.input_names(model) == {"input_ids", "attention_mask"}  # DistilBERT
    assert backend.max_positions(model) == 64


def test_unknown_backend_is_a_one_line_error():
    with pytest.raises(UnknownBackendError, match="unknown backend 'jax' .*transformers, keras_hub"):
        backend_named("jax")


def test_a_window_longer_than_the_model_is_refused_on_either_backend(tiny):
    _, model = tiny
    check_window(model, 64)
    with pytest.raises(WindowTooLongError, match="--max_seq_length 65 is more than the model can take .64"):
        check_window(model, 65)


def test_logits_are_float32_for_every_window_position(tiny, wordpiece_tokenizer):
    backend, model = tiny
    features = prepare_features(tiny_examples(), wordpiece_tokenizer,
                                config=FeatureConfig(max_seq_length=64, doc_stride=24, max_query_length=16))
    inputs = {k: tf.constant(v) for k, v in features.model_inputs().items() if k in backend.input_names(model)}
    start, end = backend.logits(model, inputs)
    assert start.dtype == end.dtype == tf.float32
    assert start.shape == end.shape == features.input_ids.shape
    assert np.isfinite(start.numpy()).all() and np.isfinite(end.numpy()).all()


def test_predict_and_the_export_answer_alike_on_either_backend(tiny, wordpiece_tokenizer, tmp_path):
    """The Python pipeline and the raw-text SavedModel give the same answers whichever library holds the model."""
    from tfqa.export.qa_module import ServingConfig
    from tfqa.export.savedmodel import export_model
    from tfqa.modeling.prediction import predict_answers

    _, model = tiny
    examples = tiny_examples()
    config = ServingConfig(max_seq_length=64, doc_stride=24, max_query_length=16)
    features = prepare_features(examples, wordpiece_tokenizer, config=config.features)
    predictions, _, _ = predict_answers(model, features, examples, config.decoding, batch_size=4)
    exported = export_model(model, wordpiece_tokenizer, config, tmp_path / "export")
    serve = tf.saved_model.load(str(exported.path)).signatures["serving_default"]
    out = serve(question=tf.constant([e.question for e in examples]), context=tf.constant([e.context for e in examples]))
    assert [a.decode() for a in out["answer"].numpy()] == [predictions[e.id] for e in examples]
