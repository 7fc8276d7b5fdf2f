"""Building small WordPiece tokenizers from text, for offline runs and tests.

Real runs load the tokenizer that ships with the checkpoint; this exists so that
the offline smoke preset and the tests can train a BERT-style uncased WordPiece
vocabulary from the data they use, with no download. `train_wordpiece` (Hugging
Face's trainer) is not reproducible across processes; `train_word_vocab` is.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterable

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_wordpiece(texts: Iterable[str], vocab_size: int = 8000, lowercase: bool = True,
                    token_type_ids: bool = True):
    """Trains a BERT-style WordPiece vocab on `texts`; returns a `BertTokenizerFast`.

    `token_type_ids=False` makes a tokenizer for models without segment ids (DistilBERT).
    """
    from tokenizers import BertWordPieceTokenizer

    wp = BertWordPieceTokenizer(lowercase=lowercase, strip_accents=lowercase)
    wp.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1,
                           special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        wp.save_model(tmp)
        return tokenizer_from_vocab(Path(tmp) / "vocab.txt", lowercase=lowercase, token_type_ids=token_type_ids)


def train_word_vocab(texts: Iterable[str], vocab_size: int = 8000, lowercase: bool = True,
                     token_type_ids: bool = True):
    """A WordPiece `BertTokenizerFast` whose vocab is the same for the same texts in every process.

    Hugging Face's trainer breaks ties between equally frequent pairs in hash-map order, which
    changes from one process to the next: the same texts gave different vocab sets and token ids
    (so a differently initialised smoke model, and a different tuned null threshold). Here the
    vocab is every character seen (alone and as a "##" continuation, so any word can be spelled),
    then whole words by frequency, ties alphabetical, up to `vocab_size`; words left out are spelled
    in characters. Words are cut as BERT's own normalizer and pre-tokenizer cut them.
    """
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = Counter(word for text in texts
                    for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    alphabet = sorted({c for word in words for c in word})
    tokens = list(dict.fromkeys([*alphabet, *(f"##{c}" for c in alphabet),
                                 *sorted(words, key=lambda w: (-words[w], w))]))
    tokens = tokens[:max(0, vocab_size - len(SPECIAL_TOKENS))]
    with tempfile.TemporaryDirectory() as tmp:
        return tokenizer_from_vocab(write_vocab(tokens, Path(tmp) / "vocab.txt"), lowercase=lowercase,
                                    token_type_ids=token_type_ids)


def tokenizer_from_vocab(vocab_file: str | Path, lowercase: bool = True, token_type_ids: bool = True):
    """A `BertTokenizerFast` for a WordPiece `vocab.txt` (one token per line).

    Built around `rust_tokenizer_from_vocab`'s tokenizer (`tokenizer_object`), not from `vocab_file`:
    transformers 5 no longer reads `vocab_file` (its `BertTokenizerFast` takes `vocab=`, and silently
    builds a vocab of the five special tokens alone), and 4.x's own conversion builds the same
    tokenizer JSON, so both versions give the same ids, offsets and saved `tokenizer.json`.
    """
    from transformers import BertTokenizerFast

    names = ["input_ids", "token_type_ids", "attention_mask"] if token_type_ids else ["input_ids", "attention_mask"]
    # The last three: what 4.x's BertTokenizerFast(vocab_file=...) records in tokenizer_config.json, kept so
    # that a saved run's files stay byte for byte what they were.
    return BertTokenizerFast(tokenizer_object=rust_tokenizer_from_vocab(vocab_file, lowercase=lowercase),
                             do_lower_case=lowercase, model_input_names=names, do_basic_tokenize=True, never_split=None,
                             clean_up_tokenization_spaces=True)


def rust_tokenizer_from_vocab(vocab_file: str | Path, lowercase: bool = True):
    """A `tokenizers.Tokenizer` for a WordPiece `vocab.txt`, without transformers: the same pipeline
    (BERT normalizer, pre-tokenizer, WordPiece, `[CLS] a [SEP] b [SEP]` with type ids 0/1) that
    transformers 4.x's `BertTokenizerFast(vocab_file=...)` builds, JSON for JSON."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tokenizer = Tokenizer(models.WordPiece.from_file(str(vocab_file), unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                      strip_accents=None, lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    special = [("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1", special_tokens=special)
    return tokenizer


def write_vocab(tokens: Iterable[str], path: str | Path) -> Path:
    """Writes a vocab file (atomically) with the special tokens first, as BERT expects."""
    from tfqa.core.files import write_text_atomic

    words = list(SPECIAL_TOKENS) + [t for t in tokens if t not in SPECIAL_TOKENS]
    return write_text_atomic(path, "\n".join(words) + "\n")
