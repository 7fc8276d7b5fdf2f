"""Examples → model features: question + context windows, labels and decoding bookkeeping.

Each example becomes one or more fixed-length windows ("features") laid out by
the tokenizer's own pair template, e.g. for BERT `[CLS] question [SEP] context [SEP]`.
Contexts longer than one window are split into overlapping windows exactly as
a Hugging Face fast tokenizer does with `truncation="only_second"`,
`return_overflowing_tokens=True` and `stride=doc_stride`: `doc_stride` is the
number of context tokens two consecutive windows share.

Speed: SQuAD has about five questions per paragraph, so instead of tokenizing
every (question, context) pair we tokenize each distinct context once and each
question once (`tfqa.core.tokenization`: the Rust tokenizer's `encode_batch`,
without transformers' wrapper), then lay out all windows with NumPy, a block of
windows at a time: every token of every window is one run copied from a flat
source (template, questions, contexts), with no Python step per window. Fast
tokenizers encode the two sequences of a pair independently, so the token ids
are identical to the pair call (checked against it in tests and in
`python -m bench.features_throughput`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from tfqa.core.config import FeatureConfig
from tfqa.core.squad import DataError, find_lone_surrogate
from tfqa.core.tokenization import PairTemplate, encode_unique, pair_template, rust_tokenizer

__all__ = ["Features", "PairTemplate", "pair_template", "prepare_features", "window_starts"]


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




def _window_count(num_tokens: np.ndarray, room: np.ndarray, step: np.ndarray) -> np.ndarray:
    """`len(window_starts(n, room, room - step))` for arrays of contexts at once."""
    overflow = np.maximum(num_tokens - room, 0)
    return 1 + -(-overflow // np.maximum(step, 1))


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
#
# Comparing a token's score with its two neighbouring windows is enough. Every
# window but the last holds `room` tokens, so along the windows that contain a
# token its score rises (right side growing) strictly, may tie once at the top,
# then falls strictly (left side shrinking); the shorter last window only adds a
# lower score on the falling side. The best window is therefore the one whose
# score beats the previous window's and is not beaten by the next one's.
def _score(k, length):
    """A token's score at index `k` of a window of `length` tokens (float64, as the loop computed it)."""
    return np.minimum(k, length - 1 - k) + 0.01 * length


def _is_max_context(k, length, room, step, first, last, next_length):
    """Whether the token at index `k` of its window has its max context there (all arguments broadcast).

    `room`: tokens of a full window; `step`: room − doc_stride; `first`/`last`:
    the window's place; `next_length`: the next window's length (unused when last).
    """
    own = _score(k, length)
    k_prev, k_next = k + step, k - step  # the same token in the previous (full) and the next window
    beats_prev = first | (k_prev >= room) | (own > _score(k_prev, room))
    holds_next = last | (k_next < 0) | (own >= _score(k_next, next_length))
    return beats_prev & holds_next


def _max_context_window(num_tokens: int, starts: Sequence[int], window: int) -> np.ndarray:
    """For each context token, the index of the window that is its max context (`starts` from `window_starts`)."""
    n_win = len(starts)
    step = starts[1] - starts[0] if n_win > 1 else max(window, 1)
    s = np.asarray(starts)[:, None]
    lengths = np.minimum(window, num_tokens - s)
    k = np.arange(num_tokens)[None, :] - s
    w = np.arange(n_win)[:, None]
    best = (k >= 0) & (k < lengths) & _is_max_context(
        k, lengths, window, step, w == 0, w == n_win - 1, np.roll(lengths, -1, axis=0))
    return np.argmax(best, axis=0).astype(np.int32)


# Texts per tokenizer call: large enough to keep the tokenizer's batch parallelism busy, small enough
# to report progress on big datasets every few seconds.
_ENCODE_CHUNK = 16384
# Windows laid out per block: bounds the temporary index arrays (~50 MB at 384 tokens).
_WINDOW_BLOCK = 4096


def _refuse_lone_surrogates(examples, texts: Sequence[str]) -> None:
    """DataError naming the example whose text tokenizers would refuse with a bare TypeError (see `find_lone_surrogate`).

    `texts` are checked in one pass (UTF-8 encoding fails on lone surrogates and
    nothing else); the examples one by one only when one of them holds such a character.
    """
    try:
        "".join(texts).encode("utf-8")  # joining cannot pair surrogates: a str holds code points
        return
    except UnicodeEncodeError:
        pass
    for example in examples:
        for field, text in (("question", example.question), ("context", example.context)):
            at = find_lone_surrogate(text)
            if at >= 0:
                raise DataError(f"question {example.id}: the {field} holds a lone surrogate ({ascii(text[at])}) "
                                f"at character {at}: not valid Unicode text")


