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


def train_tiny(tokenizer, mode, jit_compile=False, epochs=3):
    features = prepare_features(tiny_examples() * 3, tokenizer, **SETTINGS)
    config = TrainConfig(per_replica_batch_size=5, learning_rate=1e-3, num_train_epochs=epochs, seed=0,
                         mixed_precision=mode, jit_compile=jit_compile, **SETTINGS)
    strategy = make_strategy()
    with strategy.scope(), precision(mode):
        model = float32_logits(tiny_distilbert(tokenizer.vocab_size, 64, dim=16, n_layers=1, n_heads=2, seed=0))
    history = fit(model, features, config, strategy, verbose=0)
    return model, features, history.history["loss"]


@pytest.mark.parametrize("mode, compute, scaled", [("fp16", "float16", True), ("bf16", "bfloat16", False)])
def test_mixed_precision_trains_with_float32_logits(wordpiece_tokenizer, mode, compute, scaled):
    model, features, losses = train_tiny(wordpiece_tokenizer, mode)
    assert tf.keras.mixed_precision.global_policy().name == "float32"  # restored after building
    assert model.dtype_policy.compute_dtype == compute
    assert all(v.dtype == tf.float32 for v in model.trainable_variables)  # float32 master weights
    assert isinstance(model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer) == scaled
    out = model({"input_ids": features.input_ids[:4], "attention_mask": features.attention_mask[:4]})
    assert out.start_logits.dtype == tf.float32 and out.end_logits.dtype == tf.float32
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_float32_training_is_unchanged_by_the_precision_helpers(wordpiece_tokenizer):
    model, _, losses = train_tiny(wordpiece_tokenizer, "no")
    assert model.dtype_policy.name == "float32" and not isinstance(
        model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
    assert all(np.isfinite(losses))


def test_xla_compiles_the_train_step_once(wordpiece_tokenizer):
    """Fixed shapes (full-width batches, no partial batch): one trace, so one XLA compilation, for all steps."""
    model, _, losses = train_tiny(wordpiece_tokenizer, "no", jit_compile=True, epochs=2)
    assert model.train_function.experimental_get_tracing_count() == 1
    assert all(np.isfinite(losses))


def test_flag_is_validated():
    from tfqa.apps.train import build_train_parser

    with pytest.raises(SystemExit):
        build_train_parser().parse_args(["--mixed_precision", "fp8"])
    args = build_train_parser().parse_args(["--mixed_precision", "bf16"])
    assert args.mixed_precision == "bf16" and dataclasses.fields(TrainConfig)
