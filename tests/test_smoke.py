"""The README's first command: the offline smoke preset, run exactly as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from helpers import ROOT

from tfqa.core.files import write_json_atomic
from tfqa.core.synthetic import synthetic_squad


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run for the tests of this file: (output folder, the finished process)."""
    out = tmp_path_factory.mktemp("smoke") / "smoke"
    proc = subprocess.run([sys.executable, "train_keras.py", "--preset", "smoke", "--output_dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "CI": "1"})
    return out, proc


@pytest.mark.slow
def test_smoke_preset_trains_to_em_90_and_saves(smoke_run):
    out, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "eval_results.json").read_text())
    assert results["exact"] >= 90 and results["HasAns_total"] > 0 and results["NoAns_total"] > 0, results
    assert [e["epoch"] for e in results["epochs"]] == [1, 2, 3, 4]
    for name in ("tf_model.h5", "config.json", "vocab.txt", "predictions.json", "null_odds.json", "history.json",
                 "training.png"):
        assert (out / name).exists(), name
    assert f"Outputs in {out}/:" in proc.stderr and "Next:" in proc.stderr
    assert "\r" not in proc.stdout and "//" not in proc.stdout + proc.stderr  # no progress bars among the results
    umask = os.umask(0)
    os.umask(umask)
    for name in ("eval_results.json", "training.png", "predictions.json", "tfqa_config.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name  # 0644 under umask 022, like the export
    # The corpus needs doc stride: on average a question spans several windows (the counts the run prints
    # are the ones it records).
    history = json.loads((out / "history.json").read_text())
    shown = re.search(r"training: (\d+) questions, (\d+) windows", proc.stderr)
    assert shown and (int(shown[1]), int(shown[2])) == (history["train_questions"], history["train_windows"])
    assert history["train_windows"] >= 2.5 * history["train_questions"] > 1000


@pytest.mark.slow
def test_smoke_null_threshold_is_tuned_on_dev_and_applied_everywhere(smoke_run):
    """--null_score_diff_threshold auto (the default): the official best_f1_thresh, applied to predictions.json,
    recorded in tfqa_config.json and eval_results.json, and baked into the export."""
    from tfqa import QuestionAnswerer, load_squad
    from tfqa.core.metrics import squad_metrics

    out, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "eval_results.json").read_text())
    tuned = results["null_threshold"]
    assert tuned["threshold"] == results["best_f1_thresh"]
    assert json.loads((out / "tfqa_config.json").read_text())["null_score_diff_threshold"] == tuned["threshold"]
    assert results["f1"] == results["best_f1"] == tuned["f1_after"] >= tuned["f1_before"]
    # The predictions file scores what eval_results.json says (scored as the closing lines say).
    examples = load_squad(out / "data" / "dev.json")
    predictions = json.loads((out / "predictions.json").read_text())
    null_odds = json.loads((out / "null_odds.json").read_text())
    assert squad_metrics(examples, predictions, na_probs=null_odds, na_prob_thresh=tuned["threshold"])["f1"] == \
        results["f1"] and f"--na-prob-thresh {tuned['threshold']!r}" in proc.stderr
    assert all((text == "") == (null_odds[qid] > tuned["threshold"]) for qid, text in predictions.items()
               if text or null_odds[qid] > tuned["threshold"])
    # The export answers "" exactly where predictions.json does.
    exported = QuestionAnswerer.from_pretrained(out / "export" / "tfqa")([e.question for e in examples],
                                                                        [e.context for e in examples])
    no_answer = {e.id for e, r in zip(examples, exported) if not r["answer"]}
    assert no_answer == {qid for qid, text in predictions.items() if not text}


@pytest.mark.slow
def test_train_keras_stdout_is_the_scores_json_only(smoke_run):
    """`train_keras.py ... > scores.json` is JSON: the closing lines (where outputs are, what next) are on stderr."""
    out, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = json.loads(proc.stdout)
    results = json.loads((out / "eval_results.json").read_text())
    assert scores == {k: round(v, 2) for k, v in results.items() if isinstance(v, float)} and "f1" in scores
    assert "Next:" not in proc.stdout and "Next: python -m tfqa inspect" in proc.stderr


def test_default_run_offline_explains_and_exits_2(tmp_path):
    train = write_json_atomic(tmp_path / "train.json", synthetic_squad(2, seed=1))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}  # an empty cache, no hub
    proc = subprocess.run([sys.executable, "train_keras.py", "--train_file", str(train), "--predict_file", str(train),
                           "--output_dir", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "distilbert-base-uncased" in proc.stderr and "--model_name_or_path" in proc.stderr
    assert "python train_keras.py --preset smoke" in proc.stderr
    assert not (tmp_path / "out").exists()  # a run that cannot start leaves no empty output folder
