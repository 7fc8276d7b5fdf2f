"""--seed repeats a run on the same machine: the smoke vocab, the losses, the predictions, the tuned threshold."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import ROOT

VOCAB_SCRIPT = """
import sys
from tfqa.core.synthetic import synthetic_squad
from tfqa.core.vocab import train_word_vocab
data = synthetic_squad(40, seed=3)
texts = [p["context"] for a in data["data"] for p in a["paragraphs"]]
texts += [q["question"] for a in data["data"] for p in a["paragraphs"] for q in p["qas"]]
tokenizer = train_word_vocab(texts, vocab_size=int(sys.argv[1]), token_type_ids=False)
print("\\n".join(sorted(tokenizer.vocab, key=tokenizer.vocab.get)))
"""


def _vocab_in_a_new_process(size: int, hash_seed: str) -> list[str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run([sys.executable, "-c", VOCAB_SCRIPT, str(size)], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True).stdout.splitlines()


def test_the_smoke_vocab_is_the_same_token_for_token_in_every_process():
    # Hugging Face's WordPiece trainer gave 3 different vocab sets in 8 processes from the same texts.
    first, second = _vocab_in_a_new_process(2000, "1"), _vocab_in_a_new_process(2000, "2")
    assert first == second and first[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert "##a" in first and len(first) == len(set(first)) > 100
    small = _vocab_in_a_new_process(80, "3")
    assert len(small) == 80 and small == first[:80]  # a smaller vocab keeps the characters, then the commonest words


def _tiny_run(out, data) -> dict:
    """A small smoke-model run in a process of its own: its recorded losses, predictions and scores."""
    import json

    proc = subprocess.run([sys.executable, "train_keras.py", "--preset", "smoke", "--train_file", data[0],
                           "--predict_file", data[1], "--output_dir", str(out), "--num_train_epochs", "1",
                           "--per_gpu_train_batch_size", "8", "--export_dir", "none"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    return {"losses": [e["step_losses"] for e in history["epochs"]],
            "dev": [{k: v for k, v in e.items() if k != "step_losses"} for e in history["epochs"]],
            "vocab": (out / "vocab.txt").read_text(), "scores": json.loads(proc.stdout),
            **{name: json.loads((out / f"{name}.json").read_text())
               for name in ("predictions", "nbest_predictions", "null_odds", "eval_results")}}


@pytest.mark.slow
def test_two_runs_with_the_same_seed_agree_exactly(tmp_path):
    from tfqa.core.files import write_json_atomic
    from tfqa.core.synthetic import synthetic_squad

    data = (str(write_json_atomic(tmp_path / "train.json", synthetic_squad(24, seed=1))),
            str(write_json_atomic(tmp_path / "dev.json", synthetic_squad(10, seed=2, name_offset=2000))))
    first, second = _tiny_run(tmp_path / "one", data), _tiny_run(tmp_path / "two", data)
    assert len(first["losses"]) == 1 and len(first["losses"][0]) > 5 and first["null_odds"]
    assert "null_threshold" in first["eval_results"]  # a threshold was tuned, and must be the same one
    for key in first:
        assert first[key] == second[key], key  # exactly: no tolerance
