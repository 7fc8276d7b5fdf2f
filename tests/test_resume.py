"""Resuming an interrupted run: settings that must match refused in one line, changes recorded per epoch, said."""

from __future__ import annotations

import json

import pytest

from tfqa.core.config import TrainConfig
from tfqa.core.resume import (FIXED_ON_RESUME, RECORDED_PER_EPOCH, ResumeError, check_resume, interrupted_run,
                              resume_problems, resume_summary, trained_with)


def interrupted(folder, config: TrainConfig, epochs=(1,), planned=4, backup=True):
    """A run folder as a run cut off after `epochs` leaves it: history.json from the start of training, a backup."""
    folder.mkdir(parents=True, exist_ok=True)
    records = [{"epoch": e, "loss": 1.0 / e, "step_losses": [1.0] * 5, "trained_with": trained_with(config.to_dict())}
               for e in epochs]
    (folder / "history.json").write_text(json.dumps({"config": config.to_dict(), "epochs": records,
                                                     "steps_per_epoch": 5, "epochs_planned": planned}))
    if backup:
        (folder / "backup" / "chief").mkdir(parents=True)
        (folder / "backup" / "chief" / "checkpoint").write_text("model_checkpoint_path: \"ckpt-1\"\n")
    return folder


def test_resume_with_another_max_seq_length_is_refused_naming_the_flag(tmp_path):
    out = interrupted(tmp_path / "x", TrainConfig(output_dir=str(tmp_path / "x"), max_seq_length=64))
    rerun = TrainConfig(output_dir=str(tmp_path / "x"), max_seq_length=96)
    assert resume_problems(rerun.to_dict(), out) == [
        f"--max_seq_length 96: the interrupted run in {out} was trained with 64; resume with --max_seq_length 64 "
        "or pass --overwrite_output_dir"]
    with pytest.raises(ResumeError, match="--max_seq_length 96"):
        check_resume(rerun, out)  # train_and_evaluate's own guard, for the Python API


def test_resume_compares_every_setting_that_shapes_the_model_and_the_data(tmp_path, monkeypatch):
    saved = TrainConfig(output_dir=str(tmp_path / "x"), train_file=str(tmp_path / "train.json"))
    out = interrupted(tmp_path / "x", saved)
    changed = {"backend": "keras_hub", "model_name_or_path": "bert-base-uncased", "config_name": "other-config",
               "tokenizer_name": "other-tokenizer", "teacher_model": str(tmp_path / "teacher"), "max_seq_length": 128,
               "doc_stride": 100, "max_query_length": 32, "train_file": str(tmp_path / "other.json"),
               "per_replica_batch_size": 4, "gradient_accumulation_steps": 2, "preset": "smoke",
               "max_train_samples": 10, "mixed_precision": "bf16", "seed": 7}
    assert sorted(changed) == sorted(FIXED_ON_RESUME)  # a setting added there must be tried here too
    for name, value in changed.items():
        problems = resume_problems(saved.replace(**{name: value}).to_dict(), out)
        assert len(problems) == 1 and problems[0].startswith(f"--{name} "), (name, problems)
    monkeypatch.chdir(tmp_path)  # the same file spelled another way is the same file
    assert resume_problems(saved.replace(train_file="train.json").to_dict(), out) == []


def test_resume_may_change_the_schedule_and_says_what_it_continues_from(tmp_path):
    saved = TrainConfig(output_dir=str(tmp_path / "x"), learning_rate=1e-3)
    out = interrupted(tmp_path / "x", saved, epochs=(1, 2, 3), planned=4)
    rerun = saved.replace(learning_rate=2e-3, num_train_epochs=5.0)
    assert resume_problems(rerun.to_dict(), out) == []
    assert resume_summary(rerun.to_dict(), out) == (
        f"resuming the interrupted run in {out} at epoch 4 of 4 (after 15 steps; 3 epochs complete); changed: "
        "--learning_rate 0.001 → 0.002, --num_train_epochs 2 → 5")
    assert resume_summary(saved.to_dict(), out).endswith("; no setting changed")
    assert {"learning_rate", "num_train_epochs"} <= set(RECORDED_PER_EPOCH)


def test_a_run_without_a_backup_or_with_its_final_entry_is_not_resumed(tmp_path):
    config = TrainConfig(output_dir=str(tmp_path / "x"), max_seq_length=64)
    out = interrupted(tmp_path / "x", config, backup=False)  # cut off before the first backup: starts afresh
    assert interrupted_run(out) == {} and resume_summary(config.to_dict(), out) == ""
    assert resume_problems(config.replace(max_seq_length=96).to_dict(), out) == []
    # Every planned epoch trained, the end cut off: the rerun evaluates those weights, so they must fit too.
    done = interrupted(tmp_path / "done", config, epochs=(1, 2), planned=2, backup=False)
    assert len(resume_problems(config.replace(max_seq_length=96).to_dict(), done)) == 1
    assert resume_summary(config.to_dict(), done) == ""  # no backup: nothing for `fit` to resume from
    history = json.loads((done / "history.json").read_text())
    (done / "history.json").write_text(json.dumps({**history, "final": {"f1": 1.0}}))
    assert interrupted_run(done) == {}


def test_train_keras_refuses_a_resume_with_another_window_before_writing_anything(tmp_path):
    from tfqa.apps.train import FlagError, parse_train_args, prepare_run
    from tfqa.training.presets import SMOKE

    out = tmp_path / "x"
    config, _ = parse_train_args(["--preset", "smoke", "--output_dir", str(out)])
    interrupted(out, config.replace(**SMOKE.data_files(config)))  # as the first attempt recorded it
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    config, args = parse_train_args(["--preset", "smoke", "--output_dir", str(out), "--max_seq_length", "96"])
    with pytest.raises(FlagError) as error:
        prepare_run(config, args.overwrite_output_dir)
    assert str(error.value) == (f"--max_seq_length 96: the interrupted run in {out} was trained with 64; resume "
                                "with --max_seq_length 64 or pass --overwrite_output_dir")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # no data/ written by the preset
    config, args = parse_train_args(["--preset", "smoke", "--output_dir", str(out), "--learning_rate", "0.002"])
    assert prepare_run(config, args.overwrite_output_dir).learning_rate == 0.002  # the schedule may change


def test_inspect_shows_each_epochs_own_learning_rate_after_a_resume_changed_it(tmp_path, capsys):
    from tfqa.apps.cli import main

    config = TrainConfig(output_dir=str(tmp_path / "x"), learning_rate=1e-3, num_train_epochs=4)
    out = interrupted(tmp_path / "x", config, epochs=(1,))
    history = json.loads((out / "history.json").read_text())
    later = trained_with(config.replace(learning_rate=2e-3, warmup_ratio=0.0).to_dict())
    history["epochs"] += [{"epoch": e, "loss": 0.5, "step_losses": [0.5] * 5, "trained_with": later} for e in (2, 3, 4)]
    history["config"] = config.replace(learning_rate=2e-3, warmup_ratio=0.0).to_dict()  # the last attempt's
    (out / "history.json").write_text(json.dumps(history))
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "learning rate 0.001 (epoch 1), 0.002 (epochs 2–4)" in text and "learning rate 0.002 " not in text
    assert "changed on resume: --warmup_ratio 0.1 (epoch 1), 0 (epochs 2–4)" in text
