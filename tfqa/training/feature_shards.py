"""Training features as sharded TFRecord files, written once in chunks and streamed by `tf.data`.

`tfqa.training.feature_cache` keeps one file per entry and reads it back whole: fine for the
dev set (decoding needs the offsets in memory), but the training windows of a
large corpus would then all sit in RAM. Here the examples are tokenized a chunk
at a time (`chunk_size` questions) and each chunk's windows are appended to
`num_shards` files before the next chunk is made, so peak memory depends on
the chunk, not on the dataset (the shards hold the training columns and
`example_index`/`cls_index`, not the offsets decoding needs); `tfqa.training.datasets.stream_train_dataset` then reads
the files through a shuffle buffer.

An entry is a folder `features-<key>/` in the cache directory (the key is
`tfqa.training.feature_cache.cache_key`: data, tokenizer and window settings) holding
`train-00000-of-000NN.tfrecord` files and `index.json`, written last and
atomically: a folder without its index is an interrupted write, and is
rebuilt. Windows go to the shards in example order, a contiguous run of
questions per shard (every window of a question in the same file), so that
reading a few shuffled files at a time mixes distant parts of the data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from tfqa.training.feature_cache import FORMAT, cache_key, read_columns, record_spec, serialized_windows
from tfqa.core.config import FeatureConfig
from tfqa.core.features import prepare_features
from tfqa.core.files import atomic_path, write_json_atomic

INDEX = "index.json"
CHUNK_QUESTIONS = 20_000  # tokenized at once: bounds the memory of writing (~100 MB at 384 tokens)
QUESTIONS_PER_SHARD = 4096
# What training and the bookkeeping need; not the decoding-only offsets and max-context flags, whose
# -1s take 10 bytes each as varints: at 384 tokens they would make each record ~7x larger, on disk and in
# the shuffle buffer. Evaluation keeps using `tfqa.training.feature_cache` (it needs them in memory anyway).
FIELDS = ("input_ids", "attention_mask", "token_type_ids", "example_index", "start_positions", "end_positions",
          "cls_index")


@dataclass(frozen=True)
class FeatureShards:
    """A written entry: what the streaming pipeline needs, without any window in memory."""

    folder: Path
    files: tuple[str, ...]
    windows: int
    seq_length: int
    token_type_ids: bool
    right_padded: bool  # every window starts with a real token: batches can be trimmed on the right

    def __len__(self) -> int:
        return self.windows

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "FeatureShards | None":
        """The entry in `folder`, or None when its index is missing (never written, or interrupted)."""
        folder = Path(folder)
        index = folder / INDEX
        if not index.exists():
            return None
        meta = json.loads(index.read_text())
        files = tuple(str(folder / name) for name in meta["files"])
        missing = [f for f in files if not os.path.exists(f)]
        if missing:
            raise OSError(f"{index}: lists {missing[0]}, which does not exist")
        return cls(folder, files, meta["windows"], meta["seq_length"], meta["token_type_ids"], meta["right_padded"])

    def read(self) -> dict[str, np.ndarray]:
        """Every stored column (`FIELDS`) back in memory as int32 arrays, windows in written order (for checks)."""
        spec = record_spec(self.seq_length, self.token_type_ids, FIELDS)
        return {k: v.astype(np.int32) for k, v in read_columns(list(self.files), spec, self.windows).items()}


def shard_name(index: int, count: int) -> str:
    return f"train-{index:05d}-of-{count:05d}.tfrecord"


def default_num_shards(num_questions: int) -> int:
    """About `QUESTIONS_PER_SHARD` questions a file (SQuAD v1.1 train: 22 files), 1 to 256 files."""
    return max(1, min(256, math.ceil(num_questions / QUESTIONS_PER_SHARD)))


def chunked(examples: Sequence, size: int):
    """`examples` in consecutive lists of `size`."""
    for begin in range(0, len(examples), size):
        yield list(examples[begin:begin + size])


def write_shards(chunks: Iterable[Sequence], num_questions: int, tokenizer, folder: str | os.PathLike,
                 num_shards: int, config: FeatureConfig, progress: Callable[[str], None] | None = None) -> FeatureShards:
    """Tokenizes each chunk of examples and appends its windows to the shard files; index last.

    `num_questions` (the total over the chunks) places question q in shard
    q × num_shards // num_questions, so the shards hold about as many questions
    each. Files are written under temporary names and renamed before the index
    is written, so readers never see a half-written entry.
    """
    import tensorflow as tf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INDEX).unlink(missing_ok=True)
    names = [shard_name(i, num_shards) for i in range(num_shards)]
    counts = [0] * num_shards
    questions, right_padded, token_type_ids = 0, True, False
    # Each file is renamed into place only if every chunk was written (an error or an interrupt leaves none).
    with contextlib.ExitStack() as files:
        tmp = [files.enter_context(atomic_path(folder / name)) for name in names]
        with contextlib.ExitStack() as open_writers:
            writers = [open_writers.enter_context(tf.io.TFRecordWriter(str(path))) for path in tmp]
            for chunk in chunks:
                features = prepare_features(chunk, tokenizer, config=config)
                token_type_ids = features.token_type_ids is not None
                right_padded = right_padded and bool(features.attention_mask[:, 0].all())
                # example_index counts questions over the whole entry, not within the chunk.
                features.example_index += questions
                shard_of = (features.example_index.astype("int64") * num_shards) // max(num_questions, 1)
                for record, shard in zip(serialized_windows(features, FIELDS), shard_of.tolist()):
                    writers[shard].write(record)
                    counts[shard] += 1
                questions += len(chunk)
                if progress is not None:
                    progress(f"{questions:,} of {num_questions:,} questions, {sum(counts):,} windows written")
                del features
        if questions != num_questions:
            raise ValueError(f"the chunks held {questions} questions, not the {num_questions} announced")
    write_json_atomic(folder / INDEX, {
        "format": FORMAT, "windows": sum(counts), "questions": questions, "files": names, "shard_windows": counts,
        "seq_length": config.max_seq_length, "token_type_ids": token_type_ids,
        "right_padded": right_padded, "settings": dataclasses.asdict(config)})
    return FeatureShards.load(folder)


def streamed_features(examples, tokenizer, cache_dir: str | os.PathLike, config: FeatureConfig,
                      num_shards: int | None = None, chunk_size: int = CHUNK_QUESTIONS,
                      progress: Callable[[str], None] | None = None,
                      overwrite: bool = False) -> tuple[FeatureShards, bool]:
    """(shards, reused): the entry for `examples` in `cache_dir`, written first when there is none.

    `examples` is a sequence of examples, or a function returning an iterable of
    example lists (called twice: once to key the entry, once to write it) for
    data that should never be in memory all at once either. `overwrite` (--overwrite_cache)
    writes the entry again even when one exists.
    """
    if callable(examples):
        sizes: list[int] = []
        key = cache_key(_counting(examples(), sizes), tokenizer, config)
        num_questions, chunks = sum(sizes), examples
    else:
        num_questions = len(examples)
        key = cache_key(examples, tokenizer, config)
        chunks = lambda: chunked(examples, chunk_size)  # noqa: E731
    folder = Path(cache_dir) / f"features-{key}"
    shards = None if overwrite else FeatureShards.load(folder)
    if shards is not None:
        return shards, True
    count = num_shards or default_num_shards(num_questions)
    return write_shards(chunks(), num_questions, tokenizer, folder, count, config, progress), False


def _counting(chunks, sizes: list):
    """The examples of `chunks` one by one, appending each chunk's length to `sizes` (one pass keys and counts)."""
    for chunk in chunks:
        sizes.append(len(chunk))
        yield from chunk
