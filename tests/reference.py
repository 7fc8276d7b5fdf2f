"""The standard approaches tfqa is measured against (and checked equal to in tests).

`standard_features` is what the Hugging Face `run_qa.py` example does: one
tokenizer call over every (question, context) pair with
`return_overflowing_tokens`/`stride`, then a Python labelling loop per window.
Its labelling loop is bounded to the window's context tokens (run_qa.py's own
loop can walk past the context into [SEP]/padding when the answer starts at the
last context token).

`loop_max_context_window` is the max-context rule as a loop over the windows
(tfqa's own implementation until it compared neighbouring windows instead).

`loop_decode` is the straightforward per-example double loop over the top-20
start × top-20 end indexes of every window, indexing the NumPy arrays as the
Hugging Face `postprocess_qa_predictions` does.
"""

from __future__ import annotations

import numpy as np

from tfqa.core.decoding import mask_padding


def standard_features(examples, tokenizer, max_seq_length=384, doc_stride=128, max_query_length=64):
    """Returns a dict of NumPy arrays: input_ids, attention_mask, [token_type_ids],
    example_index, start_positions, end_positions, offsets (-1 outside the context)."""
    questions = [e.question.lstrip() for e in examples]
    # The pair call cannot truncate only the question: shorten over-long ones first.
    for i, ids in enumerate(tokenizer(questions, add_special_tokens=False)["input_ids"]):
        if len(ids) > max_query_length:
            questions[i] = tokenizer.decode(ids[:max_query_length])
    enc = tokenizer(
        questions, [e.context for e in examples], truncation="only_second", max_length=max_seq_length,
        stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length",
    )
    sample_map = enc.pop("overflow_to_sample_mapping")
    starts, ends, offsets = [], [], []
    for i, offs in enumerate(enc["offset_mapping"]):
        ids = enc["input_ids"][i]
        seq = enc.sequence_ids(i)
        cls = ids.index(tokenizer.cls_token_id)
        ex = examples[sample_map[i]]
        ctx = [t for t, s in enumerate(seq) if s == 1]
        offsets.append([list(o) if seq[t] == 1 else [-1, -1] for t, o in enumerate(offs)])
        if not ex.answers or not ctx:
            starts.append(cls), ends.append(cls)
            continue
        start_char = ex.answers[0].start
        end_char = start_char + len(ex.answers[0].text)
        first, last = ctx[0], ctx[-1]
        if not (offs[first][0] <= start_char and offs[last][1] >= end_char):
            starts.append(cls), ends.append(cls)
            continue
        t = first
        while t <= last and offs[t][0] <= start_char:
            t += 1
        starts.append(t - 1)
        t = last
        while t >= first and offs[t][1] >= end_char:
            t -= 1
        ends.append(t + 1)
    out = {name: np.asarray(enc[name], dtype=np.int32) for name in tokenizer.model_input_names if name in enc}
    out.update(example_index=np.asarray(sample_map, dtype=np.int32), start_positions=np.asarray(starts, np.int32),
               end_positions=np.asarray(ends, np.int32), offsets=np.asarray(offsets, np.int32))
    return out


def loop_max_context_window(num_tokens, starts, window):
    """For each context token, the index of the window that is its max context: the first window with
    the highest min(left, right) + 0.01 × window length."""
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


def loop_decode(examples, features, start_logits, end_logits, n_best_size=20, max_answer_length=30,
                version_2_with_negative=False, null_score_diff_threshold=0.0, with_nbest=True):
    """run_squad.py's post-processing written as the usual per-example double loop.

    With `with_nbest=False` it stops at the answers (the n-best dict is empty).

    Shaped like Hugging Face's `postprocess_qa_predictions` (utils_qa.py): a dict
    per valid (start, end) pair of every window, one sort per example, then a
    NumPy softmax per example; plus run_squad.py's deduplication of texts.
    """
    start_logits, end_logits = mask_padding(features, start_logits), mask_padding(features, end_logits)
    by_example = {}
    for f, ex_i in enumerate(features.example_index):
        by_example.setdefault(int(ex_i), []).append(f)
    predictions, nbest_all, null_odds = {}, {}, {}
    for ex_i, example in enumerate(examples):
        prelim, null = [], None
        for f in by_example.get(ex_i, []):
            s_log, e_log = start_logits[f], end_logits[f]
            offsets, max_ctx = features.offsets[f], features.token_is_max_context[f]
            cls = features.cls_index[f]
            null_score = float(s_log[cls]) + float(e_log[cls])
            if version_2_with_negative and (null is None or null_score < null["score"]):
                null = {"offsets": (-1, -1), "score": null_score, "start_logit": float(s_log[cls]),
                        "end_logit": float(e_log[cls])}
            top_s = np.argsort(-s_log, kind="stable")[:n_best_size].tolist()
            top_e = np.argsort(-e_log, kind="stable")[:n_best_size].tolist()
            for s in top_s:
                for e in top_e:
                    if offsets[s][0] < 0 or offsets[e][0] < 0 or e < s or e - s + 1 > max_answer_length:
                        continue
                    if not max_ctx[s] or offsets[e][1] <= offsets[s][0]:
                        continue
                    sl, el = float(s_log[s]), float(e_log[e])
                    prelim.append({"offsets": (int(offsets[s][0]), int(offsets[e][1])), "score": sl + el,
                                   "start_logit": sl, "end_logit": el})
        if null is not None:
            prelim.append(null)
        prelim = sorted(prelim, key=lambda p: p["score"], reverse=True)
        best = next((p for p in prelim if p["offsets"][0] >= 0), None)
        best_text = example.context[best["offsets"][0]:best["offsets"][1]] if best else ""
        if null is None:
            predictions[example.id] = best_text
        else:
            diff = null["score"] - (best["score"] if best else 0.0)
            null_odds[example.id] = diff
            predictions[example.id] = "" if diff > null_score_diff_threshold or best is None else best_text
        if not with_nbest:
            continue
        entries, seen = [], set()
        for pred in prelim:
            if len(entries) >= n_best_size:
                break
            cs, ce = pred["offsets"]
            text = example.context[cs:ce] if cs >= 0 else ""
            if text in seen:
                continue
            seen.add(text)
            entries.append({"text": text, "start_logit": pred["start_logit"], "end_logit": pred["end_logit"],
                            "answer_start": cs})
        if (null is not None and "" not in seen) or not entries:
            entries.append({"text": "", "start_logit": null["start_logit"] if null else 0.0,
                            "end_logit": null["end_logit"] if null else 0.0, "answer_start": -1})
        scores = np.array([e["start_logit"] + e["end_logit"] for e in entries])
        exp_scores = np.exp(scores - np.max(scores))
        probs = exp_scores / exp_scores.sum()
        for entry, p in zip(entries, probs):
            entry["probability"] = float(p)
        nbest_all[example.id] = entries
    return predictions, nbest_all, null_odds
