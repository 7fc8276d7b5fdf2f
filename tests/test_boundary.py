"""The error boundary of `python -m tfqa` and `train_keras.py` (issue 15): hostile flags, paths and files end
as one line naming the file/record/flag with exit status 2 (130 for Ctrl-C); a bug shows its traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT

from tfqa.apps.boundary import EXIT_BUG, EXIT_INTERRUPTED, guarded, one_line
from tfqa.apps.cli import main
from tfqa.core.squad import DataError
from test_cli import V1, V2, run, write


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error" in line]


def assert_one_line(code, err, *needles, status=2):
    assert code == status, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


# ------------------------------------------------------------------ the boundary itself

def test_boundary_maps_errors_to_one_line_and_status(capsys):
    assert guarded("p", lambda: (_ for _ in ()).throw(DataError("f.json: question q: bad"))) == 2
    assert capsys.readouterr().err == "p: error: f.json: question q: bad\n"
    assert guarded("p", lambda: open("/nonexistent/x.json").read()) == 2
    assert capsys.readouterr().err == "p: error: /nonexistent/x.json: No such file or directory\n"
    assert guarded("p", lambda: (_ for _ in ()).throw(KeyboardInterrupt()), lambda: "kept 3 files") == 130
    assert capsys.readouterr().err == "p: kept 3 files\n"


def test_a_bug_shows_its_traceback_and_asks_for_a_report(capsys):
    assert guarded("p", lambda: {}["missing"]) == EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError" in err
    assert err.strip().splitlines()[-1].startswith("p: internal error (KeyError): this is a bug in tfqa; please report")


def test_messages_are_kept_to_one_line():
    assert one_line("a\n  b\tc") == "a b c"
    assert len(one_line("x" * 5000)) == 1000


# ------------------------------------------------------------------ python -m tfqa: data files (#6, #7, #8, #12, #26)

@pytest.mark.parametrize("content, needle", [
    ("[" * 100_000, "nested too deeply"),  # #6: RecursionError before
    ('{"version": ' + "9" * 5000 + ', "data": []}', "4300 digits"),  # #6: ValueError before
    ('{"data": [{"title": "t", "paragraphs": [{"context": "Ada \\ud800 L", "qas": []}]}]}',
     "lone surrogate"),  # #7: passed check, crashed predict/training later
])
@pytest.mark.parametrize("command", ["check", "evaluate"])
def test_hostile_data_files_are_one_line_errors(tmp_path, capsys, content, needle, command):
    data = write(tmp_path / "dev.json", content)
    preds = write(tmp_path / "p.json", {"a": "x"})
    code, _, err = run(capsys, command, data, *([preds] if command == "evaluate" else []))
    assert_one_line(code, err, "dev.json", needle)


@pytest.mark.parametrize("argv", [["check", "/dev/zero"], ["evaluate", "/dev/zero", "p.json"],
                                  ["evaluate", "{data}", "/dev/zero"]])
def test_devices_given_as_data_are_one_line_errors(tmp_path, capsys, argv):  # issue 20 #11: read forever before
    argv = [a.replace("{data}", write(tmp_path / "dev.json", V1)) for a in argv]
    code, _, err = run(capsys, *argv)
    assert_one_line(code, err, "/dev/zero: not a regular file")


def test_lone_surrogate_names_the_question(tmp_path, capsys):
    doc = json.loads(json.dumps(V1))
    doc["data"][0]["paragraphs"][0]["qas"][1]["question"] = "Who\ud800?"
    code, _, err = run(capsys, "check", write(tmp_path / "dev.json", json.dumps(doc)))
    assert_one_line(code, err, "question b", '"question"', "\\ud800")


@pytest.mark.parametrize("content, needle", [
    ("[" * 100_000, "nested too deeply"),
    ('{"a": ' + "1" * 5000 + "}", "4300 digits"),
    ("{}", "no predictions"),  # #12: ValueError traceback before
])
def test_hostile_predictions_files(tmp_path, capsys, content, needle):
    code, _, err = run(capsys, "evaluate", write(tmp_path / "dev.json", V1), write(tmp_path / "p.json", content))
    assert_one_line(code, err, "p.json", needle)


def test_version_1_1_on_v2_data_is_one_line(tmp_path, capsys):  # #12
    code, _, err = run(capsys, "evaluate", write(tmp_path / "dev.json", V2), write(tmp_path / "p.json", {"a": "x"}),
                       "--version", "1.1")
    assert_one_line(code, err, "dev.json", "unanswerable questions (e.g. n)", "--version 2.0")


def test_non_finite_no_answer_scores_and_threshold(tmp_path, capsys):  # #14
    data, preds = write(tmp_path / "dev.json", V2), write(tmp_path / "p.json", {"a": "x", "n": ""})
    for value in ("NaN", "Infinity", "-Infinity"):
        odds = write(tmp_path / "o.json", '{"a": %s, "n": 1}' % value)
        code, _, err = run(capsys, "evaluate", data, preds, "--na-prob-file", odds, "--output", str(tmp_path / "r"))
        assert_one_line(code, err, "o.json", "question a", "finite")
        assert not (tmp_path / "r").exists()
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", data, preds, "--na-prob-thresh", "nan"])
    assert exit_.value.code == 2 and "must be a finite number" in capsys.readouterr().err


def test_empty_data_has_nothing_to_score(tmp_path, capsys):  # #8 (evaluate's side)
    code, _, err = run(capsys, "evaluate", write(tmp_path / "dev.json", {"data": []}), write(tmp_path / "p.json",
                                                                                              {"a": "x"}))
    assert_one_line(code, err, "dev.json", "no questions")


# ------------------------------------------------------------------ python -m tfqa: output paths (#10)

def test_evaluate_output_paths_are_checked_before_the_work(tmp_path, capsys):
    data, preds = write(tmp_path / "dev.json", V1), write(tmp_path / "p.json", {"a": "on the mat"})
    code, out, err = run(capsys, "evaluate", data, preds, "--output", str(tmp_path))
    assert_one_line(code, err, "--output", "is a folder")
    assert out == "" and not list(tmp_path.parent.glob(f".{tmp_path.name}.*.tmp"))  # no temp file beside it
    missing = tmp_path / "no" / "such" / "dir" / "r.json"
    code, out, err = run(capsys, "evaluate", data, preds, "--output", str(missing))
    assert_one_line(code, err, "--output", "does not exist")
    assert not (tmp_path / "no").exists()  # the second attack run: the folders were created
    code, _, err = run(capsys, "evaluate", data, preds, "--output", str(tmp_path / "dev.json" / "r.json"))
    assert_one_line(code, err, "--output", "not a folder")
    code, _, err = run(capsys, "evaluate", data, preds, "--output", "/proc/tfqa-results.json")
    assert_one_line(code, err, "--output /proc/tfqa-results.json", "cannot write")


def test_atomic_writes_refuse_a_folder_before_making_a_temp_file(tmp_path):
    from tfqa.core.files import write_json_atomic

    (tmp_path / "sub").mkdir()
    with pytest.raises(IsADirectoryError):
        write_json_atomic(tmp_path / "sub", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


# ------------------------------------------------------------------ python -m tfqa predict / export with a model

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, wordpiece_tokenizer):
    from tfqa.modeling.checkpoints import tiny_distilbert

    folder = tmp_path_factory.mktemp("model")
    tiny_distilbert(wordpiece_tokenizer.vocab_size, 64, dim=8, n_layers=1, n_heads=2).save_pretrained(str(folder))
    wordpiece_tokenizer.save_pretrained(str(folder))
    (folder / "tfqa_config.json").write_text(json.dumps({"max_seq_length": 48, "doc_stride": 16,
                                                         "max_query_length": 16}))
    return folder


@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_predict_batch_size_must_be_positive(tmp_path, capsys, value):  # #11
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--model", "m", "--data", "d", "--output", "o", "--batch-size", value])
    assert exit_.value.code == 2 and "--batch-size" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["predict", "export"])
@pytest.mark.parametrize("layout", ["base", "version"])
def test_an_export_given_as_a_run_says_it_is_an_export(tmp_path, capsys, command, layout):  # issue 20 #16
    export = tmp_path / "export" / "tfqa"
    (export / "1").mkdir(parents=True)
    (export / "1" / "saved_model.pb").write_bytes(b"")
    model = export if layout == "base" else export / "1"
    extra = ["--data", write(tmp_path / "d.json", V1)] if command == "predict" else []
    code, _, err = run(capsys, command, "--model", str(model), *extra, "--output", str(tmp_path / "o"))
    assert_one_line(code, err, f"--model {model} is a SavedModel export", "ask --model", "serve --model")
    assert "model_type" not in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, needle", [
    (["predict", "--model", "m", "--data", "d", "--output", "o", "--batch-size", "99999999999999999999"],
     "--batch-size/--batch_size: must be at most 2147483647"),
    (["evaluate", "d", "p", "--max-samples", "-1"], "--max-samples/--max_samples: must be a non-negative integer"),
    (["ask", "--server", "http://h/v1/models/m", "--question", "q", "--batch-size", str(2**31)], "must be at most"),
])
def test_cli_integer_flags_have_a_range_the_code_honours(capsys, argv, needle):  # issue 20 #9: the CLIs' audit
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and needle in capsys.readouterr().err


def test_predict_output_paths_and_empty_data(tmp_path, capsys, model_dir):  # #10, #8
    data = write(tmp_path / "dev.json", V1)
    code, _, err = run(capsys, "predict", "--model", str(model_dir), "--data", data, "--output", data)
    assert_one_line(code, err, "--output", "exists and is not a folder")
    code, _, err = run(capsys, "predict", "--model", str(model_dir), "--data", data, "--output", "/proc/tfqa-out")
    assert_one_line(code, err, "--output /proc/tfqa-out", "cannot write")
    empty = write(tmp_path / "empty.json", {"data": []})
    code, out, err = run(capsys, "predict", "--model", str(model_dir), "--data", empty, "--output",
                         str(tmp_path / "o"))
    assert_one_line(code, err, "empty.json", "no questions")
    assert out == "" and not (tmp_path / "o" / "predictions.json").exists()


def test_predict_answers_with_trimmed_batches(tmp_path, capsys, model_dir):  # #2: eval batches are trimmed
    data = write(tmp_path / "dev.json", V1)
    code, _, err = run(capsys, "predict", "--model", str(model_dir), "--data", data, "--output", str(tmp_path / "o"),
                       "--batch-size", "1")
    assert code == 0, err
    predictions = json.loads((tmp_path / "o" / "predictions.json").read_text())
    assert set(predictions) == {"a", "b"} and all(p in V1["data"][0]["paragraphs"][0]["context"]
                                                  for p in predictions.values())


def test_predict_unknown_model_suggests_its_own_flag(tmp_path, capsys):  # "Also:" item
    code, _, err = run(capsys, "predict", "--model", str(tmp_path / "nope"), "--data", "d", "--output", "o")
    assert_one_line(code, err, "--model", "no such model directory")
    assert "--model_name_or_path" not in err


def test_unknown_model_type_is_a_short_line(tmp_path, capsys, model_dir):  # "Also:" the 4.4 KB line
    import shutil

    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "model_type": "no-such-architecture"}))
    code, _, err = run(capsys, "predict", "--model", str(bad), "--data", write(tmp_path / "d.json", V1),
                       "--output", str(tmp_path / "o"))
    assert_one_line(code, err, str(bad))
    assert len(err) < 600


@pytest.mark.parametrize("settings, needle", [
    ("{not json", "unreadable"),
    ("[1, 2]", "not a JSON object"),
    ('{"max_seq_length": "long"}', "'max_seq_length' must be int"),
    ('{"n_best_size": 0}', "--n_best_size must be positive"),
    ('{"max_answer_length": 100000000000000000000}', "--max_answer_length must be at most 2147483647"),  # issue 20 #9
    ('{"null_score_diff_threshold": NaN}', "finite"),
    ("[" * 100_000, "unreadable"),
])
@pytest.mark.parametrize("command", ["predict", "export"])
def test_corrupt_settings_file_is_one_line(tmp_path, capsys, model_dir, settings, needle, command):  # #13
    import shutil

    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    (bad / "tfqa_config.json").write_text(settings)
    extra = ["--data", write(tmp_path / "d.json", V1)] if command == "predict" else []
    code, _, err = run(capsys, command, "--model", str(bad), *extra, "--output", str(tmp_path / "o"))
    assert_one_line(code, err, "tfqa_config.json", needle)


@pytest.mark.parametrize("command", ["predict", "export"])
def test_window_longer_than_the_model_is_refused(tmp_path, capsys, model_dir, command):  # #2
    import shutil

    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    (bad / "tfqa_config.json").write_text(json.dumps({"max_seq_length": 100_000}))
    extra = ["--data", write(tmp_path / "d.json", V1)] if command == "predict" else []
    code, _, err = run(capsys, command, "--model", str(bad), *extra, "--output", str(tmp_path / "o"))
    assert_one_line(code, err, "max_seq_length 100000 is more than the model", "(64 positions)")


# ------------------------------------------------------------------ train_keras.py flags (#2, #9, #10, #22, second run)

def train(*args, cwd=ROOT, timeout=120):
    return subprocess.run([sys.executable, "train_keras.py", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def prepared_run(argv):
    """`train_keras.py`'s checks of a command line, as `_run` makes them (FlagError before anything is written)."""
    from tfqa.apps.train import parse_train_args, prepare_run
    from tfqa.core.config import spelled_as

    config, args = parse_train_args(argv)
    return prepare_run(config, args.overwrite_output_dir, spelled_as(args))


