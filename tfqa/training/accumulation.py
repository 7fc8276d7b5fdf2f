"""Gradient accumulation (--gradient_accumulation_steps): one optimizer step from several smaller batches.

Each batch `fit` hands the model holds N micro-batches of
--per_gpu_train_batch_size windows. The train step runs them one after the
other, adds up their gradients and applies the sum once, so only one
micro-batch's activations are needed at a time. The models' QA loss is a mean
over the batch; each micro-batch's loss is divided by N, so the step's gradient
is the mean over all its windows — the gradient of one batch N times larger
(e.g. 2 micro-batches of 4 windows: (g₁ + g₂)/2 = the gradient of 8 windows).
The logged loss is updated per micro-batch, weighted by its size: the epoch's
running mean is the same as with the larger batch.
"""

from __future__ import annotations

import tensorflow as tf


def accumulate_gradients(model, steps: int) -> None:
    """Makes `model` (a compiled Hugging Face TF model, labels in its input dict) accumulate `steps` micro-batches."""
    if steps <= 1:
        return

    def train_step(data):
        inputs = dict(data)
        size = tf.shape(next(iter(inputs.values())))[0] // steps
        variables = model.trainable_variables
        total = [tf.zeros_like(v) for v in variables]
        for i in range(steps):  # unrolled: `steps` is small and fixed
            micro = {name: value[i * size:(i + 1) * size] for name, value in inputs.items()}
            with tf.GradientTape() as tape:
                outputs = model(micro, training=True)
                # compiled_loss updates the logged running mean and scales for the replicas.
                loss = model.compiled_loss(outputs.loss, outputs.loss, regularization_losses=model.losses) / steps
            grads = _gradients(model.optimizer, loss, variables, tape)
            total = [t if g is None else t + tf.convert_to_tensor(g) for t, (g, _) in zip(total, grads)]
        model.optimizer.apply_gradients(zip(total, variables))
        return {m.name: m.result() for m in model.metrics}

    model.train_step = train_step


def _gradients(optimizer, loss, variables, tape):
    """(gradient, variable) pairs as `optimizer.minimize` computes them (loss scaling included)."""
    # transformers' AdamWeightDecay is a legacy Keras optimizer, whose public method has a leading underscore.
    compute = getattr(optimizer, "compute_gradients", None) or optimizer._compute_gradients
    return compute(loss, variables, tape=tape)
