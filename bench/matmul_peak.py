"""This CPU's matrix-multiply peak in float32, bfloat16 and float16, measured with `tf.matmul` in a `tf.function`.

    python -m bench.matmul_peak [--m 3072] [--k 768] [--n 3072] [--rounds 5] [--calls 3]

An [m, k] × [k, n] product is 2·m·k·n floating-point operations (one multiply and
one add per term); the default shape is BERT's feed-forward layer for 3072
tokens. The dtypes alternate within each round and the best round of each
counts (timings on shared VMs drift). The CPU flags that decide whether reduced
precision can pay are printed alongside: AVX-512 BF16 or AMX (bf16 tiles) make
bfloat16 matmuls faster than float32; without them oneDNN converts to float32
and bfloat16 only adds work. `matmul_timers` is imported by bench.precision_speed
to express the model's achieved GFLOP/s as a fraction of this peak.
"""

from __future__ import annotations

import argparse
import os
import time

from tfqa import use_backend  # noqa: E402

use_backend("transformers")  # tf.keras = tf-keras, before TensorFlow loads (tfqa.core.keras_choice)

DTYPES = ("float32", "bfloat16", "float16")
# Flags of /proc/cpuinfo that give bf16/fp16 matrix arithmetic in hardware.
MATRIX_FLAGS = ("avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "amx_tile", "avx_vnni")


def cpu_summary() -> str:
    """Model name and which reduced-precision matrix flags the CPU reports (Linux)."""
    try:
        info = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return "unknown CPU"
    field = lambda name: next((line.split(":", 1)[1].strip() for line in info.splitlines()  # noqa: E731
                               if line.split(":", 1)[0].strip() == name), "?")
    model = f"{field('model name')} (family {field('cpu family')} model {field('model')})"
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    have = [f for f in MATRIX_FLAGS if f in flags]
    return (f"{model}, {os.cpu_count()} CPUs, avx2 {'yes' if 'avx2' in flags else 'no'}; "
            f"bf16/fp16 matrix flags: {', '.join(have) if have else 'none (no AVX-512 BF16, no AMX)'}")


def matmul_timers(dtypes=DTYPES, m: int = 3072, k: int = 768, n: int = 3072, calls: int = 3) -> dict:
    """{dtype: timer}: each call of a timer runs `calls` chained [m,k]×[k,n] matmuls and returns GFLOP/s."""
    import tensorflow as tf

    flops = 2.0 * m * k * n * calls
    timers = {}
    for dtype in dtypes:
        a = tf.cast(tf.random.stateless_normal([m, k], seed=[1, 2]), dtype)
        b = tf.cast(tf.random.stateless_normal([k, n], seed=[3, 4]) / 30.0, dtype)

        @tf.function
        def chain(a, b):
            total = tf.zeros([], a.dtype)
            for _ in range(calls):  # unrolled: `calls` independent products, summed so none is pruned
                total += tf.reduce_sum(tf.matmul(a, b)[:1, :1])
                a = a + tf.cast(1e-3, a.dtype)
            return total

        chain(a, b).numpy()  # trace and warm up

        def timer(chain=chain, a=a, b=b) -> float:
            start = time.perf_counter()
            chain(a, b).numpy()
            return flops / (time.perf_counter() - start) / 1e9

        timers[dtype] = timer
    return timers


def peak_gflops(dtypes=DTYPES, m: int = 3072, k: int = 768, n: int = 3072, rounds: int = 5,
                calls: int = 3) -> dict[str, float]:
    """{dtype: best GFLOP/s} over `rounds` rounds, the dtypes alternating within each round."""
    timers = matmul_timers(dtypes, m, k, n, calls)
    best = {dtype: 0.0 for dtype in dtypes}
    for r in range(rounds):
        for dtype in dtypes[r % len(dtypes):] + dtypes[:r % len(dtypes)]:
            best[dtype] = max(best[dtype], timers[dtype]())
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m", type=int, default=3072)
    parser.add_argument("--k", type=int, default=768)
    parser.add_argument("--n", type=int, default=3072)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3, help="matmuls per timed call")
    args = parser.parse_args()
    start, load = time.perf_counter(), os.getloadavg()[0]
    best = peak_gflops(DTYPES, args.m, args.k, args.n, args.rounds, args.calls)
    print(f"command: python -m bench.matmul_peak --m {args.m} --k {args.k} --n {args.n} --rounds {args.rounds} "
          f"--calls {args.calls}")
    print(f"cpu: {cpu_summary()}")
    print(f"[{args.m}x{args.k}] x [{args.k}x{args.n}] tf.matmul in a tf.function, best of {args.rounds} rounds:")
    for dtype, gflops in best.items():
        print(f"  {dtype:<9} {gflops:8.1f} GFLOP/s  ({gflops / best['float32']:.2f}x float32)")
    print(f"1-min load average {load:.2f} before, {os.getloadavg()[0]:.2f} after; "
          f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