@pytest.mark.parametrize("flag, value", [
    ("--num_train_epochs", "nan"), ("--num_train_epochs", "inf"), ("--learning_rate", "nan"),
    ("--learning_rate", "inf"), ("--max_grad_norm", "nan"), ("--distill_temperature", "inf"),
])
def test_non_finite_flags_fail_before_anything_is_written(tmp_path, flag, value):  # #9 + second attack run
    from tfqa.core.errors import TfqaError

    out = tmp_path / "out"
    with pytest.raises(TfqaError, match=f"{flag} must be a finite number"):
        prepared_run(["--preset", "smoke", "--output_dir", str(out), flag, value])
    assert not out.exists()  # no data/ or smoke_vocab.txt before failing


def test_bad_flags_print_one_line_and_write_nothing(tmp_path):
    out = tmp_path / "out"
    proc = train("--preset", "smoke", "--output_dir", str(out), "--max_seq_length", "0", "--doc_stride", "0")
    assert_one_line(proc.returncode, proc.stderr, "--max_seq_length must be positive")
    assert not out.exists()
    proc = train("--preset", "smoke", "--output_dir", str(out), "--max_seq_length", "100000")
    assert_one_line(proc.returncode, proc.stderr, "--max_seq_length 100000 is more than the --preset smoke model")


