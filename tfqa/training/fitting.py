"""Keras `fit` with the fine-tuning recipe: AdamW, linear warmup then linear decay, global batches.

No weight decay on LayerNorm and bias, global-norm clipping (transformers'
`create_optimizer`). The loss is tfqa's (`tfqa.training.loss`), through its train
step (`tfqa.training.train_step`). What `train_and_evaluate` and the benchmarks train with.
"""

from __future__ import annotations

import math

import tensorflow as tf

from tfqa.core.config import TrainConfig
from tfqa.modeling.backend import is_keras3
from tfqa.modeling.pipeline import input_names
from tfqa.training.datasets import train_dataset
from tfqa.training.distill import DistillationModel
from tfqa.training.train_step import use_qa_train_step


def make_optimizer(config: TrainConfig, total_steps: int):
    """AdamW: linear warmup over `warmup_steps` (else `warmup_ratio` of the steps), then linear decay to 0."""
    from tfqa.modeling.checkpoints import require_tf_classes

    require_tf_classes()  # transformers 5 has no TF `create_optimizer` either
    from transformers import create_optimizer

    optimizer, _ = create_optimizer(
        init_lr=config.learning_rate, num_train_steps=total_steps,
        num_warmup_steps=config.warmup_steps or int(config.warmup_ratio * total_steps),
        weight_decay_rate=config.weight_decay, adam_epsilon=config.adam_epsilon,
        adam_global_clipnorm=config.max_grad_norm or None)
    return optimizer


def fit(model, features, config: TrainConfig, strategy: tf.distribute.Strategy, callbacks=(),
        verbose: int = 2) -> tf.keras.callbacks.History:
    """Compiles `model` with the AdamW schedule and fits it on `features` for `config.num_train_epochs`.

    A step is an optimizer step over the global batch: `per_replica_batch_size`
    × `gradient_accumulation_steps` × replicas. A fractional epoch count trains
    that fraction of the data in the last epoch; `max_steps` > 0 trains exactly
    that many steps instead, in whole passes plus a last shorter epoch (e.g. 300
    steps of 127 a pass: 3 epochs of 100). `jit_compile` drops the last partial
    batch so that XLA sees one shape and compiles once. `verbose` is Keras' own
    output (0 for tfqa's progress callback, 1: a progress bar on stdout, 2: one line per epoch).
    """
    global_batch = config.effective_batch_size * strategy.num_replicas_in_sync
    steps_per_pass = max(1, math.ceil(len(features) / global_batch))
    if config.max_steps > 0:
        total_steps = config.max_steps
        epochs = math.ceil(total_steps / steps_per_pass)
    else:
        total_steps = max(1, round(config.num_train_epochs * steps_per_pass))
        epochs = max(1, math.ceil(config.num_train_epochs))
    extra = {}
    if is_keras3(model):  # the keras_hub backend: the same recipe in Keras 3's classes
        from tfqa.training.keras3_distill import Keras3DistillationModel
        from tfqa.training.keras3_step import make_keras3_optimizer, use_keras3_qa_train_step

        with strategy.scope():
            model.compile(optimizer=make_keras3_optimizer(config, total_steps), jit_compile=config.jit_compile)
        if not isinstance(model, Keras3DistillationModel):  # which trains with its own step (the same hard loss)
            use_keras3_qa_train_step(model, config.gradient_accumulation_steps)
        extra["shuffle"] = False  # the pipeline shuffles (Keras 3 warns that it cannot shuffle a tf.data input)
    else:
        with strategy.scope():
            model.compile(optimizer=make_optimizer(config, total_steps), jit_compile=config.jit_compile)
        if not isinstance(model, DistillationModel):  # which trains with its own step (the same hard loss)
            use_qa_train_step(model, config.gradient_accumulation_steps)
        # The logged loss is already the global mean on every worker; tf-keras' default ("auto" → "sum") adds
        # it up over MultiWorkerMirroredStrategy workers (2 workers: 2× the loss). No effect on one machine.
        model.distribute_reduction_method = "first"
    dataset = train_dataset(features, global_batch, config.seed, drop_remainder=config.jit_compile,
                            input_names=input_names(model))
    return model.fit(dataset, epochs=epochs, steps_per_epoch=math.ceil(total_steps / epochs),
                     callbacks=list(callbacks), verbose=verbose, **extra)
