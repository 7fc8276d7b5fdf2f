"""The training pipeline: deterministic reshuffling, global batches, padding trimmed per batch, labels apart."""

from __future__ import annotations

import numpy as np
from helpers import tiny_examples

from tfqa.core.features import prepare_features
from tfqa.modeling.pipeline import predict_dataset
from tfqa.training.datasets import train_dataset

SETTINGS = dict(max_seq_length=48, doc_stride=12, max_query_length=12)


def first_batches(ds, n):
    """The first `n` training batches, inputs and labels in one dict (checking that they come apart)."""
    batches = []
    for inputs, labels in ds.take(n):
        assert sorted(labels) == ["end_positions", "start_positions"] and not set(labels) & set(inputs)
        batches.append({k: v.numpy() for k, v in {**inputs, **labels}.items()})
    return batches


def test_same_seed_same_order_and_epochs_reshuffle(wordpiece_tokenizer):
    features = prepare_features(tiny_examples(), wordpiece_tokenizer, **SETTINGS)
    n = len(features)
    a = first_batches(train_dataset(features, n, seed=1), 2)
    b = first_batches(train_dataset(features, n, seed=1), 2)
    assert all(np.array_equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, b))
    assert not np.array_equal(a[0]["start_positions"], a[1]["start_positions"])  # reshuffled each pass
    assert sorted(a[0]["start_positions"]) == sorted(features.start_positions)  # every window once per pass


def test_batches_are_trimmed_to_their_longest_window(wordpiece_tokenizer):
    features = prepare_features(tiny_examples(), wordpiece_tokenizer, **SETTINGS)
    for batch in first_batches(train_dataset(features, 4, seed=0), 8):
        assert batch["input_ids"].shape[1] == batch["attention_mask"].sum(1).max() <= SETTINGS["max_seq_length"]
        assert batch["start_positions"].max() < batch["input_ids"].shape[1]
    fixed = first_batches(train_dataset(features, 4, seed=0, drop_remainder=True), 3)
    assert {b["input_ids"].shape for b in fixed} == {(4, SETTINGS["max_seq_length"])}  # XLA: one shape
    assert next(iter(predict_dataset(features, 4)))["input_ids"].shape[1] == SETTINGS["max_seq_length"]


def test_trimming_leaves_the_logits_of_real_tokens_unchanged(wordpiece_tokenizer):
    from tfqa.modeling.checkpoints import tiny_distilbert

    features = prepare_features(tiny_examples(), wordpiece_tokenizer, **SETTINGS)
    model = tiny_distilbert(len(wordpiece_tokenizer), SETTINGS["max_seq_length"], dim=8, n_heads=2)
    batches = first_batches(train_dataset(features, 2, seed=0, input_names={"input_ids", "attention_mask"}), 20)
    trimmed = min(batches, key=lambda b: b["input_ids"].shape[1])
    width = trimmed["input_ids"].shape[1]
    assert width < SETTINGS["max_seq_length"]
    inputs = {k: trimmed[k] for k in ("input_ids", "attention_mask")}
    padded = {k: np.pad(v, [(0, 0), (0, SETTINGS["max_seq_length"] - width)]) for k, v in inputs.items()}
    short, full = model(inputs, training=False), model(padded, training=False)
    real = inputs["attention_mask"].astype(bool)
    for name in ("start_logits", "end_logits"):
        np.testing.assert_allclose(short[name].numpy()[real], full[name].numpy()[:, :width][real], rtol=1e-5, atol=1e-5)
