"""tfqa's train step: inputs → `start_logits`/`end_logits` → `qa_loss` → one optimizer step.

`fit` trains on `(inputs, labels)` batches (`tfqa.training.datasets`); the
step runs the model on the inputs alone, reads its logits by name and computes
the loss itself (`tfqa.training.loss.qa_loss`), so no model needs labels in its
inputs or a loss of its own. It does what Keras' compiled loss did for the
models' internal loss, in the same order, so the numbers are unchanged:

- Replicas: each replica's loss is its local batch mean × 1/replicas; the
  strategy sums the replicas' gradients, so a step follows the mean over the
  global batch.
- The logged "loss" is the epoch's running mean over windows (each batch's mean
  weighted by its size), the value `history.json` recovers per-step losses from.
- Mixed precision: a LossScaleOptimizer scales the loss and unscales the
  gradients (`_gradients`); the loss itself is float32.

Gradient accumulation (--gradient_accumulation_steps N): each batch holds N
micro-batches of --per_gpu_train_batch_size windows. They run one after the
other, their gradients are added up and applied once, so only one micro-batch's
activations are needed at a time. Each micro-batch's loss is divided by N, so
the step's gradient is the mean over all its windows — the gradient of one
batch N times larger (2 micro-batches of 4 windows: (g₁ + g₂)/2 = the gradient
of 8 windows). The logged loss is updated per micro-batch, weighted by its size:
the epoch's running mean is the same as with the larger batch.
"""

from __future__ import annotations

import tensorflow as tf

from tfqa.training.loss import qa_loss


class _LossMean(tf.keras.metrics.Mean):
    """The logged "loss" (a running mean over windows); its own class so that a second `fit` replaces it."""


def qa_logits(outputs) -> tuple:
    """(start_logits, end_logits) of a QA model's outputs, read by name (a transformers ModelOutput or a dict)."""
    return outputs["start_logits"], outputs["end_logits"]


def use_qa_train_step(model, accumulation_steps: int = 1) -> None:
    """Makes `fit` train `model` (compiled: its optimizer is set) with `qa_loss` on `(inputs, labels)` batches.

    `labels` is {"start_positions", "end_positions"}; with `accumulation_steps`
    N > 1 each batch is N micro-batches whose gradients make one optimizer step.
    Call it after `compile` and before `fit`, in or out of the model's strategy scope.
    """
    steps = max(1, int(accumulation_steps))
    with model.distribute_strategy.scope():
        tracker = _LossMean(name="loss")
    # `model.metrics` (which fit logs and resets every epoch) reads this list; a model attribute instead would
    # add the tracker's two variables to the model's weights, and so to its checkpoints.
    model._metrics[:] = [m for m in model._metrics if not isinstance(m, _LossMean)] + [tracker]

    def step_gradients(x, y, variables):
        with tf.GradientTape() as tape:
            start_logits, end_logits = qa_logits(model(x, training=True))
            loss = qa_loss(y["start_positions"], y["end_positions"], start_logits, end_logits)
            if model.losses:  # regularization losses, if any (none in the transformers QA models)
                loss += tf.add_n([tf.cast(l, loss.dtype) for l in model.losses])
            tracker.update_state(loss, sample_weight=tf.shape(y["start_positions"])[0])
            scaled = for_replicas(loss)
            if steps > 1:
                scaled /= steps
        return _gradients(model.optimizer, scaled, variables, tape)

    def train_step(data):
        x, y, _ = tf.keras.utils.unpack_x_y_sample_weight(data)
        if not isinstance(y, dict) or not {"start_positions", "end_positions"} <= set(y):
            raise TypeError("tfqa's train step takes (inputs, {'start_positions', 'end_positions'}) batches "
                            f"(tfqa.training.datasets.train_dataset); got labels {type(y).__name__}")
        variables = model.trainable_variables
        if steps == 1:
            # As minimize() would: sparse (IndexedSlices) gradients stay sparse, None ones are skipped.
            model.optimizer.apply_gradients(step_gradients(x, y, variables))
        else:
            total = summed_over_micro_batches(lambda *a: [g for g, _ in step_gradients(*a)], x, y, steps, variables)
            model.optimizer.apply_gradients(zip(total, variables))
        return {m.name: m.result() for m in model.metrics}

    model.train_step = train_step


def summed_over_micro_batches(gradients, x: dict, y: dict, steps: int, variables) -> list:
    """The sum of `gradients(x_i, y_i, variables)` (one per variable, None for none) over `steps` equal slices."""
    size = tf.shape(y["start_positions"])[0] // steps
    total = [tf.zeros_like(v) for v in variables]
    for i in range(steps):  # unrolled: `steps` is small and fixed
        part = slice(i * size, (i + 1) * size)
        grads = gradients({k: v[part] for k, v in x.items()}, {k: v[part] for k, v in y.items()}, variables)
        total = [t if g is None else t + tf.convert_to_tensor(g) for t, g in zip(total, grads)]
    return total


def for_replicas(loss):
    """A replica's share of the global-batch mean: its local mean × 1/replicas (what Keras' compiled loss does)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss * (1.0 / replicas) if replicas > 1 else loss


def _gradients(optimizer, loss, variables, tape):
    """(gradient, variable) pairs as `optimizer.minimize` computes them (loss scaling included)."""
    # transformers' AdamWeightDecay is a legacy Keras optimizer, whose public method has a leading underscore.
    compute = getattr(optimizer, "compute_gradients", None) or optimizer._compute_gradients
    return compute(loss, variables, tape=tape)
