"""Which Keras `tf.keras` is: chosen by the entry point for its backend, never by `import tfqa` (issue 22, item 3).

Each case runs in a fresh Python without TF_USE_LEGACY_KERAS, as a user's shell starts one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from helpers import ROOT


def fresh_python(script: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_import_tfqa_neither_imports_tensorflow_nor_chooses_its_keras():
    proc = fresh_python("""
        import json, os, sys
        import tfqa
        from tfqa import decode_predictions, load_squad, prepare_features, squad_metrics
        import tfqa.apps.cli, tfqa.apps.train
        print(json.dumps([os.environ.get("TF_USE_LEGACY_KERAS"), "tensorflow" in sys.modules]))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == [None, False]


def test_the_keras_hub_backend_leaves_keras_3_and_the_transformers_backend_asks_for_tf_keras():
    proc = fresh_python("""
        import json, os
        import tfqa
        tfqa.use_backend("keras_hub")
        after_keras_hub = os.environ.get("TF_USE_LEGACY_KERAS")
        tfqa.use_backend("transformers")
        import tensorflow as tf
        print(json.dumps([after_keras_hub, os.environ.get("TF_USE_LEGACY_KERAS"),
                          tf.keras.layers.Layer.__module__.split(".")[0]]))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == [None, "1", "tf_keras"]


def test_a_process_already_on_keras_3_gets_one_line_for_the_transformers_backend_and_runs_keras_hub():
    proc = fresh_python("""
        import json
        import tensorflow as tf
        import tfqa
        from tfqa.core.config import TrainConfig
        tf.keras.layers.Dense(1)  # the program used tf.keras first: Keras 3
        tfqa.use_backend("keras_hub")  # fine: keras_hub is Keras 3
        errors = []
        try:
            tfqa.use_backend("transformers")
        except tfqa.TfqaError as e:
            errors.append(str(e))
        from tfqa.training.run import train_and_evaluate  # the Python API says the same, before any work
        try:
            train_and_evaluate(TrainConfig(output_dir="never-written"))
        except tfqa.TfqaError as e:
            errors.append(str(e))
        print(json.dumps(errors))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    errors = json.loads(proc.stdout.splitlines()[-1])
    assert len(errors) == 2 and errors[0] == errors[1], errors
    assert errors[0] == ("the transformers backend needs tf.keras to be tf-keras (Keras 2), but this process already "
                         "uses Keras 3 as tf.keras: call tfqa.use_backend('transformers') before importing TensorFlow "
                         "or tfqa's model and training modules (or set TF_USE_LEGACY_KERAS=1 before starting Python), "
                         "or use the keras_hub backend")
    assert not (ROOT / "never-written").exists()


def test_a_missing_tf_keras_is_named_with_what_to_install(monkeypatch):
    from tfqa.core import keras_choice

    monkeypatch.setattr(keras_choice, "tf_keras_bound", lambda: None)  # as before TensorFlow is imported
    monkeypatch.setattr(keras_choice, "find_spec", lambda name: None if name == "tf_keras" else object())
    environ: dict = {}
    try:
        keras_choice.use_tf_keras("the transformers backend", environ)
    except keras_choice.KerasChoiceError as e:
        message = str(e)
    assert message == ("the transformers backend needs tf-keras (Keras 2): pip install 'tf-keras>=2.21,<2.22', "
                       "or use the keras_hub backend (Keras 3)")
    assert environ == {}  # nothing chosen when nothing can be


def test_the_choice_is_the_variable_tensorflow_reads_while_tf_keras_is_unbound(monkeypatch):
    from tfqa.core import keras_choice

    monkeypatch.setattr(keras_choice, "tf_keras_bound", lambda: None)
    environ = {"TF_USE_LEGACY_KERAS": "True"}  # the user's own spelling is kept
    keras_choice.use_tf_keras("x", environ)
    assert environ == {"TF_USE_LEGACY_KERAS": "True"}
    environ = {"TF_USE_LEGACY_KERAS": "0"}
    keras_choice.use_tf_keras("x", environ)
    assert environ == {"TF_USE_LEGACY_KERAS": "1"}
