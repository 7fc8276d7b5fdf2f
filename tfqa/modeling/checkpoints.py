"""Building and loading Transformers' TF question-answering models.

Any checkpoint `TFAutoModelForQuestionAnswering` knows works: DistilBERT (the
default), BERT, RoBERTa, ALBERT, ELECTRA... from the hub or a local directory,
with TF weights (`tf_model.h5`) or PyTorch safetensors (converted on load; this
needs transformers ≤ 4.54, see DEVELOPERS.md). The loss is the models' own:
the mean of the start and end cross-entropies.
"""

from __future__ import annotations

import os

from tfqa.core.errors import TfqaError


class ModelLoadError(TfqaError, RuntimeError):
    """The checkpoint could not be loaded (offline, wrong path, unsupported files)."""


HUB_HOST = "huggingface.co"


def load_qa_model(name_or_path: str, config_name: str = "", tokenizer_name: str = ""):
    """(model, tokenizer) from a hub name or a local checkpoint directory.

    `config_name` / `tokenizer_name` (run_squad.py's flags) take the model
    config or the tokenizer from another name or folder.

    When the hub cannot be reached, only the local Hugging Face cache is tried:
    otherwise the hub client retries for about a minute before giving up.
    """
    from transformers import AutoConfig, AutoTokenizer, TFAutoModelForQuestionAnswering

    from tfqa.core.squad import host_reachable

    names = [name_or_path, config_name, tokenizer_name]
    local_only = not all(os.path.isdir(n) for n in names if n) and not host_reachable(HUB_HOST)
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_name or name_or_path, use_fast=True,
                                                  local_files_only=local_only)
        config = AutoConfig.from_pretrained(config_name, local_files_only=local_only) if config_name else None
        model = TFAutoModelForQuestionAnswering.from_pretrained(name_or_path, config=config,
                                                               local_files_only=local_only)
    except (OSError, ValueError) as e:
        offline = not os.path.isdir(name_or_path)
        hint = (f"could not download '{name_or_path}' from the Hugging Face hub (is there a network?); "
                "pass --model_name_or_path with a local checkpoint directory"
                if offline else f"could not load the checkpoint in {name_or_path}")
        raise ModelLoadError(f"{hint}: {str(e).splitlines()[0]}") from e
    if not tokenizer.is_fast:
        raise ModelLoadError(f"{name_or_path}: tfqa needs a fast tokenizer (tokenizer.json or a vocab it can convert)")
    return model, tokenizer


def tiny_distilbert(vocab_size: int, max_position_embeddings: int, dim: int = 64, n_layers: int = 2,
                    n_heads: int = 4, seed: int = 0, initializer_range: float = 0.1):
    """A small randomly initialised TFDistilBertForQuestionAnswering (offline smoke runs and tests).

    Why `initializer_range` 0.1 and not DistilBERT's 0.02: a model this small
    trained from scratch starts with near-zero attention logits, so every token
    attends uniformly and the question is invisible to the context; on the
    smoke corpus the loss then sits at ~1.2 for ~700 steps before it learns to
    look at the question. With 0.1 it leaves that plateau within ~250 steps
    (measured over 4 seeds, batch 32, lr 1e-3).
    """
    import tensorflow as tf
    from transformers import DistilBertConfig, TFDistilBertForQuestionAnswering

    config = DistilBertConfig(vocab_size=vocab_size, dim=dim, n_layers=n_layers, n_heads=n_heads,
                              hidden_dim=2 * dim, max_position_embeddings=max_position_embeddings,
                              initializer_range=initializer_range, dropout=0.0, attention_dropout=0.0, qa_dropout=0.0)
    tf.keras.utils.set_random_seed(seed)
    model = TFDistilBertForQuestionAnswering(config)
    model(model.dummy_inputs)  # create the weights now, inside the caller's strategy scope
    return model
