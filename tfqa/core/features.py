"""Examples → model features: question + context windows, labels and decoding bookkeeping.

Each example becomes one or more fixed-length windows ("features") laid out by
the tokenizer's own pair template, e.g. for BERT `[CLS] question [SEP] context [SEP]`.
Contexts longer than one window are split into overlapping windows exactly as
a Hugging Face fast tokenizer does with `truncation="only_second"`,
`return_overflowing_tokens=True` and `stride=doc_stride`: `doc_stride` is the
number of context tokens two consecutive windows share.

Speed: SQuAD has about five questions per paragraph, so instead of tokenizing
every (question, context) pair we tokenize each distinct context once and each
question once, then assemble the windows with NumPy. Fast tokenizers encode the
two sequences of a pair independently, so the token ids are identical to the
pair call (checked against it in tests and in `python -m bench.features_throughput`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from tfqa.core.config import FeatureConfig
from tfqa.core.squad import DataError, find_lone_surrogate


@dataclass
class Features:
    """Windows as NumPy arrays, one row per window; `example_index` maps rows to examples.

    `offsets[i, t]` is the (start, end) character span of token t in its example's
    context, or (-1, -1) for question, special and padding tokens.
    `token_is_max_context[i, t]` marks context tokens whose best window is this one.
    `start_positions`/`end_positions` label the first gold answer, or `cls_index`
    when the window does not contain it or the question is unanswerable.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray | None
    example_index: np.ndarray
    start_positions: np.ndarray
    end_positions: np.ndarray
    cls_index: np.ndarray
    offsets: np.ndarray
    token_is_max_context: np.ndarray

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def model_inputs(self) -> dict[str, np.ndarray]:
        """The arrays a QA model takes, under their usual names."""
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            inputs["token_type_ids"] = self.token_type_ids
        return inputs

    def select(self, rows: np.ndarray | slice) -> "Features":
        """A subset of the windows (example_index keeps pointing at the same examples)."""
        return Features(**{
            f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[rows]
            for f in dataclasses.fields(self)
        })


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

    `sequence_ids()` tells which positions came from the question (0), the
    context (1) or the template (None), so this works for any fast tokenizer
    without knowing its model family.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"{type(tokenizer).__name__} is not a fast tokenizer; tfqa needs offsets from a fast tokenizer")
    enc = tokenizer("a", "b", add_special_tokens=True, return_token_type_ids=True)
    seq = enc.sequence_ids()
    ids = enc["input_ids"]
    q_pos = [i for i, s in enumerate(seq) if s == 0]
    c_pos = [i for i, s in enumerate(seq) if s == 1]
    if not q_pos or not c_pos or q_pos[-1] > c_pos[0]:
        raise ValueError(f"{type(tokenizer).__name__}: expected the question before the context in a pair encoding")
    prefix, middle, suffix = ids[: q_pos[0]], ids[q_pos[-1] + 1 : c_pos[0]], ids[c_pos[-1] + 1 :]
    type_ids = None
    if "token_type_ids" in tokenizer.model_input_names and "token_type_ids" in enc:
        tt = enc["token_type_ids"]
        first = lambda positions, default: tt[positions[0]] if positions else default  # noqa: E731
        type_ids = (
            first(range(q_pos[0]), tt[q_pos[0]]), tt[q_pos[0]],
            first(range(q_pos[-1] + 1, c_pos[0]), tt[q_pos[0]]), tt[c_pos[0]],
            first(range(c_pos[-1] + 1, len(ids)), tt[c_pos[0]]),
        )
    cls_id = tokenizer.cls_token_id
    cls_slot = next(((p, part.index(cls_id)) for p, part in ((0, prefix), (2, middle), (4, suffix))
                     if cls_id is not None and cls_id in part), None)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return PairTemplate(tuple(prefix), tuple(middle), tuple(suffix), type_ids, cls_slot, pad_id,
                        tokenizer.padding_side == "left")


def window_starts(num_tokens: int, window: int, stride: int) -> list[int]:
    """Start indexes of the context windows, as the Rust `tokenizers` truncation makes them.

    Windows hold `window` tokens and advance by `window - stride`; the last one
    ends exactly at the end of the context. Example: 13 tokens, window 5,
    stride 2 → starts [0, 3, 6, 9] covering [0:5] [3:8] [6:11] [9:13].
    """
    starts = [0]
    while starts[-1] + window < num_tokens:
        starts.append(starts[-1] + window - stride)
    return starts


