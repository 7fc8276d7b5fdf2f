"""decode_predictions: the run_squad rules, vectorised, equal to the straightforward loop."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import load_real, make_example, tiny_examples

from reference import loop_decode
from tfqa.core.decoding import _top_k, decode_predictions
from tfqa.core.features import prepare_features
from tfqa.core.metrics import squad_metrics

SMALL = dict(max_seq_length=24, doc_stride=5, max_query_length=8)


def one_hot_logits(features):
    rows = np.arange(len(features))
    start = np.zeros(features.input_ids.shape, np.float32)
    end = np.zeros_like(start)
    start[rows, features.start_positions] = 1.0
    end[rows, features.end_positions] = 1.0
    return start, end


def random_logits(features, seed=0, boost=3.0):
    rng = np.random.default_rng(seed)
    rows = np.arange(len(features))
    start = rng.normal(size=features.input_ids.shape).astype(np.float32)
    end = rng.normal(size=features.input_ids.shape).astype(np.float32)
    start[rows, features.start_positions] += boost
    end[rows, features.end_positions] += boost
    return start, end


def assert_same_as_loop(examples, features, start, end, **kwargs):
    ours = decode_predictions(examples, features, start, end, **kwargs)
    loop = loop_decode(examples, features, start, end, **kwargs)
    assert ours[0] == loop[0]
    assert ours[2] == loop[2]
    for qid, entries in ours[1].items():
        assert len(entries) == len(loop[1][qid])
        for a, b in zip(entries, loop[1][qid]):
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-12)
            assert {k: v for k, v in a.items() if k != "probability"} == {
                k: v for k, v in b.items() if k != "probability"}
    return ours


def test_top_k_is_a_stable_descending_argsort():
    rng = np.random.default_rng(0)
    for trial in range(50):
        x = rng.integers(0, 3, size=(6, 40)).astype(np.float32) if trial % 2 else rng.normal(size=(6, 40))
        for k in (1, 7, 20, 40, 50):
            np.testing.assert_array_equal(_top_k(x, k), np.argsort(-x, axis=1, kind="stable")[:, :k])


def test_one_hot_logits_give_the_gold_answers(wordpiece_tokenizer):
    examples = tiny_examples()
    features = prepare_features(examples, wordpiece_tokenizer, **SMALL)
    predictions, nbest, null_odds = decode_predictions(examples, features, *one_hot_logits(features),
                                                       version_2_with_negative=True)
    assert predictions == {e.id: e.answers[0].text if e.answers else "" for e in examples}
    assert set(null_odds) == set(predictions)


def test_padding_width_does_not_change_the_answers(wordpiece_tokenizer):
    """Padding positions never rank: padding wider (with large logits there) gives the same answers."""
    examples = tiny_examples()
    features = prepare_features(examples, wordpiece_tokenizer, **SMALL)
    start, end = random_logits(features, seed=4)
    extra = 40
    wide = dataclasses.replace(features, **{
        name: np.pad(getattr(features, name), [(0, 0), (0, extra)] + [(0, 0)] * (getattr(features, name).ndim - 2),
                     constant_values=value)
        for name, value in (("input_ids", 0), ("attention_mask", 0), ("token_type_ids", 0), ("offsets", -1),
                            ("token_is_max_context", False))})
    noise = np.full((len(features), extra), 50.0, np.float32)  # would top every row if padding ranked
    narrow = decode_predictions(examples, features, start, end, n_best_size=5, version_2_with_negative=True)
    padded = decode_predictions(examples, wide, np.hstack([start, noise]), np.hstack([end, noise]), n_best_size=5,
                                version_2_with_negative=True)
    assert narrow[0] == padded[0] and narrow[2] == padded[2] and dict(narrow[1]) == dict(padded[1])


@pytest.mark.parametrize("v2", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_the_loop_on_random_logits(wordpiece_tokenizer, v2, seed):
    examples = tiny_examples()
    features = prepare_features(examples, wordpiece_tokenizer, **SMALL)
    start, end = random_logits(features, seed)
    for kwargs in (dict(), dict(n_best_size=3, max_answer_length=4, null_score_diff_threshold=-1.0)):
        assert_same_as_loop(examples, features, start, end, version_2_with_negative=v2, **kwargs)


def test_rules_length_order_context_and_max_context(wordpiece_tokenizer):
    example = make_example("x", "where did the cat sit?", "the cat sat on the mat near the old red barn .",
                           "on the mat")
    f = prepare_features([example], wordpiece_tokenizer, **SMALL)
    ctx = np.nonzero(f.offsets[0, :, 0] >= 0)[0]
    start, end = np.zeros((1, 24), np.float32), np.zeros((1, 24), np.float32)

    def best(**kwargs):
        return decode_predictions([example], f, start, end, **kwargs)[0]["x"]

    start[0, ctx[1]], end[0, ctx[6]] = 5, 5  # "cat ... near the"? 6 tokens long
    assert best() == example.context[f.offsets[0, ctx[1], 0]:f.offsets[0, ctx[6], 1]]
    assert best(max_answer_length=5) != best()
    start[0, 0], end[0, 0] = 9, 9  # CLS is never a span
    assert best() == example.context[f.offsets[0, ctx[1], 0]:f.offsets[0, ctx[6], 1]]
    start[0, ctx[4]], end[0, ctx[2]] = 20, 20  # end before start is never a span
    assert best() != example.context[f.offsets[0, ctx[2], 0]:f.offsets[0, ctx[4], 1]]
    f.token_is_max_context[0, ctx[1]] = False  # a start outside its max-context window is dropped
    assert not best().startswith("cat")


def test_null_odds_and_threshold(wordpiece_tokenizer):
    example = make_example("x", "where did the cat sit?", "the cat sat on the mat .", "on the mat")
    f = prepare_features([example], wordpiece_tokenizer, **SMALL)
    start, end = one_hot_logits(f)
    start *= 4.0  # best span scores 4 + 1 = 5
    start[0, f.cls_index[0]], end[0, f.cls_index[0]] = 2.0, 1.5  # null scores 3.5
    predictions, nbest, null_odds = decode_predictions([example], f, start, end, version_2_with_negative=True)
    assert null_odds["x"] == pytest.approx(-1.5) and predictions["x"] == "on the mat"
    predictions, _, _ = decode_predictions([example], f, start, end, version_2_with_negative=True,
                                           null_score_diff_threshold=-2.0)
    assert predictions["x"] == ""
    entries = nbest["x"]
    assert [e["text"] for e in entries].count("") == 1 and len({e["text"] for e in entries}) == len(entries)
    assert sum(e["probability"] for e in entries) == pytest.approx(1.0)
    assert set(entries[0]) == {"text", "probability", "start_logit", "end_logit", "answer_start"}
    assert example.context[entries[0]["answer_start"]:].startswith("on the mat")


def test_mismatched_logits_are_rejected(wordpiece_tokenizer):
    f = prepare_features(tiny_examples(), wordpiece_tokenizer, **SMALL)
    with pytest.raises(ValueError, match="do not match"):
        decode_predictions(tiny_examples(), f, np.zeros((1, 24)), np.zeros((1, 24)))


@pytest.mark.real_data
@pytest.mark.parametrize("name", ["dev-v1.1.json.gz", "dev-v2.0-subset.json.gz"])
def test_real_one_hot_logits_reproduce_gold(real_tokenizer, name):
    examples, features = load_real(name, real_tokenizer)
    v2 = any(e.is_impossible for e in examples)
    predictions, _, _ = decode_predictions(examples, features, *one_hot_logits(features),
                                           version_2_with_negative=v2)
    metrics = squad_metrics(examples, predictions)
    assert metrics["exact_match" if not v2 else "exact"] >= 99.6, metrics
    if v2:
        assert all(predictions[e.id] == "" for e in examples if e.is_impossible)


@pytest.mark.real_data
def test_real_equal_to_the_loop(real_tokenizer):
    examples, features = load_real("dev-v2.0-subset.json.gz", real_tokenizer)
    keep = features.example_index < 400
    subset = features.select(keep)
    start, end = random_logits(subset, seed=3)
    assert_same_as_loop(examples[:400], subset, start, end, version_2_with_negative=True)


def test_nbest_is_built_on_first_access_and_serialises(wordpiece_tokenizer):
    import json

    examples = tiny_examples()
    features = prepare_features(examples, wordpiece_tokenizer, **SMALL)
    predictions, nbest, _ = decode_predictions(examples, features, *random_logits(features))
    assert nbest._data is None
    as_json = json.loads(json.dumps(dict(nbest)))
    assert list(as_json) == [e.id for e in examples] and len(nbest) == len(examples)
    assert all(as_json[qid][0]["text"] == text for qid, text in predictions.items() if text)


def test_windows_out_of_example_order_are_regrouped(wordpiece_tokenizer):
    examples = tiny_examples()
    features = prepare_features(examples, wordpiece_tokenizer, **SMALL)
    start, end = random_logits(features, seed=5)
    expected = decode_predictions(examples, features, start, end, version_2_with_negative=True)
    shuffled = np.random.default_rng(0).permutation(len(features))
    got = decode_predictions(examples, features.select(shuffled), start[shuffled], end[shuffled],
                             version_2_with_negative=True)
    assert got[0] == expected[0] and got[2] == expected[2]
