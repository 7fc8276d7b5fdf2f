"""`python -m tfqa evaluate|check`: official keys, clear one-line errors, no tracebacks."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest
from helpers import ROOT, squad_path

from tfqa.apps.cli import main

V1 = {"version": "1.1", "data": [{"title": "T", "paragraphs": [{
    "context": "The cat sat on the mat.",
    "qas": [{"id": "a", "question": "Where?", "answers": [{"text": "on the mat", "answer_start": 12}]},
            {"id": "b", "question": "Who?", "answers": [{"text": "The cat", "answer_start": 0}]}]}]}]}
V2 = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [{
    "context": "The cat sat on the mat.",
    "qas": [{"id": "a", "question": "Where?", "answers": [{"text": "on the mat", "answer_start": 12}],
             "is_impossible": False},
            {"id": "n", "question": "Why?", "answers": [], "is_impossible": True}]}]}]}


def write(path, obj):
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj, encoding="utf-8")
    return str(path)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_v1(tmp_path, capsys):
    data = write(tmp_path / "dev.json", V1)
    preds = write(tmp_path / "p.json", {"a": "the mat", "b": "The cat"})
    code, out, err = run(capsys, "evaluate", data, preds, "--output", str(tmp_path / "r.json"))
    result = json.loads(out)
    assert code == 0 and list(result) == ["exact_match", "f1"]
    assert result["exact_match"] == 50.0 and result["f1"] == pytest.approx(100 * (2 / 3 + 1) / 2)  # "the mat" vs "on the mat": P 1, R 1/2
    assert json.loads((tmp_path / "r.json").read_text()) == result


def test_evaluate_v2_with_null_odds(tmp_path, capsys):
    data = write(tmp_path / "dev.json", V2)
    preds = write(tmp_path / "p.json", {"a": "on the mat", "n": "cat"})
    odds = write(tmp_path / "odds.json", {"a": -2.0, "n": 3.0})
    code, out, _ = run(capsys, "evaluate", data, preds)
    assert code == 0 and json.loads(out)["exact"] == 50.0 and "best_exact" not in json.loads(out)
    code, out, _ = run(capsys, "evaluate", data, preds, "--na-prob-file", odds)
    result = json.loads(out)
    assert code == 0
    assert list(result) == ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact",
                            "NoAns_f1", "NoAns_total", "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]
    # "n" has no-answer odds 3.0 > the default threshold 1.0, so it counts as answered "".
    assert result["exact"] == 100.0 and result["best_exact"] == 100.0 and result["best_exact_thresh"] == -2.0
    code, out, _ = run(capsys, "evaluate", data, preds, "--na-prob-file", odds, "--na-prob-thresh", "5")
    assert json.loads(out)["exact"] == 50.0


def test_missing_and_unknown_predictions_are_reported(tmp_path, capsys):
    data = write(tmp_path / "dev.json", V1)
    code, out, err = run(capsys, "evaluate", data, write(tmp_path / "p.json", {"a": "on the mat", "zzz": "x"}))
    assert code == 0 and json.loads(out)["exact_match"] == 50.0
    assert "1 predictions are for questions not in" in err and "zzz" in err
    assert "1 of 2 questions have no prediction" in err and "score 0" in err


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "expected a JSON object"),
    ("{not json", "not valid JSON"),
    ('{"a": 3}', "question a: the prediction must be a string"),
    ('{"x": "y"}', "none of its 1 predictions is for a question of"),
])
def test_bad_predictions_files(tmp_path, capsys, content, message):
    data = write(tmp_path / "dev.json", V1)
    code, _, err = run(capsys, "evaluate", data, write(tmp_path / "p.json", content))
    assert code == 2 and message in err and "p.json" in err


def test_bad_null_odds_and_missing_files(tmp_path, capsys):
    data = write(tmp_path / "dev.json", V2)
    preds = write(tmp_path / "p.json", {"a": "x", "n": ""})
    code, _, err = run(capsys, "evaluate", data, preds, "--na-prob-file", write(tmp_path / "o.json", {"a": 1}))
    assert code == 2 and "no value for 1 predicted questions" in err
    code, _, err = run(capsys, "evaluate", data, preds, "--na-prob-file", write(tmp_path / "o.json", {"a": "x"}))
    assert code == 2 and "expected a number" in err
    code, _, err = run(capsys, "evaluate", str(tmp_path / "nope.json"), preds)
    assert code == 2 and "nope.json" in err and "no such file" in err
    code, _, err = run(capsys, "evaluate", data, str(tmp_path / "nope.json"))
    assert code == 2 and "no such file" in err


def test_bad_data_is_one_line_without_traceback(tmp_path):
    bad = json.loads(json.dumps(V1))
    bad["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 3
    data = write(tmp_path / "dev.json", bad)
    preds = write(tmp_path / "p.json", {"a": "x"})
    proc = subprocess.run([sys.executable, "-m", "tfqa", "evaluate", data, preds], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "dev.json" in proc.stderr and "question b" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "tfqa", "check", data, "--misaligned", "repair"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "1 answers repaired" in proc.stdout


@pytest.mark.real_data
def test_evaluate_real_dev_with_gold_answers(tmp_path, capsys):
    path = squad_path("dev-v1.1.json.gz")
    data = json.load(gzip.open(path, "rt", encoding="utf-8"))
    gold = {q["id"]: q["answers"][0]["text"] for a in data["data"] for p in a["paragraphs"] for q in p["qas"]}
    code, out, _ = run(capsys, "evaluate", str(path), write(tmp_path / "p.json", gold))
    assert code == 0 and json.loads(out) == {"exact_match": 100.0, "f1": 100.0}
