"""prepare_features: windows, labels and bookkeeping, checked against the standard HF approach."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers import load_real, make_example, tiny_examples

from reference import standard_features
from tfqa.core.features import FeatureConfig, _max_context_window, pair_template, prepare_features, window_starts
from tfqa.core.metrics import normalize_answer

SMALL = dict(max_seq_length=24, doc_stride=5, max_query_length=8)


def assert_same_as_standard(examples, tokenizer, **settings):
    ours = prepare_features(examples, tokenizer, **settings)
    theirs = standard_features(examples, tokenizer, **settings)
    assert set(theirs) >= {"input_ids", "attention_mask", "example_index", "start_positions", "offsets"}
    for name, expected in theirs.items():
        np.testing.assert_array_equal(getattr(ours, name), expected, err_msg=name)
    if "token_type_ids" not in theirs:
        assert ours.token_type_ids is None
    return ours


def test_window_starts_match_the_docstring_example():
    assert window_starts(13, 5, 2) == [0, 3, 6, 9]
    assert window_starts(5, 5, 2) == [0]
    assert window_starts(0, 5, 2) == [0]


def test_max_context_worked_example():
    # "the man went to the store and bought a gallon of milk": windows of 5 tokens
    # at 0, 3, 6 ... as in the comment in tfqa/core/features.py; "bought" (7) belongs to window C.
    best = _max_context_window(12, [0, 3, 6, 9], 5)
    assert best[7] == 2
    assert best[0] == 0 and best[11] == 3


@pytest.mark.parametrize("name", ["wordpiece_tokenizer", "bpe_tokenizer", "unigram_tokenizer"])
def test_identical_to_the_standard_pair_approach(request, name):
    tokenizer = request.getfixturevalue(name)
    # The baseline can only shorten a question by decoding its first tokens back to text, which
    # does not round-trip with this tiny Unigram vocab's <unk>s: keep its questions whole.
    settings = SMALL if name != "unigram_tokenizer" else dict(max_seq_length=64, doc_stride=8, max_query_length=40)
    features = assert_same_as_standard(tiny_examples(), tokenizer, **settings)
    assert len(features) > 2 * len(tiny_examples())  # long contexts really were split


def test_left_padding(wordpiece_tokenizer):
    left = copy.deepcopy(wordpiece_tokenizer)  # keep the session fixture right-padded
    left.padding_side = "left"
    features = assert_same_as_standard(tiny_examples(), left, **SMALL)
    assert (features.attention_mask[:, -1] == 1).all()
    assert (features.input_ids[np.arange(len(features)), features.cls_index] == left.cls_token_id).all()
    assert_labels_decode_to_answers(tiny_examples(), features)


def assert_labels_decode_to_answers(examples, features):
    for i in range(len(features)):
        example = examples[features.example_index[i]]
        s, e = features.start_positions[i], features.end_positions[i]
        if s == features.cls_index[i]:
            continue
        text = example.context[features.offsets[i, s, 0]:features.offsets[i, e, 1]]
        assert normalize_answer(text) == normalize_answer(example.answers[0].text), (example.id, text)


def test_labels_and_bookkeeping(wordpiece_tokenizer):
    examples = tiny_examples()
    f = prepare_features(examples, wordpiece_tokenizer, **SMALL)
    assert_labels_decode_to_answers(examples, f)
    labelled = {examples[i].id for i, s, c in zip(f.example_index, f.start_positions, f.cls_index) if s != c}
    assert labelled == {e.id for e in examples if e.answers}  # every answer lies fully in some window
    impossible = f.example_index == 5
    assert (f.start_positions[impossible] == f.cls_index[impossible]).all()
    # Offsets only on context tokens; each context token is max-context in exactly one window.
    is_context = f.offsets[:, :, 0] >= 0
    assert (f.token_type_ids[is_context] == 1).all() and not is_context[:, 0].any()
    assert not (f.token_is_max_context & ~is_context).any()
    for ex_i, example in enumerate(examples):
        rows = f.example_index == ex_i
        starts = f.offsets[rows][f.token_is_max_context[rows]][:, 0]
        n_tokens = len(wordpiece_tokenizer(example.context, add_special_tokens=False)["input_ids"])
        assert sorted(starts) == sorted(set(starts)) and len(starts) == n_tokens


def test_answer_partly_outside_a_window_is_labelled_cls(wordpiece_tokenizer):
    context = "the cat sat on the mat near the old red barn . " * 4
    example = make_example("x", "where did the cat sit?", context, "the old red barn", occurrence=1)
    f = prepare_features([example], wordpiece_tokenizer, max_seq_length=20, doc_stride=3, max_query_length=8)
    start_char, end_char = example.answers[0].start, example.answers[0].end
    for i in range(len(f)):
        ctx = f.offsets[i][f.offsets[i, :, 0] >= 0]
        inside = ctx[0, 0] <= start_char and ctx[-1, 1] >= end_char
        assert (f.start_positions[i] != f.cls_index[i]) == inside


def test_long_questions_are_truncated(wordpiece_tokenizer):
    question = "where did the cat sit " * 10
    f = prepare_features([make_example("x", question, "the cat sat on the mat", "on the mat")],
                         wordpiece_tokenizer, max_seq_length=24, doc_stride=2, max_query_length=6)
    sep = wordpiece_tokenizer.sep_token_id
    assert list(f.input_ids[0]).index(sep) == 1 + 6


def test_pair_template_reads_the_tokenizer_layout(wordpiece_tokenizer, bpe_tokenizer):
    bert = pair_template(wordpiece_tokenizer)
    assert (bert.prefix, bert.middle, bert.suffix) == ((2,), (3,), (3,))
    assert bert.type_ids == (0, 0, 0, 1, 1)
    roberta = pair_template(bpe_tokenizer)
    assert len(roberta.middle) == 2 and roberta.type_ids is None


def test_invalid_settings_and_slow_tokenizers(wordpiece_tokenizer, tmp_path):
    with pytest.raises(ValueError, match="doc_stride"):
        prepare_features(tiny_examples(), wordpiece_tokenizer, max_seq_length=64, doc_stride=60)
    with pytest.raises(ValueError):
        FeatureConfig(max_seq_length=0).validate()
    from transformers import BertTokenizer

    wordpiece_tokenizer.save_vocabulary(str(tmp_path))
    with pytest.raises(TypeError, match="fast tokenizer"):
        prepare_features(tiny_examples(), BertTokenizer(str(tmp_path / "vocab.txt")))


@pytest.mark.real_data
def test_real_dev_labels_decode_to_gold_answers(real_tokenizer):
    examples, f = load_real("dev-v1.1.json.gz", real_tokenizer)
    found = set()
    for i in np.nonzero(f.start_positions != f.cls_index)[0]:
        example = examples[f.example_index[i]]
        text = example.context[f.offsets[i, f.start_positions[i], 0]:f.offsets[i, f.end_positions[i], 1]]
        if any(normalize_answer(text) == normalize_answer(a.text) for a in example.answers):
            found.add(example.id)
    rate = len(found) / len(examples)
    assert rate >= 0.997, rate


@pytest.mark.real_data
def test_real_dev_identical_to_standard_approach(real_tokenizer):
    examples, _ = load_real("dev-v2.0-subset.json.gz", real_tokenizer)
    assert_same_as_standard(examples[:600], real_tokenizer)
