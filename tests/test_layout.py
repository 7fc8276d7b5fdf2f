"""The package layout: `import tfqa` stays TensorFlow-free, and the layering contract holds."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from helpers import ROOT

# Modules a person uses without TensorFlow: the public API, the CLI's parser, data checks and metrics,
# run reports, listing export versions, and reading answers and serving configs.
TF_FREE = ["tfqa", "tfqa.core.squad", "tfqa.core.features", "tfqa.core.decoding", "tfqa.core.metrics",
           "tfqa.core.config", "tfqa.core.run_dir", "tfqa.core.history", "tfqa.core.files",
           "tfqa.export.versions", "tfqa.export.names", "tfqa.serving.servables", "tfqa.serving.answers",
           "tfqa.serving.live", "tfqa.serving.model_config", "tfqa.serving.export_answerer", "tfqa.apps.cli",
           "tfqa.apps.report",
           "tfqa.training.presets", "tfqa.core.null_threshold", "tfqa.apps.answerer"]


def test_importing_tfqa_does_not_load_tensorflow():
    code = ("import sys; " + "; ".join(f"import {m}" for m in TF_FREE) + "; tfqa.QuestionAnswerer"
            + "; print(sorted(m for m in ('tensorflow', 'tf_keras', 'keras', 'tensorflow_text') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_public_api_is_importable_from_tfqa():
    import tfqa

    for name in ("load_squad", "read_squad", "prepare_features", "decode_predictions", "squad_metrics",
                 "Example", "Answer", "Features", "DataError", "TfqaError", "QuestionAnswerer"):
        assert hasattr(tfqa, name), name
    assert issubclass(tfqa.DataError, tfqa.TfqaError)


def test_layering_contract_is_kept():
    lint = shutil.which("lint-imports")
    if lint is None:
        pytest.fail("lint-imports not found: pip install -r requirements-test.txt (import-linter)")
    out = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout
