"""The Rust fast tokenizer under tfqa's features: unwrapping, the pair template, batch encoding.

`tfqa.core.features` works on a `tokenizers.Tokenizer` and calls its
`encode_batch` directly; the special tokens, truncation and padding are tfqa's
own work (the windows). Transformers' wrapper around that tokenizer converts
every encoding into Python dicts and lists, which cost half as much again as
the Rust work on SQuAD, and its API is the one transformers 5 rewrote, so it
is unwrapped here, in `rust_tokenizer`, and nowhere else.

The ids and offsets are the wrapper's: with `add_special_tokens=False` it calls
the same `encode_batch` and copies `Encoding.ids`/`Encoding.offsets` as they are
(the post-processor still runs, e.g. RoBERTa's `trim_offsets`).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

# Names of the classification token in the vocabularies of the usual model families, for a bare
# `tokenizers.Tokenizer`, which does not say which of its special tokens is the CLS one.
_CLS_NAMES = ("[CLS]", "<s>", "<cls>")
_PAD_NAMES = ("[PAD]", "<pad>")


@dataclass(frozen=True)
class RustTokenizer:
    """A `tokenizers.Tokenizer` with truncation and padding off, plus what its wrapper knew."""

    backend: object  # tokenizers.Tokenizer
    cls_id: int | None  # the token "no answer" points at (bare tokenizers: the first of _CLS_NAMES in the vocab)
    pad_id: int
    pad_left: bool
    token_type_ids: bool | None  # whether the model takes them; None: when the template has two types


def rust_tokenizer(tokenizer) -> RustTokenizer:
    """The Rust tokenizer of `tokenizer` (a transformers fast tokenizer or a `tokenizers.Tokenizer`).

    A tokenizer configured to truncate or pad (transformers leaves its backend
    so after a call with `truncation=`/`padding=`) is copied with both off:
    the caller's object is never changed.
    """
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        backend = tokenizer
        padding = backend.padding or {}
        pad_id = padding.get("pad_id", _first_id(backend, _PAD_NAMES))
        info = dict(cls_id=_first_id(backend, _CLS_NAMES), pad_id=pad_id if pad_id is not None else 0,
                    pad_left=padding.get("direction") == "left", token_type_ids=None)
    elif getattr(tokenizer, "is_fast", False):
        backend = tokenizer.backend_tokenizer
        info = dict(cls_id=tokenizer.cls_token_id,
                    pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
                    pad_left=tokenizer.padding_side == "left",
                    token_type_ids="token_type_ids" in tokenizer.model_input_names)
    else:
        raise TypeError(f"{type(tokenizer).__name__} is not a fast tokenizer; tfqa needs offsets from a fast tokenizer")
    if backend.truncation is not None or backend.padding is not None:
        backend = _untruncated_copy(backend.to_str())
    return RustTokenizer(backend, **info)


@functools.lru_cache(maxsize=4)
def _untruncated_copy(serialized: str):
    """A tokenizer rebuilt from its JSON with truncation and padding off (cached: rebuilding a 30k
    vocab takes ~40 ms, and a transformers tokenizer keeps the settings of its last padded call)."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(serialized)
    copy.no_truncation()
    copy.no_padding()
    return copy


def _first_id(backend, names: Sequence[str]) -> int | None:
    return next((backend.token_to_id(n) for n in names if backend.token_to_id(n) is not None), None)


@dataclass(frozen=True)
class PairTemplate:
    """Where a tokenizer puts its special tokens around a (question, context) pair."""

    prefix: tuple[int, ...]  # e.g. (CLS,)
    middle: tuple[int, ...]  # e.g. (SEP,) or (SEP, SEP) for RoBERTa
    suffix: tuple[int, ...]  # e.g. (SEP,)
    type_ids: tuple[int, int, int, int, int] | None  # prefix, question, middle, context, suffix
    cls_slot: tuple[int, int] | None  # (part, index in part) of the CLS token; parts 0/2/4 = prefix/middle/suffix
    pad_id: int
    pad_left: bool

    @property
    def num_special(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)


