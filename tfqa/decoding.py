"""Start/end logits → one answer per example (NumPy only).

The rules are the ones of google-research/bert's `run_squad.py`:
- per window, the top `n_best_size` start and end indexes form candidate spans;
- a span is kept when both ends are context tokens, end ≥ start, it is at most
  `max_answer_length` tokens long and its start token sits in its max-context
  window (see `tfqa.features`);
- candidates of all of an example's windows are ranked by start + end logit,
  equal texts are kept once, and the best `n_best_size` form the n-best list;
- SQuAD 2.0: the null score is the smallest CLS start + end logit over the
  example's windows; `null_odds` = null score − best span score, and the answer
  is "" when it exceeds `null_score_diff_threshold`.

Everything up to the final ranking is vectorised over all windows at once;
Python only loops over each example's few winning candidates to cut texts.
"""

from __future__ import annotations

import gc
from typing import NamedTuple

import numpy as np


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


class Candidates(NamedTuple):
    """Candidate spans of many windows, ranked: by example, best score first, then loop order."""

    example: np.ndarray  # example index of each candidate
    start_logit: np.ndarray  # float64
    end_logit: np.ndarray
    char_start: np.ndarray  # character span in the example's context
    char_end: np.ndarray
    bounds: np.ndarray  # candidates of example i are [bounds[i], bounds[i + 1])


def candidate_spans(features, start_logits, end_logits, n_best_size: int = 20, max_answer_length: int = 30,
                    num_examples: int | None = None, keep: int | None = None) -> Candidates:
    """The valid top-k start × top-k end spans of every window, ranked.

    The ranking equals a stable sort by score of the candidates in the order the
    straightforward loop visits them (window, start rank, end rank). With
    `keep`, a window's candidates scoring below its `keep`-th best are dropped
    (ties are kept), so the first `keep` candidates of every example's ranking
    are exactly those of the full ranking.
    """
    n = len(features)
    k = min(n_best_size, start_logits.shape[1])
    starts = _top_k(start_logits, k).astype(np.int32)  # [n, k]
    ends = _top_k(end_logits, k).astype(np.int32)
    is_context = features.offsets[:, :, 0] >= 0
    start_ok = np.take_along_axis(is_context & features.token_is_max_context, starts, axis=1)
    end_ok = np.take_along_axis(is_context, ends, axis=1)
    length = ends[:, None, :] - starts[:, :, None] + 1  # [n, k, k]
    valid = (start_ok[:, :, None] & end_ok[:, None, :] & (length >= 1) & (length <= max_answer_length)).reshape(n, -1)
    # Scores are summed in float64 whatever the model's output dtype.
    s_val = np.take_along_axis(start_logits, starts, axis=1).astype(np.float64)
    e_val = np.take_along_axis(end_logits, ends, axis=1).astype(np.float64)
    if keep is not None and keep < k * k:
        score = np.where(valid, (s_val[:, :, None] + e_val[:, None, :]).reshape(n, -1), -np.inf)
        floor = np.partition(score, k * k - keep, axis=1)[:, k * k - keep, None]
        valid &= score >= floor
    window, flat = np.nonzero(valid)  # the loop's order: window, start rank, end rank
    si, ei = np.divmod(flat, k)
    start, end = starts[window, si], ends[window, ei]
    s_logit, e_logit = s_val[window, si], e_val[window, ei]
    example = features.example_index[window]
    # A stable sort by descending score, then a stable sort by example (int keys sort fast).
    order = np.argsort(-(s_logit + e_logit), kind="stable")
    order = order[np.argsort(example[order], kind="stable")]
    example = example[order]
    num_examples = int(example.max()) + 1 if num_examples is None and len(example) else (num_examples or 0)
    return Candidates(example, s_logit[order], e_logit[order], features.offsets[window, start, 0][order],
                      features.offsets[window, end, 1][order],
                      np.searchsorted(example, np.arange(num_examples + 1)))


def _null_logits(features, start_logits, end_logits, num_examples):
    """Per example, the (start, end) CLS logits of the window with the smallest null score."""
    rows = np.arange(len(features))
    s = start_logits[rows, features.cls_index].astype(np.float64)
    e = end_logits[rows, features.cls_index].astype(np.float64)
    by_null = np.lexsort((s + e, features.example_index))  # first window wins ties
    first = by_null[np.searchsorted(features.example_index[by_null], np.arange(num_examples))]
    return list(zip(s[first].tolist(), e[first].tolist()))


