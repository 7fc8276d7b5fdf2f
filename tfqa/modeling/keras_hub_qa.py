"""Keras 3 question-answering models on keras-hub backbones, under tfqa's tensor names.

A model here is a plain Keras 3 functional model: inputs `input_ids`,
`attention_mask` (and `token_type_ids` when the backbone has segment
embeddings), outputs `{"start_logits", "end_logits"}` ([batch, length],
float32). It is made of keras-hub's and Keras' own registered layers only, so
`keras.saving.load_model` loads a saved `.keras` file in any Keras 3 process
that has imported `keras_hub` — tfqa is not needed to answer with it.

Keras 3 throughout: never mix these layers, models or optimizers with tf-keras
ones (which `tf.keras` is in a tfqa process): a Keras 3 layer on a tf-keras
tensor builds a model without trainable weights and `fit` learns nothing.
Loading checkpoints is `tfqa.modeling.keras_hub_checkpoints`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import keras
import keras_hub
import numpy as np
from keras_hub.layers import PositionEmbedding, TokenAndPositionEmbedding, TransformerEncoder

from tfqa.core.files import atomic_path
from tfqa.modeling.checkpoints import ModelLoadError

# tfqa's input names → the names keras-hub's encoder backbones take.
BACKBONE_INPUTS = {"input_ids": "token_ids", "attention_mask": "padding_mask", "token_type_ids": "segment_ids"}
# The head: one Dense(1) per logit (the columns of Hugging Face's `qa_outputs` Dense(2)), each reshaped to [batch, length].
HEAD_DENSE = {"start_logits": "qa_outputs_start", "end_logits": "qa_outputs_end"}
HEAD_INITIALIZER_RANGE = 0.02  # Hugging Face's initializer_range for qa_outputs


def qa_model(backbone: keras.Model, activation=None, seed: int | None = None,
             name: str = "qa_model") -> keras.Model:
    """A QA model (tfqa's tensor names, start/end logits) on a keras-hub encoder backbone.

    The backbone's graph is re-traced into one flat functional model, so the
    saved file holds keras-hub's layers and not the backbone class: the
    backbone classes fix the feed-forward activation in their constructor
    (`BertBackbone`: tanh-approximate GELU), and a nested backbone would come
    back from a `.keras` file with that one. `activation` (a Keras activation
    or its name), when given, replaces the feed-forward activation of every
    transformer layer, weights kept. The head is initialised with `seed`.
    """
    given = set(backbone.input) if isinstance(backbone.input, dict) else set()
    if not {"token_ids", "padding_mask"} <= given or given - set(BACKBONE_INPUTS.values()):
        raise ModelLoadError(f"{backbone.name}: tfqa's QA head needs an encoder backbone taking "
                             f"{sorted(BACKBONE_INPUTS.values())}, not {backbone.input}")
    inputs = {ours: keras.Input(shape=(None,), dtype="int32", name=ours)
              for ours, theirs in BACKBONE_INPUTS.items() if theirs in backbone.input}
    replaced = []

    def with_activation(layer):
        if activation is None or not isinstance(layer, TransformerEncoder) or _same(layer.activation, activation):
            return layer  # shared, with its weights
        new = TransformerEncoder.from_config({**layer.get_config(), "activation": activation})
        replaced.append((layer, new))
        return new

    with warnings.catch_warnings():
        # The re-traced graph's input dict keeps the backbone's keys over tfqa-named tensors; Keras warns
        # about the mismatch, but that intermediate model is discarded: the QA model's keys are tfqa's names.
        warnings.filterwarnings("ignore", message="When providing `inputs` as a dict", category=UserWarning)
        flat = keras.models.clone_model(
            backbone, input_tensors={BACKBONE_INPUTS[k]: v for k, v in inputs.items()}, clone_function=with_activation)
    for old, new in replaced:  # built while re-tracing; the weights are the checkpoint's
        new.set_weights(old.get_weights())
    sequence = flat.output["sequence_output"] if isinstance(flat.output, dict) else flat.output
    initializer = keras.initializers.TruncatedNormal(stddev=HEAD_INITIALIZER_RANGE, seed=seed)
    # float32 whatever the dtype policy: the softmax over positions and the decoding want full precision.
    outputs = {out: keras.layers.Reshape((-1,), dtype="float32", name=out)(
        keras.layers.Dense(1, kernel_initializer=initializer, dtype="float32", name=dense)(sequence))
        for out, dense in HEAD_DENSE.items()}
    return keras.Model(inputs, outputs, name=name)


def _same(current, wanted) -> bool:
    return keras.activations.serialize(current) == keras.activations.serialize(keras.activations.get(wanted))


def feedforward_activations(model: keras.Model) -> set[str]:
    """The serialized feed-forward activations of the model's transformer layers (e.g. {"gelu"})."""
    names = set()
    for layer in model.layers:
        if isinstance(layer, TransformerEncoder):
            serialized = keras.activations.serialize(layer.activation)
            names.add(serialized if isinstance(serialized, str) else serialized.get("config", str(serialized)))
    return names


def tiny_distilbert(vocab_size: int, max_position_embeddings: int, dim: int = 64, n_layers: int = 2,
                    n_heads: int = 4, seed: int = 0, initializer_range: float = 0.1) -> keras.Model:
    """A small randomly initialised keras-hub DistilBERT QA model (offline smoke runs and tests).

    The same shape as `tfqa.modeling.checkpoints.tiny_distilbert` (feed-forward
    width 2 × dim, no dropout) and the same reason for `initializer_range` 0.1:
    a model this small starts with near-uniform attention and sits on a loss
    plateau for hundreds of steps with DistilBERT's 0.02 (DEVELOPERS.md).
    Deterministic for a given `seed`.
    """
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=vocab_size, num_layers=n_layers, num_heads=n_heads, hidden_dim=dim,
        intermediate_dim=2 * dim, dropout=0.0, max_sequence_length=max_position_embeddings)
    model = qa_model(backbone, seed=seed, name="tiny_distilbert_qa")
    # keras-hub's backbones fix their initializer at 0.02; redraw the kernels and embeddings (the QA head's too,
    # as Hugging Face's initializer_range covers qa_outputs) at the wanted width. A SeedGenerator, not an int
    # seed: with an int a Keras 3 initializer draws the same values at every call, and query, key and value
    # kernels would start equal (a tiny model learned ~30 EM points less in the smoke run that way).
    redraw = keras.initializers.TruncatedNormal(stddev=initializer_range, seed=keras.random.SeedGenerator(seed))
    for variable in model.weights:
        if variable.path.rsplit("/", 1)[-1] in ("kernel", "embeddings", "position_embeddings"):
            variable.assign(redraw(variable.shape, dtype=variable.dtype))
    return model


