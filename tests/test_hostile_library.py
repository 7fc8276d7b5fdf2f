"""Issue 15 regressions below the command line: SQuAD loading, features, decoding, metrics, atomic files,
export versions and a rerun after a killed export."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, make_example, tiny_examples

from tfqa import load_squad
from tfqa.core.decoding import DecodingError, decode_predictions
from tfqa.core.features import prepare_features
from tfqa.core.metrics import MetricsError, squad_metrics
from tfqa.core.squad import DataError, Example, find_lone_surrogate, parse_squad_json
from test_cli import V1, V2

SMALL = dict(max_seq_length=24, doc_stride=5, max_query_length=8)


# ------------------------------------------------------------------ #6, #7, #26: tfqa.load_squad

@pytest.mark.parametrize("content, needle", [
    ("[" * 100_000, "nested too deeply"),
    ('{"version": ' + "7" * 5000 + ', "data": []}', "4300 digits"),
])
def test_load_squad_turns_hostile_json_into_data_errors(tmp_path, content, needle):
    path = tmp_path / "d.json"
    path.write_text(content)
    with pytest.raises(DataError, match=needle):
        load_squad(str(path))


@pytest.mark.parametrize("source", [0, 3, 1.5, None, b"dev.json", ["dev.json"]])
def test_load_squad_refuses_what_is_not_a_path(source):  # #26: 0 was read as stdin's file descriptor
    with pytest.raises(DataError, match="expected the path of a SQuAD JSON file or a TFDS name"):
        load_squad(source)


def test_load_squad_refuses_devices_before_reading():  # issue 20 #11: /dev/zero was read until memory ran out
    with pytest.raises(DataError, match="/dev/zero: not a regular file"):
        load_squad("/dev/zero")


def test_data_reads_stop_at_the_bound_plain_and_gunzipped(tmp_path):  # issue 20 #11: gzip bombs too
    import gzip

    from tfqa.core.files import InputFileError, read_text

    plain = tmp_path / "d.json"
    plain.write_text(json.dumps(V1))
    assert json.loads(read_text(plain)) == V1
    with pytest.raises(InputFileError, match=r"d.json: more than 100 bytes; data files this large"):
        read_text(plain, max_bytes=100)
    bomb = tmp_path / "d.json.gz"
    bomb.write_bytes(gzip.compress(b" " * 1_000_000))  # 1 KB on disk
    with pytest.raises(InputFileError, match="more than 10,000 bytes once gunzipped"):
        read_text(bomb, max_bytes=10_000)


def test_a_pipe_is_read_up_to_the_bound(tmp_path):  # process substitution (`check <(zcat d.json.gz)`) still works
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(json.dumps(V1)))
    writer.start()
    assert len(load_squad(str(fifo))) == 2
    writer.join()


@pytest.mark.parametrize("where", ["title", "context", "question", "id", "answer"])
def test_lone_surrogates_are_refused_naming_the_record(where):  # #7
    doc = json.loads(json.dumps(V1))
    paragraph = doc["data"][0]["paragraphs"][0]
    qa = paragraph["qas"][1]
    if where == "title":
        doc["data"][0]["title"] = "T\udfff"
    elif where == "context":
        paragraph["context"] += " \ud800"
    elif where == "answer":
        qa["answers"][0]["text"] = "The c\udc00"
    else:
        qa[where] = qa[where] + "\ud800"
    with pytest.raises(DataError, match="lone surrogate") as error:
        parse_squad_json(doc, source="dev.json", misaligned="skip")
    message = str(error.value)
    assert message.startswith("dev.json: ") and "\n" not in message
    assert ("question b" in message) if where in ("question", "answer") else "data[0]" in message


def test_surrogate_pairs_are_fine():
    assert find_lone_surrogate("emoji \U0001F600 é") == -1
    assert find_lone_surrogate(json.loads('"a\\ud83d\\ude00b"')) == -1  # a pair: one code point
    assert find_lone_surrogate(json.loads('"ab\\ude00"')) == 2


def test_prepare_features_names_the_example_with_a_lone_surrogate(wordpiece_tokenizer):  # #7
    bad = Example("q9", "t", "Who?", "Ada Lovelace \ud800 wrote it.", ())
    with pytest.raises(DataError, match="question q9: the context holds a lone surrogate"):
        prepare_features(tiny_examples()[:2] + [bad], wordpiece_tokenizer, **SMALL)


# ------------------------------------------------------------------ #12, #14: metrics

def test_metrics_errors_are_tfqa_errors():
    examples, _ = parse_squad_json(V2)
    with pytest.raises(MetricsError, match="SQuAD v1.1 cannot score it"):
        squad_metrics(examples, {"a": "x"}, version="1.1")
    with pytest.raises(MetricsError, match="no question of the data has a prediction"):
        squad_metrics(examples, {})
    for bad in (float("nan"), float("inf")):
        with pytest.raises(MetricsError, match="not a finite number"):
            squad_metrics(examples, {"a": "x", "n": ""}, na_probs={"a": bad, "n": 0.0})
        with pytest.raises(MetricsError, match="na_prob_thresh must be a finite number"):
            squad_metrics(examples, {"a": "x", "n": ""}, na_prob_thresh=bad)


# ------------------------------------------------------------------ #17: decoding

@pytest.fixture(scope="module")
def windows(wordpiece_tokenizer):
    examples = tiny_examples()
    return examples, prepare_features(examples, wordpiece_tokenizer, **SMALL)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_decoding_names_the_window_with_nan_or_inf_logits(windows, value):
    examples, features = windows
    start, end = np.zeros(features.input_ids.shape, np.float32), np.zeros(features.input_ids.shape, np.float32)
    end[3, 1] = value
    with pytest.raises(DecodingError, match=rf"end_logits of window 3 \(example {examples[features.example_index[3]].id}"
                                            r"\) hold NaN or an infinity"):
        decode_predictions(examples, features, start, end)


def test_decoding_ignores_whatever_is_in_the_padding(windows):
    examples, features = windows
    start = np.where(features.attention_mask.astype(bool), 0.0, np.nan).astype(np.float32)
    end = np.where(features.attention_mask.astype(bool), 0.5, np.inf).astype(np.float32)
    end[:, 1] = 1.0
    predictions, _, _ = decode_predictions(examples, features, start, end)
    assert set(predictions) == {e.id for e in examples}


@pytest.mark.parametrize("settings, needle", [
    (dict(n_best_size=0), "n_best_size must be a positive integer"),
    (dict(n_best_size=-2), "n_best_size must be a positive integer"),
    (dict(max_answer_length=0), "max_answer_length must be a positive integer"),
])
def test_decoding_settings_must_be_positive(windows, settings, needle):
    examples, features = windows
    zeros = np.zeros(features.input_ids.shape, np.float32)
    with pytest.raises(DecodingError, match=needle):
        decode_predictions(examples, features, zeros, zeros, **settings)


def test_decoding_says_when_examples_and_features_do_not_match(windows):
    examples, features = windows
    zeros = np.zeros(features.input_ids.shape, np.float32)
    with pytest.raises(DecodingError, match="features and examples do not match"):
        decode_predictions(examples[:3], features, zeros, zeros)
    with pytest.raises(DecodingError, match="do not match the features"):
        decode_predictions(examples, features, zeros[:, :5], zeros)


# ------------------------------------------------------------------ #18: atomic writes respect the umask

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_get_the_mode_of_the_umask(tmp_path, umask, mode):
    target = tmp_path / "r.json"
    target.write_text("{}")
    os.chmod(target, 0o600 if mode != 0o600 else 0o644)  # the replaced file's mode is not kept either
    code = ("import os, sys; os.umask(int(sys.argv[2], 8)); from tfqa.core.files import write_json_atomic; "
            "write_json_atomic(sys.argv[1], {'a': 1}); write_json_atomic(sys.argv[1] + '.new', {})")
    subprocess.run([sys.executable, "-c", code, str(target), oct(umask)[2:]], cwd=ROOT, check=True)
    assert (target.stat().st_mode & 0o777, (tmp_path / "r.json.new").stat().st_mode & 0o777) == (mode, mode)
    assert json.loads(target.read_text()) == {"a": 1}


# ------------------------------------------------------------------ #1, #19: export versions and leftovers

def test_next_version_counts_stray_files_and_dangling_symlinks(tmp_path):  # #1
    from tfqa.export.versions import next_version, version_dirs

    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    (tmp_path / "3").write_text("stray")
    assert next_version(tmp_path) == 4
    os.symlink(tmp_path / "gone", tmp_path / "4")  # dangling: exists() is False, lexists() is True
    assert next_version(tmp_path) == 5 and sorted(version_dirs(tmp_path)) == [1, 2]


def test_stale_exports_of_dead_processes_are_removed(tmp_path):  # #19
    import socket

    from tfqa.export.versions import TEMP_PREFIX, remove_stale_exports, temp_prefix

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    host = socket.gethostname()
    stale = tmp_path / f"{TEMP_PREFIX}{host}.{dead}.abc123"
    mine = tmp_path / f"{temp_prefix()}def456"  # this process: alive, an export in progress
    elsewhere = tmp_path / f"{TEMP_PREFIX}other-host.{dead}.x1"  # a shared file system: not ours to judge
    legacy = tmp_path / f"{TEMP_PREFIX}k2j3l4"
    for folder in (stale, mine, elsewhere, legacy):
        (folder / "model").mkdir(parents=True)
    assert remove_stale_exports(tmp_path) == [stale]
    assert not stale.exists() and mine.exists() and elsewhere.exists() and legacy.exists()


def test_export_next_to_a_stray_file_and_a_killed_export(tmp_path, wordpiece_tokenizer, monkeypatch):  # #1, #19
    import socket

    import tensorflow as tf

    from tfqa.core.config import FeatureConfig
    from tfqa.export.qa_module import ServingConfig
    from tfqa.export.savedmodel import export_model
    from tfqa.export.versions import TEMP_PREFIX
    from tfqa.modeling.checkpoints import tiny_distilbert

    base = tmp_path / "tfqa"
    (base / "1").mkdir(parents=True)
    (base / "2").write_text("a stray file named like the next version")
    os.symlink(base / "nowhere", base / "3")
    leftover = base / f"{TEMP_PREFIX}{socket.gethostname()}.999999999.zz"
    (leftover / "model").mkdir(parents=True)
    model = tiny_distilbert(wordpiece_tokenizer.vocab_size, 32, dim=8, n_layers=1, n_heads=2)
    # What is tested is how the version is claimed, not the SavedModel (test_export.py): writing one takes a minute
    # on a busy 2-core machine, so the writer only makes the folder it would make.
    monkeypatch.setattr(tf.saved_model, "save", lambda module, path, signatures: os.makedirs(path))
    result = export_model(model, wordpiece_tokenizer, ServingConfig(features=FeatureConfig(32, 8, 8)), base)
    assert result.version == 4 and (base / "4" / "assets.extra" / "tf_serving_warmup_requests").exists()
    assert sorted(p.name for p in base.iterdir()) == ["1", "2", "3", "4"]  # the killed export's folder is gone


@pytest.mark.slow
def test_rerun_after_a_cut_off_export_exports_without_training_again(tmp_path, monkeypatch):  # #19
    import tensorflow as tf

    from tfqa.core.config import TrainConfig
    from tfqa.core.files import write_json_atomic
    from tfqa.core.progress import Reporter
    from tfqa.core.synthetic import synthetic_squad
    from tfqa.training.run import train_and_evaluate

    class Lines(Reporter):
        def __init__(self):
            self.lines = []

        def line(self, text):
            self.lines.append(text)

    train = write_json_atomic(tmp_path / "train.json", synthetic_squad(6, seed=1))
    out = tmp_path / "run"
    config = TrainConfig(train_file=str(train), output_dir=str(out), do_train=True, num_train_epochs=2, preset="smoke",
                         max_seq_length=64, doc_stride=16, max_query_length=16, per_replica_batch_size=8, seed=3)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the state a SIGKILL leaves: training done, no export, no "final" in the history

    monkeypatch.setattr(tf.saved_model, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config)
    checkpoint = out / "checkpoints" / "epoch-02.h5"
    trained_at, history = checkpoint.stat().st_mtime_ns, json.loads((out / "history.json").read_text())
    assert "final" not in history and not (out / "export" / "tfqa" / "1").exists()

    monkeypatch.setattr(tf.saved_model, "save", lambda module, path, signatures: os.makedirs(path))
    reporter = Lines()
    results = train_and_evaluate(config, reporter=reporter)
    assert any("training finished earlier (all 2 epochs" in line for line in reporter.lines), reporter.lines
    assert checkpoint.stat().st_mtime_ns == trained_at  # not trained again
    assert results["export"].endswith(os.path.join("export", "tfqa", "1")) and [e["epoch"] for e in results["epochs"]] == [1, 2]
    again = json.loads((out / "history.json").read_text())
    assert again["epochs"] == history["epochs"] and again["steps_per_epoch"] == history["steps_per_epoch"]
    assert "final" in again and again["export"] == results["export"]


def test_ctrl_c_during_a_deferred_block_waits_for_its_end():  # #16: Ctrl-C during the final export
    import signal
    import time

    from tfqa.core.interrupts import deferred_interrupts

    before, notices, steps = signal.getsignal(signal.SIGINT), [], []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts(notices.append, "the export"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # Python runs signal handlers between bytecodes: here, not at the block's end
            steps.append("finished")
    assert steps == ["finished"] and notices == ["Ctrl-C: finishing the export first (Ctrl-C again to stop at once)"]
    assert signal.getsignal(signal.SIGINT) is before
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts(notices.append, "the export"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)  # the second one stops at once
            time.sleep(0.05)
            steps.append("not reached")
    assert steps == ["finished"]