@dataclass
class _Windows:
    """The plan: one entry per window, in example order."""

    example: np.ndarray  # example index
    number: np.ndarray  # window number within its example
    last: np.ndarray  # bool: the example's last window
    start: np.ndarray  # first context token (index into the context's tokens)
    length: np.ndarray  # context tokens in the window
    parts: np.ndarray  # (windows, 5) lengths of prefix, question, middle, context, suffix
    pad: np.ndarray  # padding before the window's first token (left padding)
    room: np.ndarray  # context tokens a full window of this example holds
    step: np.ndarray  # room − doc_stride: how far the next window starts
    next_length: np.ndarray  # the next window's context tokens (meaningless for the last)


def _plan(examples, tpl: PairTemplate, q, c, config: FeatureConfig) -> _Windows:
    """Every window of every example, from the token counts alone."""
    q_len = np.minimum(q.lengths[q.index], config.max_query_length)
    c_len = c.lengths[c.index]
    room = config.max_seq_length - q_len - tpl.num_special
    step = room - config.doc_stride
    stuck = np.flatnonzero((room < 0) | ((c_len > room) & (step <= 0)))
    if stuck.size:
        e = int(stuck[0])
        raise ValueError(f"question {examples[e].id}: {q_len[e]} question and {tpl.num_special} special tokens leave "
                         f"{room[e]} context tokens per window, too few for --doc_stride {config.doc_stride}: "
                         f"the windows would not advance")
    counts = _window_count(c_len, room, step)
    example = np.repeat(np.arange(len(examples)), counts)
    number = np.arange(len(example)) - np.repeat(np.cumsum(counts) - counts, counts)
    start = number * step[example]
    length = np.minimum(room[example], c_len[example] - start)
    sizes = [len(tpl.prefix), None, len(tpl.middle), None, len(tpl.suffix)]
    parts = np.empty((len(example), 5), dtype=np.int64)
    for p, size in enumerate(sizes):
        parts[:, p] = size if size is not None else (q_len[example] if p == 1 else length)
    pad = config.max_seq_length - parts.sum(axis=1) if tpl.pad_left else np.zeros(len(example), np.int64)
    room, step = room[example], step[example]
    return _Windows(example, number, number == counts[example] - 1, start, length, parts, pad, room, step,
                    np.minimum(room, c_len[example] - start - step))


def prepare_features(examples, tokenizer, max_seq_length: int = 384, doc_stride: int = 128,
                     max_query_length: int = 64, progress: Callable[[str], None] | None = None, *,
                     config: FeatureConfig | None = None) -> Features:
    """Tokenizes examples into overlapping windows with labels and decoding bookkeeping.

    `tokenizer`: a transformers fast tokenizer or a `tokenizers.Tokenizer` (see
    `tfqa.core.tokenization.rust_tokenizer`). One call serves training (labels)
    and evaluation (offsets, max-context flags). Questions are left-stripped
    (leading spaces change BPE tokens) and truncated to `max_query_length`
    tokens; padding follows the tokenizer's padding side. `progress`, when
    given, is called with a short status line now and then (e.g.
    `tfqa.core.progress.Step.update`, which throttles them). `config`, when
    given, replaces the three window settings (how tfqa itself calls it).
    """
    config = config or FeatureConfig(max_seq_length, doc_stride, max_query_length)
    config.validate()
    rust = rust_tokenizer(tokenizer)
    tpl = pair_template(rust)
    questions = [e.question.lstrip() for e in examples]
    contexts = [e.context for e in examples]
    _refuse_lone_surrogates(examples, questions + list(dict.fromkeys(contexts)))
    q = encode_unique(rust.backend, questions, offsets=False, chunk=_ENCODE_CHUNK, progress=progress,
                      what="questions")
    c = encode_unique(rust.backend, contexts, offsets=True, chunk=_ENCODE_CHUNK, progress=progress, what="contexts")
    plan = _plan(examples, tpl, q, c, config)
    n, seq = len(plan.example), config.max_seq_length

    # Part p of a window starts at `bounds[:, p]` in its row; `cls` is where "no answer" points.
    bounds = plan.pad[:, None] + np.cumsum(plan.parts, axis=1) - plan.parts
    cls = bounds[:, 0] if tpl.cls_slot is None else bounds[:, tpl.cls_slot[0]] + tpl.cls_slot[1]
    ctx_first = c.starts[c.index[plan.example]] + plan.start  # the window's first context token in c.ids
    start_positions, end_positions = _labels(examples, c, plan, ctx_first, bounds[:, 3], cls)

    # One flat token source: the template's tokens, then every question's, then every context's;
    # offsets as one int64 per (start, end) pair, (-1, -1) outside the contexts.
    specials = np.asarray(tpl.prefix + tpl.middle + tpl.suffix, dtype=np.int32)
    source_ids = np.concatenate([specials, q.ids, c.ids])
    source_offsets = np.concatenate([np.full(len(specials) + len(q.ids), -1, np.int64),
                                     c.offsets.view(np.int64).ravel()])
    q_base, c_base = len(specials), len(specials) + len(q.ids)
    part_source = np.stack([
        np.zeros(n, np.int64), q_base + q.starts[q.index[plan.example]], np.full(n, len(tpl.prefix)),
        c_base + ctx_first, np.full(n, len(tpl.prefix) + len(tpl.middle))], axis=1)
    type_steps = [(p, t - u) for p, (u, t) in enumerate(zip(tpl.type_ids or (), (tpl.type_ids or ())[1:]), 1) if t != u]
    row_end = bounds[:, 0] + plan.parts.sum(axis=1)

    input_ids = np.full((n, seq), tpl.pad_id, dtype=np.int32)
    attention_mask = np.zeros((n, seq), dtype=np.int32)
    token_type_ids = np.zeros((n, seq), dtype=np.int32) if tpl.type_ids else None
    offsets = np.full((n, seq, 2), -1, dtype=np.int32)
    offsets_64 = offsets.view(np.int64).reshape(n, seq)
    max_ctx = np.zeros((n, seq), dtype=bool)
    column = np.arange(seq)
    for begin in range(0, n, _WINDOW_BLOCK):
        if progress is not None:
            progress(f"{begin:,} of {n:,} windows")
        rows = slice(begin, min(begin + _WINDOW_BLOCK, n))
        local = np.arange(rows.stop - rows.start)[:, None] * seq
        # Every token of every window in this block: where it comes from and where it goes.
        source, target = _runs(part_source[rows].ravel(), (local + bounds[rows]).ravel(), plan.parts[rows].ravel())
        input_ids[rows].reshape(-1)[target] = source_ids[source]
        offsets_64[rows].reshape(-1)[target] = source_offsets[source]
        filled = (column >= bounds[rows, :1]) & (column < row_end[rows, None])
        attention_mask[rows] = filled
        if token_type_ids is not None:  # each part's type: the first part's, changed where a part starts
            types = np.full(filled.shape, tpl.type_ids[0], dtype=np.int32)
            for part, change in type_steps:
                types += change * (column >= bounds[rows, part, None])
            token_type_ids[rows] = types * filled
        # A context in one window has every token at its best there; the others follow the rule.
        max_ctx[rows] = offsets_64[rows] != -1
        split = np.flatnonzero(~plan.last[rows] | (plan.number[rows] > 0)) + rows.start
        source, target = _runs(ctx_first[split], local[split - rows.start, 0] + bounds[split, 3], plan.length[split])
        w = np.repeat(split, plan.length[split])  # each context token's window
        max_ctx[rows].reshape(-1)[target] = _is_max_context(
            source - ctx_first[w], plan.length[w], plan.room[w], plan.step[w], plan.number[w] == 0, plan.last[w],
            plan.next_length[w])

    return Features(input_ids, attention_mask, token_type_ids, plan.example.astype(np.int32),
                    start_positions, end_positions, cls.astype(np.int32), offsets, max_ctx)