def max_positions(model: keras.Model) -> int | None:
    """How many tokens a window may have: the rows of the model's position embedding; None when it has none."""
    for layer in model.layers:
        if isinstance(layer, TokenAndPositionEmbedding):
            layer = layer.position_embedding
        if isinstance(layer, PositionEmbedding):
            return int(layer.sequence_length)
    return None


def input_names(model: keras.Model) -> list[str]:
    """The tfqa input names the model takes (`token_type_ids` only for backbones with segment embeddings)."""
    given = {t.name for t in model.inputs}  # a list when a file saved the model from its list of inputs
    return [name for name in BACKBONE_INPUTS if name in given]


def set_qa_head(model: keras.Model, kernel, bias) -> None:
    """Sets the head from Hugging Face `qa_outputs` weights: kernel [hidden, 2], bias [2] (column 0 start, 1 end).

    A PyTorch `qa_outputs.weight` is [2, hidden]: pass its transpose.
    """
    kernel, bias = np.asarray(kernel, np.float32), np.asarray(bias, np.float32)
    hidden = model.get_layer(HEAD_DENSE["start_logits"]).kernel.shape[0]
    if kernel.shape != (hidden, 2) or bias.shape != (2,):
        raise ModelLoadError(f"a QA head for hidden size {hidden} is [{hidden}, 2] + [2], "
                             f"not {list(kernel.shape)} + {list(bias.shape)}")
    for column, dense in enumerate(HEAD_DENSE.values()):
        model.get_layer(dense).set_weights([kernel[:, column:column + 1], bias[column:column + 1]])


def qa_head(model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
    """The head as Hugging Face `qa_outputs` weights: (kernel [hidden, 2], bias [2])."""
    parts = [model.get_layer(dense).get_weights() for dense in HEAD_DENSE.values()]
    return np.concatenate([k for k, _ in parts], axis=1), np.concatenate([b for _, b in parts])


def save_qa_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """Writes the model to `path` (a `.keras` file), atomically: an interrupted save leaves the old file."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: a Keras 3 model file name ends in .keras")
    with atomic_path(path) as tmp:
        staged = tmp.with_name(tmp.name + ".keras")  # Keras saves only to names ending in .keras
        try:
            model.save(staged)
            os.replace(staged, tmp)
        finally:
            staged.unlink(missing_ok=True)
    return path


def load_saved_qa_model(path: str | os.PathLike) -> keras.Model:
    """A QA model saved by `save_qa_model` (any `.keras` file of one); ModelLoadError when it cannot be read."""
    try:
        return keras.saving.load_model(path)
    except (OSError, ValueError, TypeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"could not load the Keras model {path}: {first[:300]}") from e
