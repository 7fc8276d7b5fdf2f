"""Training throughput: tfqa's `fit` vs a plain `compile`/`fit` of the same model, and what XLA gives.

    python -m bench.training_throughput [--steps 40] [--rounds 2] [--max-seq-length 256] [--batch 16]
                                        [--model DIR]

All three train the same architecture (by default a DistilBERT-shaped model,
4 layers × 256 wide, built from a config so no download is needed; `--model`
takes a real checkpoint directory) on the same features of real SQuAD dev text,
at the same batch and sequence length:

- plain: `model.compile(Adam)` and `model.fit(arrays, batch_size=...)`, the way
  the Hugging Face TF examples train (labels in the input dict: the model's own loss);
- tfqa: `tfqa.training.fitting.fit` — AdamW schedule, tf.data pipeline, the
  distribution strategy tfqa picks on this machine, tfqa's train step and loss;
- tfqa + XLA: the same with `jit_compile=True` (fixed shapes);
- tfqa + bf16 / + fp16: the same with `mixed_precision` (float32 logits and
  loss; fp16 with loss scaling). `--precision-runs` leaves them out when
  set to 0 (they are slow on CPUs without bf16/fp16 matrix units).

Throughput is sequences/s over the steps after the first `--warmup` ones
(tracing and compilation excluded), best of `--rounds` alternating rounds.
Each row also gives the model's achieved GFLOP/s (`bench.flops`: encoder
matmuls × 3 for a training step, over the positions the step computes: the
full window for plain and XLA, the batch's longest window where tfqa trims
padding) and its share of this CPU's float32 matmul peak at the model's own
feed-forward shape, [batch × seq, h] × [h, ffn], timed between the runs of
every round (`bench.matmul_peak`).
"""

from __future__ import annotations

import argparse
import os
import time

from tfqa import use_backend  # noqa: E402

use_backend("transformers")  # tf.keras = tf-keras, before TensorFlow loads (tfqa.core.keras_choice)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import bench_tokenizer, machine_line, squad_file  # noqa: E402
from bench.flops import EncoderShape, fp32_peak_timer, of_peak, train_step_flops  # noqa: E402
from tfqa import load_squad, prepare_features  # noqa: E402
from tfqa.core.config import TrainConfig  # noqa: E402
from tfqa.modeling.precision import float32_logits, precision  # noqa: E402
from tfqa.training.fitting import fit  # noqa: E402
from tfqa.training.strategies import make_strategy  # noqa: E402


class StepTimer(tf.keras.callbacks.Callback):
    """Wall time of each training step."""

    def __init__(self):
        super().__init__()
        self.ends: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())

    def sequences_per_second(self, warmup: int, batch: int) -> float:
        steady = self.ends[warmup:]
        return (len(steady) - 1) * batch / (steady[-1] - steady[0])


def model_config(model_dir: str | None, vocab_size: int, max_seq_length: int):
    from transformers import AutoConfig, DistilBertConfig

    if model_dir:
        return AutoConfig.from_pretrained(model_dir)
    return DistilBertConfig(vocab_size=vocab_size, dim=256, n_layers=4, n_heads=4, hidden_dim=1024,
                            max_position_embeddings=max(512, max_seq_length))


def build_model(model_dir: str | None, vocab_size: int, max_seq_length: int):
    from transformers import TFAutoModelForQuestionAnswering, TFDistilBertForQuestionAnswering

    tf.keras.utils.set_random_seed(0)
    if model_dir:
        return TFAutoModelForQuestionAnswering.from_pretrained(model_dir)
    model = TFDistilBertForQuestionAnswering(model_config(model_dir, vocab_size, max_seq_length))
    model(model.dummy_inputs)
    return model


def plain_fit(model, features, batch: int, steps: int) -> StepTimer:
    names = set(model.input_signature)
    data = {k: v for k, v in features.model_inputs().items() if k in names}
    data.update(start_positions=features.start_positions, end_positions=features.end_positions)
    rows = steps * batch
    data = {k: v[:rows] for k, v in data.items()}
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-5))
    timer = StepTimer()
    model.fit(data, batch_size=batch, epochs=1, shuffle=True, verbose=0, callbacks=[timer])
    return timer


