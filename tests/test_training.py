"""Training: a tiny end-to-end run, the saved model's round trip, 2-replica parity, resume, flags."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT

from tfqa.core.config import TrainConfig
from tfqa.core.files import write_json_atomic
from tfqa.core.synthetic import synthetic_squad

SMALL = dict(version_2_with_negative=True, max_seq_length=64, doc_stride=16, max_query_length=16,
             per_replica_batch_size=8, learning_rate=1e-3, eval_batch_size=32, preset="smoke", seed=3)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    train = write_json_atomic(folder / "train.json", synthetic_squad(12, seed=1))
    dev = write_json_atomic(folder / "dev.json", synthetic_squad(4, seed=2, name_offset=2000))
    return str(train), str(dev)


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    from tfqa.training.run import train_and_evaluate

    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(train_file=tiny_data[0], predict_file=tiny_data[1], output_dir=str(out),
                         num_train_epochs=2, **SMALL)
    return config, train_and_evaluate(config)


def test_run_writes_everything(trained):
    config, results = trained
    out = config.output_dir
    for name in ("config.json", "tf_model.h5", "tokenizer.json", "vocab.txt", "predictions.json",
                 "nbest_predictions.json", "null_odds.json", "eval_results.json", "tfqa_config.json",
                 "checkpoints/epoch-02.h5"):
        assert os.path.exists(os.path.join(out, name)), name
    assert os.listdir(os.path.join(out, "logs"))  # TensorBoard
    assert [e["epoch"] for e in results["epochs"]] == [1, 2] and "exact" in results
    saved = json.load(open(os.path.join(out, "eval_results.json")))
    assert saved["exact"] == results["exact"]


def test_run_draws_its_plot_and_keeps_every_steps_loss(trained):
    from test_report import png_size

    config, results = trained
    out = config.output_dir
    assert png_size(Path(out, "training.png")) == (1100, 400)  # loss per step | dev EM/F1 per epoch
    assert 10_000 < os.path.getsize(os.path.join(out, "training.png")) < 200_000
    history = json.load(open(os.path.join(out, "history.json")))
    from tfqa import load_squad

    assert history["train_questions"] == len(load_squad(config.train_file))
    assert history["eval_questions"] == len(load_squad(config.predict_file)) == results["total"]
    steps = history["steps_per_epoch"]
    assert steps == math.ceil(history["train_windows"] / 8) and history["epochs_planned"] == 2
    assert [(e["epoch"], len(e["step_losses"])) for e in history["epochs"]] == [(1, steps), (2, steps)]
    for record, evaluated in zip(history["epochs"], results["epochs"]):
        # The recovered step losses average to the epoch's loss; the dev metrics are the evaluator's.
        assert np.mean(record["step_losses"]) == pytest.approx(record["loss"], rel=1e-4)
        assert record["f1"] == evaluated["f1"] and "HasAns_f1" in record
    assert history["export"] == results["export"] and history["final"]["f1"] == results["f1"]


def test_inspect_reports_the_tiny_run(trained, capsys):
    from tfqa.apps.cli import main

    config, results = trained
    best = max(results["epochs"], key=lambda e: (e["f1"], -e["epoch"]))
    assert main(["inspect", config.output_dir]) == 0
    text = capsys.readouterr().out
    assert f"best      epoch {best['epoch']}: F1 {best['f1']:.2f}, EM {best['exact']:.2f}" in text
    assert f"final     EM {results['exact']:.2f}, F1 {results['f1']:.2f} on {results['total']} questions" in text
    model = json.load(open(os.path.join(config.output_dir, "config.json")))
    assert f"hidden size {model['dim']}, {model['n_layers']} layers" in text and "missing" not in text
    history = json.load(open(os.path.join(config.output_dir, "history.json")))
    assert f"train {config.train_file}: {history['train_questions']} questions" in text and "SQuAD 2.0" in text
    assert f"export    {Path(results['export']).parent}: version 1 (newest: {results['export']})" in text
    assert f"plot      {os.path.join(config.output_dir, 'training.png')}" in text
    assert main(["inspect", config.output_dir, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["best_epoch"]["epoch"] == best["epoch"] and report["export"]["newest"] == results["export"]
    assert [e["epoch"] for e in report["epochs"]] == [1, 2] and report["model"]["model_type"] == "distilbert"


def test_training_ends_with_an_export_that_serves_its_answers(trained):
    """train → export/tfqa/1 → the TF-Serving-compatible server → the same answers as predictions.json."""
    from starlette.testclient import TestClient

    from tfqa import load_squad
    from tfqa.rest.server import create_app

    config, results = trained
    assert results["export"] == os.path.join(config.output_dir, "export", "tfqa", "1")
    predictions = json.load(open(os.path.join(config.output_dir, "predictions.json")))
    examples = load_squad(config.predict_file)
    client = TestClient(create_app(os.path.join(config.output_dir, "export", "tfqa")))
    response = client.post("/v1/models/tfqa:predict", json={
        "instances": [{"question": e.question, "context": e.context} for e in examples]})
    assert response.status_code == 200, response.text
    answers = [row["answer"] for row in response.json()["predictions"]]
    assert answers == [predictions[e.id] for e in examples]


def test_saved_model_round_trip_same_logits(trained):
    from transformers import AutoTokenizer, TFAutoModelForQuestionAnswering

    from tfqa import load_squad, prepare_features

    config, _ = trained
    model = TFAutoModelForQuestionAnswering.from_pretrained(config.output_dir)
    tokenizer = AutoTokenizer.from_pretrained(config.output_dir)
    examples = load_squad(config.predict_file)
    f = prepare_features(examples, tokenizer, max_seq_length=64, doc_stride=16, max_query_length=16)
    logits = model(f.model_inputs()).start_logits.numpy()
    # The predictions file came from the trained model in memory: the reloaded one gives the same answers,
    # decoded with the run's saved settings (its null threshold is the one tuned on dev: "auto").
    from tfqa.core.decoding import decode_predictions
    from tfqa.core.run_dir import load_settings

    out = model(f.model_inputs())
    decoding = load_settings(config.output_dir).for_squad_version("2.0").decoding
    predictions, _, _ = decode_predictions(examples, f, out.start_logits.numpy(), out.end_logits.numpy(),
                                           config=decoding)
    assert predictions == json.load(open(os.path.join(config.output_dir, "predictions.json")))
    assert np.isfinite(logits).all()


def test_predict_cli_writes_the_same_files(trained, tmp_path):
    config, _ = trained
    proc = subprocess.run([sys.executable, "-m", "tfqa", "predict", "--model", config.output_dir, "--data",
                           config.predict_file, "--output", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.load(open(tmp_path / "predictions.json")) == json.load(
        open(os.path.join(config.output_dir, "predictions.json")))
    assert (tmp_path / "null_odds.json").exists() and (tmp_path / "nbest_predictions.json").exists()


def step_losses(strategy, features, steps=6):
    import tensorflow as tf

    from tfqa.modeling.checkpoints import tiny_distilbert
    from tfqa.training.datasets import train_dataset
    from tfqa.modeling.pipeline import input_names
    from tfqa.training.fitting import make_optimizer
    from tfqa.training.train_step import use_qa_train_step

    config = TrainConfig(**{**SMALL, "learning_rate": 3e-4})
    with strategy.scope():
        model = tiny_distilbert(200, 64, dim=16, n_layers=2, n_heads=2, seed=0, initializer_range=0.02)
        model.compile(optimizer=make_optimizer(config, steps))
    use_qa_train_step(model)
    losses = []
    model.fit(train_dataset(features, 8, seed=0, input_names=input_names(model)), epochs=steps, steps_per_epoch=1, verbose=0,
              callbacks=[tf.keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: losses.append(logs["loss"]))])
    return np.array(losses)


def test_two_replicas_match_one_at_the_same_global_batch(wordpiece_tokenizer):
    import tensorflow as tf

    from tfqa import load_squad, prepare_features

    assert len(tf.config.list_logical_devices("CPU")) == 2
    from helpers import tiny_examples

    features = prepare_features(tiny_examples() * 3, wordpiece_tokenizer, max_seq_length=64, doc_stride=16,
                                max_query_length=16)
    one = step_losses(tf.distribute.MirroredStrategy(["/cpu:0"]), features)
    two = step_losses(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), features)
    assert one[-1] < one[0]  # it learns
    np.testing.assert_allclose(two, one, rtol=2e-3, atol=2e-4)


def keras_hub_fit(strategy, features, per_replica_batch_size, steps=6, **settings):
    """(running-mean loss after every step, weight change) of a tiny keras_hub model fit for `steps` steps under
    `strategy` by tfqa's `fit` (Keras 3 AdamW with clipping, tfqa's Keras 3 train step)."""
    import keras
    import tensorflow as tf

    from tfqa.modeling.keras_hub_qa import tiny_distilbert
    from tfqa.modeling.precision import precision
    from tfqa.training.fitting import fit

    config = TrainConfig(**{**SMALL, "backend": "keras_hub", "per_replica_batch_size": per_replica_batch_size,
                            "max_steps": steps, "warmup_ratio": 0.0, **settings})
    with strategy.scope(), precision(config.mixed_precision):
        model = tiny_distilbert(200, 64, dim=16, n_layers=2, n_heads=2, seed=0)

    def weights():
        # The QA head's bias has a gradient of 0 up to float noise (a softmax over positions ignores a constant),
        # which AdamW (÷ √v) turns into moves of up to a learning rate either way: nothing to compare there.
        return np.concatenate([tf.convert_to_tensor(v).numpy().ravel() for v in model.trainable_variables
                               if not ("qa_outputs" in v.path and v.path.endswith("bias"))])

    start, losses = weights(), []
    fit(model, features, config, strategy, verbose=0,
        callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: losses.append(logs["loss"]))])
    assert model.distribute_strategy is strategy and int(model.optimizer.iterations.numpy()) == steps
    return np.array(losses), weights() - start


@pytest.mark.parametrize("replicas", [0, 1])
def test_keras3_adamw_steps_a_repeated_sparse_index_by_its_summed_gradient(replicas):
    """An embedding's gradient has one slice per token, repeats included: tfqa's Keras 3 AdamW sums them before
    Adam squares them, so a token seen twice moves as with the dense gradient (Keras 3's own AdamW moved it by
    √2 × the learning rate in its first step: Σg² in its second moment where (Σg)² belongs)."""
    import keras
    import tensorflow as tf

    from tfqa.training.keras3_step import make_keras3_optimizer

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"]) if replicas else tf.distribute.get_strategy()
    config = TrainConfig(learning_rate=1e-3, warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=0.0)
    sparse = tf.IndexedSlices(tf.constant([[1.0], [1.0]]), tf.constant([0, 0]), tf.constant([2, 1]))
    moved = []
    for gradient in (sparse, tf.convert_to_tensor(sparse)):
        with strategy.scope():
            variable = keras.Variable(np.zeros((2, 1), "float32"))
            optimizer = make_keras3_optimizer(config, total_steps=10)
        tf.function(lambda: strategy.run(lambda: optimizer.apply_gradients([(gradient, variable)])))()
        moved.append(tf.convert_to_tensor(variable).numpy())
    np.testing.assert_allclose(moved[0], moved[1], rtol=1e-6)
    np.testing.assert_allclose(moved[1], [[-1e-3], [0.0]], rtol=1e-4)  # Adam's first step: the learning rate


@pytest.mark.parametrize("max_grad_norm, mixed_precision", [(1.0, "no"), (0.0, "no"), (1.0, "fp16")])
def test_keras_hub_two_replicas_match_one_at_the_same_global_batch(wordpiece_tokenizer, max_grad_norm,
                                                                   mixed_precision):
    """The keras_hub backend under MirroredStrategy: 2 replicas × 4 windows train as 1 replica × 8 windows,
    with the gradients clipped (the default --max_grad_norm 1, which acts on this model) and without, and in
    float16 (Keras 3's LossScaleOptimizer applies the replicas' gradients through a merge call)."""
    import tensorflow as tf
    from helpers import tiny_examples

    from tfqa import prepare_features

    assert len(tf.config.list_logical_devices("CPU")) == 2
    features = prepare_features(tiny_examples() * 3, wordpiece_tokenizer, max_seq_length=64, doc_stride=16,
                                max_query_length=16)
    settings = dict(max_grad_norm=max_grad_norm, mixed_precision=mixed_precision)
    # Reduced through one device, not CPU collectives: Keras 3 all-reduces inside its step, and TensorFlow
    # keeps collective instances per process, so a 2-device strategy of an earlier test (the tf-keras one above)
    # made these fail with "Shape mismatch in the collective instance 100" (one strategy per real run).
    replicas = {n: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"][:n],
                                                  cross_device_ops=tf.distribute.ReductionToOneDevice())
                for n in (1, 2)}
    one, one_change = keras_hub_fit(replicas[1], features, 8, **settings)
    two, two_change = keras_hub_fit(replicas[2], features, 4, **settings)
    assert one[-1] < one[0]  # it learns
    np.testing.assert_allclose(two, one, rtol=2e-5)
    # How far from the one-replica training, relative to how far that moved. AdamW divides by √v: float-order
    # noise in near-zero gradients moves such weights by a fraction of a step, hence no per-weight comparison.
    # Measured 2.7e-4 (clipped), 4e-4 and 7e-3 (float16 activations); 0.07 with Keras 3's own clipping (each
    # replica's gradient clipped on its own, before the all-reduce: see tfqa.training.keras3_step.AdamW).
    limit = 3e-2 if mixed_precision == "fp16" else 1e-2
    assert np.linalg.norm(two_change - one_change) / np.linalg.norm(one_change) < limit


@pytest.mark.parametrize("backend, model_file", [("transformers", "tf_model.h5"), ("keras_hub", "model.keras")])
def test_killed_run_resumes_from_its_last_checkpoint(tiny_data, tmp_path, backend, model_file):
    """SIGKILL after epoch 1; the rerun resumes from BackupAndRestore's OUTPUT_DIR/backup/ (tf-keras' or,
    on keras_hub, Keras 3's) at epoch 2, and history.json keeps every epoch once."""
    from tfqa.core.run_dir import checkpoint_path

    out = tmp_path / "run"
    cmd = [sys.executable, "train_keras.py", "--preset", "smoke", "--train_file", tiny_data[0], "--predict_file",
           tiny_data[1], "--output_dir", str(out), "--num_train_epochs", "3", "--max_seq_length", "64",
           "--doc_stride", "16", "--per_gpu_train_batch_size", "4", "--do_train", "--backend", backend]
    first_checkpoint = checkpoint_path(out, 1, backend)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.time() + 240
    while not first_checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    first_log = proc.communicate()[0]
    assert first_checkpoint.exists(), first_log[-3000:]
    assert not (out / model_file).exists(), first_log[-3000:]  # it really was cut off before the end
    assert any((out / "backup").rglob("*")), first_log[-3000:]
    # A window size the backup was not trained with: one line naming the flag, nothing written.
    files = sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*"))
    wrong = subprocess.run([*cmd, "--max_seq_length", "96"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr, wrong.stderr[-3000:]
    assert wrong.stderr.strip() == (f"train_keras.py: error: --max_seq_length 96: the interrupted run in {out} was "
                                    "trained with 64; resume with --max_seq_length 64 or pass --overwrite_output_dir")
    assert sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*")) == files
    # The learning rate may change on resume; the resume says so, and each epoch keeps the rate it trained at.
    again = subprocess.run([*cmd, "--learning_rate", "0.002"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, "\n".join(l for l in again.stderr.splitlines() if "WARNING" not in l)[-3000:]
    log = again.stdout + again.stderr
    assert "epoch 1/3: training" not in log and "epoch 2/3: training" in log and "epoch 3/3: training" in log, \
        (first_log[-2000:], log[-2000:])
    assert f"resuming the interrupted run in {out} at epoch 2 of 3 (after " in again.stderr
    assert "1 epoch complete); changed: --learning_rate 0.001 → 0.002" in again.stderr
    assert (out / model_file).exists() and checkpoint_path(out, 3, backend).exists()
    assert not (out / "backup").exists()  # BackupAndRestore removes its backup at the end, the run its folder
    # The history and the plot continue the first attempt's: every epoch once, all its steps.
    history = json.loads((out / "history.json").read_text())
    assert [(e["epoch"], len(e["step_losses"])) for e in history["epochs"]] == [
        (epoch, history["steps_per_epoch"]) for epoch in (1, 2, 3)]
    assert [e["trained_with"]["learning_rate"] for e in history["epochs"]] == [0.001, 0.002, 0.002]
    inspect = subprocess.run([sys.executable, "-m", "tfqa", "inspect", str(out)], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
    assert "learning rate 0.001 (epoch 1), 0.002 (epochs 2–3)" in inspect.stdout, inspect.stdout
    assert (out / "training.png").stat().st_size > 10_000


def test_help_lists_every_flag_with_its_default():
    proc = subprocess.run([sys.executable, "train_keras.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for name in TrainConfig().to_dict():  # every setting, the composed FeatureConfig/DecodeConfig ones included
        assert f"--{name}" in text, name
    for flag in ("--per_gpu_train_batch_size", "--model_type", "--do_lower_case", "(default: 3e-05)",
                 "(default: 384)", "(default: 128)", "(default: 'distilbert-base-uncased')"):
        assert flag in text, flag


@pytest.mark.parametrize("args, message", [
    # issue 20: the message names the alias the user typed, not the setting's own name
    (["--per_gpu_train_batch_size", "-1"], "--per_gpu_train_batch_size must be positive"),
    (["--doc_stride", "400"], "--doc_stride 400 must be smaller"),
    (["--train_file", "/nope/train.json"], "--train_file /nope/train.json: no such file"),
    (["--warmup_ratio", "2"], "--warmup_ratio must be in [0, 1)"),
])
def test_invalid_flags_fail_fast(args, message):
    proc = subprocess.run([sys.executable, "train_keras.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_seed_command_flags_are_accepted():
    from tfqa.apps.train import build_train_parser
    from tfqa.core.config import from_args

    argv = ("--model_type distilbert --model_name_or_path distilbert-base-uncased --do_train --do_eval "
            "--do_lower_case --train_file x/train-v1.1.json --predict_file x/dev-v1.1.json "
            "--per_gpu_train_batch_size 12 --learning_rate 3e-5 --num_train_epochs 2.0 --max_seq_length 384 "
            "--doc_stride 128 --output_dir /tmp/debug_squad/").split()
    config = from_args(build_train_parser().parse_args(argv))
    assert config.per_replica_batch_size == 12 and config.do_train and config.do_eval and config.doc_stride == 128