# The "max context" rule (from google-research/bert). With overlapping windows a
# token can appear in several of them; at inference an answer may only START in
# the window where its start token has the most context on both sides.
#
#   context:  the man went to the store and bought a gallon of milk
#   window A: the man went to the                    (tokens 0..4)
#   window B:             to the store and bought    (tokens 3..7)
#   window C:                    and bought a gallon (tokens 6..9)
#
# "bought" (token 7) is in B with 4 tokens left of it and 0 right, score
# min(4, 0) = 0, and in C with 1 left and 2 right, score min(1, 2) = 1: it
# belongs to C. The score is min(left, right) + 0.01 * window length, so ties
# favour the longer window, and then the earlier one.
def _max_context_window(num_tokens: int, starts: Sequence[int], window: int) -> np.ndarray:
    """For each context token, the index of the window that is its max context."""
    best_score = np.full(num_tokens, -np.inf)
    best_window = np.zeros(num_tokens, dtype=np.int32)
    for w, start in enumerate(starts):
        end = min(start + window, num_tokens)
        idx = np.arange(start, end)
        score = np.minimum(idx - start, end - 1 - idx) + 0.01 * (end - start)
        better = score > best_score[start:end]  # strict: the first window wins ties
        best_score[start:end] = np.where(better, score, best_score[start:end])
        best_window[start:end] = np.where(better, w, best_window[start:end])
    return best_window


# Texts per tokenizer call: large enough to keep the tokenizer's batch parallelism busy, small enough
# to report progress on big datasets every few seconds.
_ENCODE_CHUNK = 16384


def _encode_unique(tokenizer, texts: Sequence[str], offsets: bool, progress=None, what: str = "texts"):
    """Tokenizes each distinct text once; returns (index per text, ids list, offsets list)."""
    unique: dict[str, int] = {}
    index = np.fromiter((unique.setdefault(t, len(unique)) for t in texts), dtype=np.int64, count=len(texts))
    distinct = list(unique)
    ids: list[np.ndarray] = []
    offs: list[np.ndarray] | None = [] if offsets else None
    for begin in range(0, len(distinct), _ENCODE_CHUNK):
        enc = tokenizer(distinct[begin : begin + _ENCODE_CHUNK], add_special_tokens=False,
                        return_offsets_mapping=offsets, return_attention_mask=False, return_token_type_ids=False)
        ids += [np.asarray(x, dtype=np.int32) for x in enc["input_ids"]]
        if offsets:
            offs += [np.asarray(x, dtype=np.int32).reshape(-1, 2) for x in enc["offset_mapping"]]
        if progress is not None:
            progress(f"{len(ids):,} of {len(distinct):,} {what} tokenized")
    return index, ids, offs


def _refuse_lone_surrogates(examples) -> None:
    """DataError naming the example whose text tokenizers would refuse with a bare TypeError (see `find_lone_surrogate`)."""
    for example in examples:
        for field, text in (("question", example.question), ("context", example.context)):
            at = find_lone_surrogate(text)
            if at >= 0:
                raise DataError(f"question {example.id}: the {field} holds a lone surrogate ({ascii(text[at])}) "
                                f"at character {at}: not valid Unicode text")


