"""Training features streamed from TFRecord shards: same windows, once per pass, file sharding, a tiny run."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_examples

from tfqa.core.features import prepare_features
from tfqa.training.datasets import stream_train_dataset, train_dataset
from tfqa.core.config import FeatureConfig
from tfqa.training.feature_shards import FIELDS, INDEX, FeatureShards, chunked, streamed_features

SETTINGS = dict(max_seq_length=24, doc_stride=6, max_query_length=8)
CONFIG = FeatureConfig(**SETTINGS)
COLUMNS = ("input_ids", "attention_mask", "start_positions", "end_positions")


def rows(arrays: dict, width: int) -> list[tuple]:
    """Each window as a hashable row of the training columns, re-padded to `width` tokens."""
    padded = {k: v if v.ndim == 1 else np.pad(v, [(0, 0), (0, width - v.shape[1])]) for k, v in arrays.items()}
    return [tuple(np.concatenate([np.atleast_1d(padded[k][i]) for k in COLUMNS]).tolist())
            for i in range(len(padded["input_ids"]))]


def feature_rows(features) -> list[tuple]:
    """The windows' rows, sorted: a multiset to compare with."""
    return sorted(rows({k: getattr(features, k) for k in COLUMNS}, SETTINGS["max_seq_length"]))


def merged(batch) -> dict:
    """An `(inputs, labels)` training batch as one dict of arrays (the labels kept apart from the inputs)."""
    inputs, labels = batch
    assert sorted(labels) == ["end_positions", "start_positions"] and not set(labels) & set(inputs)
    return {k: v.numpy() for k, v in {**inputs, **labels}.items()}


def stream_rows(ds, count: int) -> list[tuple]:
    """The first `count` windows of a batched stream, as rows."""
    got: list[tuple] = []
    for batch in ds:
        batch = merged(batch)
        got += rows({k: batch[k] for k in COLUMNS}, SETTINGS["max_seq_length"])
        if len(got) >= count:
            break
    return got[:count]


@pytest.fixture
def written(wordpiece_tokenizer, tmp_path):
    examples = tiny_examples()
    shards, reused = streamed_features(examples, wordpiece_tokenizer, tmp_path, num_shards=3, chunk_size=3, config=CONFIG)
    assert not reused
    return examples, shards, prepare_features(examples, wordpiece_tokenizer, **SETTINGS)


def test_shards_written_in_chunks_hold_the_in_memory_features(written, wordpiece_tokenizer, tmp_path):
    examples, shards, features = written
    assert len(shards) == len(features) and len(shards.files) == 3
    assert [os.path.basename(f) for f in shards.files] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    back = shards.read()  # questions in order, each in one shard: exactly the in-memory arrays
    assert sorted(back) == sorted(name for name in FIELDS if getattr(features, name) is not None)
    for name, array in back.items():
        assert array.dtype == getattr(features, name).dtype and np.array_equal(array, getattr(features, name)), name
    index = json.loads((shards.folder / INDEX).read_text())
    assert sum(index["shard_windows"]) == len(features) and min(index["shard_windows"]) > 0
    again, reused = streamed_features(examples, wordpiece_tokenizer, tmp_path, num_shards=3, config=CONFIG)
    assert reused and again == shards
    assert not list(tmp_path.rglob("*.tmp*"))


def test_chunks_from_a_generator_make_the_same_entry(written, wordpiece_tokenizer, tmp_path):
    examples, shards, _ = written
    again, reused = streamed_features(lambda: chunked(examples, 5), wordpiece_tokenizer, tmp_path, num_shards=3,
                                      config=CONFIG)
    assert reused and again.folder == shards.folder


def test_each_pass_streams_every_window_once(written):
    _, shards, features = written
    n = len(features)
    assert n % 7  # a batch of 7 straddles the two passes
    for shuffle_buffer in (4, 1000):
        ds = stream_train_dataset(shards, 7, seed=1, shuffle_buffer=shuffle_buffer, cycle_length=2)
        two_passes = stream_rows(ds, 2 * n)
        assert sorted(two_passes[:n]) == feature_rows(features) == sorted(two_passes[n:])
        again = stream_rows(stream_train_dataset(shards, 7, seed=1, shuffle_buffer=shuffle_buffer, cycle_length=2),
                            2 * n)
        assert again == two_passes  # seeded: the same order every run


def test_passes_are_reshuffled_and_batches_match_the_in_memory_pipeline(written):
    _, shards, features = written
    n = len(features)
    stream = [merged(b) for b in train_dataset(shards, n, seed=3).take(2)]
    memory = [merged(b) for b in train_dataset(features, n, seed=3).take(2)]
    assert [sorted(b) for b in stream] == [sorted(b) for b in memory]  # same element structure
    assert train_dataset(shards, n, seed=3).element_spec == train_dataset(features, n, seed=3).element_spec
    assert all(b[k].dtype == m[k].dtype for b, m in zip(stream, memory) for k in b)
    assert not np.array_equal(stream[0]["input_ids"], stream[1]["input_ids"])  # reshuffled each pass
    for batch in stream:  # trimmed to the longest window, as in memory
        assert batch["input_ids"].shape[1] == batch["attention_mask"].sum(1).max()
    assert "token_type_ids" not in next(iter(train_dataset(shards, 4, seed=0, input_names={"input_ids",
                                                                                       "attention_mask"})))[0]
    fixed = next(iter(train_dataset(shards, 4, seed=0, drop_remainder=True)))[0]
    assert fixed["input_ids"].shape == (4, SETTINGS["max_seq_length"])


