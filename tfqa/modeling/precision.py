"""Mixed precision: building models under a Keras policy, with float32 logits.

Variables stay float32; layers compute in float16/bfloat16; the QA head and so
the logits and the loss stay float32 (`float32_logits`).
"""

from __future__ import annotations

import contextlib

PRECISION_POLICIES = {"no": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}


@contextlib.contextmanager
def precision(mode: str):
    """Within the block, models are built with Keras' `mode` mixed-precision policy (restored after).

    Variables stay float32; layers compute in float16/bfloat16. With "fp16",
    `Model.compile` wraps the optimizer in a LossScaleOptimizer (tf-keras does
    that for the mixed_float16 policy), so small gradients do not underflow.
    """
    import keras
    import tensorflow as tf

    # Both Keras: tf-keras' policy builds the transformers backend's models, Keras 3's the keras_hub ones.
    previous = tf.keras.mixed_precision.global_policy(), keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(PRECISION_POLICIES[mode])
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[mode])
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous[0])
        keras.mixed_precision.set_global_policy(previous[1])


def float32_logits(model):
    """Makes the QA head compute in float32, so the logits and the loss built on them are float32.

    In float16 the loss' log-softmax over a whole window overflows or loses
    the small probabilities (the known fp16 NaN of Transformers' TF QA losses);
    the head is one small Dense layer, so float32 there costs nothing.
    """
    import tensorflow as tf

    head = getattr(model, "qa_outputs", None)
    if head is not None and model.dtype_policy.compute_dtype != "float32":
        head._set_dtype_policy(tf.keras.mixed_precision.Policy("float32"))  # no public setter in tf-keras
    return model
