"""The TensorFlow model: loading and building QA checkpoints, mixed precision, tf.data inputs, prediction."""
