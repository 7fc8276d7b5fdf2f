"""Shared test helpers: paths, the tiny corpus and examples, and the shared SQuAD data (skipped when absent).

Fixtures are in conftest.py; plain implementations the tests compare against are in reference.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tfqa.core.squad import Answer, Example

ROOT = Path(__file__).resolve().parents[1]
SQUAD_DIR = Path(os.environ.get("TFQA_SQUAD_DIR", ROOT.parent / "shared" / "data" / "squad"))

CORPUS = [
    "The cat sat on the mat near the old red barn.",
    "Denver Broncos won Super Bowl 50 in Santa Clara, California, on February 7, 2016.",
    "Tesla was born in Smiljan and moved to New York in 1884 to work for Edison.",
    "Café owners in Zürich serve coffee, tea and cake every morning at nine.",
]


def make_example(qid, question, context, answer=None, occurrence=0, title="t"):
    """An Example whose answer is the `occurrence`-th appearance of `answer` in `context`."""
    answers = ()
    if answer is not None:
        start = -1
        for _ in range(occurrence + 1):
            start = context.index(answer, start + 1)
        answers = (Answer(answer, start),)
    return Example(qid, title, question, context, answers, is_impossible=answer is None)


def tiny_examples():
    """A handful of examples, some with contexts many windows long at small max_seq_length."""
    long_ctx = " ".join(CORPUS * 3)
    return [
        make_example("q1", "Where did the cat sit?", CORPUS[0], "on the mat"),
        make_example("q2", "Who won Super Bowl 50?", CORPUS[1], "Denver Broncos"),
        make_example("q3", "When did Tesla move to New York?", long_ctx, "1884", occurrence=2),
        make_example("q4", "What do Zürich café owners serve?", long_ctx, "coffee, tea and cake", occurrence=1),
        make_example("q5", "Where was Tesla born?", long_ctx, "Smiljan"),
        make_example("q6", "Who painted the barn?", long_ctx, None),
        make_example("q7", "What is the color of the barn?", CORPUS[0], "red"),
        make_example("q8", "When was the final?", long_ctx, "2016", occurrence=2),
    ]


def corpus_words(texts):
    """The distinct lower-cased words and punctuation of `texts`, sorted."""
    import re

    return sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})


def squad_path(name: str) -> Path:
    """A file of the shared SQuAD data, or skip the test when it is absent."""
    path = SQUAD_DIR / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


_SQUAD_CACHE: dict = {}


def load_real(name: str, tokenizer):
    """Examples and default-setting features of a shared SQuAD file (cached per session)."""
    from tfqa import load_squad, prepare_features

    if name not in _SQUAD_CACHE:
        examples = load_squad(squad_path(name))
        _SQUAD_CACHE[name] = (examples, prepare_features(examples, tokenizer))
    return _SQUAD_CACHE[name]


def python_answers(model, tokenizer, examples, config):
    """The Python pipeline's answers and null odds with the export's settings."""
    from tfqa.core.decoding import decode_predictions
    from tfqa.core.features import prepare_features

    features = prepare_features(examples, tokenizer, config.max_seq_length, config.doc_stride,
                                config.max_query_length)
    inputs = {k: v for k, v in features.model_inputs().items() if k in model.input_signature}
    out = model(inputs, training=False)
    return decode_predictions(examples, features, out.start_logits.numpy(), out.end_logits.numpy(),
                              n_best_size=config.n_best_size, max_answer_length=config.max_answer_length,
                              version_2_with_negative=config.version_2_with_negative,
                              null_score_diff_threshold=config.decoding.null_threshold)


def distilbert_pytorch_tensors(model) -> dict:
    """The Hugging Face (PyTorch) tensors of a tiny keras-hub DistilBERT QA model: just what its converter reads."""
    import numpy as np

    layer = model.get_layer("transformer_layer_0")
    embedding = model.get_layer("token_and_position_embedding")
    attention, norm = layer._self_attention_layer, model.get_layer("embeddings_layer_norm")
    prefix = "distilbert.transformer.layer.0."
    tensors = {
        "distilbert.embeddings.word_embeddings.weight": embedding.token_embedding.embeddings,
        "distilbert.embeddings.position_embeddings.weight": embedding.position_embedding.position_embeddings,
        "distilbert.embeddings.LayerNorm.weight": norm.gamma, "distilbert.embeddings.LayerNorm.bias": norm.beta,
        prefix + "sa_layer_norm.weight": layer._self_attention_layer_norm.gamma,
        prefix + "sa_layer_norm.bias": layer._self_attention_layer_norm.beta,
        prefix + "output_layer_norm.weight": layer._feedforward_layer_norm.gamma,
        prefix + "output_layer_norm.bias": layer._feedforward_layer_norm.beta,
        prefix + "ffn.lin1.weight": np.transpose(layer._feedforward_intermediate_dense.kernel),
        prefix + "ffn.lin1.bias": layer._feedforward_intermediate_dense.bias,
        prefix + "ffn.lin2.weight": np.transpose(layer._feedforward_output_dense.kernel),
        prefix + "ffn.lin2.bias": layer._feedforward_output_dense.bias,
    }
    hidden = attention.query_dense.kernel.shape[0]
    for hf, dense in (("q_lin", attention.query_dense), ("k_lin", attention.key_dense),
                      ("v_lin", attention.value_dense)):
        tensors[f"{prefix}attention.{hf}.weight"] = np.reshape(np.asarray(dense.kernel), (hidden, -1)).T
        tensors[f"{prefix}attention.{hf}.bias"] = np.reshape(np.asarray(dense.bias), (-1,))
    tensors[f"{prefix}attention.out_lin.weight"] = np.reshape(np.asarray(attention.output_dense.kernel),
                                                              (-1, hidden)).T
    tensors[f"{prefix}attention.out_lin.bias"] = attention.output_dense.bias
    return {k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in tensors.items()}
