"""Run reports: per-step loss recovery, history.json, training.png, `python -m tfqa inspect`, progress lines."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT

from tfqa.apps.cli import main
from tfqa.core.config import TrainConfig
from tfqa.core.history import history_steps, step_losses_from_running_means, write_training_plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def running_means(losses, dtype=np.float64):
    return (np.cumsum(np.asarray(losses, dtype=dtype)) / np.arange(1, len(losses) + 1)).astype(dtype).tolist()


def test_step_losses_exactly_invert_running_means():
    losses = np.random.default_rng(0).uniform(0.01, 6.0, size=500)
    np.testing.assert_allclose(step_losses_from_running_means(running_means(losses)), losses, rtol=1e-10)
    assert step_losses_from_running_means([]) == []
    # Float32 means, as tf-keras logs them: still within ~t × 1e-7 of the loss.
    recovered = step_losses_from_running_means(running_means(losses, np.float32))
    np.testing.assert_allclose(recovered, losses, atol=500 * 6.0 * 2e-7)


def synthetic_history(epochs=3, steps_per_epoch=20, evaluate=True, version_2=True):
    rng = np.random.default_rng(1)
    records = []
    for epoch in range(1, epochs + 1):
        step = np.arange((epoch - 1) * steps_per_epoch, epoch * steps_per_epoch)
        losses = (4 * np.exp(-step / 15) + 0.05 * rng.random(steps_per_epoch)).tolist()
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "step_losses": losses}
        if evaluate:
            f1 = [30.0, 71.5, 70.25, 64.0][epoch - 1]
            record.update(exact=f1 - 1, f1=f1, total=40)
            if version_2:
                record.update(HasAns_f1=f1 - 5, HasAns_total=30, NoAns_f1=f1 + 5, NoAns_total=10)
        records.append(record)
    return {"steps_per_epoch": steps_per_epoch, "train_questions": 50, "train_windows": 160, "eval_questions": 40,
            "eval_windows": 130, "replicas": 1, "global_batch": 8, "epochs": records}


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.parametrize("evaluate, size", [(True, (1100, 400)), (False, (700, 400))])
def test_plot_with_and_without_evaluation(tmp_path, evaluate, size):
    path = write_training_plot(tmp_path / "training.png", synthetic_history(evaluate=evaluate), "a title")
    assert png_size(path) == size and 10_000 < path.stat().st_size < 200_000
    assert [p.name for p in tmp_path.iterdir()] == ["training.png"]  # no temporary file left behind


def test_plot_survives_gaps_nans_and_v1_metrics(tmp_path):
    history = synthetic_history(epochs=4, version_2=False)
    del history["epochs"][0]  # a resumed run whose history lost epoch 1
    history["epochs"][0]["step_losses"][3] = None  # a non-finite loss stored as null
    for record in history["epochs"]:
        record["exact_match"] = record.pop("exact")
    steps, losses = history_steps(history)
    assert steps[0] == 21 and steps[-1] == 80 and len(steps) == 60 and math.isnan(losses[3])
    assert png_size(write_training_plot(tmp_path / "p.png", history)) == (1100, 400)
    assert png_size(write_training_plot(tmp_path / "empty.png", {"epochs": []})) == (700, 400)


def test_record_history_recovers_each_steps_loss_from_keras_logs(tmp_path):
    """Per-step losses from an epoch's batch logs equal those of a fit with one step per epoch."""
    import tensorflow as tf

    from tfqa.training.callbacks import RecordHistory

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(48, 4)).astype("float32"), rng.normal(size=(48, 1)).astype("float32")

    def fit(epochs, steps, callbacks, initial_epoch=0):
        tf.keras.utils.set_random_seed(0)
        model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(4,))])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
        data = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(8)
        model.fit(data, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps, verbose=0,
                  callbacks=callbacks)

    recorder = RecordHistory(tmp_path, {"train_questions": 48})
    fit(2, 3, [recorder])
    reference = []
    fit(6, 1, [tf.keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: reference.append(logs["loss"]))])
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["steps_per_epoch"] == 3 and history["train_questions"] == 48
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    np.testing.assert_allclose(history_steps(history)[1], reference, rtol=1e-5)
    assert png_size(tmp_path / "training.png") == (700, 400)

    class Interrupt(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                raise KeyboardInterrupt

    # An attempt at epoch 3 cut short after 2 steps: train_and_evaluate saves what it has.
    recorder = RecordHistory(tmp_path, {})
    with pytest.raises(KeyboardInterrupt):
        fit(4, 3, [recorder, Interrupt()], initial_epoch=2)
    recorder.stopped()
    cut = json.loads((tmp_path / "history.json").read_text())
    assert [(e["epoch"], len(e["step_losses"]), e.get("partial")) for e in cut["epochs"]] == [
        (1, 3, None), (2, 3, None), (3, 2, True)]

    # Resumed at epoch 3 (as BackupAndRestore does): epochs 1-2 stay, the cut-off attempt's partial epoch 3 goes.
    recorder = RecordHistory(tmp_path, {})
    fit(4, 3, [recorder], initial_epoch=2)
    resumed = json.loads((tmp_path / "history.json").read_text())
    assert [(e["epoch"], len(e["step_losses"]), e.get("partial")) for e in resumed["epochs"]] == [
        (1, 3, None), (2, 3, None), (3, 3, None), (4, 3, None)]
    assert history_steps(resumed)[0] == list(range(1, 13))
    assert [e["epoch"] for e in recorder.epochs()] == [1, 2, 3, 4]


def fake_run(folder, *, export=True):
    """A run directory as train_keras.py leaves it (no model weights needed for `inspect`)."""
    history = synthetic_history()
    config = TrainConfig(train_file="data/train.json", predict_file="data/dev.json", output_dir=str(folder),
                         version_2_with_negative=True, max_seq_length=64, doc_stride=16, num_train_epochs=3)
    history["config"] = config.to_dict()
    epochs = [{k: v for k, v in e.items() if k != "step_losses"} for e in history["epochs"]]
    final = {k: v for k, v in epochs[-1].items() if k not in ("epoch", "loss")}
    final.update(best_f1=66.0, best_f1_thresh=-1.5)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "history.json").write_text(json.dumps({**history, "export": "elsewhere/export/tfqa/2"}))
    (folder / "eval_results.json").write_text(json.dumps({**final, "epochs": epochs}))
    (folder / "tfqa_config.json").write_text(json.dumps(config.to_dict()))
    (folder / "config.json").write_text(json.dumps({"model_type": "distilbert", "dim": 64, "n_layers": 2,
                                                    "n_heads": 2, "vocab_size": 1234,
                                                    "architectures": ["DistilBertForQuestionAnswering"]}))
    if export:
        for version in ("1", "2"):
            (folder / "export" / "tfqa" / version).mkdir(parents=True)
    return folder