def _runs(source_starts: np.ndarray, target_starts: np.ndarray, lengths: np.ndarray):
    """(source, target) indexes of runs copied one after the other: run r moves `lengths[r]` items
    from `source_starts[r]` on to `target_starts[r]` on."""
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(source_starts, lengths) + within, np.repeat(target_starts, lengths) + within


def _labels(examples, c, plan: _Windows, ctx_first: np.ndarray, ctx0: np.ndarray, cls: np.ndarray):
    """Token positions of each window's first gold answer, or `cls` when the window does not hold it all.

    The answer must lie fully inside the window's context characters; its start
    token is the last one starting at or before the answer's first character and
    its end token the first one ending at or after its last character. Both are
    found once per example over the whole context (its offsets are sorted) and
    clipped to each window.
    """
    answered = np.fromiter((bool(e.answers) for e in examples), dtype=bool, count=len(examples))
    first_char = np.fromiter((e.answers[0].start if e.answers else 0 for e in examples), np.int64, len(examples))
    end_char = first_char + np.fromiter((len(e.answers[0].text) if e.answers else 0 for e in examples), np.int64,
                                        len(examples))
    # One sorted key per context token over all contexts: context number × (longest span + 1) + offset.
    span = int(c.offsets.max()) + 1 if len(c.offsets) else 1
    context_of_token = np.repeat(np.arange(len(c.lengths)), c.lengths) * span
    c_of = c.index.astype(np.int64) * span
    start_token = np.searchsorted(context_of_token + c.offsets[:, 0], c_of + first_char, side="right") - 1
    end_token = np.searchsorted(context_of_token + c.offsets[:, 1], c_of + end_char, side="left")

    ex, length = plan.example, plan.length
    last_token = ctx_first + np.maximum(length, 1) - 1
    inside = answered[ex] & (length > 0)
    if len(c.offsets):
        safe = np.clip(np.stack([ctx_first, last_token]), 0, len(c.offsets) - 1)
        inside &= (c.offsets[safe[0], 0] <= first_char[ex]) & (c.offsets[safe[1], 1] >= end_char[ex])
    start = ctx0 + np.minimum(start_token[ex] - ctx_first, length - 1)
    end = ctx0 + np.maximum(end_token[ex] - ctx_first, 0)
    return np.where(inside, start, cls).astype(np.int32), np.where(inside, end, cls).astype(np.int32)