def decode_predictions(examples, features, start_logits, end_logits, n_best_size: int = 20,
                       max_answer_length: int = 30, version_2_with_negative: bool = False,
                       null_score_diff_threshold: float = 0.0):
    """Turns per-window logits into answers.

    Returns `(predictions, nbest, null_odds)`: `{id: text}`, `{id: [{text,
    probability, start_logit, end_logit, answer_start}, ...]}` best first, and
    (SQuAD 2.0 only, else empty) `{id: null score − best span score}`.
    """
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    if start_logits.shape != features.input_ids.shape or end_logits.shape != features.input_ids.shape:
        raise ValueError(f"logits of shape {start_logits.shape}/{end_logits.shape} do not match "
                         f"the features' {features.input_ids.shape}")
    n_ex = len(examples)
    nulls = _null_logits(features, start_logits, end_logits, n_ex) if version_2_with_negative else [None] * n_ex

    cands = candidate_spans(features, start_logits, end_logits, n_best_size, max_answer_length, n_ex)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # hundreds of thousands of small tuples/dicts, no cycles: skip the collector's passes
    try:
        entries = _pick_all(examples, cands, nulls, n_best_size)
        return _finish(examples, entries, nulls, null_score_diff_threshold)
    finally:
        if gc_was_enabled:
            gc.enable()


def _finish(examples, entries, nulls, null_score_diff_threshold):
    """Probabilities, output dictionaries and the final answer of every example."""
    # Probabilities of all n-best lists in one NumPy pass.
    flat = [e for ex_entries in entries for e in ex_entries]
    sizes = np.fromiter((len(x) for x in entries), dtype=np.int64, count=len(entries))
    probs = _segment_softmax(np.fromiter((e[1] + e[2] for e in flat), dtype=np.float64, count=len(flat)), sizes)

    flat_dicts = [{"text": t, "probability": p, "start_logit": sl, "end_logit": el, "answer_start": a}
                  for (t, sl, el, a), p in zip(flat, probs.tolist())]
    predictions, nbest_all, null_odds = {}, {}, {}
    pos = 0
    for ex_i, example in enumerate(examples):
        ex_entries = flat_dicts[pos : pos + sizes[ex_i]]
        pos += sizes[ex_i]
        nbest_all[example.id] = ex_entries
        if nulls[ex_i] is None:
            predictions[example.id] = ex_entries[0]["text"]
            continue
        best_span = next((e for e in ex_entries if e["text"]), None)
        diff = sum(nulls[ex_i]) - (best_span["start_logit"] + best_span["end_logit"] if best_span else 0.0)
        null_odds[example.id] = diff
        predictions[example.id] = "" if best_span is None or diff > null_score_diff_threshold else best_span["text"]
    return predictions, nbest_all, null_odds


def _pick_all(examples, cands: Candidates, nulls, n_best_size):
    """Each example's n-best entries `(text, start_logit, end_logit, answer_start)`, best first.

    Walks the ranked candidates, keeping each text once. The null answer ranks
    among the spans by its score (after spans it ties with) and is always listed
    for SQuAD 2.0, even below the n best; with no valid span at all a v1.1
    example still gets one (empty) entry.
    """
    scores = (cands.start_logit + cands.end_logit).tolist()
    s_logit, e_logit = cands.start_logit.tolist(), cands.end_logit.tolist()
    char_start, char_end = cands.char_start.tolist(), cands.char_end.tolist()
    bounds = cands.bounds.tolist()
    all_entries = []
    for ex_i, example in enumerate(examples):
        context, null = example.context, nulls[ex_i]
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
    return all_entries


def _segment_softmax(scores: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Softmax within consecutive segments of the given sizes (each size ≥ 1)."""
    if len(scores) == 0:
        return scores
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    exp = np.exp(scores - np.repeat(np.maximum.reduceat(scores, starts), sizes))
    return exp / np.repeat(np.add.reduceat(exp, starts), sizes)