def pair_template(tokenizer) -> PairTemplate:
    """Reads the pair layout off the tokenizer by encoding one probe pair.

    `sequence_ids` tells which positions came from the question (0), the
    context (1) or the template (None), so this works for any fast tokenizer
    without knowing its model family. Takes what `rust_tokenizer` takes.
    """
    rust = tokenizer if isinstance(tokenizer, RustTokenizer) else rust_tokenizer(tokenizer)
    enc = rust.backend.encode("a", "b", add_special_tokens=True)
    seq, ids, tt = enc.sequence_ids, enc.ids, enc.type_ids
    q_pos = [i for i, s in enumerate(seq) if s == 0]
    c_pos = [i for i, s in enumerate(seq) if s == 1]
    if not q_pos or not c_pos or q_pos[-1] > c_pos[0]:
        raise ValueError(f"{type(tokenizer).__name__}: expected the question before the context in a pair encoding")
    prefix, middle, suffix = ids[: q_pos[0]], ids[q_pos[-1] + 1 : c_pos[0]], ids[c_pos[-1] + 1 :]
    uses_types = rust.token_type_ids if rust.token_type_ids is not None else tt[q_pos[0]] != tt[c_pos[0]]
    type_ids = None
    if uses_types:
        first = lambda positions, default: tt[positions[0]] if positions else default  # noqa: E731
        type_ids = (
            first(range(q_pos[0]), tt[q_pos[0]]), tt[q_pos[0]],
            first(range(q_pos[-1] + 1, c_pos[0]), tt[q_pos[0]]), tt[c_pos[0]],
            first(range(c_pos[-1] + 1, len(ids)), tt[c_pos[0]]),
        )
    cls_id = rust.cls_id
    cls_slot = next(((p, part.index(cls_id)) for p, part in ((0, prefix), (2, middle), (4, suffix))
                     if cls_id is not None and cls_id in part), None)
    return PairTemplate(tuple(prefix), tuple(middle), tuple(suffix), type_ids, cls_slot, rust.pad_id, rust.pad_left)


@dataclass
class Encoded:
    """Distinct texts tokenized once, as flat arrays: text t's tokens are `ids[starts[t]:starts[t] + lengths[t]]`."""

    index: np.ndarray  # per input text, its row among the distinct texts
    ids: np.ndarray  # int32, every distinct text's tokens one after the other
    offsets: np.ndarray | None  # int32 (tokens, 2): character spans, when asked for
    lengths: np.ndarray  # int64, tokens per distinct text
    starts: np.ndarray  # int64, where each distinct text's tokens begin


def encode_unique(backend, texts: Sequence[str], offsets: bool, chunk: int,
                  progress: Callable[[str], None] | None = None, what: str = "texts") -> Encoded:
    """Tokenizes each distinct text once (without special tokens), `chunk` texts per `encode_batch`.

    Without offsets it calls `encode_batch_fast`, which skips tracking them (same ids).
    """
    unique: dict[str, int] = {}
    index = np.fromiter((unique.setdefault(t, len(unique)) for t in texts), dtype=np.int64, count=len(texts))
    distinct = list(unique)
    encode = backend.encode_batch if offsets else backend.encode_batch_fast
    ids, offs, lengths = [], [], []
    for begin in range(0, len(distinct), chunk):
        encodings = encode(distinct[begin : begin + chunk], add_special_tokens=False)
        token_lists = [e.ids for e in encodings]
        n_chunk = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        total = int(n_chunk.sum())
        ids.append(np.fromiter(itertools.chain.from_iterable(token_lists), dtype=np.int32, count=total))
        if offsets:  # one (start, end) pair per item: numpy reads the tuples straight into rows
            spans = itertools.chain.from_iterable(e.offsets for e in encodings)
            offs.append(np.fromiter(spans, dtype=np.dtype((np.int32, 2)), count=total))
        lengths.append(n_chunk)
        if progress is not None:
            progress(f"{begin + len(encodings):,} of {len(distinct):,} {what} tokenized")
    lengths_all = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    return Encoded(index, np.concatenate(ids) if ids else np.zeros(0, np.int32),
                   (np.concatenate(offs) if offs else np.zeros((0, 2), np.int32)) if offsets else None,
                   lengths_all, np.cumsum(lengths_all) - lengths_all)