def test_inspect_reports_a_run(tmp_path, capsys):
    out = fake_run(tmp_path / "run")
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "50 questions, 160 windows" in text and "40 questions, 130 windows" in text
    assert ("model     distilbert-base-uncased: distilbert / DistilBertForQuestionAnswering, hidden size 64, "
            "2 layers, 2 heads, vocab 1,234") in text
    assert "3 epochs × 20 steps (60 steps recorded), batch 8" in text and "SQuAD 2.0" in text
    assert "best      epoch 2: F1 71.50, EM 70.50 — the saved model is the last epoch's (3)" in text
    assert "final     EM 69.25, F1 70.25 on 40 questions (HasAns F1 65.25 on 30, NoAns F1 75.25 on 10)" in text
    # The recorded export path is relative to where training ran; the run's own export folder is found.
    assert f"export    {out / 'export' / 'tfqa'}: versions 1, 2 (newest: {out / 'export' / 'tfqa' / '2'})" in text
    assert "plot      none" in text and "missing   training.png" in text
    table = [line.split() for line in text.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in table] == ["1", "2", "3"] and table[1][2:4] == ["70.50", "71.50"]


def test_inspect_json_and_plot(tmp_path, capsys):
    out = fake_run(tmp_path / "run")
    assert main(["inspect", str(out), "--json", "--plot"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["best_epoch"]["epoch"] == 2 and report["final"]["f1"] == 70.25
    assert [e["f1"] for e in report["epochs"]] == [30.0, 71.5, 70.25]
    assert report["export"]["versions"] == [1, 2] and report["plot"] == str(out / "training.png")
    assert report["missing"] == [] and "drew" in captured.err
    assert png_size(out / "training.png") == (1100, 400)


def test_inspect_names_missing_files_and_reports_the_rest(tmp_path, capsys):
    out = fake_run(tmp_path / "run", export=False)
    for name in ("tfqa_config.json", "config.json", "history.json"):
        (out / name).unlink()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    for name in ("tfqa_config.json", "config.json", "history.json", "training.png"):
        assert f"missing   {name}: " in text
    assert "best      epoch 2" in text and "final     EM 69.25" in text and "export    none" in text
    # An older run has its per-epoch metrics in eval_results.json only: --plot draws from them.
    assert main(["inspect", str(out), "--plot"]) == 0 and png_size(out / "training.png") == (1100, 400)


@pytest.mark.parametrize("make", ["empty", "missing", "file"])
def test_inspect_not_a_run_is_one_line_exit_2(tmp_path, capsys, make):
    target = tmp_path / "x"
    if make == "empty":
        target.mkdir()
        (target / "notes.txt").write_text("hello")
    elif make == "file":
        target.write_text("{}")
    assert main(["inspect", str(target)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith(f"tfqa: error: {target}")


def test_inspect_command_line_not_a_run(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tfqa", "inspect", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"tfqa: error: {tmp_path}: not a tfqa run (it has none of "
                                                "tfqa_config.json, eval_results.json, history.json; expected the "
                                                "--output_dir of train_keras.py)"]


def test_progress_lines_are_throttled():
    from tfqa.core.progress import Progress, duration

    stream = io.StringIO()
    progress = Progress("tokenizing 10,570 questions", every=3600, stream=stream)
    for i in range(1000):
        progress.update(f"{i} of 1000")
    progress.done(" (10,784 windows)")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "tokenizing 10,570 questions …" and len(lines) == 2
    assert lines[1].startswith("tokenizing 10,570 questions … done in ") and lines[1].endswith(" s (10,784 windows)")
    chatty = Progress("x", every=0, stream=stream)
    chatty.update("1 of 2")
    assert stream.getvalue().splitlines()[-1].startswith("x … 1 of 2 (")
    assert [duration(s) for s in (0.123, 1.25, 23.4, 245)] == ["0.12 s", "1.2 s", "23 s", "4 min 05 s"]


def test_prepare_features_reports_progress_without_changing_the_features(wordpiece_tokenizer, monkeypatch):
    from helpers import tiny_examples

    from tfqa.core import features
    from tfqa.core.features import prepare_features

    settings = dict(max_seq_length=32, doc_stride=8, max_query_length=8)
    plain = prepare_features(tiny_examples(), wordpiece_tokenizer, **settings)
    monkeypatch.setattr(features, "_ENCODE_CHUNK", 3)  # big datasets are tokenized in chunks, reported one by one
    messages = []
    chunked = prepare_features(tiny_examples(), wordpiece_tokenizer, **settings, progress=messages.append)
    for name in ("input_ids", "attention_mask", "offsets", "start_positions", "end_positions", "token_is_max_context"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(plain, name))
    assert messages == ["3 of 8 questions tokenized", "6 of 8 questions tokenized", "8 of 8 questions tokenized",
                        "3 of 3 contexts tokenized", f"0 of {len(plain):,} windows"]
