"""Mixed precision (fp16 with loss scaling, bf16) and XLA with fixed shapes, on CPU."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_examples

from tfqa.core.config import TrainConfig
from tfqa.core.features import prepare_features
from tfqa.modeling.checkpoints import tiny_distilbert
from tfqa.modeling.precision import float32_logits, precision
from tfqa.training.fitting import fit
from tfqa.training.strategies import make_strategy

SETTINGS = dict(max_seq_length=48, doc_stride=16, max_query_length=12)


def train_tiny(tokenizer, mode, jit_compile=False, epochs=3, backend="transformers"):
    features = prepare_features(tiny_examples() * 3, tokenizer, **SETTINGS)
    config = TrainConfig(per_replica_batch_size=5, learning_rate=1e-3, num_train_epochs=epochs, seed=0,
                         mixed_precision=mode, jit_compile=jit_compile, backend=backend, **SETTINGS)
    strategy = make_strategy()
    tiny = tiny_distilbert
    if backend == "keras_hub":
        from tfqa.modeling.keras_hub_qa import tiny_distilbert as tiny
    with strategy.scope(), precision(mode):
        model = float32_logits(tiny(tokenizer.vocab_size, 64, dim=16, n_layers=1, n_heads=2, seed=0))
    history = fit(model, features, config, strategy, verbose=0)
    return model, features, history.history["loss"]


def keras_of(backend):
    """The Keras a backend's models live in: tf-keras (`tf.keras` in the tests) or Keras 3."""
    import keras

    return keras if backend == "keras_hub" else tf.keras


@pytest.mark.parametrize("backend", ["transformers", "keras_hub"])
@pytest.mark.parametrize("mode, compute, scaled", [("fp16", "float16", True), ("bf16", "bfloat16", False)])
def test_mixed_precision_trains_with_float32_logits(wordpiece_tokenizer, mode, compute, scaled, backend):
    import keras

    model, features, losses = train_tiny(wordpiece_tokenizer, mode, backend=backend)
    # restored after building, in both Keras
    assert tf.keras.mixed_precision.global_policy().name == keras.mixed_precision.global_policy().name == "float32"
    assert model.dtype_policy.compute_dtype == compute
    assert all(v.dtype == tf.float32 for v in model.trainable_variables)  # float32 master weights
    # The loss scaling of the model's own Keras: a tf-keras one would never see a Keras 3 model's gradients.
    assert isinstance(model.optimizer, keras_of(backend).mixed_precision.LossScaleOptimizer) == scaled
    out = model({"input_ids": features.input_ids[:4], "attention_mask": features.attention_mask[:4]})
    assert out["start_logits"].dtype == tf.float32 and out["end_logits"].dtype == tf.float32
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_float32_training_is_unchanged_by_the_precision_helpers(wordpiece_tokenizer):
    model, _, losses = train_tiny(wordpiece_tokenizer, "no")
    assert model.dtype_policy.name == "float32" and not isinstance(
        model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
    assert all(np.isfinite(losses))


def traces_of_the_train_function(model) -> int:
    """How many times fit's train function was traced: each trace is an XLA compilation with jit_compile."""
    function = model.train_function
    if not hasattr(function, "experimental_get_tracing_count"):
        # Keras 3's train function is a Python function around its tf.function (TensorFlowTrainer._make_function)
        import inspect

        function = inspect.getclosurevars(function).nonlocals["multi_step_on_iterator"]
    return function.experimental_get_tracing_count()


@pytest.mark.parametrize("backend", ["transformers", "keras_hub"])
def test_xla_compiles_the_train_step_once(wordpiece_tokenizer, backend):
    """Fixed shapes (full-width batches, no partial batch): one trace, so one XLA compilation, for all steps.

    With op determinism as `train_and_evaluate` leaves it before `fit` (Keras 3 drops XLA while it is on)."""
    from tensorflow.python.framework import config as determinism  # what Keras 3 reads; TF has no public "off"

    from tfqa.training.run import deterministic_kernels

    was_on = determinism.is_op_determinism_enabled()
    config = TrainConfig(jit_compile=True, backend=backend)
    (determinism.enable_op_determinism if deterministic_kernels(config) else determinism.disable_op_determinism)()
    try:
        model, _, losses = train_tiny(wordpiece_tokenizer, "no", jit_compile=True, epochs=2, backend=backend)
    finally:
        (determinism.enable_op_determinism if was_on else determinism.disable_op_determinism)()
    assert model.jit_compile is True
    assert traces_of_the_train_function(model) == 1
    assert all(np.isfinite(losses))


def test_flag_is_validated():
    from tfqa.apps.train import build_train_parser

    with pytest.raises(SystemExit):
        build_train_parser().parse_args(["--mixed_precision", "fp8"])
    args = build_train_parser().parse_args(["--mixed_precision", "bf16"])
    assert args.mixed_precision == "bf16" and dataclasses.fields(TrainConfig)
