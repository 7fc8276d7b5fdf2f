"""Loading keras-hub QA models: a local Hugging Face checkpoint or a keras-hub / Kaggle / hf:// preset.

keras-hub converts Hugging Face checkpoints saved by PyTorch (safetensors) of
BERT, DistilBERT, RoBERTa, ALBERT, XLM-RoBERTa...; it reads neither
`tf_model.h5` nor TF-format safetensors. Two things its converters leave out
are done here: the checkpoint's own feed-forward activation (keras-hub's
`BertBackbone` always uses tanh-approximate GELU, Hugging Face BERT the exact
erf form: hidden states differ by ~2e-3), and the QA head of a
`*ForQuestionAnswering` checkpoint (`qa_outputs.weight` / `qa_outputs.bias`).
"""

from __future__ import annotations

import json
import os

import keras
import keras_hub
import numpy as np
from safetensors import SafetensorError

from tfqa.core.squad import host_reachable
from tfqa.modeling.checkpoints import ModelLoadError, _clip
from tfqa.modeling.keras_hub_qa import qa_model, set_qa_head

HF_PREFIX = "hf://"
HF_HOST = "huggingface.co"
HEAD_KEYS = ("qa_outputs.weight", "qa_outputs.bias")

# Hugging Face `hidden_act` / DistilBERT `activation` → the Keras activation that computes the same.
# "gelu" is the exact erf form in both libraries; the tanh forms are keras-hub's registered approximation.
_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "keras_hub>gelu_approximate",
                "gelu_pytorch_tanh": "keras_hub>gelu_approximate"}


class PresetUnavailableError(ModelLoadError):
    """A preset or hub name could not be fetched (offline) or is unknown."""


def checkpoint_activation(transformers_config: dict):
    """The Keras activation for a Hugging Face config's feed-forward activation; None when it names none."""
    name = transformers_config.get("hidden_act", transformers_config.get("activation"))
    if name is None:
        return None
    if name not in _ACTIVATIONS:
        raise ModelLoadError(f"feed-forward activation {name!r} has no Keras equivalent in tfqa "
                             f"(known: {', '.join(sorted(_ACTIVATIONS))})")
    wanted = _ACTIVATIONS[name]
    # keras-hub's registered function, not a name: Keras resolves plain strings only among its own activations.
    return keras.saving.get_registered_object(wanted) if ">" in wanted else wanted


def read_qa_head(checkpoint_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray] | None:
    """The `qa_outputs` head of a local PyTorch-format checkpoint as (kernel [hidden, 2], bias [2]); None without one."""
    from safetensors import safe_open

    index = os.path.join(checkpoint_dir, "model.safetensors.index.json")
    if os.path.exists(index):  # a sharded checkpoint: the index names the shard holding each tensor
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map", {})
        files = {weight_map[k] for k in HEAD_KEYS if k in weight_map}
    else:
        files = {"model.safetensors"}
    tensors = {}
    for name in files:
        path = os.path.join(checkpoint_dir, name)
        if not os.path.exists(path):
            continue
        with safe_open(path, framework="numpy") as f:
            tensors.update({k: f.get_tensor(k) for k in HEAD_KEYS if k in f.keys()})
    if len(tensors) < len(HEAD_KEYS):
        return None
    weight, bias = tensors["qa_outputs.weight"], tensors["qa_outputs.bias"]
    return weight.T, bias  # PyTorch Linear weights are [out, in]


def load_qa_model(name_or_path: str, flag: str = "--model_name_or_path", seed: int | None = 0) -> keras.Model:
    """A keras-hub QA model (`tfqa.modeling.keras_hub_qa.qa_model`) from a checkpoint directory or a preset name.

    A local directory is a Hugging Face checkpoint saved by PyTorch (its
    config.json sets the activation; a `*ForQuestionAnswering` checkpoint's
    `qa_outputs` becomes the head, otherwise the head is new, drawn with `seed`)
    or a keras-hub preset folder. Other names go to keras-hub's loader: built-in
    preset names and `kaggle://` handles (Kaggle), `hf://` handles (Hugging
    Face). Offline or unknown names raise PresetUnavailableError; `flag` is the
    option that named the checkpoint, for the message.
    """
    local = os.path.isdir(name_or_path)
    if not local and name_or_path.startswith(HF_PREFIX) and not host_reachable(HF_HOST):
        # huggingface_hub retries for ~25 s before giving up on an unreachable host
        raise PresetUnavailableError(f"could not download '{name_or_path}' from the Hugging Face hub (is there a "
                                     f"network?); pass {flag} with a local checkpoint directory")
    try:
        backbone = keras_hub.models.Backbone.from_preset(name_or_path)
    except (OSError, ValueError, KeyError, SafetensorError) as e:  # SafetensorError: a damaged weights file
        detail = _clip(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        if local:
            raise ModelLoadError(f"could not load the checkpoint in {name_or_path}: {detail}") from e
        raise PresetUnavailableError(f"could not load the keras-hub preset '{name_or_path}' (an unknown name, or no "
                                     f"network?); pass {flag} with a local checkpoint directory: {detail}") from e
    config = _transformers_config(name_or_path) if local else {}
    model = qa_model(backbone, activation=checkpoint_activation(config), seed=seed)
    head = read_qa_head(name_or_path) if local else None
    if head is not None:
        set_qa_head(model, *head)
    return model


def _transformers_config(checkpoint_dir: str) -> dict:
    """The checkpoint's Hugging Face config.json ({} for a keras-hub preset folder, whose backbone config is its own)."""
    try:
        with open(os.path.join(checkpoint_dir, "config.json"), encoding="utf-8") as f:
            values = json.load(f)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"could not read {checkpoint_dir}/config.json: {e}") from e
    return values if isinstance(values, dict) and "model_type" in values else {}
