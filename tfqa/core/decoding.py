"""Start/end logits → one answer per example (NumPy only).

The rules are the ones of google-research/bert's `run_squad.py`:
- per window, the top `n_best_size` start and end indexes form candidate spans;
  padding positions never rank (their logits are meaningless, and excluding
  them makes the answers independent of how wide the batch was padded — the
  exported model pads each batch only to its longest window);
- a span is kept when both ends are context tokens, end ≥ start, it is at most
  `max_answer_length` tokens long, it covers at least one character, and its
  start token sits in its max-context window (see `tfqa.core.features`);
- candidates of all of an example's windows are ranked by start + end logit
  (ties: the order a loop over windows, start ranks, end ranks meets them);
  the answer is the best one; equal texts are kept once in the n-best list;
- SQuAD 2.0: the null score is the smallest CLS start + end logit over the
  example's windows; `null_odds` = null score − best span score, and the answer
  is "" when it exceeds `null_score_diff_threshold`.

The answers are found with array operations over all windows at once. The
n-best lists (hundreds of thousands of small dicts on a dev set, wanted for
`nbest_predictions.json` but not for scoring) are built on first access.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping

import numpy as np

from tfqa.core.config import DecodeConfig
from tfqa.core.errors import TfqaError


class DecodingError(TfqaError, ValueError):
    """Logits, features and examples that do not fit together, or unusable decoding settings."""


def _top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Indexes of the k largest values per row, largest first, earlier index first on ties.

    Equal to `np.argsort(-logits, kind="stable")[:, :k]` but partitions instead
    of sorting whole rows. Everything above the k-th value is in; when more
    values tie with it than fit, only the earliest of them are kept.
    """
    n, width = logits.shape
    if k >= width:
        return np.argsort(-logits, axis=1, kind="stable")
    kth = np.partition(logits, width - k, axis=1)[:, width - k : width - k + 1]
    chosen = logits >= kth
    crowded = np.nonzero(chosen.sum(axis=1) > k)[0]
    if len(crowded):
        tied = logits[crowded] == kth[crowded]
        room = k - (logits[crowded] > kth[crowded]).sum(axis=1, keepdims=True)
        chosen[crowded] &= ~tied | (np.cumsum(tied, axis=1) <= room)
    idx = np.nonzero(chosen)[1].reshape(n, k)  # ascending index within each row
    order = np.argsort(-np.take_along_axis(logits, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


def _spans(features, start_logits, end_logits, n_best_size, max_answer_length):
    """Valid candidates as (window, rank, char_start, char_end, start_logit, end_logit) arrays.

    They come in the order the straightforward loop meets them: by window, then
    start rank, then end rank (`rank` = start rank × k + end rank).
    """
    n = len(features)
    k = min(n_best_size, start_logits.shape[1])
    starts = _top_k(start_logits, k).astype(np.int32)  # [n, k]
    ends = _top_k(end_logits, k).astype(np.int32)
    rows = np.arange(n)[:, None]
    char_start = features.offsets[rows, starts, 0]  # -1 off the context
    char_end = features.offsets[rows, ends, 1]
    start_ok = (char_start >= 0) & features.token_is_max_context[rows, starts]
    end_ok = char_end >= 0
    length = ends[:, None, :] - starts[:, :, None] + 1  # [n, k, k]
    valid = (start_ok[:, :, None] & end_ok[:, None, :] & (length >= 1) & (length <= max_answer_length)
             & (char_end[:, None, :] > char_start[:, :, None]))
    window, si, ei = np.nonzero(valid)
    # Scores are summed in float64 whatever the model's output dtype.
    return (window, si * k + ei, char_start[window, si], char_end[window, ei],
            start_logits[window, starts[window, si]].astype(np.float64),
            end_logits[window, ends[window, ei]].astype(np.float64))


def decode_predictions(examples, features, start_logits, end_logits, n_best_size: int = 20,
                       max_answer_length: int = 30, version_2_with_negative: bool = False,
                       null_score_diff_threshold: float = 0.0, *, config: DecodeConfig | None = None):
    """Turns per-window logits into answers.

    Returns `(predictions, nbest, null_odds)`: `{id: text}`; a read-only mapping
    `{id: [{text, probability, start_logit, end_logit, answer_start}, ...]}`
    (best first, built on first access; `dict(nbest)` for JSON); and, for
    SQuAD 2.0 only (else empty), `{id: null score − best span score}`.
    `config`, when given, replaces the four decoding settings (how tfqa itself calls it).
    """
    if config is not None:
        n_best_size, max_answer_length = config.n_best_size, config.max_answer_length
        version_2_with_negative, null_score_diff_threshold = config.version_2_with_negative, config.null_threshold
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    _check_inputs(examples, features, start_logits, end_logits, n_best_size, max_answer_length)
    start_logits, end_logits = mask_padding(features, start_logits), mask_padding(features, end_logits)
    if np.any(np.diff(features.example_index) < 0):  # group each example's windows, keeping their order
        order = np.argsort(features.example_index, kind="stable")
        features, start_logits, end_logits = features.select(order), start_logits[order], end_logits[order]
    n_ex = len(examples)
    window, rank, char_start, char_end, s_logit, e_logit = _spans(
        features, start_logits, end_logits, n_best_size, max_answer_length)
    example = features.example_index[window]  # non-decreasing
    score = s_logit + e_logit
    bounds = np.searchsorted(example, np.arange(n_ex + 1))
    has_span = bounds[1:] > bounds[:-1]

    # The best span of each example: the first candidate reaching the example's maximum
    # (-1 where there is none; it indexes the sentinel appended below).
    best = np.full(n_ex, -1)
    if len(score):
        top = np.maximum.reduceat(score, bounds[:-1][has_span])
        at_top = np.flatnonzero(score == np.repeat(top, np.diff(bounds)[has_span]))
        best[has_span] = at_top[np.searchsorted(at_top, bounds[:-1][has_span])]
    best_score = np.append(score, 0.0)[best]
    bs, be = np.append(char_start, 0)[best].tolist(), np.append(char_end, 0)[best].tolist()
    texts = [ex.context[bs[i]:be[i]] for i, ex in enumerate(examples)]

    nulls, predictions, null_odds = None, {}, {}
    if version_2_with_negative:
        nulls = _null_logits(features, start_logits, end_logits, n_ex)
        diff = (nulls[:, 0] + nulls[:, 1] - best_score).tolist()
        for i, ex in enumerate(examples):
            null_odds[ex.id] = diff[i]
            predictions[ex.id] = texts[i] if has_span[i] and diff[i] <= null_score_diff_threshold else ""
    else:
        predictions = {ex.id: text for ex, text in zip(examples, texts)}

    def build():
        # Rank by example, then best score; ties keep the loop's order (stable sorts).
        order = np.argsort(-score, kind="stable")
        order = order[np.argsort(example[order], kind="stable")]
        ranked = (score[order], s_logit[order], e_logit[order], char_start[order], char_end[order])
        return _nbest_lists(examples, ranked, bounds, nulls, n_best_size)

    return predictions, NBest(build), null_odds


def _check_inputs(examples, features, start_logits, end_logits, n_best_size, max_answer_length) -> None:
    """DecodingError naming what does not fit, before any array arithmetic turns it into a cryptic failure."""
    for name, value in (("n_best_size", n_best_size), ("max_answer_length", max_answer_length)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DecodingError(f"{name} must be a positive integer, not {value!r}")
    if start_logits.shape != features.input_ids.shape or end_logits.shape != features.input_ids.shape:
        raise DecodingError(f"logits of shape {start_logits.shape}/{end_logits.shape} do not match "
                            f"the features' {features.input_ids.shape}")
    if len(features) and (features.example_index.min() < 0 or features.example_index.max() >= len(examples)):
        raise DecodingError(f"the features belong to examples 0..{int(features.example_index.max())} but "
                            f"{len(examples)} examples were given: features and examples do not match")
    for name, logits in (("start_logits", start_logits), ("end_logits", end_logits)):
        # Only real tokens count (padding is masked to -inf here anyway); a model gives them finite logits,
        # and NaN/±inf would rank arbitrarily and make the null odds NaN (invalid JSON).
        bad = ~np.isfinite(logits)
        real = features.attention_mask.astype(bool)
        if np.any(bad & real):
            window = int(np.nonzero((bad & real).any(axis=1))[0][0])
            raise DecodingError(f"{name} of window {window} (example "
                                f"{examples[int(features.example_index[window])].id}) hold NaN or an infinity: "
                                "the model's output is unusable (did training diverge?)")


def mask_padding(features, logits: np.ndarray) -> np.ndarray:
    """`logits` with padding positions set to -inf, so that they never rank among the top ones."""
    return np.where(features.attention_mask.astype(bool), logits, -np.inf).astype(logits.dtype, copy=False)


def _null_logits(features, start_logits, end_logits, num_examples) -> np.ndarray:
    """[num_examples, 2]: the CLS (start, end) logits of each example's lowest-null-score window."""
    rows = np.arange(len(features))
    s = start_logits[rows, features.cls_index].astype(np.float64)
    e = end_logits[rows, features.cls_index].astype(np.float64)
    by_null = np.lexsort((s + e, features.example_index))  # first window wins ties
    first = by_null[np.searchsorted(features.example_index[by_null], np.arange(num_examples))]
    return np.stack([s[first], e[first]], axis=1)


class NBest(Mapping):
    """`{question id: n-best list}`, computed in one pass the first time it is read."""

    def __init__(self, build):
        self._build, self._data = build, None

    def _lists(self) -> dict:
        if self._data is None:
            self._data = self._build()
        return self._data

    def __getitem__(self, key):
        return self._lists()[key]

    def __iter__(self):
        return iter(self._lists())

    def __len__(self):
        return len(self._lists())


def _nbest_lists(examples, ranked, bounds, nulls, n_best_size) -> dict:
    """Each example's n-best dicts from its ranked candidates.

    Walks the candidates keeping each text once. The null answer ranks among the
    spans by its score (after spans it ties with) and is always listed for SQuAD
    2.0, even below the n best; with no span at all a v1.1 example still gets one
    (empty) entry.
    """
    scores, s_logit, e_logit, char_start, char_end = (a.tolist() for a in ranked)
    bounds = bounds.tolist()
    null_list = nulls.tolist() if nulls is not None else [None] * len(examples)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # ~20 small objects per question and no cycles: skip the collector's passes
    try:
        all_entries = []
        for ex_i, example in enumerate(examples):
            context, null = example.context, null_list[ex_i]
            null_score = None if null is None else null[0] + null[1]
            entries, seen = [], set()
            for c in range(bounds[ex_i], bounds[ex_i + 1]):
                if len(entries) >= n_best_size:
                    break
                if null_score is not None and "" not in seen and null_score > scores[c]:
                    seen.add("")
                    entries.append(("", null[0], null[1], -1))
                    if len(entries) >= n_best_size:
                        break
                text = context[char_start[c]:char_end[c]]
                if text not in seen:
                    seen.add(text)
                    entries.append((text, s_logit[c], e_logit[c], char_start[c]))
            if (null is not None and "" not in seen) or not entries:
                entries.append(("", *(null or (0.0, 0.0)), -1))
            all_entries.append(entries)
        flat = [e for entries in all_entries for e in entries]
        sizes = np.fromiter((len(x) for x in all_entries), dtype=np.int64, count=len(all_entries))
        probs = _segment_softmax(np.array([e[1] + e[2] for e in flat], dtype=np.float64), sizes).tolist()
        out, pos = {}, 0
        for example, size in zip(examples, sizes.tolist()):
            out[example.id] = [{"text": t, "probability": probs[pos + j], "start_logit": sl, "end_logit": el,
                                "answer_start": a} for j, (t, sl, el, a) in enumerate(flat[pos:pos + size])]
            pos += size
        return out
    finally:
        if gc_was_enabled:
            gc.enable()


def _segment_softmax(scores: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Softmax within consecutive segments of the given sizes (each size ≥ 1)."""
    if len(scores) == 0:
        return scores
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    exp = np.exp(scores - np.repeat(np.maximum.reduceat(scores, starts), sizes))
    return exp / np.repeat(np.add.reduceat(exp, starts), sizes)