def tfqa_fit(spec, features, batch: int, steps: int, jit_compile: bool, mixed_precision: str = "no") -> StepTimer:
    subset = features.select(np.arange(steps * batch))
    strategy = make_strategy()
    config = TrainConfig(per_replica_batch_size=batch // strategy.num_replicas_in_sync, num_train_epochs=1.0,
                         jit_compile=jit_compile, learning_rate=3e-5, mixed_precision=mixed_precision)
    timer = StepTimer()
    with strategy.scope(), precision(mixed_precision):
        model = float32_logits(build_model(*spec))
    fit(model, subset, config, strategy, callbacks=[timer], verbose=0)
    return timer


def trimmed_width(features, batch: int, samples: int = 2000) -> float:
    """Mean longest window of a shuffled batch: the positions a step computes once tfqa trims padding."""
    lengths = features.attention_mask.sum(axis=1)
    rng = np.random.default_rng(0)
    return float(np.mean([lengths[rng.choice(len(lengths), batch, replace=False)].max() for _ in range(samples)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="training steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the timing")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best counts")
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--model", default=None, help="checkpoint directory (default: DistilBERT-shaped, 4x256)")
    parser.add_argument("--precision-runs", type=int, default=1, help="1: also time bf16 and fp16; 0: skip them")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    tokenizer, vocab = bench_tokenizer()
    examples = load_squad(squad_file())
    features = prepare_features(examples[:args.steps * args.batch * 2], tokenizer,
                                max_seq_length=args.max_seq_length, doc_stride=args.max_seq_length // 2)
    spec = (args.model, len(tokenizer), args.max_seq_length)
    runs = {"plain compile/fit": lambda: plain_fit(build_model(*spec), features, args.batch, args.steps),
            "tfqa fit": lambda: tfqa_fit(spec, features, args.batch, args.steps, jit_compile=False),
            "tfqa fit + XLA": lambda: tfqa_fit(spec, features, args.batch, args.steps, jit_compile=True)}
    if args.precision_runs:
        for mode in ("bf16", "fp16"):
            runs[f"tfqa fit + {mode}"] = (lambda m: lambda: tfqa_fit(spec, features, args.batch, args.steps,
                                                                    jit_compile=False, mixed_precision=m))(mode)
    config = model_config(*spec)
    timer, peak = fp32_peak_timer(config, args.batch * args.max_seq_length), 0.0
    best = {name: 0.0 for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            best[name] = max(best[name], run().sequences_per_second(args.warmup, args.batch))
            tf.keras.backend.clear_session()
            peak = max(peak, timer())
    trimmed = trimmed_width(features.select(np.arange(args.steps * args.batch)), args.batch)

    print(f"model: {args.model or 'DistilBERT-shaped 4 layers x 256'}, batch {args.batch}, max_seq_length "
          f"{args.max_seq_length}, {args.steps} steps ({args.warmup} warm-up), best of {args.rounds} rounds; "
          f"vocab: {vocab}; strategy: {type(make_strategy()).__name__}")
    shape = EncoderShape.of(config)
    print(f"float32 matmul peak at [{args.batch * args.max_seq_length}, {shape.hidden}] x [{shape.hidden}, "
          f"{shape.ffn}], best between the runs: {peak:.1f} GFLOP/s; tfqa's trimmed batches average "
          f"{trimmed:.0f} of {args.max_seq_length} positions")
    base = best["plain compile/fit"]
    for name, value in best.items():
        width = args.max_seq_length if name == "plain compile/fit" or "XLA" in name else trimmed
        step = train_step_flops(config, args.batch, width)
        print(f"{name:18s} {value:8.1f} sequences/s   {value / base:5.2f}x   "
              f"{of_peak(step, args.batch / value, peak)}")
    print(f"ratio tfqa / plain: {best['tfqa fit'] / base:.2f}x (target >= 1.0x)")
    print(machine_line(load_before))


if __name__ == "__main__":
    main()
