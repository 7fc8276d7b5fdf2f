"""BERT WordPiece tokenization inside the TensorFlow graph, equal to the Hugging Face fast tokenizer.

The exported SavedModel takes raw text, so tokenization must run in the graph
(tensorflow-text ops, which TensorFlow Serving ships). tensorflow-text's own
BERT normalizer does not match Hugging Face's: it case-folds with NFKC, so
"2½ sacks" becomes "21⁄2 sacks" and tokenizes as `21 ##⁄ ##2` where the
checkpoint was trained on `2 ##½` (18 of the 2,067 SQuAD v1.1 dev paragraphs).

So normalization is done here, from a table read off the checkpoint's own
normalizer: Hugging Face's `BertNormalizer` (clean text, space out CJK
characters, lowercase, NFD + strip accents) maps each character on its own, so
running it once over every code point gives a complete per-character table:

    "Ça" → 'Ç'→"c", 'a'→"a"           (lowercase, accent stripped)
    "中x" → '中'→" 中 ", 'x'→"x"       (CJK characters become words)
    "a\u200bb" → '\u200b'→""          (control / format characters dropped)

Only tensorflow-text's WordPiece op (`FastWordpieceTokenizer`, which splits on
whitespace and punctuation as `BertPreTokenizer` does) sees the normalized
text. Because every normalized byte comes from one known input character,
token offsets map back to character offsets in the original text — in Python
`str` units (code points), so accents, CJK and emoji count as one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfqa.core.errors import TfqaError

_DELETE, _WRAP = 0, 1


class NotWordPieceError(TfqaError, ValueError):
    """The tokenizer is not BERT-style WordPiece, so it cannot run in the graph."""


@dataclass(frozen=True)
class WordPieceSpec:
    """What the graph tokenizer needs from a Hugging Face fast tokenizer."""

    vocab: list[str]  # token strings in id order
    unk_token: str
    suffix_indicator: str
    max_chars_per_word: int
    run_starts: np.ndarray  # code point ranges mapped as a whole: deleted or wrapped in spaces
    run_ends: np.ndarray
    run_kinds: np.ndarray
    char_keys: np.ndarray  # other code points the normalizer changes, and what it makes of them
    char_values: list[str]

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "WordPieceSpec":
        """Reads vocab, WordPiece settings and the normalization table off a fast BERT-family tokenizer."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise NotWordPieceError(f"{type(tokenizer).__name__} is not a fast tokenizer")
        definition = json.loads(backend.to_str())
        model, pre = definition["model"], definition.get("pre_tokenizer") or {}
        if model.get("type") != "WordPiece" or pre.get("type") != "BertPreTokenizer":
            raise NotWordPieceError(
                f"{type(tokenizer).__name__} uses a {model.get('type')} model with a {pre.get('type')} "
                "pre-tokenizer; in-graph tokenization supports BERT-style WordPiece only")
        vocab = [token for token, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
        runs, keys, values = _normalization_table(backend.normalizer, json.dumps(definition.get("normalizer")))
        return cls(vocab, model["unk_token"], model["continuing_subword_prefix"],
                   int(model["max_input_chars_per_word"]),
                   np.array([r[0] for r in runs], np.int32), np.array([r[1] for r in runs], np.int32),
                   np.array([r[2] for r in runs], np.int32), np.array(keys, np.int32), values)


_TABLES: dict[str, tuple] = {}  # normalizer JSON → table: building one takes ~4 s


def _normalization_table(normalizer, definition: str):
    """(runs, keys, values): how `normalizer` changes each code point (unchanged ones are left out).

    Runs of consecutive code points that are all deleted or all wrapped in
    spaces (CJK blocks, private use areas: ~230k code points) are stored as
    ~300 ranges; the remaining ~14k changes (mostly lowercasing) one by one.
    """
    if definition in _TABLES:
        return _TABLES[definition]
    runs, keys, values = [], [], []
    for cp in range(0x110000 if normalizer is not None else 0):
        if 0xD800 <= cp <= 0xDFFF:  # surrogates are not characters
            continue
        char = chr(cp)
        out = normalizer.normalize_str(char)
        if out == char:
            continue
        kind = _DELETE if out == "" else _WRAP if out == f" {char} " else None
        if kind is None:
            keys.append(cp)
            values.append(out)
        elif runs and runs[-1][2] == kind and runs[-1][1] == cp - 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp, kind])
    _TABLES[definition] = runs, keys, values
    return runs, keys, values