def test_window_longer_than_a_local_checkpoint_fails_fast(tmp_path, model_dir):  # #2
    from tfqa.core.errors import TfqaError

    with pytest.raises(TfqaError, match=r"--max_seq_length 100000 is more than the model .* \(64 positions\)"):
        prepared_run(["--model_name_or_path", str(model_dir), "--max_seq_length", "100000",
                      "--output_dir", str(tmp_path / "o"), "--train_file", "squad/v1.1"])


@pytest.mark.parametrize("flag", ["--output_dir", "--cache_dir", "--export_dir"])
def test_output_flags_naming_a_file_or_proc(tmp_path, flag):  # #10
    from tfqa.core.errors import TfqaError

    a_file = write(tmp_path / "f.json", "{}")
    base = ["--preset", "smoke"] + ([] if flag == "--output_dir" else ["--output_dir", str(tmp_path / "o")])
    with pytest.raises(TfqaError, match=f"{flag} .*f.json: exists and is not a folder"):
        prepared_run(base + [flag, a_file])
    with pytest.raises(TfqaError, match=f"{flag} /proc/tfqa-x: cannot write there"):
        prepared_run(base + [flag, "/proc/tfqa-x"])


@pytest.mark.parametrize("flag, value, needle", [
    ("--seed", "-1", "--seed must be from 0 to 4294967295"),  # issue 20 #8: TF's "Seed must be between 0 and 2**32 - 1"
    ("--seed", str(2**32), "--seed must be from 0 to 4294967295"),
    ("--gradient_accumulation_steps", "99999999999999999999", "--gradient_accumulation_steps must be at most 64"),  # #9
    ("--gradient_accumulation_steps", "65", "unrolled into the train step's graph"),
    ("--max_steps", str(2**31), "--max_steps must be at most 2147483647"),
    ("--per_device_train_batch_size", str(10**20), "--per_device_train_batch_size must be at most 2147483647"),
    ("--n_best_size", str(10**20), "--n_best_size must be at most"),
    ("--learning_rate", "1e39", "--learning_rate must be at most 3.403e+38"),
    ("--num_train_epochs", "1e300", "--num_train_epochs must be at most"),
])
def test_out_of_range_flags_fail_before_anything_is_written(tmp_path, flag, value, needle):  # issue 20 #8, #9
    from tfqa.core.errors import TfqaError

    out = tmp_path / "out"
    with pytest.raises(TfqaError, match=re.escape(needle)):
        prepared_run(["--preset", "smoke", "--output_dir", str(out), flag, value])
    assert not out.exists()  # no OUTPUT_DIR/data/ left behind


