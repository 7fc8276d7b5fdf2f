"""tfqa never deletes or replaces what a user wrote; one run per folder (issue 20: items 1-4, 7, 21).

The run folder's record (tfqa_run.json, `tfqa.core.run_record`), --overwrite_output_dir, the preset's
data and vocab, the folder lock (`tfqa.core.run_lock`), and a scripted re-run of the attack's
data-loss cases through `train_keras.py`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT

from tfqa.core.errors import TfqaError
from tfqa.core.run_dir import MANIFEST_FILE, RunDirError, finished_run
from tfqa.core.run_record import RunRecord, clear_run, foreign_files

USER_FILES = {"logs/important.log": "my log\n", "backup/thesis.docx": "my thesis\n",
              "checkpoints/mine.ckpt": "my weights\n", "export/mine.txt": "my export notes\n",
              "notes.txt": "my notes\n"}


def user_folder(folder: Path) -> Path:
    """A folder holding a user's own files under the names a run uses (the attack's home-like folder)."""
    for rel, text in USER_FILES.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def assert_user_files_kept(folder: Path) -> None:
    for rel, text in USER_FILES.items():
        assert (folder / rel).read_text() == text, rel


def write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def fake_run(out: Path) -> None:
    """What a training run writes, through the record as train_and_evaluate keeps it."""
    record = RunRecord.begin(out, also=("smoke_vocab.txt",))
    out.mkdir(parents=True, exist_ok=True)
    record.save()
    for rel in ("smoke_vocab.txt", "data/train.json", "logs/train/events.out.tfevents.1.host",
                "checkpoints/epoch-01.h5", "backup/chief/checkpoint", "export/tfqa/1/saved_model.pb", "tf_model.h5",
                "config.json", "history.json", "tfqa_config.json"):
        write(out / rel)
    record.save()
    (out / "backup/chief/checkpoint").unlink()  # tf-keras empties its backup when training ends
    for rel in ("smoke_vocab.txt", "backup/chief", "backup"):
        record.discard(rel)
    record.finish(trained=True)


def prepared_run(argv):
    from tfqa.apps.train import parse_train_args, prepare_run

    config, args = parse_train_args(argv)
    return prepare_run(config, args.overwrite_output_dir)


def train(*args, cwd=ROOT, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "train_keras.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


# ------------------------------------------------------------------ the record and --overwrite_output_dir (#1, #7)

def test_overwrite_keeps_files_tfqa_did_not_write(tmp_path):
    out = user_folder(tmp_path / "home")
    fake_run(out)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["finished"] is True
    # In the user's folders, only what appeared; the folders tfqa made, whole; emptied leftovers gone.
    assert {"logs/train", "checkpoints/epoch-01.h5", "data", "export/tfqa", "tf_model.h5"} <= set(manifest["created"])
    assert not any(p.startswith(("logs/important", "backup", "checkpoints/mine", "export/mine", "notes"))
                   for p in manifest["created"])
    assert not (out / "smoke_vocab.txt").exists() and not (out / "backup" / "chief").exists()
    removed = clear_run(out)
    assert "logs/train/" in removed and "tf_model.h5" in removed and "export/tfqa/" in removed
    assert_user_files_kept(out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(USER_FILES)


def test_overwrite_of_a_folder_that_is_not_a_run_removes_nothing_and_says_so(tmp_path, monkeypatch, capsys):
    home = user_folder(tmp_path / "home")
    monkeypatch.chdir(home)
    prepared_run(["--preset", "smoke", "--output_dir", ".", "--overwrite_output_dir"])
    assert_user_files_kept(home)
    err = capsys.readouterr().err
    assert "has no record of what tfqa wrote there" in err and "nothing removed" in err


def test_overwrite_says_what_it_removed(tmp_path, monkeypatch, capsys):
    out = user_folder(tmp_path / "run")
    fake_run(out)
    prepared_run(["--preset", "smoke", "--output_dir", str(out), "--overwrite_output_dir"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("note: --overwrite_output_dir: removed the earlier run's ")
    assert "tf_model.h5" in err[0] and "logs/train/" in err[0] and "logs/important.log" not in err[0]
    assert_user_files_kept(out)
    assert not (out / "tf_model.h5").exists()


def test_overwrite_through_a_symlinked_output_dir_keeps_the_targets_files(tmp_path):
    target = user_folder(tmp_path / "target")
    link = tmp_path / "link"
    link.symlink_to(target)
    prepared_run(["--preset", "smoke", "--output_dir", str(link), "--overwrite_output_dir"])
    assert_user_files_kept(target)
    fake_run(link)  # a run through the link records paths relative to it
    write(target / "logs" / "train" / "mine.txt", "user's, in the run's folder")  # tfqa's folder: goes with it
    clear_run(link)
    assert_user_files_kept(target)
    assert link.is_symlink() and not (target / "tf_model.h5").exists()


def test_clearing_never_follows_a_symbolic_link_or_leaves_the_folder(tmp_path):
    out, elsewhere = tmp_path / "run", user_folder(tmp_path / "elsewhere")
    fake_run(out)
    import shutil

    shutil.rmtree(out / "logs" / "train")
    (out / "logs" / "train").symlink_to(elsewhere / "logs")  # a link inside a folder tfqa made
    shutil.rmtree(out / "data")
    (out / "data").symlink_to(elsewhere)  # a recorded folder replaced by a link to the user's folder
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    manifest["created"] += ["../elsewhere/notes.txt", str(elsewhere / "notes.txt"), "data/notes.txt"]
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))  # a hand-edited record
    removed = clear_run(out)
    assert_user_files_kept(elsewhere)
    assert not (out / "logs").exists() and "logs/" in removed  # the link went with tfqa's folder, not its target
    assert (out / "data").is_symlink() and not any(r.startswith(("data", "..", "/")) for r in removed)


def test_a_run_of_an_older_tfqa_loses_nothing_to_overwrite(tmp_path):
    out = user_folder(tmp_path / "old")
    write(out / "history.json", json.dumps({"epochs": [], "final": {"f1": 1.0}}))
    write(out / "checkpoints" / "epoch-01.h5")
    write(out / "tf_model.h5")
    assert clear_run(out) is None  # no record: nothing removed
    assert foreign_files(out) == []  # its run files are its own: a new run writes over them
    assert_user_files_kept(out)
    assert (out / "tf_model.h5").exists() and (out / "checkpoints" / "epoch-01.h5").exists()


def test_a_run_refuses_to_replace_a_users_file_of_a_run_files_name(tmp_path, monkeypatch):
    from tfqa.apps.train import FlagError

    home = user_folder(tmp_path / "home")
    write(home / "config.json", "{\"mine\": true}")
    write(home / "checkpoints" / "epoch-01.h5", "my own Keras checkpoint")
    monkeypatch.chdir(home)
    with pytest.raises(FlagError, match=r"--output_dir \. holds config.json, checkpoints/epoch-01.h5, which tfqa "
                                        r"did not write and a run would replace; choose another folder"):
        prepared_run(["--preset", "smoke", "--output_dir", ".", "--overwrite_output_dir"])
    assert (home / "config.json").read_text() == "{\"mine\": true}" and not (home / "data").exists()
    assert_user_files_kept(home)


# ------------------------------------------------------------------ the smoke preset's data and vocab (#2, #21)

def test_smoke_data_never_replaces_a_users_file(tmp_path):
    out = tmp_path / "run"
    mine = write(out / "data" / "train.json", "{\"version\": \"mine\", \"data\": []}")
    with pytest.raises(RunDirError, match=f"{mine}: holds a file tfqa did not write, where the preset writes its "
                                          f"data; pass --train_file {mine} to use it, or choose another --output_dir"):
        prepared_run(["--preset", "smoke", "--output_dir", str(out)])
    assert mine.read_text() == "{\"version\": \"mine\", \"data\": []}" and not (out / "data" / "dev.json").exists()
    config = prepared_run(["--preset", "smoke", "--output_dir", str(out), "--train_file", str(mine)])
    assert config.train_file == str(mine) and mine.read_text() == "{\"version\": \"mine\", \"data\": []}"


def test_smoke_data_tfqa_wrote_or_the_same_text_is_fine(tmp_path):
    out = tmp_path / "run"
    first = prepared_run(["--preset", "smoke", "--output_dir", str(out)])
    text = Path(first.train_file).read_text()
    assert prepared_run(["--preset", "smoke", "--output_dir", str(out)]).train_file == first.train_file  # recorded
    (out / MANIFEST_FILE).unlink()  # no record: the very same text loses nothing either
    assert prepared_run(["--preset", "smoke", "--output_dir", str(out)]).train_file == first.train_file
    assert Path(first.train_file).read_text() == text


def test_a_smoke_vocab_tfqa_did_not_write_is_used_and_said(tmp_path, capsys):
    from tfqa.training.presets import check_vocab

    out = tmp_path / "run"
    vocab = write(out / "smoke_vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n")
    prepared_run(["--preset", "smoke", "--output_dir", str(out)])
    assert f"--preset smoke: using the {vocab} that was there already" in capsys.readouterr().err
    check_vocab(vocab)
    write(vocab, "[PAD]\nthe\nthe\n")
    with pytest.raises(RunDirError, match=r"smoke_vocab.txt: not a WordPiece vocab \(no \[UNK\] token.*repeated"):
        check_vocab(vocab)
    assert vocab.read_text() == "[PAD]\nthe\nthe\n"


# ------------------------------------------------------------------ a finished run (#3)

def test_a_finished_run_with_an_unreadable_history_is_still_finished(tmp_path):
    from tfqa.apps.train import FlagError

    out = tmp_path / "run"
    fake_run(out)
    (out / "history.json").write_text("{cut off")
    assert finished_run(out)
    with pytest.raises(FlagError, match="holds a finished run; pass --overwrite_output_dir"):
        prepared_run(["--preset", "smoke", "--output_dir", str(out)])
    (out / MANIFEST_FILE).write_text("[not a record")
    with pytest.raises(RunDirError, match=f"{out / MANIFEST_FILE}: unreadable"):
        finished_run(out)


# ------------------------------------------------------------------ one run per folder (#4)

HOLD = ("import sys, time; from tfqa.core.run_lock import run_lock\n"
        "with run_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(300)\n")


def hold_lock(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_into_a_locked_folder_is_refused_in_one_line(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = hold_lock(out)
    try:
        proc = train("--preset", "smoke", "--output_dir", str(out), timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"train_keras.py: error: --output_dir {out}: another tfqa run (process {holder.pid} on {os.uname().nodename}) "
        "is writing into it; wait for it to end, or choose another folder"]
    assert sorted(p.name for p in out.iterdir()) == [".tfqa.lock"]  # nothing written; the killed holder's lock file


def test_a_killed_runs_lock_is_released_and_a_released_lock_leaves_no_file(tmp_path):
    from tfqa.core.run_lock import RunLockedError, run_lock

    holder = hold_lock(tmp_path)
    with pytest.raises(RunLockedError, match=f"process {holder.pid} "):
        with run_lock(tmp_path):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with run_lock(tmp_path) as path:  # the kernel dropped the lock with its process
        assert path.read_text().startswith(f"tfqa run lock: process {os.getpid()} ")
    assert not path.exists()


def test_a_lock_file_that_is_not_tfqas_is_refused_not_overwritten(tmp_path):
    from tfqa.core.run_lock import RunLockedError, run_lock

    mine = write(tmp_path / ".tfqa.lock", "my own file\n")
    with pytest.raises(RunLockedError, match="holds a file .tfqa.lock that is not tfqa's lock"):
        with run_lock(tmp_path):
            pass
    assert mine.read_text() == "my own file\n"


@pytest.mark.parametrize("task, chief", [(None, True), ({"type": "worker", "index": 0}, True),
                                         ({"type": "worker", "index": 1}, False),
                                         ({"type": "chief", "index": 0}, True)])
def test_only_the_chief_of_a_multi_worker_job_locks_and_clears_the_folder(task, chief):
    from tfqa.training.strategies import chief_process

    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    if task and task["type"] == "chief":
        cluster["chief"] = ["127.0.0.1:3"]
    assert chief_process({"cluster": cluster, "task": task} if task else {}) is chief


# ------------------------------------------------------------------ leftovers (#21)

def test_gitignore_ignores_build_and_the_default_export_only():
    proc = subprocess.run(["git", "check-ignore", "--no-index", "build/lib/x.py", "export/tfqa/1", "tfqa/export/x.py"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.split() == ["build/lib/x.py", "export/tfqa/1"]


TINY = ["--preset", "smoke", "--max_train_samples", "8", "--max_eval_samples", "8", "--max_steps", "2",
        "--num_train_epochs", "1", "--per_gpu_train_batch_size", "4"]


@pytest.mark.slow  # a tiny run and its export: ~28 s
def test_a_finished_run_leaves_no_empty_backup_second_vocab_or_lock(tmp_path):
    out = tmp_path / "run"
    proc = train(*TINY, "--output_dir", str(out), "--export_dir", str(out / "serving"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {p.name for p in out.iterdir()}
    assert {"vocab.txt", "tf_model.h5", MANIFEST_FILE, "serving"} <= names
    assert not names & {"backup", "smoke_vocab.txt", ".tfqa.lock"}
    created = json.loads((out / MANIFEST_FILE).read_text())["created"]
    assert "serving/1" in created and "backup" not in created and "smoke_vocab.txt" not in created


@pytest.mark.slow  # a tiny training run, with a second started while it trains: ~30 s
def test_two_trainings_into_one_folder_the_second_is_refused_and_the_first_finishes(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, str(ROOT / "train_keras.py"), *TINY, "--output_dir", str(out),
                              "--export_dir", "none"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.time() + 120
        while not (out / ".tfqa.lock").exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        second = train(*TINY, "--output_dir", str(out), "--export_dir", "none", timeout=120)
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 2 and len(second.stderr.strip().splitlines()) == 1, second.stderr[-2000:]
    assert f"--output_dir {out}: another tfqa run (process {first.pid} " in second.stderr
    assert first.returncode == 0, err[-3000:]
    assert json.loads((out / MANIFEST_FILE).read_text())["finished"] is True


# ------------------------------------------------------------------ the attack, scripted


@pytest.mark.slow  # two tiny runs and an export: ~70 s
def test_the_attacks_data_loss_cases_lose_nothing(tmp_path):
    home = user_folder(tmp_path / "home")
    first = train(*TINY, "--output_dir", ".", cwd=home)  # --output_dir . from a home-like folder
    assert first.returncode == 0, first.stderr[-3000:]
    assert (home / "export" / "tfqa" / "1" / "saved_model.pb").exists() and (home / "tf_model.h5").exists()
    assert_user_files_kept(home)
    # No leftovers: the smoke vocab is the tokenizer's vocab.txt, the emptied backup is gone (not the user's).
    assert not (home / "smoke_vocab.txt").exists() and (home / "vocab.txt").exists()
    assert sorted(p.name for p in (home / "backup").iterdir()) == ["thesis.docx"]
    again = train(*TINY, "--output_dir", ".", "--overwrite_output_dir", "--export_dir", "none", cwd=home)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "note: --overwrite_output_dir: removed the earlier run's " in again.stderr
    assert_user_files_kept(home)
    assert not (home / "export" / "tfqa").exists()  # the first run's export went with it; the user's export/ stayed
    assert json.loads((home / MANIFEST_FILE).read_text())["finished"] is True
    (home / "history.json").write_text("")  # a finished run whose history is unreadable is not trained over
    refused = train(*TINY, "--output_dir", ".", cwd=home)
    assert refused.returncode == 2 and "holds a finished run" in refused.stderr
