"""Memory of training from streamed TFRecord shards vs features held in memory.

    python -m bench.streaming_memory [--questions 300000] [--subset 30000] [--steps 30]

Generates a synthetic SQuAD-style corpus a chunk at a time (`tfqa.core.synthetic`;
the JSON and the examples of the whole corpus are never in memory at once),
writes its features once into sharded TFRecord files (`tfqa.training.feature_shards`), then
trains a tiny DistilBERT for a few steps from the stream (`tfqa.modeling.pipeline`).
A sampling thread records the peak RSS of each phase. For comparison it
computes (without allocating) what the same features would take as in-memory
arrays, and measures the RSS growth of materialising a subset the in-memory way
(`prepare_features` + `train_dataset` + the same training steps), to show how
that path grows with the data. Prints the ratio of the in-memory size to the
streaming path's peak growth.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import sys
import tempfile
import threading
import time

from tfqa import use_backend  # noqa: E402

use_backend("transformers")  # tf.keras = tf-keras, before TensorFlow loads (tfqa.core.keras_choice)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import numpy as np  # noqa: E402
import psutil  # noqa: E402

MB = 1 << 20


def rss() -> int:
    return psutil.Process().memory_info().rss


class PeakRSS:
    """Samples this process's RSS every 20 ms while active; `.peak` is the highest seen."""

    def __init__(self):
        self.peak, self._stop = rss(), threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def synthetic_chunks(questions: int, chunk: int):
    """A function yielding lists of `chunk` examples (the last one shorter), `questions` in all, made on the fly."""
    from tfqa.core.squad import parse_squad_json
    from tfqa.core.synthetic import synthetic_squad

    def chunks():
        left, seed = questions, 100
        while left > 0:
            size = min(chunk, left)
            # ~4.5 questions a paragraph: a few spare paragraphs, cut to exactly `size` questions.
            examples, _ = parse_squad_json(synthetic_squad(math.ceil(size / 4) + 1, seed=seed))
            yield examples[:size]
            left -= size
            seed += 1

    return chunks