def test_every_integer_and_float_setting_has_an_upper_bound():  # issue 20 #9: the audit, kept true for new settings
    from tfqa.core.config import TrainConfig, _flat_fields

    for f in _flat_fields(TrainConfig):
        if f.type in ("int", "float"):
            huge = 10**40 if f.type == "int" else 1e300
            assert TrainConfig(**{f.name: huge}).validate(check_files=False), f.name


def test_errors_name_the_alias_the_user_typed(tmp_path):  # issue 20 #22
    proc = train("--preset", "smoke", "--output_dir", str(tmp_path / "o"), "--per_gpu_train_batch_size", "-1")
    assert_one_line(proc.returncode, proc.stderr, "--per_gpu_train_batch_size must be positive (got -1)")
    assert "per_replica" not in proc.stderr
    from tfqa.core.errors import TfqaError

    with pytest.raises(TfqaError, match=r"--per_gpu_eval_batch_size must be positive") as caught:
        prepared_run(["--preset", "smoke", "--output_dir", str(tmp_path / "o"), "--per_gpu_eval_batch_size", "0",
                      "--max_seq_length", "0"])
    assert "--max_seq_length must be positive" in str(caught.value)  # flags typed as themselves stay as they are
    # --data_dir alone: its official file names are not --train_file/--predict_file the user typed
    with pytest.raises(TfqaError, match=rf"^--data_dir {tmp_path}/train-v1.1.json: no such file; --data_dir "
                                        rf"{tmp_path}/dev-v1.1.json: no such file$"):
        prepared_run(["--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "o")])


def test_version_flags_print_the_package_version(capsys):  # issue 20 #22
    import tfqa

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip().endswith(f" {tfqa.__version__}")
    proc = train("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"train_keras.py {tfqa.__version__}", proc.stderr


@pytest.fixture(scope="module")
def tiny_train(tmp_path_factory):
    from tfqa.core.files import write_json_atomic
    from tfqa.core.synthetic import synthetic_squad

    return str(write_json_atomic(tmp_path_factory.mktemp("data") / "train.json", synthetic_squad(6, seed=1)))


TINY = ["--preset", "smoke", "--max_seq_length", "64", "--doc_stride", "16", "--per_gpu_train_batch_size", "4"]


def test_teacher_that_is_not_a_model_exits_2(tmp_path, capsys, tiny_train):  # #22
    from tfqa.apps.train import train_main

    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "notes.txt").write_text("not a model")
    code = train_main([*TINY, "--output_dir", str(tmp_path / "o"), "--train_file", tiny_train, "--do_train",
                       "--teacher_model", str(teacher), "--export_dir", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1].startswith(f"train_keras.py: error: --teacher_model {teacher}")


def test_training_file_without_questions_is_an_error(tmp_path, capsys):  # #8
    from tfqa.apps.train import train_main

    empty = write(tmp_path / "empty.json", {"version": "1.1", "data": []})
    out = tmp_path / "o"
    code = train_main([*TINY, "--output_dir", str(out), "--train_file", empty, "--do_train"])
    std, err = capsys.readouterr()
    assert_one_line(code, err, "--train_file", "no questions to train on")
    assert not (out / "tf_model.h5").exists() and "Done." not in std
    code = train_main([*TINY, "--output_dir", str(out), "--predict_file", empty, "--do_eval"])
    std, err = capsys.readouterr()
    assert_one_line(code, err, "--predict_file", "no questions to evaluate")
    assert "{}" not in std


def test_the_transformers_backend_beside_transformers_5_is_one_line_before_anything_is_written(
        tmp_path, capsys, monkeypatch):
    # The version is read from the package metadata (tests/test_transformers5.py runs the real transformers 5).
    from importlib import metadata

    from tfqa.apps.train import train_main

    version = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "5.23.0" if name == "transformers" else version(name))
    new, empty = tmp_path / "new", tmp_path / "empty"
    empty.mkdir()
    for out, backend in ((new, []), (empty, ["--backend", "transformers"])):  # the default, and by name
        code = train_main([*TINY, "--output_dir", str(out), *backend])
        assert_one_line(code, capsys.readouterr().err, "train_keras.py: error: the transformers backend needs "
                        "transformers 4.46-4.54 (its TF model classes; transformers 5.23.0 is installed): "
                        "pip install 'transformers>=4.46,<4.55', or pass --backend keras_hub")
    assert not new.exists() and list(empty.iterdir()) == []


@pytest.mark.slow  # ~75 s: the first epoch has to end first
def test_ctrl_c_during_training_is_one_line_with_how_to_resume(tmp_path, tiny_train):  # #16
    out = tmp_path / "run"
    cmd = [sys.executable, "train_keras.py", *TINY, "--train_file", tiny_train, "--output_dir", str(out),
           "--num_train_epochs", "1000", "--do_train", "--export_dir", "none"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        history = out / "history.json"
        deadline = time.time() + 240
        while proc.poll() is None and time.time() < deadline and not (
                history.exists() and '"epoch": 1' in history.read_text()):
            time.sleep(0.3)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == EXIT_INTERRUPTED, err[-3000:]
    assert "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("train_keras.py: interrupted after ") and "the same command resumes from epoch " in last


def test_interruption_summary_says_where_a_rerun_starts(tmp_path):
    from tfqa.core.files import write_json_atomic
    from tfqa.core.history import interruption_summary

    assert "nothing to resume" in interruption_summary(tmp_path)
    epochs = [{"epoch": 1, "step_losses": [1.0] * 5}, {"epoch": 2, "step_losses": [1.0] * 5},
              {"epoch": 3, "step_losses": [1.0] * 2, "partial": True}]
    write_json_atomic(tmp_path / "history.json", {"epochs_planned": 4, "epochs": epochs})
    assert interruption_summary(tmp_path) == ("interrupted after 12 training steps (2 of 4 epochs complete); "
                                              "the same command resumes from epoch 3")
    write_json_atomic(tmp_path / "history.json", {"epochs_planned": 2, "epochs": epochs[:2]})
    assert "without training again" in interruption_summary(tmp_path)
