"""The TFRecord feature cache: exact round trip, reuse, and keys that change with what shapes the features."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import make_example, tiny_examples

from tfqa.core.config import FeatureConfig
from tfqa.training.feature_cache import cache_key, cached_features
from tfqa.core.features import prepare_features

SETTINGS = dict(max_seq_length=24, doc_stride=6, max_query_length=8)


def assert_same(a, b):
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert (x is None) == (y is None), f.name
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), f.name


@pytest.mark.parametrize("tokenizer", ["wordpiece_tokenizer", "bpe_tokenizer"])
def test_round_trip_and_reuse(tokenizer, request, tmp_path):
    tok = request.getfixturevalue(tokenizer)
    examples = tiny_examples()
    fresh = prepare_features(examples, tok, **SETTINGS)
    first, reused_first = cached_features(examples, tok, tmp_path, FeatureConfig(**SETTINGS))
    second, reused_second = cached_features(examples, tok, tmp_path, FeatureConfig(**SETTINGS))
    assert (reused_first, reused_second) == (False, True)
    assert_same(fresh, first)
    assert_same(fresh, second)
    assert not list(tmp_path.glob("*.tmp"))


def test_key_changes_with_data_tokenizer_and_settings(wordpiece_tokenizer, bpe_tokenizer):
    examples = tiny_examples()
    key = cache_key(examples, wordpiece_tokenizer, FeatureConfig(**SETTINGS))
    assert key == cache_key(tiny_examples(), wordpiece_tokenizer, FeatureConfig(**dict(SETTINGS)))
    edited = [make_example("other", "who?", examples[0].context)] + examples[1:]
    assert cache_key(edited, wordpiece_tokenizer, FeatureConfig(**SETTINGS)) != key
    assert cache_key(examples, bpe_tokenizer, FeatureConfig(**SETTINGS)) != key
    assert cache_key(examples, wordpiece_tokenizer, FeatureConfig(**{**SETTINGS, "doc_stride": 7})) != key


def test_an_entry_without_its_index_is_rebuilt(wordpiece_tokenizer, tmp_path):
    examples = tiny_examples()
    cached_features(examples, wordpiece_tokenizer, tmp_path, FeatureConfig(**SETTINGS))
    for index in tmp_path.glob("*.json"):
        index.unlink()  # as if the run was killed between the records and the index
    features, reused = cached_features(examples, wordpiece_tokenizer, tmp_path, FeatureConfig(**SETTINGS))
    assert not reused
    assert_same(prepare_features(examples, wordpiece_tokenizer, **SETTINGS), features)


def test_training_reuses_the_cache(wordpiece_tokenizer, tmp_path, capsys):
    from tfqa.core.config import TrainConfig
    from tfqa.apps.console import CONSOLE
    from tfqa.training.run import make_features

    config = TrainConfig(cache_dir=str(tmp_path / "cache"), **SETTINGS)
    first = make_features(tiny_examples(), wordpiece_tokenizer, config, "training", reporter=CONSOLE)
    second = make_features(tiny_examples(), wordpiece_tokenizer, config, "training", reporter=CONSOLE)
    assert_same(first, second)
    err = capsys.readouterr().err
    assert f"training features: cached in {tmp_path / 'cache'}" in err and "reused from" in err
