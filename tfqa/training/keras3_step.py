"""The fine-tuning recipe on Keras 3 (the keras_hub backend): AdamW with tfqa's schedule, and its train step.

The same recipe as the transformers backend (`tfqa.training.fitting.make_optimizer`,
`tfqa.training.train_step`) in Keras 3's own classes, because a tf-keras
optimizer or metric on a Keras 3 model does nothing useful (the two Keras
never share objects):

- AdamW, decoupled weight decay scaled by the learning rate, none on
  LayerNorm and bias (keras-hub names their variables `gamma`, `beta`,
  `bias`), global-norm clipping; the learning rate rises linearly over the
  warm-up steps, then falls linearly to 0 at the last step (transformers'
  `create_optimizer`, which the other backend uses). Under several replicas
  the clipping acts on the all-reduced gradient, as in tf-keras (`AdamW`).
- The step computes `tfqa.training.loss.qa_loss` on the model's
  `start_logits`/`end_logits`, scales it per replica, lets a mixed-float16
  LossScaleOptimizer scale it, and logs the running mean "loss" Keras'
  own loss tracker keeps (what `history.json` recovers per-step losses from).
  With N accumulation steps each batch is N micro-batches and one optimizer step.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfqa.core.config import TrainConfig
from tfqa.training.loss import qa_loss
from tfqa.training.train_step import for_replicas, summed_over_micro_batches

NO_WEIGHT_DECAY = ("gamma", "beta", "bias")  # LayerNorm scale/offset and every bias, by keras-hub's variable names


class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then linear decay to 0 at `total_steps`."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int):
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = self.peak * step / max(self.warmup_steps, 1)
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        decay = self.peak * tf.maximum(0.0, 1.0 - (step - self.warmup_steps) / decay_steps)
        return tf.where(step < self.warmup_steps, warmup, decay)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


class AdamW(keras.optimizers.AdamW):
    """Keras 3's AdamW with tf-keras' handling of sparse gradients and of clipping under several replicas.

    - Sparse gradients are made dense, summed over repeated indices. The
      embeddings' gradients are IndexedSlices with one slice per token, repeats
      included, and Keras 3 keeps them sparse where it should not: its Adam
      squares them slice by slice (`ops.square` is sparse-aware), so a token
      seen n times in a batch got Σg² where (Σg)² belongs and moved up to √n ×
      the learning rate; under several replicas their all-reduce failed
      ("Shape mismatch in the collective"). tf-keras deduplicates them first.
      No cost: Keras 3's Adam updates whole moment tensors anyway.
    - The global norm is clipped on the all-reduced gradient (the global
      batch's). Keras 3 clips in `apply`, before its TensorFlow optimizer
      all-reduces the replicas' gradients (in `_backend_update_step`): each
      replica's share was clipped on its own, so 2 replicas trained unlike 1 at
      the same global batch whenever clipping acted. One replica is unchanged.

    Here, not in the train step, so that every Keras 3 step tfqa compiles with
    it (the QA step, distillation's) gets both.
    """

    def apply(self, grads, trainable_variables=None):
        grads = [g if g is None else tf.convert_to_tensor(g) for g in grads]
        return super().apply(grads, trainable_variables)

    def _clip_gradients(self, grads):
        return grads  # not yet: see _backend_update_step

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        variables = [v.value if isinstance(v, keras.Variable) else v for v in trainable_variables]
        reduced = self._all_reduce_sum_gradients(list(zip(grads, variables)))
        clipped = super()._clip_gradients([g for g, _ in reduced])
        # What TFOptimizer._backend_update_step does after its all-reduce.
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._distributed_tf_update_step, self._distribution_strategy,
            list(zip(clipped, [v for _, v in reduced])), learning_rate)


def make_keras3_optimizer(config: TrainConfig, total_steps: int) -> keras.optimizers.Optimizer:
    """Keras 3 AdamW with the run's schedule, epsilon, weight decay and clipping (after the all-reduce)."""
    warmup = config.warmup_steps or int(config.warmup_ratio * total_steps)
    optimizer = AdamW(
        learning_rate=WarmupLinearDecay(config.learning_rate, total_steps, warmup), weight_decay=config.weight_decay,
        beta_1=0.9, beta_2=0.999, epsilon=config.adam_epsilon, global_clipnorm=config.max_grad_norm or None)
    optimizer.exclude_from_weight_decay(var_names=list(NO_WEIGHT_DECAY))
    return optimizer


def use_keras3_qa_train_step(model: keras.Model, accumulation_steps: int = 1) -> None:
    """Makes `fit` train a compiled Keras 3 `model` with `qa_loss` on `(inputs, labels)` batches.

    `labels` is {"start_positions", "end_positions"}; see the module docstring for accumulation.
    """
    steps = max(1, int(accumulation_steps))
    tracker = model._loss_tracker  # compile's running-mean "loss": fit resets it every epoch and logs it

    def step_gradients(x, y, variables):
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss = qa_loss(y["start_positions"], y["end_positions"], out["start_logits"], out["end_logits"])
            scaled = for_replicas(loss) / steps
            scaled = model.optimizer.scale_loss(scaled)  # a no-op unless mixed_float16 wrapped the optimizer
        tracker.update_state(loss, sample_weight=tf.shape(y["start_positions"])[0])
        return tape.gradient(scaled, variables)

    def train_step(data):
        x, y = data[0], data[1]
        variables = model.trainable_variables
        if steps == 1:
            grads = step_gradients(x, y, variables)
        else:
            grads = summed_over_micro_batches(step_gradients, x, y, steps, variables)
        model.optimizer.apply_gradients(zip(grads, variables))
        return step_logs({"loss": tracker.result()})

    model.train_step = train_step
    build_without_a_batch(model)


def step_logs(logs: dict) -> dict:
    """A Keras 3 train step's logs (scalars) in the shape Keras can reduce under the current strategy.

    Keras 3 averages the logs of several workers with `strategy.reduce("MEAN", v, axis=0)`, which fails on a
    scalar ("Invalid reduction dimension 0 for input with 0 dimensions"): one value per replica along axis 0,
    whose mean is the scalar again (the workers' equal batches: the global running mean). One process: as is.
    """
    if not _across_workers(tf.distribute.get_strategy()):
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


def _across_workers(strategy) -> bool:
    """Whether Keras 3 reduces the step's logs across worker processes (its `_collective_all_reduce_multi_worker`)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
        strategy.extended._in_multi_worker_mode()


def build_without_a_batch(model: keras.Model) -> None:
    """Makes Keras 3's `fit`/`predict` build a built model's optimizer without reducing a first batch.

    Under a strategy, Keras 3's TensorFlow trainer (`_maybe_symbolic_build`)
    takes the first batch and `strategy.reduce`s it across replicas before
    anything else, to build the model symbolically. MultiWorkerMirroredStrategy
    cannot reduce a nested batch ("Attempt to convert a value ({'input_ids':
    PerReplica…}) … to a Tensor"), so a keras_hub run failed on several
    workers (MirroredStrategy can). A tfqa model is built when it is fit or
    predicts, and its `compile` has no loss or metrics: without a batch, Keras
    builds just the optimizer. An unbuilt model keeps Keras' own way.
    """
    symbolic_build = model._maybe_symbolic_build

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if all(layer.built for layer in model._flatten_layers()):
            iterator = None
        return symbolic_build(iterator=iterator, data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build
