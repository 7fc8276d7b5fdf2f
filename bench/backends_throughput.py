"""Training throughput of the two model backends side by side: transformers (tf-keras) vs keras_hub (Keras 3).

    python -m bench.backends_throughput [--steps 30] [--warmup 5] [--rounds 2] [--max-seq-length 256] [--batch 16]

Both train the same DistilBERT-shaped model (4 layers × 256 wide, feed-forward
1024, built from a config: `TFDistilBertForQuestionAnswering` on one side, a
keras-hub `DistilBertBackbone` + tfqa's QA head on the other) with the same
call, `tfqa.training.fitting.fit`: same features of real SQuAD dev text, same
batch, AdamW recipe, tf.data pipeline (batches trimmed to their longest
window), loss and strategy. keras_hub is also timed with `jit_compile` (XLA,
fixed shapes). Throughput is sequences/s over the steps after the first
`--warmup` (tracing excluded), best of `--rounds` rounds in which the
contenders alternate. Each row gives its GFLOP/s (`bench.flops`) and share of
the float32 matmul peak at the model's feed-forward shape, timed between runs.
"""

from __future__ import annotations

import argparse
import os

from tfqa import use_backend  # noqa: E402

use_backend("transformers")  # tf.keras = tf-keras, before TensorFlow loads (tfqa.core.keras_choice)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import bench_tokenizer, machine_line, squad_file  # noqa: E402
from bench.flops import EncoderShape, fp32_peak_timer, of_peak, train_step_flops  # noqa: E402
from bench.training_throughput import StepTimer, trimmed_width  # noqa: E402
from tfqa import load_squad, prepare_features  # noqa: E402
from tfqa.core.config import TrainConfig  # noqa: E402
from tfqa.training.fitting import fit  # noqa: E402
from tfqa.training.strategies import make_strategy  # noqa: E402

SHAPE = EncoderShape(layers=4, hidden=256, ffn=1024)
HEADS = 4


def transformers_model(vocab_size: int, positions: int):
    from transformers import DistilBertConfig, TFDistilBertForQuestionAnswering

    tf.keras.utils.set_random_seed(0)
    model = TFDistilBertForQuestionAnswering(DistilBertConfig(
        vocab_size=vocab_size, dim=SHAPE.hidden, n_layers=SHAPE.layers, n_heads=HEADS, hidden_dim=SHAPE.ffn,
        max_position_embeddings=positions))
    model(model.dummy_inputs)
    return model


def keras_hub_model(vocab_size: int, positions: int):
    import keras
    import keras_hub

    from tfqa.modeling.keras_hub_qa import qa_model

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=vocab_size, num_layers=SHAPE.layers, num_heads=HEADS, hidden_dim=SHAPE.hidden,
        intermediate_dim=SHAPE.ffn, max_sequence_length=positions)
    return qa_model(backbone, seed=0)


def timed_fit(build, features, batch: int, steps: int, jit_compile: bool) -> StepTimer:
    subset = features.select(np.arange(steps * batch))
    strategy = make_strategy()
    config = TrainConfig(per_replica_batch_size=batch // strategy.num_replicas_in_sync, num_train_epochs=1.0,
                         jit_compile=jit_compile, learning_rate=3e-5)
    timer = StepTimer()
    with strategy.scope():
        model = build()
    fit(model, subset, config, strategy, callbacks=[timer], verbose=0)
    return timer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="training steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the timing")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best counts")
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    tokenizer, vocab = bench_tokenizer()
    features = prepare_features(load_squad(squad_file())[:args.steps * args.batch * 2], tokenizer,
                                max_seq_length=args.max_seq_length, doc_stride=args.max_seq_length // 2)
    positions = max(512, args.max_seq_length)
    runs = {
        "transformers": (lambda: transformers_model(len(tokenizer), positions), False),
        "keras_hub": (lambda: keras_hub_model(len(tokenizer), positions), False),
        "keras_hub + XLA": (lambda: keras_hub_model(len(tokenizer), positions), True),
    }
    timer, peak = fp32_peak_timer(SHAPE, args.batch * args.max_seq_length), 0.0
    best = {name: 0.0 for name in runs}
    for _ in range(args.rounds):
        for name, (build, xla) in runs.items():
            result = timed_fit(build, features, args.batch, args.steps, xla)
            best[name] = max(best[name], result.sequences_per_second(args.warmup, args.batch))
            peak = max(peak, timer())
    trimmed = trimmed_width(features.select(np.arange(args.steps * args.batch)), args.batch)

    print(f"model: DistilBERT-shaped {SHAPE.layers} layers x {SHAPE.hidden} (ffn {SHAPE.ffn}) on both backends, "
          f"batch {args.batch}, max_seq_length {args.max_seq_length}, {args.steps} steps ({args.warmup} warm-up), "
          f"best of {args.rounds} rounds; vocab: {vocab}")
    print(f"float32 matmul peak at [{args.batch * args.max_seq_length}, {SHAPE.hidden}] x [{SHAPE.hidden}, "
          f"{SHAPE.ffn}], best between the runs: {peak:.1f} GFLOP/s; trimmed batches average {trimmed:.0f} of "
          f"{args.max_seq_length} positions")
    base = best["transformers"]
    for name, value in best.items():
        width = args.max_seq_length if "XLA" in name else trimmed
        step = train_step_flops(SHAPE, args.batch, width)
        print(f"{name:16s} {value:8.1f} sequences/s   {value / base:5.2f}x   {of_peak(step, args.batch / value, peak)}")
    print(f"ratio keras_hub / transformers: {best['keras_hub'] / base:.2f}x (target >= 1.0x)")
    print(machine_line(load_before))


if __name__ == "__main__":
    main()
