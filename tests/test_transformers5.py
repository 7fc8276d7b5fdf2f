"""Today's stack (issue 22, item 8): tfqa beside transformers 5, which has no TF classes.

A venv that sees this interpreter's packages (TensorFlow, Keras 3, keras-hub come from there) gets
transformers 5.23.0 and tokenizers 0.23.3 from PyPI and nothing else; tfqa runs from the sources
(PYTHONPATH). There the keras_hub backend trains the smoke run, exports it and answers from the run and
the export, and the transformers backend (the default) ends in one line that says what to do, with
nothing written. Measured on 2 shared cores (load ~4): 203 s in all — the venv and install 47 s, the
refusal 0.6 s, the keras_hub smoke run 126 s (EM 97.60, as beside transformers 4.54.1), the two `ask`s 28 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from tfqa.apps.quiet import NOISE

pytestmark = pytest.mark.slow

TRANSFORMERS_5 = ("transformers==5.23.0", "tokenizers==0.23.3")
# What pip prints when it cannot reach the index (no network, DNS, proxy): the test is skipped, not failed.
NETWORK_SIGNS = ("No matching distribution found", "Could not find a version", "NewConnectionError",
                 "Temporary failure in name resolution", "Max retries exceeded", "ConnectionError",
                 "ProxyError", "Network is unreachable", "timed out")


@pytest.fixture(scope="module")
def python5(tmp_path_factory):
    """The python of a venv holding transformers 5.23.0 beside this interpreter's packages."""
    env_dir = tmp_path_factory.mktemp("transformers5") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)], check=True, timeout=300)
    try:
        install = subprocess.run([str(env_dir / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                                  *TRANSFORMERS_5], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip install {' '.join(TRANSFORMERS_5)} took over 15 minutes (a slow or absent network)")
    if install.returncode != 0:
        if any(sign in install.stderr for sign in NETWORK_SIGNS):
            pytest.skip(f"pip could not fetch {' '.join(TRANSFORMERS_5)} (no network?): "
                        f"{install.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"pip install {' '.join(TRANSFORMERS_5)} failed:\n{install.stderr[-3000:]}")
    python = env_dir / "bin" / "python"
    versions = subprocess.run([str(python), "-c", "from importlib.metadata import version as v; "
                               "print(v('transformers'), v('tokenizers'))"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert versions == ["5.23.0", "0.23.3"], versions
    # The keras_hub backend needs no tf-keras at run time: this venv's own site-packages (searched before the
    # shared ones) makes any import of it fail, so a keras_hub run that touched tf-keras would fail here.
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    hidden = Path(site) / "tf_keras"
    hidden.mkdir()
    (hidden / "__init__.py").write_text("raise ImportError('tf-keras is hidden in this venv "
                                        "(tests/test_transformers5.py)')\n")
    return python


def run5(python, args, cwd, timeout=1200):
    """Runs `python ARGS` with tfqa from the sources, as a person's shell would (no TF_CPP_MIN_LOG_LEVEL, so the
    entry points filter TensorFlow's start-up lines themselves)."""
    unset = ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL", "TF_USE_LEGACY_KERAS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(PYTHONPATH=str(ROOT), CI="1")
    return subprocess.run([str(python), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_transformers_backend_refuses_in_one_line_and_writes_nothing(python5, tmp_path):
    out = tmp_path / "smoke"
    out.mkdir()  # an existing empty folder must stay empty (a new one is not even made)
    proc = run5(python5, [ROOT / "train_keras.py", "--preset", "smoke", "--output_dir", out], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not NOISE.search(line)]
    assert lines == ["train_keras.py: error: the transformers backend needs transformers 4.46-4.54 (its TF model "
                     "classes; transformers 5.23.0 is installed): pip install 'transformers>=4.46,<4.55', "
                     "or pass --backend keras_hub"], proc.stderr
    assert proc.stdout == ""
    assert list(out.iterdir()) == []


@pytest.fixture(scope="module")
def keras_hub_run(python5, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("t5run")
    proc = run5(python5, [ROOT / "train_keras.py", "--preset", "smoke", "--backend", "keras_hub",
                          "--output_dir", "smoke"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "smoke"


def test_the_keras_hub_backend_trains_and_exports(keras_hub_run):
    results = json.loads((keras_hub_run / "eval_results.json").read_text())
    assert results["exact"] >= 95, results["exact"]  # the same band as under transformers 4.54.1 (EM 97.6)
    assert (keras_hub_run / "model.keras").is_file()
    assert (keras_hub_run / "export" / "tfqa" / "1" / "saved_model.pb").is_file()


def test_the_run_and_its_export_answer_with_tfqa_ask(python5, keras_hub_run):
    from tfqa import load_squad

    predictions = json.loads((keras_hub_run / "predictions.json").read_text())
    example = next(e for e in load_squad(keras_hub_run / "data" / "dev.json") if predictions[e.id])
    for model in (keras_hub_run, keras_hub_run / "export" / "tfqa"):
        proc = run5(python5, ["-m", "tfqa", "ask", "--model", model, "--question", example.question,
                              "--context", example.context, "--json"], cwd=keras_hub_run.parent, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout)["answer"] == predictions[example.id], (model, proc.stdout)