class GraphWordPiece(tf.Module):
    """`tokenize(texts)` and `tokenize_with_offsets(texts)` for a batch of strings, in the graph."""

    def __init__(self, spec: WordPieceSpec, name: str | None = None):
        import tensorflow_text as tf_text

        super().__init__(name=name)
        # A trailing sentinel run beyond Unicode keeps the gathers valid when there are no runs.
        self._run_starts = tf.constant(np.append(spec.run_starts, 0x110001), tf.int32)
        self._run_ends = tf.constant(np.append(spec.run_ends, 0x110001), tf.int32)
        self._run_kinds = tf.constant(np.append(spec.run_kinds, _DELETE), tf.int32)
        self._char_values = tf.constant(spec.char_values or [""], tf.string)
        self._char_index = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(spec.char_keys, tf.int32),
                                                tf.range(len(spec.char_keys), dtype=tf.int32)), default_value=-1)
        # max_bytes_per_word counts UTF-8 bytes where Hugging Face counts characters: the
        # same for ASCII words; a non-ASCII word of 26–100 characters may differ (very rare).
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=spec.vocab, suffix_indicator=spec.suffix_indicator, max_bytes_per_word=spec.max_chars_per_word,
            token_out_type=tf.int32, unknown_token=spec.unk_token, no_pretokenization=False,
            support_detokenization=False)

    def _normalize(self, texts):
        """(normalized texts, per character: start in the normalized bytes, ragged [batch, chars])."""
        chars = tf.strings.unicode_decode(texts, "UTF-8", errors="replace")  # [batch, (chars)]
        cps = chars.flat_values
        run = tf.searchsorted(self._run_starts, cps, side="right") - 1
        safe = tf.maximum(run, 0)
        in_run = (run >= 0) & (cps <= tf.gather(self._run_ends, safe))
        kind = tf.where(in_run, tf.gather(self._run_kinds, safe), -1)
        index = self._char_index.lookup(cps)
        itself = tf.strings.unicode_encode(tf.expand_dims(cps, 1), "UTF-8")
        pieces = tf.where(kind == _DELETE, "",
                          tf.where(kind == _WRAP, tf.strings.join([" ", itself, " "]),
                                   tf.where(index >= 0, tf.gather(self._char_values, tf.maximum(index, 0)), itself)))
        pieces = chars.with_flat_values(pieces)
        lengths = chars.with_flat_values(tf.strings.length(pieces.flat_values))
        starts = tf.cumsum(lengths, axis=1, exclusive=True)
        return tf.strings.reduce_join(pieces, axis=1), starts

    def tokenize(self, texts):
        """Token ids, int32 ragged [batch, (tokens)]."""
        normalized, _ = self._normalize(texts)
        return self._wordpiece.tokenize(normalized)

    def tokenize_with_offsets(self, texts):
        """(ids, char_starts, char_ends), int32 ragged [batch, (tokens)]; offsets count code points.

        A token's start is the input character its first normalized byte came
        from, its end the one after the character of its last byte.
        """
        normalized, starts = self._normalize(texts)
        ids, begin, end = self._wordpiece.tokenize_with_offsets(normalized)
        # One sorted 1-D array for the whole batch: shift each row by the bytes before it.
        row_bytes = tf.strings.length(normalized)
        byte_base = tf.cumsum(row_bytes, exclusive=True)
        char_base = tf.cast(starts.row_starts(), tf.int32)
        flat_starts = (starts + tf.expand_dims(byte_base, 1)).flat_values
        token_rows = tf.cast(ids.value_rowids(), tf.int32)
        token_base = tf.gather(byte_base, token_rows)
        char_base_of_token = tf.gather(char_base, token_rows)
        first = tf.searchsorted(flat_starts, tf.cast(begin.flat_values, tf.int32) + token_base, side="right") - 1
        last = tf.searchsorted(flat_starts, tf.cast(end.flat_values, tf.int32) - 1 + token_base, side="right") - 1
        return (ids, ids.with_flat_values(first - char_base_of_token),
                ids.with_flat_values(last + 1 - char_base_of_token))