def prepare_features(examples, tokenizer, max_seq_length: int = 384, doc_stride: int = 128,
                     max_query_length: int = 64, progress: Callable[[str], None] | None = None, *,
                     config: FeatureConfig | None = None) -> Features:
    """Tokenizes examples into overlapping windows with labels and decoding bookkeeping.

    One call serves training (labels) and evaluation (offsets, max-context flags).
    Questions are left-stripped (leading spaces change BPE tokens) and truncated
    to `max_query_length` tokens; padding follows `tokenizer.padding_side`.
    `progress`, when given, is called with a short status line now and then
    (e.g. `tfqa.core.progress.Step.update`, which throttles them). `config`,
    when given, replaces the three window settings (how tfqa itself calls it).
    """
    config = config or FeatureConfig(max_seq_length, doc_stride, max_query_length)
    config.validate()
    max_seq_length, doc_stride, max_query_length = config.max_seq_length, config.doc_stride, config.max_query_length
    _refuse_lone_surrogates(examples)
    tpl = pair_template(tokenizer)
    q_index, q_ids, _ = _encode_unique(tokenizer, [e.question.lstrip() for e in examples], offsets=False,
                                       progress=progress, what="questions")
    c_index, c_ids, c_offs = _encode_unique(tokenizer, [e.context for e in examples], offsets=True,
                                            progress=progress, what="contexts")

    # Plan every window first so the output arrays are allocated once.
    plan = []  # (example, question tokens, context id, window start, window length)
    layouts: dict[tuple[int, int], tuple[list[int], np.ndarray]] = {}
    for ex_i in range(len(examples)):
        q = q_ids[q_index[ex_i]][:max_query_length]
        c = int(c_index[ex_i])
        room = max_seq_length - len(q) - tpl.num_special
        key = (len(c_ids[c]), room)
        if key not in layouts:
            starts = window_starts(key[0], room, doc_stride)
            layouts[key] = (starts, _max_context_window(key[0], starts, room))
        starts, best = layouts[key]
        for w, s in enumerate(starts):
            plan.append((ex_i, q, c, s, min(room, key[0] - s), w, best))

    n = len(plan)
    input_ids = np.full((n, max_seq_length), tpl.pad_id, dtype=np.int32)
    attention_mask = np.zeros((n, max_seq_length), dtype=np.int32)
    token_type_ids = np.zeros((n, max_seq_length), dtype=np.int32) if tpl.type_ids else None
    offsets = np.full((n, max_seq_length, 2), -1, dtype=np.int32)
    max_ctx = np.zeros((n, max_seq_length), dtype=bool)
    example_index = np.empty(n, dtype=np.int32)
    start_positions = np.empty(n, dtype=np.int32)
    end_positions = np.empty(n, dtype=np.int32)
    cls_index = np.empty(n, dtype=np.int32)

    for i, (ex_i, q, c, s, length, w, best) in enumerate(plan):
        if progress is not None and i % 4096 == 0:
            progress(f"{i:,} of {n:,} windows")
        parts = (tpl.prefix, q, tpl.middle, c_ids[c][s : s + length], tpl.suffix)
        total = sum(len(p) for p in parts)
        pos = max_seq_length - total if tpl.pad_left else 0
        row = input_ids[i]
        bounds = []
        for part in parts:
            row[pos : pos + len(part)] = part
            bounds.append(pos)
            pos += len(part)
        first, last = bounds[0], pos
        attention_mask[i, first:last] = 1
        if token_type_ids is not None:
            for part, b, t in zip(parts, bounds, tpl.type_ids):
                token_type_ids[i, b : b + len(part)] = t
        ctx0 = bounds[3]
        offsets[i, ctx0 : ctx0 + length] = c_offs[c][s : s + length]
        max_ctx[i, ctx0 : ctx0 + length] = best[s : s + length] == w
        example_index[i] = ex_i
        # Models without a CLS token (rare) point "no answer" at the first real token.
        cls = first if tpl.cls_slot is None else bounds[tpl.cls_slot[0]] + tpl.cls_slot[1]
        cls_index[i] = cls
        start_positions[i], end_positions[i] = _label(examples[ex_i], c_offs[c], s, length, ctx0, cls)

    return Features(input_ids, attention_mask, token_type_ids, example_index,
                    start_positions, end_positions, cls_index, offsets, max_ctx)


def _label(example, offs: np.ndarray, s: int, length: int, ctx0: int, cls: int) -> tuple[int, int]:
    """Token positions of the first gold answer in window [s, s+length), or (cls, cls).

    The answer must lie fully inside the window's context characters; its start
    token is the last one starting at or before the answer's first character and
    its end token the first one ending at or after its last character.
    """
    if not example.answers or length == 0:
        return cls, cls
    answer = example.answers[0]
    start_char, end_char = answer.start, answer.start + len(answer.text)
    win = offs[s : s + length]
    if not (win[0, 0] <= start_char and win[-1, 1] >= end_char):
        return cls, cls
    start_tok = min(int(np.searchsorted(win[:, 0], start_char, side="right")) - 1, length - 1)
    end_tok = max(int(np.searchsorted(win[:, 1], end_char, side="left")), 0)
    return ctx0 + start_tok, ctx0 + end_tok