def bytes_per_window(seq: int, token_type_ids: bool) -> int:
    """Size of one window in `tfqa.core.features.Features` (dtypes as `prepare_features` makes them)."""
    per_token = 4 + 4 + (4 if token_type_ids else 0) + 2 * 4 + 1  # ids, mask, [types], offsets, max-context
    return seq * per_token + 4 * 4  # + example_index, start, end, cls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=300_000)
    parser.add_argument("--subset", type=int, default=30_000, help="questions materialised in memory for comparison")
    parser.add_argument("--chunk", type=int, default=20_000, help="questions tokenized at a time")
    parser.add_argument("--steps", type=int, default=30, help="training steps from the stream")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=64)  # the smoke preset's windows
    parser.add_argument("--doc_stride", type=int, default=16)
    parser.add_argument("--max_query_length", type=int, default=16)
    parser.add_argument("--cache_dir", default="", help="keep the shards here (default: a temporary folder)")
    args = parser.parse_args()

    import tensorflow as tf

    from tfqa.core.config import TrainConfig
    from tfqa.core.features import prepare_features
    from tfqa.core.config import FeatureConfig
    from tfqa.modeling.checkpoints import tiny_distilbert
    from tfqa.training.datasets import train_dataset
    from tfqa.training.feature_shards import streamed_features
    from tfqa.training.fitting import fit
    from tfqa.core.vocab import train_wordpiece

    settings = dict(max_seq_length=args.max_seq_length, doc_stride=args.doc_stride,
                    max_query_length=args.max_query_length)
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="tfqa-stream-")
    chunks = synthetic_chunks(args.questions, args.chunk)
    sample = next(chunks())[:2000]
    tokenizer = train_wordpiece([e.context for e in sample] + [e.question for e in sample], vocab_size=2000,
                                token_type_ids=False)
    del sample
    model = tiny_distilbert(len(tokenizer), args.max_seq_length, dim=64)
    config = TrainConfig(per_replica_batch_size=args.batch, learning_rate=1e-3, seed=0, preset="smoke",
                         num_train_epochs=1.0, **settings)
    strategy = tf.distribute.get_strategy()

    def train_steps(features, steps):
        # A fraction of an epoch: `steps` steps of the usual fit (AdamW schedule, Keras loop).
        cfg = TrainConfig(**{**config.__dict__, "num_train_epochs": steps * args.batch / len(features)})
        t = time.perf_counter()
        history = fit(model, features, cfg, strategy, verbose=0)
        return time.perf_counter() - t, history.history["loss"][-1]

    # Warm-up on 500 questions in memory: TF's and Keras' one-time costs are not the data's.
    train_steps(prepare_features(next(chunks())[:500], tokenizer, **settings), 2)
    base = rss()
    print(f"{args.questions:,} synthetic questions, {args.chunk:,} per chunk; windows of {args.max_seq_length} "
          f"tokens; tiny DistilBERT (dim 64); RSS after start-up and a warm-up fit {base / MB:.0f} MB", flush=True)

    t0 = time.perf_counter()
    with PeakRSS() as writing:
        shards, reused = streamed_features(chunks, tokenizer, cache_dir, FeatureConfig(**settings), chunk_size=args.chunk)
    t_write = time.perf_counter() - t0
    size_on_disk = sum(os.path.getsize(f) for f in shards.files)
    print(f"shards: {len(shards):,} windows in {len(shards.files)} files ({size_on_disk / MB:.0f} MB on disk), "
          f"{'reused' if reused else f'written in {t_write:.0f} s'}; peak RSS while writing "
          f"{writing.peak / MB:.0f} MB", flush=True)

    before = rss()
    with PeakRSS() as streaming:
        t_train, loss = train_steps(shards, args.steps)
    print(f"streamed training: {args.steps} steps of batch {args.batch} in {t_train:.0f} s (loss {loss:.3f}); "
          f"RSS {before / MB:.0f} MB before, peak {streaming.peak / MB:.0f} MB", flush=True)
    stream_growth = max(writing.peak, streaming.peak) - base  # the whole streaming path: writing and training

    per_window = bytes_per_window(args.max_seq_length, shards.token_type_ids)
    in_memory = len(shards) * per_window
    print(f"the same features in memory: {len(shards):,} windows x {per_window:,} bytes = {in_memory / MB:.0f} MB "
          f"(computed, not allocated)", flush=True)

    subset = []
    for chunk in chunks():
        subset += chunk[:args.subset - len(subset)]
        if len(subset) >= args.subset:
            break
    before = rss()
    with PeakRSS() as materialising:
        features = prepare_features(subset, tokenizer, **settings)
        dataset = train_dataset(features, args.batch, seed=0)  # from_tensor_slices: a second copy in TF
        next(iter(dataset))
        t_mem, _ = train_steps(features, args.steps)
    held = rss() - before
    print(f"in-memory subset: {len(subset):,} questions, {len(features):,} windows "
          f"({len(features) * per_window / MB:.0f} MB of arrays); RSS +{held / MB:.0f} MB held after "
          f"prepare_features + train_dataset + {args.steps} steps, peak +{(materialising.peak - before) / MB:.0f} MB "
          f"= {held / len(features):,.0f} bytes per window -> {held / len(features) * len(shards) / MB:,.0f} MB "
          f"extrapolated to {len(shards):,} windows", flush=True)
    sub_windows = len(features)
    extrapolated = held / sub_windows * len(shards)
    del dataset, features, subset

    peak_all = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"process peak RSS (ru_maxrss, whole run): {peak_all / MB:.0f} MB")
    print(f"streaming: peak RSS {max(writing.peak, streaming.peak) / MB:.0f} MB while writing+training on "
          f"{len(shards):,} windows, {stream_growth / MB:.0f} MB above start-up (writing +{(writing.peak - base) / MB:.0f} MB, "
          f"training +{(streaming.peak - base) / MB:.0f} MB)")
    print(f"ratio: in-memory features {in_memory / MB:.0f} MB / streaming peak growth {stream_growth / MB:.0f} MB "
          f"= {in_memory / max(stream_growth, 1):.1f}x; in-memory path extrapolated {extrapolated / MB:,.0f} MB / "
          f"{stream_growth / MB:.0f} MB = {extrapolated / max(stream_growth, 1):.1f}x")
    if not args.cache_dir:
        shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
