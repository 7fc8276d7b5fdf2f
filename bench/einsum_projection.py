"""Why the keras_hub backend trains slower than transformers on CPU: one attention projection, timed three ways.

    python -m bench.einsum_projection                   # the backends bench's shape: batch 8 x 176 tokens, 256 wide
    python -m bench.einsum_projection --batch 8 --length 176 --hidden 256 --heads 4 --rounds 30

keras-hub's attention (Keras 3 `MultiHeadAttention`) projects queries, keys and
values with `EinsumDense("abc,cde->abde")`. On the TensorFlow backend Keras 3
computes that einsum as `tf.matmul` of the 3-D input with the kernel reshaped to
2-D: a broadcast batched matmul, whose kernel gradient is a batch of matmuls
summed afterwards. Hugging Face's DistilBERT uses a `Dense` (one 2-D matmul).
This times forward + backward of the same projection as Keras 3 runs it, as
`tf.einsum` runs it, and as one 2-D matmul, with the ratio to the 2-D matmul;
each layer has four such projections (query, key, value, output).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import tensorflow as tf

from bench.common import alternate, machine_line


def projection(fn, x, kernel):
    """A tf.function: the gradients of sum(fn(x, kernel)²) with respect to x and the kernel."""
    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x, kernel)
            total = tf.reduce_sum(y * y)
        return tape.gradient(total, [x, kernel])

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=176, help="tokens per window (the bench's trimmed width)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=30, help="timed calls per way; the fastest counts")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    import keras

    rng = np.random.default_rng(0)
    head = args.hidden // args.heads
    x = tf.constant(rng.normal(size=(args.batch, args.length, args.hidden)).astype("float32"))
    kernel = tf.Variable(rng.normal(size=(args.hidden, args.heads, head)).astype("float32"))
    width = args.heads * head
    ways = {
        "Keras 3 ops.einsum (EinsumDense)": projection(lambda a, k: keras.ops.einsum("abc,cde->abde", a, k), x, kernel),
        "tf.einsum": projection(lambda a, k: tf.einsum("abc,cde->abde", a, k), x, kernel),
        "one 2-D matmul (Dense)": projection(
            lambda a, k: tf.reshape(tf.reshape(a, [-1, args.hidden]) @ tf.reshape(k, [args.hidden, width]),
                                    [args.batch, args.length, args.heads, head]), x, kernel),
    }
    for step in ways.values():  # traced and warm before any timing
        step()
        step()
    best = alternate(args.rounds, {name: (lambda s=step: [t.numpy() for t in s()]) for name, step in ways.items()})
    base = best["one 2-D matmul (Dense)"][0]
    print(f"projection [{args.batch}, {args.length}, {args.hidden}] x [{args.hidden}, {args.heads}, {head}], "
          f"forward + backward, fastest of {args.rounds}:")
    for name, (seconds, _) in best.items():
        print(f"{name:34s} {seconds * 1000:7.2f} ms   {seconds / base:5.2f}x the 2-D matmul")
    print(machine_line(load_before))


if __name__ == "__main__":
    main()
