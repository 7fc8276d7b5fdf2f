"""Converting a transformers-backend run (or TF checkpoint) into a keras_hub run that answers the same.

keras-hub's own converters read PyTorch-format safetensors only; a run trained
on the transformers backend holds TF weights (`tf_model.h5`, or TF-format
`model.safetensors` from `save_pretrained(safe_serialization=True)`) and its
trained QA head `qa_outputs`. So the weights are moved here by an explicit
name map per model type, every target weight is set exactly once and every
source weight is used (or known to be unused, like BERT's pooler): a mismatch
is a one-line `ConvertError` naming the file and the weight, never a model that
silently answers differently.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import keras
import keras_hub
import numpy as np
from safetensors import SafetensorError

from tfqa.core.files import scratch_dir
from tfqa.core.progress import SILENT, Reporter
from tfqa.core.run_dir import KERAS_MODEL_FILE, MODEL_CONFIG_FILE, load_settings, save_settings
from tfqa.modeling.checkpoints import ModelLoadError, load_fast_tokenizer
from tfqa.modeling.keras_hub_checkpoints import checkpoint_activation
from tfqa.modeling.keras_hub_qa import HEAD_DENSE, qa_model, set_qa_head

TARGETS = ("keras_hub",)
TF_H5 = "tf_model.h5"
SAFETENSORS = "model.safetensors"
# The tokenizer files that hold a vocabulary (one of them must be in the source; the rest are copied with it).
VOCAB_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
HEAD = ("qa_outputs/kernel", "qa_outputs/bias")
# Reshapes a source weight may need, named by which axes of the keras-hub weight are merged in the TF one:
# keras-hub's attention keeps heads apart ([hidden, heads, head_dim]); TF BERT/DistilBERT merge them.
SAME, HEADS_LAST, HEADS_FIRST = "same", "heads_last", "heads_first"
# Hugging Face's LayerNorm epsilon for BERT and DistilBERT, which keras-hub's backbones fix in their constructor.
KERAS_HUB_EPSILON = 1e-12


class ConvertError(ModelLoadError):
    """A run or checkpoint that cannot be converted (not one, unsupported, weights that do not fit); one line."""


def _encoder_layer(src: str, dst: str, names: dict) -> dict:
    """The map of one transformer layer: keras-hub weight path → (TF weight name, reshape)."""
    plan = {}
    for ours, theirs in names.items():
        # keras-hub splits the heads out of q/k/v's output axis (kernel and bias) and the output projection's input axis
        kernel = HEADS_FIRST if ours == "self_attention_layer/attention_output" else (
            HEADS_LAST if ours.startswith("self_attention_layer/") else SAME)
        bias = HEADS_LAST if ours in ("self_attention_layer/query", "self_attention_layer/key",
                                      "self_attention_layer/value") else SAME
        if ours.endswith("layer_norm"):
            plan[f"{dst}/{ours}/gamma"] = (f"{src}/{theirs}/gamma", SAME)
            plan[f"{dst}/{ours}/beta"] = (f"{src}/{theirs}/beta", SAME)
        else:
            plan[f"{dst}/{ours}/kernel"] = (f"{src}/{theirs}/kernel", kernel)
            plan[f"{dst}/{ours}/bias"] = (f"{src}/{theirs}/bias", bias)
    return plan


def _distilbert(config: dict):
    """(backbone builder, weight map, unused source prefixes) for a DistilBERT config."""
    def backbone():
        return keras_hub.models.DistilBertBackbone(
            vocabulary_size=config["vocab_size"], num_layers=config["n_layers"],
            num_heads=config["n_heads"], hidden_dim=config["dim"],
            intermediate_dim=config["hidden_dim"], dropout=config.get("dropout", 0.1),
            max_sequence_length=config["max_position_embeddings"])

    plan = {"token_and_position_embedding/token_embedding/embeddings":
            ("distilbert/embeddings/word_embeddings/weight", SAME),
            "token_and_position_embedding/position_embedding/embeddings":
            ("distilbert/embeddings/position_embeddings/embeddings", SAME),
            "embeddings_layer_norm/gamma": ("distilbert/embeddings/LayerNorm/gamma", SAME),
            "embeddings_layer_norm/beta": ("distilbert/embeddings/LayerNorm/beta", SAME)}
    layer = {"self_attention_layer/query": "attention/q_lin", "self_attention_layer/key": "attention/k_lin",
             "self_attention_layer/value": "attention/v_lin",
             "self_attention_layer/attention_output": "attention/out_lin",
             "self_attention_layer_norm": "sa_layer_norm", "feedforward_intermediate_dense": "ffn/lin1",
             "feedforward_output_dense": "ffn/lin2", "feedforward_layer_norm": "output_layer_norm"}
    for i in range(config["n_layers"]):
        plan.update(_encoder_layer(f"distilbert/transformer/layer_._{i}", f"transformer_layer_{i}", layer))
    return backbone, plan, ()


def _bert(config: dict):
    """(backbone builder, weight map, unused source prefixes) for a BERT config."""
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ConvertError(f"position_embedding_type {config['position_embedding_type']!r}: keras-hub's BertBackbone "
                           f"has absolute position embeddings only")

    def backbone():
        return keras_hub.models.BertBackbone(
            vocabulary_size=config["vocab_size"], num_layers=config["num_hidden_layers"],
            num_heads=config["num_attention_heads"], hidden_dim=config["hidden_size"],
            intermediate_dim=config["intermediate_size"], dropout=config.get("hidden_dropout_prob", 0.1),
            max_sequence_length=config["max_position_embeddings"],
            num_segments=config.get("type_vocab_size", 2))

    plan = {"token_embedding/embeddings": ("bert/embeddings/word_embeddings/weight", SAME),
            "position_embedding/embeddings": ("bert/embeddings/position_embeddings/embeddings", SAME),
            "segment_embedding/embeddings": ("bert/embeddings/token_type_embeddings/embeddings", SAME),
            "embeddings_layer_norm/gamma": ("bert/embeddings/LayerNorm/gamma", SAME),
            "embeddings_layer_norm/beta": ("bert/embeddings/LayerNorm/beta", SAME)}
    layer = {"self_attention_layer/query": "attention/self/query", "self_attention_layer/key": "attention/self/key",
             "self_attention_layer/value": "attention/self/value",
             "self_attention_layer/attention_output": "attention/output/dense",
             "self_attention_layer_norm": "attention/output/LayerNorm",
             "feedforward_intermediate_dense": "intermediate/dense", "feedforward_output_dense": "output/dense",
             "feedforward_layer_norm": "output/LayerNorm"}
    for i in range(config["num_hidden_layers"]):
        plan.update(_encoder_layer(f"bert/encoder/layer_._{i}", f"transformer_layer_{i}", layer))
    return backbone, plan, ("bert/pooler/",)  # a TFBertModel's pooler: QA models do not use it


FAMILIES = {"distilbert": _distilbert, "bert": _bert}
# The sizes each family's backbone is built from: config.json must give every one as a positive integer.
SIZES = {"distilbert": ("vocab_size", "n_layers", "n_heads", "dim", "hidden_dim", "max_position_embeddings"),
         "bert": ("vocab_size", "num_hidden_layers", "num_attention_heads", "hidden_size", "intermediate_size",
                  "max_position_embeddings")}


def read_config(src: Path) -> dict:
    """The Hugging Face config.json of a run or checkpoint folder, checked to be one tfqa can convert."""
    path = src / MODEL_CONFIG_FILE
    if (src / KERAS_MODEL_FILE).exists():
        raise ConvertError(f"{src} is a keras_hub run already ({KERAS_MODEL_FILE}); nothing to convert")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConvertError(f"{src}: not a transformers run or checkpoint (no {MODEL_CONFIG_FILE})") from None
    except (OSError, ValueError, RecursionError) as e:
        raise ConvertError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ConvertError(f"{path}: not a Hugging Face model config (no 'model_type')")
    if config["model_type"] not in FAMILIES:
        raise ConvertError(f"{path}: model_type {config['model_type']!r} cannot be converted to keras_hub yet "
                           f"(tfqa converts: {', '.join(FAMILIES)})")
    bad = [k for k in SIZES[config["model_type"]]
           if isinstance(config.get(k), bool) or not isinstance(config.get(k), int) or config[k] < 1]
    if bad:
        raise ConvertError(f"{path}: {bad[0]!r} must be a positive integer, not {config.get(bad[0])!r}")
    epsilon = config.get("layer_norm_eps", KERAS_HUB_EPSILON)
    if epsilon != KERAS_HUB_EPSILON:
        raise ConvertError(f"{path}: layer_norm_eps {epsilon}: keras-hub's backbones fix it at {KERAS_HUB_EPSILON}")
    return config


def read_tf_weights(src: Path) -> tuple[Path, dict]:
    """(file, {TF weight name without the model's scope and ':0': array}) of a folder's TF weights.

    Hugging Face's TF loader prefers model.safetensors to tf_model.h5; so does this.
    """
    safetensors, h5 = src / SAFETENSORS, src / TF_H5
    for sharded in (f"{SAFETENSORS}.index.json", f"{TF_H5}.index.json"):
        if (src / sharded).exists() and not (safetensors.exists() or h5.exists()):
            raise ConvertError(f"{src / sharded}: sharded checkpoints are not converted yet; save the run unsharded")
    try:
        if safetensors.exists():
            return safetensors, _read_safetensors(safetensors)
        if h5.exists():
            return h5, _read_h5(h5)
    except (OSError, ValueError, KeyError, SafetensorError) as e:  # SafetensorError: a damaged file
        name = safetensors if safetensors.exists() else h5
        raise ConvertError(f"{name}: unreadable ({type(e).__name__}: {str(e)[:200]})") from None
    raise ConvertError(f"{src}: no TF weights ({SAFETENSORS} or {TF_H5})")


def _read_safetensors(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        if (f.metadata() or {}).get("format") != "tf":
            raise ConvertError(f"{path}: PyTorch weights, not TF ones; the keras_hub backend loads such a "
                               f"checkpoint directly (--backend keras_hub --model_name_or_path {path.parent})")
        return {_canonical(k): f.get_tensor(k) for k in f.keys()}


def _read_h5(path: Path) -> dict:
    import h5py

    weights = {}
    with h5py.File(path, "r") as f:
        for layer in f.attrs["layer_names"]:
            group = f[_text(layer)]
            for name in group.attrs.get("weight_names", []):
                name = _text(name)
                # Keras 2 prefixes each name with the model's scope (tf_bert_for_question_answering/...): dropped,
                # as Hugging Face's loader does, so the names are those of TF-format safetensors.
                weights[_canonical(name.split("/", 1)[-1])] = np.asarray(group[name])
    return weights


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _canonical(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


def _source_shape(target: tuple, reshape: str) -> tuple:
    """The TF shape a keras-hub weight of shape `target` comes from."""
    if reshape == HEADS_LAST:
        return (*target[:-2], target[-2] * target[-1])
    if reshape == HEADS_FIRST:
        return (target[0] * target[1], *target[2:])
    return target


def weight_map(config: dict, weights: dict, file: str | os.PathLike):
    """(backbone builder, {keras-hub weight path: (TF name, reshape)}) for a config, its TF weights checked by name.

    Raises ConvertError naming `file` and a weight when one is missing or left over (nothing is built yet).
    """
    backbone, plan, unused = FAMILIES[config["model_type"]](config)
    missing = [name for name in [s for s, _ in plan.values()] + list(HEAD) if name not in weights]
    if missing:
        what = "no QA head (qa_outputs): train it first" if set(missing) <= set(HEAD) else f"no weight {missing[0]!r}"
        raise ConvertError(f"{file}: {what} ({len(missing)} of the weights a {config['model_type']} QA model needs "
                           f"are missing)")
    used = {s for s, _ in plan.values()} | set(HEAD)
    extra = sorted(n for n in weights if n not in used and not n.startswith(unused))
    if extra:
        raise ConvertError(f"{file}: weight {extra[0]!r} has no place in a keras-hub {config['model_type']} QA model "
                           f"({len(extra)} such weights)")
    return backbone, plan


def build_from_tf_weights(config: dict, weights: dict, file: str | os.PathLike) -> keras.Model:
    """The keras-hub QA model (`keras_hub_qa.qa_model`) of a config.json and its TF weights, every weight checked.

    `file` names the weights file in messages. Raises ConvertError when a weight is
    missing, has the wrong shape, is left over, or a target weight is not set exactly once.
    """
    backbone, plan = weight_map(config, weights, file)
    model = qa_model(backbone(), activation=checkpoint_activation(config))
    targets = {v.path: v for v in model.weights}
    head = {f"{dense}/{part}" for dense in HEAD_DENSE.values() for part in ("kernel", "bias")}
    unmapped = sorted(set(targets) - set(plan) - head)
    if unmapped or len(targets) != len(model.weights):
        raise ConvertError(f"the keras-hub {config['model_type']} model has weights tfqa cannot fill: {unmapped[:3]} "
                           f"(keras-hub {keras_hub.__version__}: did its layer names change?)")
    set_count = Counter()
    for path, (name, reshape) in plan.items():
        variable, value = targets[path], weights[name]
        expected = _source_shape(tuple(variable.shape), reshape)
        if tuple(value.shape) != expected:
            raise ConvertError(f"{file}: {name} is {list(value.shape)}, the config says {list(expected)} "
                               f"(for {path})")
        variable.assign(np.reshape(value, variable.shape).astype(variable.dtype))
        set_count[path] += 1
    try:
        set_qa_head(model, weights[HEAD[0]], weights[HEAD[1]])
    except ModelLoadError as e:
        raise ConvertError(f"{file}: qa_outputs: {e}") from None
    set_count.update(head)
    wrong = [p for p in targets if set_count[p] != 1]
    if wrong:  # the map and the model disagree: a bug, said before anything is written
        raise ConvertError(f"{file}: weight {wrong[0]} was set {set_count[wrong[0]]} times, not once")
    return model


def convert_run(src: str | os.PathLike, dst: str | os.PathLike, to: str = "keras_hub", flag: str = "--model",
                reporter: Reporter = SILENT) -> Path:
    """Converts the transformers-backend run or TF checkpoint `src` into a new keras_hub run `dst`; returns `dst`.

    `dst` gets `model.keras`, the tokenizer files and `tfqa_config.json` (the
    source's settings, backend "keras_hub"). It must not exist or be an empty
    folder: a user's files are never replaced. The run is built in a scratch
    folder beside `dst` and renamed into place, so a failure leaves nothing.
    """
    from tfqa.modeling.keras_hub_backend import KERAS_HUB

    src, dst = Path(src), Path(dst)
    if to not in TARGETS:
        raise ConvertError(f"--to {to}: tfqa converts to {', '.join(TARGETS)}")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise ConvertError(f"--output {dst}: exists and is not an empty folder; choose a new one")
    if not src.is_dir():
        raise ConvertError(f"{flag} {src}: no such folder (a transformers run or checkpoint)")
    config = read_config(src)
    settings = load_settings(src).replace(backend="keras_hub", output_dir=str(dst))
    if not any((src / name).is_file() for name in VOCAB_FILES):
        # transformers fails on such a folder with a TypeError deep inside the tokenizer class
        raise ConvertError(f"{flag} {src}: no tokenizer files ({', '.join(VOCAB_FILES)}); a keras_hub run needs "
                           f"the tokenizer its features run on")
    tokenizer = load_fast_tokenizer(str(src), flag)
    file, weights = read_tf_weights(src)
    weight_map(config, weights, file)  # a missing head or a foreign checkpoint: said before the progress line
    progress = reporter.progress(f"converting {src} ({config['model_type']}) to a keras_hub run")
    model = build_from_tf_weights(config, weights, file)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with scratch_dir(dst.parent, f".{dst.name}.converting-") as tmp:  # beside dst: the rename stays on one disk
        staged = tmp / "run"  # made by mkdir, so it gets the umask's mode (mkdtemp's folder is 0700)
        staged.mkdir()
        KERAS_HUB.save(model, tokenizer, staged)
        save_settings(staged, settings)
        os.replace(staged, dst)  # onto a missing or empty folder only (checked above)
    progress.done(f": {dst}")
    return dst
