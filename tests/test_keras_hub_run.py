"""`train_keras.py --preset smoke --backend keras_hub`: the whole run on Keras 3 — train, evaluate, save a
`.keras` model, export — and every way tfqa answers from it, as on the transformers backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def keras_hub_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("khsmoke") / "smoke"
    proc = subprocess.run([sys.executable, "train_keras.py", "--preset", "smoke", "--backend", "keras_hub",
                           "--output_dir", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "CI": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_the_smoke_run_reaches_the_transformers_backends_em_band(keras_hub_run):
    out, proc = keras_hub_run
    results = json.loads((out / "eval_results.json").read_text())
    scores = json.loads(proc.stdout)  # stdout: the scores only, rounded to 2 places
    assert scores and all(round(results[name], 2) == value for name, value in scores.items()), scores
    assert results["exact"] >= 95 and results["HasAns_total"] > 0 and results["NoAns_total"] > 0, results
    settings = json.loads((out / "tfqa_config.json").read_text())
    assert settings["backend"] == "keras_hub"
    assert (out / "model.keras").is_file() and not (out / "tf_model.h5").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [f"epoch-0{i}.weights.h5" for i in (1, 2, 3, 4)]
    history = json.loads((out / "history.json").read_text())
    losses = [sum(e["step_losses"]) / len(e["step_losses"]) for e in history["epochs"]]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.1, losses


def test_the_model_file_loads_in_plain_keras_3_and_gives_start_and_end_logits(keras_hub_run):
    out, _ = keras_hub_run
    script = textwrap.dedent(f"""
        import numpy as np, keras, keras_hub
        model = keras.saving.load_model({str(out / "model.keras")!r})
        ids = np.array([[2, 10, 11, 3, 12, 13, 14, 3]], "int32")
        out = model({{"input_ids": ids, "attention_mask": np.ones_like(ids)}})
        print(sorted(out), tuple(out["start_logits"].shape), tuple(out["end_logits"].shape))
    """)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}  # plain Keras 3, no tfqa
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env,
                          cwd=str(out.parent))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "['end_logits', 'start_logits'] (1, 8) (1, 8)"


def test_the_run_and_its_export_answer_like_predictions_json(keras_hub_run):
    from tfqa import QuestionAnswerer, load_squad

    out, _ = keras_hub_run
    examples = load_squad(out / "data" / "dev.json")[:60]
    predictions = json.loads((out / "predictions.json").read_text())
    questions, contexts = [e.question for e in examples], [e.context for e in examples]
    for path in (out, out / "export" / "tfqa"):
        answers = QuestionAnswerer.from_pretrained(path)(questions, contexts)
        assert [a["answer"] for a in answers] == [predictions[e.id] for e in examples], path


def test_predict_inspect_and_export_commands_work_on_the_run(keras_hub_run, tmp_path):
    out, _ = keras_hub_run

    def tfqa(*args):
        proc = subprocess.run([sys.executable, "-m", "tfqa", *map(str, args)], cwd=ROOT, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    tfqa("predict", "--model", out, "--data", out / "data" / "dev.json", "--output", tmp_path / "pred")
    assert json.loads((tmp_path / "pred" / "predictions.json").read_text()) == \
        json.loads((out / "predictions.json").read_text())
    assert "keras-hub QA model (model.keras)" in tfqa("inspect", out).stdout
    tfqa("export", "--model", out, "--output", tmp_path / "export")
    assert (tmp_path / "export" / "1" / "saved_model.pb").is_file()
