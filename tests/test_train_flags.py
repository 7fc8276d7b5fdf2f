"""run_squad.py's command line in tfqa: gradient accumulation, step-based schedules, the output-folder rules."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfqa.core.config import TrainConfig
from tfqa.modeling.checkpoints import tiny_distilbert
from tfqa.training.fitting import fit

from helpers import tiny_examples


def _train(wordpiece_tokenizer, backend="transformers", **settings):
    """(weight change, per-epoch losses, steps per epoch) after training from the same initial weights."""
    from tfqa.core.features import prepare_features
    from tfqa.modeling import keras_hub_qa

    config = TrainConfig(max_seq_length=32, doc_stride=8, max_query_length=12, learning_rate=1e-3, seed=3,
                         warmup_ratio=0.0, backend=backend, **settings)
    features = prepare_features(tiny_examples(), wordpiece_tokenizer, config=config.features)
    tiny = keras_hub_qa.tiny_distilbert if backend == "keras_hub" else tiny_distilbert
    model = tiny(len(wordpiece_tokenizer), 32, dim=32, n_layers=1, seed=0)
    start = np.concatenate([w.numpy().ravel() for w in model.trainable_weights])
    history = fit(model, features, config, tf.distribute.get_strategy(), verbose=0)
    end = np.concatenate([w.numpy().ravel() for w in model.trainable_weights])
    return end - start, history.history["loss"], history.params["steps"]


@pytest.mark.parametrize("backend", ["transformers", "keras_hub"])
def test_gradient_accumulation_equals_a_larger_batch(wordpiece_tokenizer, backend):
    big, big_loss, big_steps = _train(wordpiece_tokenizer, backend, per_replica_batch_size=8, max_steps=6)
    accumulated, acc_loss, acc_steps = _train(wordpiece_tokenizer, backend, per_replica_batch_size=4,
                                              gradient_accumulation_steps=2, max_steps=6)
    small, _, _ = _train(wordpiece_tokenizer, backend, per_replica_batch_size=4, max_steps=6)
    assert big_steps == acc_steps  # steps are optimizer steps
    np.testing.assert_allclose(acc_loss, big_loss, rtol=1e-4)

    def distance(change):  # how far from the larger batch's training, relative to how far that moved
        return np.linalg.norm(change - big) / np.linalg.norm(big)

    # float32 sums in another order: Adam's per-weight normalisation amplifies them on near-zero gradients
    assert distance(accumulated) < 1e-2  # measured 6.3e-4 (the smaller batch alone: 0.29)
    assert distance(small) > 0.1  # ...while the smaller batch alone trains elsewhere: the check can fail


def test_max_steps_and_warmup_steps_set_the_schedule(wordpiece_tokenizer):
    _, losses, steps = _train(wordpiece_tokenizer, per_replica_batch_size=4, max_steps=5, warmup_steps=2)
    assert steps * len(losses) >= 5 and len(losses) == 1  # 5 steps fit in one pass of the tiny data


def test_data_dir_finds_the_official_file_names(tmp_path):
    config = TrainConfig(data_dir=str(tmp_path)).with_data_dir()
    assert (config.train_file, config.predict_file) == (str(tmp_path / "train-v1.1.json"),
                                                        str(tmp_path / "dev-v1.1.json"))
    config = TrainConfig(data_dir=str(tmp_path), version_2_with_negative=True, train_file="mine.json").with_data_dir()
    assert (config.train_file, config.predict_file) == (str(tmp_path / "mine.json"), str(tmp_path / "dev-v2.0.json"))
    assert TrainConfig(train_file="squad/v1.1:train", data_dir=str(tmp_path)).with_data_dir().train_file \
        == str(tmp_path / "train-v1.1.json")


RUN_SQUAD = ("--model_type distilbert --model_name_or_path distilbert-base-uncased --do_train --do_eval --do_lower_case "
             "--per_gpu_train_batch_size 12 --learning_rate 3e-5 --num_train_epochs 2.0 --max_seq_length 64 "
             "--doc_stride 24 --max_query_length 16 --gradient_accumulation_steps 2 --warmup_steps 1 --max_steps 3 "
             "--save_steps 2 --logging_steps 1 --per_gpu_eval_batch_size 64 --n_best_size 10 --max_answer_length 20 "
             "--null_score_diff_threshold 0.5 --version_2_with_negative --evaluate_during_training "
             "--eval_all_checkpoints --threads 4 --seed 7 --adam_epsilon 1e-6 --weight_decay 0.0 --max_grad_norm 1.0 "
             "--overwrite_cache --overwrite_output_dir --local_rank -1 --fp16_opt_level O1 --no_cuda "
             "--server_ip '' --server_port '' --lang_id 0 --config_name '' --tokenizer_name '' --verbose_logging")


def test_every_run_squad_flag_is_accepted():
    import shlex

    from tfqa.apps.run_squad_flags import notes
    from tfqa.apps.train import parse_train_args

    config, args = parse_train_args(shlex.split(RUN_SQUAD) + ["--fp16", "--output_dir", "/tmp/debug_squad/"])
    assert config.mixed_precision == "fp16" and config.output_dir == "/tmp/debug_squad"
    assert (config.per_replica_batch_size, config.eval_batch_size, config.gradient_accumulation_steps) == (12, 64, 2)
    assert (config.warmup_steps, config.max_steps, config.save_steps, config.adam_epsilon) == (3 - 2, 3, 2, 1e-6)
    assert config.overwrite_cache and args.overwrite_output_dir and config.n_best_size == 10
    lines = notes(args)
    assert {line.split(":")[0] for line in lines} == {"--evaluate_during_training", "--eval_all_checkpoints",
                                                      "--threads", "--lang_id", "--local_rank", "--fp16_opt_level",
                                                      "--server_ip", "--server_port"}


def _train_keras(*argv, cwd=None):
    import os
    import subprocess
    import sys

    from helpers import ROOT

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, str(ROOT / "train_keras.py"), *argv], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_invalid_settings_and_finished_runs_create_nothing(tmp_path):
    import json

    proc = _train_keras("--preset", "smoke", "--output_dir", str(tmp_path / "new"), "--learning_rate", "-1")
    assert proc.returncode == 2 and "--learning_rate" in proc.stderr and not (tmp_path / "new").exists()
    finished = tmp_path / "done"
    finished.mkdir()
    (finished / "history.json").write_text(json.dumps({"epochs": [], "final": {"f1": 1.0}}))
    proc = _train_keras("--preset", "smoke", "--output_dir", f"{finished}/")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"train_keras.py: error: --output_dir {finished} holds a finished run; pass "
                                   "--overwrite_output_dir to train into it again, or choose another folder")
    assert sorted(p.name for p in finished.iterdir()) == ["history.json"]  # no data/ written by the preset


def test_closing_lines_print_paths_once_and_reproduce_a_limited_evaluation():
    from tfqa.apps.train import closing_lines

    config = TrainConfig(output_dir="runs/x", predict_file="dev.json", max_eval_samples=100,
                         version_2_with_negative=True)
    text = closing_lines(config, {"export": "runs/x/export/tfqa/1"})
    assert "//" not in text
    evaluate = next(line for line in text.splitlines() if "tfqa evaluate" in line)
    assert evaluate.split("evaluate ")[1].startswith("dev.json runs/x/predictions.json --na-prob-file "
                                                     "runs/x/null_odds.json --na-prob-thresh ")
    assert evaluate.endswith(" --max-samples 100")


def test_files_respect_the_umask(tmp_path):
    import subprocess
    import sys

    from helpers import ROOT

    script = ("import os, sys; from tfqa.core.files import write_json_atomic; "
              "os.umask(int(sys.argv[1], 8)); print(oct(os.stat(write_json_atomic(sys.argv[2], {})).st_mode & 0o777))")
    for umask, mode in (("022", "0o644"), ("027", "0o640"), ("077", "0o600")):
        proc = subprocess.run([sys.executable, "-c", script, umask, str(tmp_path / f"{umask}.json")], cwd=ROOT,
                              capture_output=True, text=True, check=True)
        assert proc.stdout.strip() == mode


@pytest.mark.slow
def test_the_run_squad_command_line_runs_and_a_finished_run_is_refused(tmp_path):
    import json
    import shlex

    out = tmp_path / "debug_squad"
    argv = [*shlex.split(RUN_SQUAD), "--preset", "smoke", "--max_eval_samples", "40", "--export_dir", "none",
            "--cache_dir", str(tmp_path / "cache"), "--output_dir", f"{out}/"]
    proc = _train_keras(*argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    assert history["global_batch"] == 24 and sum(len(e["step_losses"]) for e in history["epochs"]) == 3
    assert (out / "checkpoints" / "epoch-01-step-00002.h5").exists()
    assert "//" not in proc.stdout + proc.stderr and "\r" not in proc.stdout
    results = json.loads((out / "eval_results.json").read_text())
    json.loads(proc.stdout)  # the scores alone: the closing lines are on stderr
    next_line = next(line for line in proc.stderr.splitlines() if "python -m tfqa evaluate" in line)
    again = subprocess_evaluate(next_line)
    assert json.loads(again)["exact"] == pytest.approx(results["exact"])  # the Next line reproduces the run's score
    refused = _train_keras(*[a for a in argv if a != "--overwrite_output_dir"])
    assert refused.returncode == 2 and "holds a finished run" in refused.stderr


def subprocess_evaluate(next_line: str) -> str:
    import shlex
    import subprocess
    import sys

    from helpers import ROOT

    words = shlex.split(next_line.replace("Next:", ""))
    assert words[:3] == ["python", "-m", "tfqa"]
    return subprocess.run([sys.executable, *words[1:]], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_console_rewrites_progress_in_place_on_a_terminal_and_prints_lines_in_a_log(monkeypatch, capsys):
    import io

    from tfqa.apps.console import Console

    console = Console()
    progress = console.progress("training", every=0)
    progress.update("step 1")
    progress.done()
    log = capsys.readouterr().err.splitlines()
    assert len(log) == 3 and log[0] == "training …" and log[1].startswith("training … step 1 (")
    assert log[2].startswith("training … done in")
    terminal = io.StringIO()
    terminal.isatty = lambda: True
    monkeypatch.setattr("sys.stderr", terminal)
    progress = console.progress("training", every=0)
    progress.update("step 1")
    progress.done()
    text = terminal.getvalue()
    assert text.count("\n") == 1 and text.startswith("\r\x1b[Ktraining …") and "\r\x1b[Ktraining … done in" in text


def test_config_name_and_tokenizer_name_load_from_their_own_folders(tmp_path, wordpiece_tokenizer):
    from tfqa.modeling.checkpoints import load_qa_model

    model = tiny_distilbert(len(wordpiece_tokenizer), 32, dim=16, n_layers=1)
    model.save_pretrained(str(tmp_path / "model"))
    wordpiece_tokenizer.save_pretrained(str(tmp_path / "tokenizer"))
    model.config.save_pretrained(str(tmp_path / "config"))
    loaded, tokenizer = load_qa_model(str(tmp_path / "model"), config_name=str(tmp_path / "config"),
                                      tokenizer_name=str(tmp_path / "tokenizer"))
    assert tokenizer.vocab == wordpiece_tokenizer.vocab and loaded.config.dim == 16
    assert not (tmp_path / "model" / "vocab.txt").exists()  # the tokenizer really came from the other folder


def test_overwrite_cache_prepares_the_features_again(tmp_path, wordpiece_tokenizer):
    from tfqa.core.config import FeatureConfig
    from tfqa.training.feature_cache import cached_features

    settings = FeatureConfig(max_seq_length=32, doc_stride=8, max_query_length=12)
    first, reused = cached_features(tiny_examples(), wordpiece_tokenizer, tmp_path, settings)
    assert not reused
    assert cached_features(tiny_examples(), wordpiece_tokenizer, tmp_path, settings)[1]
    again, reused = cached_features(tiny_examples(), wordpiece_tokenizer, tmp_path, settings, overwrite=True)
    assert not reused and np.array_equal(again.input_ids, first.input_ids)


def test_evaluate_max_samples_scores_what_the_run_scored(tmp_path, capsys):
    import json

    from tfqa.apps.cli import main

    qas = [{"id": "a", "question": "Where?", "answers": [{"text": "on the mat", "answer_start": 12}]},
           {"id": "b", "question": "Who?", "answers": [{"text": "The cat", "answer_start": 0}]}]
    data = tmp_path / "dev.json"
    data.write_text(json.dumps({"version": "1.1", "data": [{"title": "T", "paragraphs": [
        {"context": "The cat sat on the mat.", "qas": qas}]}]}))
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"a": "on the mat"}))  # a run with --max_eval_samples 1 predicted only "a"
    assert main(["evaluate", str(data), str(preds)]) == 0
    assert json.loads(capsys.readouterr().out)["exact_match"] == 50.0  # "b" has no prediction: 0 under v1.1
    assert main(["evaluate", str(data), str(preds), "--max-samples", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["exact_match"] == 100.0
