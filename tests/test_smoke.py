"""The default run offline. The smoke preset itself runs as the README's Quickstart command (test_readme.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import ROOT

from tfqa.core.files import write_json_atomic
from tfqa.core.synthetic import synthetic_squad


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