def test_the_index_is_written_last(wordpiece_tokenizer, tmp_path, monkeypatch):
    import tfqa.training.feature_shards

    real = tfqa.training.feature_shards.write_json_atomic
    seen = []

    def check(path, obj):
        folder = path.parent
        seen.append(sorted(p.name for p in folder.iterdir()))
        assert sorted(obj["files"]) == [p.name for p in sorted(folder.glob("*.tfrecord"))]  # all renamed into place
        return real(path, obj)

    monkeypatch.setattr(tfqa.training.feature_shards, "write_json_atomic", check)
    streamed_features(tiny_examples(), wordpiece_tokenizer, tmp_path, num_shards=2, config=CONFIG)
    assert seen and INDEX not in seen[0] and not [n for n in seen[0] if ".tmp" in n]


def test_an_interrupted_write_leaves_no_entry(wordpiece_tokenizer, tmp_path, monkeypatch):
    import tfqa.training.feature_shards

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    examples = tiny_examples()
    calls = iter([tfqa.training.feature_shards.prepare_features, interrupted])
    monkeypatch.setattr(tfqa.training.feature_shards, "prepare_features", lambda *a, **k: next(calls)(*a, **k))
    with pytest.raises(KeyboardInterrupt):
        streamed_features(examples, wordpiece_tokenizer, tmp_path, num_shards=2, chunk_size=4, config=CONFIG)
    folder, = tmp_path.glob("features-*")
    assert FeatureShards.load(folder) is None and not list(folder.iterdir())


def test_an_entry_without_its_index_is_rebuilt(written, wordpiece_tokenizer, tmp_path):
    examples, shards, features = written
    (shards.folder / INDEX).unlink()  # as if killed after the shards, before the index
    with open(shards.files[1], "r+b") as f:
        f.truncate(10)  # and mid-file
    assert FeatureShards.load(shards.folder) is None
    rebuilt, reused = streamed_features(examples, wordpiece_tokenizer, tmp_path, num_shards=3, config=CONFIG)
    assert not reused and len(rebuilt) == len(features)
    assert sorted(rows(rebuilt.read(), SETTINGS["max_seq_length"])) == feature_rows(features)


def test_two_input_pipelines_split_the_files(written):
    _, shards, features = written
    counts = json.loads((shards.folder / INDEX).read_text())["shard_windows"]
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                             num_replicas_in_sync=2)
        mine = counts[pipeline::2]  # files 0, 2 | file 1
        got = stream_rows(stream_train_dataset(shards, 4, seed=0, input_context=context), sum(mine))
        seen += got
    assert sorted(seen) == feature_rows(features)  # a partition: together every window, once
    one_file = dataclasses.replace(shards, files=shards.files[:1])  # fewer files than pipelines: by window
    assert len(stream_rows(stream_train_dataset(one_file, 4, seed=0, input_context=tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)), 2)) == 2
    policy = tf.data.experimental.AutoShardPolicy
    assert stream_train_dataset(shards, 4, 0, num_workers=3).options().experimental_distribute.auto_shard_policy \
        == policy.FILE
    assert stream_train_dataset(shards, 4, 0, num_workers=4).options().experimental_distribute.auto_shard_policy \
        == policy.DATA


def test_stream_features_needs_a_cache_dir():
    from tfqa.core.config import TrainConfig

    assert any("--cache_dir" in p for p in TrainConfig(stream_features=True).validate())
    assert not any("stream" in p for p in TrainConfig(stream_features=True, cache_dir="c").validate())


def test_a_tiny_run_trains_from_the_stream(tmp_path, monkeypatch):
    from test_training import SMALL

    from tfqa.core.config import TrainConfig
    from tfqa.core.files import write_json_atomic
    from tfqa.core.synthetic import synthetic_squad
    from tfqa.training.run import train_and_evaluate

    train = write_json_atomic(tmp_path / "train.json", synthetic_squad(12, seed=1))
    dev = write_json_atomic(tmp_path / "dev.json", synthetic_squad(4, seed=2, name_offset=2000))
    import tfqa.training.run

    trained_on = []
    real_fit = tfqa.training.run.fit
    monkeypatch.setattr(tfqa.training.run, "fit", lambda model, features, *a, **k: trained_on.append(features)
                        or real_fit(model, features, *a, **k))
    config = TrainConfig(train_file=str(train), predict_file=str(dev), output_dir=str(tmp_path / "run"),
                         cache_dir=str(tmp_path / "cache"), stream_features=True, num_train_epochs=1,
                         export_dir="none", **SMALL)
    results = train_and_evaluate(config)
    assert [e["epoch"] for e in results["epochs"]] == [1] and "exact" in results
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    shards = [FeatureShards.load(p) for p in (tmp_path / "cache").glob("features-*") if p.is_dir()]
    assert len(shards) == 1 and history["train_windows"] == len(shards[0])
    assert trained_on == shards  # fit got the shards, not windows in memory
    assert history["steps_per_epoch"] == -(-len(shards[0]) // SMALL["per_replica_batch_size"])
    for name in ("tf_model.h5", "predictions.json", "eval_results.json", "checkpoints/epoch-01.h5"):
        assert (tmp_path / "run" / name).exists(), name
