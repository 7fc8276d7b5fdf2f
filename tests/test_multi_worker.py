"""Several workers: strategy choice from TF_CONFIG, chief detection, 2-worker parity and resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT

from tfqa.training.strategies import choose_strategy, is_chief, is_chief_task, parse_tf_config, training_tasks

DRIVER = str(ROOT / "tests" / "multi_worker_driver.py")


def tf_config(n: int, index: int, ports=(1, 2), task="worker", chief=False) -> dict:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports[:n]]}
    if chief:
        cluster["chief"] = ["127.0.0.1:9"]
    return {"cluster": cluster, "task": {"type": task, "index": index}}


@pytest.mark.parametrize("config, expected", [
    (None, "default"),
    ({}, "default"),
    (tf_config(1, 0), "default"),  # one worker is just this machine
    (tf_config(2, 1), "multi_worker"),
    (tf_config(1, 0, chief=True), "multi_worker"),  # chief + worker = 2 training tasks
    ({"cluster": {"worker": ["a:1"], "evaluator": ["b:1"]}, "task": {"type": "worker", "index": 0}}, "default"),
    (json.dumps(tf_config(2, 0)), "multi_worker"),
])
def test_auto_strategy_from_tf_config(config, expected, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert choose_strategy("auto", config if config is not None else "", tpu_present=False, gpus=0) == expected


def test_auto_prefers_multi_worker_then_tpu_then_gpus():
    assert choose_strategy("auto", tf_config(2, 0), tpu_present=True, gpus=4) == "multi_worker"
    assert choose_strategy("auto", {}, tpu_present=True, gpus=4) == "tpu"
    assert choose_strategy("auto", {}, tpu_present=False, gpus=4) == "mirrored"
    assert choose_strategy("one_device", tf_config(2, 0)) == "one_device"
    with pytest.raises(ValueError, match="unknown strategy"):
        choose_strategy("parameter_server")


def test_tf_config_parsing(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config(2, 1)))
    assert training_tasks(parse_tf_config()) == 2
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        parse_tf_config()


@pytest.mark.parametrize("task_type, index, chief, expected", [
    ("worker", 0, False, True), ("worker", 1, False, False), ("worker", 0, True, False), ("chief", 0, True, True),
    ("evaluator", 0, False, False), (None, None, False, True),
])
def test_chief_detection(task_type, index, chief, expected):
    cluster = tf_config(2, 0, chief=chief)["cluster"]
    assert is_chief_task(task_type, index, cluster) is expected

    class Resolver:
        def __init__(self):
            self.task_type, self.task_id = task_type, index

        def cluster_spec(self):
            import tensorflow as tf

            return tf.train.ClusterSpec(cluster)

    strategy = type("FakeStrategy", (), {"cluster_resolver": Resolver()})()
    assert is_chief(strategy) is expected


def test_single_process_strategies_are_chief():
    import tensorflow as tf

    assert is_chief(tf.distribute.get_strategy())
    assert is_chief(tf.distribute.MirroredStrategy(["/cpu:0"]))


def test_non_chief_waits_for_the_chiefs_smoke_vocab_then_says_why(tmp_path):
    from tfqa.training.strategies import wait_for_chief_file

    (tmp_path / "smoke_vocab.txt").write_text("[PAD]\n")
    assert wait_for_chief_file(tmp_path / "smoke_vocab.txt", timeout=0.1) == tmp_path / "smoke_vocab.txt"
    with pytest.raises(RuntimeError, match="storage all workers share"):
        wait_for_chief_file(tmp_path / "missing.txt", timeout=0.1)


# --- two real worker processes on 127.0.0.1 -------------------------------------------------------------------

def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """Data plus a tiny DistilBERT saved as a checkpoint: every process loads the very same model and vocab."""
    from tfqa.core.squad import load_squad
    from tfqa.core.files import write_json_atomic
    from tfqa.modeling.checkpoints import tiny_distilbert
    from tfqa.core.synthetic import synthetic_squad
    from tfqa.core.vocab import train_wordpiece

    folder = tmp_path_factory.mktemp("mw")
    train = write_json_atomic(folder / "train.json", synthetic_squad(12, seed=1))
    dev = write_json_atomic(folder / "dev.json", synthetic_squad(2, seed=2, name_offset=2000))
    examples = load_squad(str(train))
    tokenizer = train_wordpiece([e.context for e in examples] + [e.question for e in examples], vocab_size=2000,
                                token_type_ids=False)
    model = tiny_distilbert(len(tokenizer), 64, dim=16, n_layers=2, n_heads=2, seed=0)
    model.save_pretrained(str(folder / "model"))
    tokenizer.save_pretrained(str(folder / "model"))
    return folder


@pytest.fixture(scope="module")
def keras_hub_checkpoint(tiny_checkpoint):
    """The same data and vocab, and a tiny keras-hub DistilBERT QA model saved as a keras_hub run folder."""
    from transformers import AutoTokenizer

    from tfqa.modeling.keras_hub_qa import save_qa_model, tiny_distilbert

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_checkpoint / "model"))
    save_qa_model(tiny_distilbert(len(tokenizer), 64, dim=16, n_layers=2, n_heads=2, seed=0),
                  tiny_checkpoint / "keras_hub_model" / "model.keras")
    tokenizer.save_pretrained(str(tiny_checkpoint / "keras_hub_model"))
    return tiny_checkpoint


def flags(folder: Path, out: Path, per_replica: int, epochs: int, strategy: str, *extra: str,
          backend: str = "transformers") -> list[str]:
    model = "keras_hub_model" if backend == "keras_hub" else "model"
    return ["--backend", backend, "--model_name_or_path", str(folder / model),
            "--train_file", str(folder / "train.json"),
            "--predict_file", str(folder / "dev.json"), "--output_dir", str(out), "--max_seq_length", "64",
            "--doc_stride", "16", "--max_query_length", "16", "--per_gpu_train_batch_size", str(per_replica),
            "--eval_batch_size", "16", "--learning_rate", "1e-3", "--num_train_epochs", str(epochs),
            "--max_train_samples", "16", "--seed", "3", "--version_2_with_negative", "--export_dir", "none",
            "--strategy", strategy, *extra]


def start(args: list[str], weights: Path, log: Path, tf_config_value: dict | None, tmpdir: Path) -> subprocess.Popen:
    env = {**os.environ, "CI": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
           "TMPDIR": str(tmpdir)}
    env.pop("TF_CONFIG", None)
    if tf_config_value is not None:
        env["TF_CONFIG"] = json.dumps(tf_config_value)
    tmpdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, DRIVER, str(weights), *args], cwd=ROOT, env=env,
                            stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True)


def start_workers(folder, out, epochs, tmp_path, *extra, backend="transformers"):
    ports = free_ports(2)
    return [start(flags(folder, out, 4, epochs, "multi_worker", *extra, backend=backend), tmp_path / f"w{i}.npz",
                  tmp_path / f"w{i}.log", tf_config(2, i, ports), tmp_path / f"tmp{i}") for i in range(2)]


def log_tail(path: Path, n=3000) -> str:
    return "\n".join(l for l in path.read_text().splitlines() if "WARNING" not in l and "I0000" not in l)[-n:]


@pytest.mark.slow
@pytest.mark.parametrize("backend, files", [
    ("transformers", ("tf_model.h5", "checkpoints/epoch-01.h5")),
    ("keras_hub", ("model.keras", "checkpoints/epoch-01.weights.h5"))])
def test_two_workers_match_one_process_at_the_same_global_batch(keras_hub_checkpoint, tmp_path, backend, files):
    out, ref_out = tmp_path / "run", tmp_path / "ref"
    workers = start_workers(keras_hub_checkpoint, out, 1, tmp_path, "--do_train", backend=backend)
    # The same global batch (4 per worker × 2 workers) in one process.
    ref = start(flags(keras_hub_checkpoint, ref_out, 8, 1, "one_device", "--do_train", backend=backend),
                tmp_path / "ref.npz", tmp_path / "ref.log", None, tmp_path / "tmpref")
    for i, proc in enumerate(workers):
        assert proc.wait(timeout=240) == 0, log_tail(tmp_path / f"w{i}.log")
    assert ref.wait(timeout=240) == 0, log_tail(tmp_path / "ref.log")

    w0, w1, one = (np.load(tmp_path / name) for name in ("w0.npz", "w1.npz", "ref.npz"))
    assert sorted(w0.files) == sorted(one.files)
    for name in w0.files:
        np.testing.assert_array_equal(w0[name], w1[name], err_msg=name)  # all-reduced: the very same weights
        if "qa_outputs" in name and "bias" in name:  # transformers' qa_outputs/bias, keras_hub's qa_outputs_*/bias
            # A softmax over positions ignores a constant added to every logit, so the QA bias' gradient is
            # exactly 0 up to float noise, and AdamW (÷ √v) turns that noise into moves of up to lr (1e-3) per
            # step in either direction (CI saw 1.2e-4 apart): nothing of the all-reduce shows in it.
            continue
        # AdamW divides by √v: float-order noise in near-zero gradients moves a weight by a fraction of one
        # step (lr 1e-3), hence the absolute tolerance.
        np.testing.assert_allclose(w0[name], one[name], rtol=1e-5, atol=1e-4, err_msg=name)
    history, ref_history = (json.loads((d / "history.json").read_text()) for d in (out, ref_out))
    assert history["global_batch"] == ref_history["global_batch"] == 8 and history["replicas"] == 2
    np.testing.assert_allclose(history["epochs"][0]["step_losses"], ref_history["epochs"][0]["step_losses"],
                               rtol=1e-4)  # the logged loss is the global mean, not a sum over workers
    # Only the chief wrote, into OUTPUT_DIR; the other worker's temporary folder is gone again.
    for name in ("tokenizer.json", "tfqa_config.json", "history.json", "training.png", *files):
        assert (out / name).exists(), name
    assert not list(out.rglob("workertemp_*"))
    assert not any((tmp_path / "tmp1").iterdir()) and not any((tmp_path / "tmp0").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("backend, backup_file, files", [
    ("transformers", "chief/checkpoint", ("tf_model.h5", "checkpoints/epoch-03.h5")),
    # Keras 3's BackupAndRestore writes its weights, then the epoch reached
    ("keras_hub", "training_metadata.json", ("model.keras", "checkpoints/epoch-03.weights.h5"))])
def test_killed_worker_job_resumes_from_the_last_backup(keras_hub_checkpoint, tmp_path, backend, backup_file, files):
    out = tmp_path / "run"
    workers = start_workers(keras_hub_checkpoint, out, 3, tmp_path, backend=backend)
    backup = out / "backup" / backup_file
    deadline = time.time() + 240
    while not backup.exists() and time.time() < deadline and all(p.poll() is None for p in workers):
        time.sleep(0.2)
    assert backup.exists(), log_tail(tmp_path / "w0.log")
    os.killpg(workers[1].pid, signal.SIGKILL)
    try:  # the chief fails or waits for its peer forever in a collective: give it a while, then kill it
        workers[0].wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(workers[0].pid, signal.SIGKILL)
        workers[0].wait()
    assert not (out / files[0]).exists()  # really cut off before the end
    first = (tmp_path / "w0.log").read_text()
    (tmp_path / "w0.log").rename(tmp_path / "w0-first.log")

    workers = start_workers(keras_hub_checkpoint, out, 3, tmp_path, backend=backend)
    for i, proc in enumerate(workers):
        assert proc.wait(timeout=300) == 0, log_tail(tmp_path / f"w{i}.log")
    log = (tmp_path / "w0.log").read_text()
    assert "epoch 1/3: training" not in log and "epoch 3/3: training" in log, (first[-2000:], log[-2000:])
    history = json.loads((out / "history.json").read_text())
    assert [(e["epoch"], len(e["step_losses"])) for e in history["epochs"]] == [
        (epoch, history["steps_per_epoch"]) for epoch in (1, 2, 3)]
    assert all("exact" in e and "f1" in e for e in history["epochs"])  # evaluated after every epoch
    for name in ("eval_results.json", "predictions.json", "nbest_predictions.json", "null_odds.json",
                 "tfqa_config.json"):
        json.loads((out / name).read_text())  # complete, valid JSON
    assert all((out / name).exists() for name in files) and not (out / "backup").exists()
    assert not list(out.rglob("workertemp_*"))
