"""The exported model's computation: raw question + context in, answer text out, all in the graph.

`QAModule.answer` does in TensorFlow ops what the Python pipeline does with
`tfqa.core.features.prepare_features` → model → `tfqa.core.decoding.decode_predictions`,
with the same rules, so the exported model and `python -m tfqa predict` give
the same answers (measured in tests/test_export.py and the README):

- questions truncated to `max_query_length` tokens; contexts split into
  windows of `room = max_seq_length - question tokens - special tokens` tokens
  that advance by `room - doc_stride` (see `tfqa.core.features.window_starts`);
- the "max context" rule, best span = highest start + end logit among the top
  `n_best_size` starts × ends, `max_answer_length`, and for SQuAD 2.0 the null
  score = the smallest CLS start + end logit over the example's windows.

A batch may mix short and long contexts: every example becomes one or more
windows (rows), `example` maps rows back, and per-example results come from
segment reductions over rows. Padding only reaches the batch's longest window.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import tensorflow as tf

from tfqa.core.config import ComposedSettings, DecodeConfig, FeatureConfig
from tfqa.core.features import PairTemplate
from tfqa.export.names import (ANSWER, ANSWER_END, ANSWER_START, CANDIDATE_ANSWERS, CANDIDATE_ENDS, CANDIDATE_SCORES,
                               CANDIDATE_STARTS, END_LOGITS, NULL_SCORE_DIFF, SCORE, START_LOGITS)
from tfqa.modeling.backend import backend_of

_NEG_INF = float("-inf")


@dataclass(init=False)
class ServingConfig(ComposedSettings):
    """Windowing and decoding settings baked into the export (normally the training run's).

    Flat keywords work as for `TrainConfig`: `ServingConfig(max_seq_length=192, version_2_with_negative=True)`.
    """

    features: FeatureConfig = field(default_factory=FeatureConfig)
    decoding: DecodeConfig = field(default_factory=DecodeConfig)
    num_candidates: int = 5  # spans listed in the `candidate_*` outputs (for demos and UIs)
    # Windows the model runs on at once. A 200 KB context is ~200 windows: in one call MiniLM's
    # attention alone took ~1.4 GB per layer; in calls of 32 the peak stays near one call's.
    rows_per_call: int = 32

    def validate(self) -> None:
        """Raises ValueError for settings that cannot produce a window or an answer."""
        problems = self.features.problems() + self.decoding.problems()
        if self.num_candidates <= 0:
            problems.append(f"num_candidates must be positive (got {self.num_candidates})")
        if self.rows_per_call <= 0:
            problems.append(f"rows_per_call must be positive (got {self.rows_per_call})")
        if problems:
            raise ValueError("; ".join(problems))


def valid_utf8(texts):
    """`texts` with every invalid UTF-8 sequence replaced by U+FFFD (valid strings unchanged)."""
    return tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD,
                                        replace_control_characters=False)


def _ragged_constant_rows(values, rows):
    """`rows` copies of the 1-D int list `values`, as a ragged [rows, len(values)] tensor."""
    row = tf.constant(list(values), tf.int32, shape=[len(values)])
    return tf.RaggedTensor.from_tensor(tf.tile(row[tf.newaxis], [rows, 1]))


def _filled(ragged, value, dtype):
    """A ragged tensor shaped like `ragged`, every value `value`."""
    flat = ragged.flat_values
    return ragged.with_flat_values(tf.fill(tf.shape(flat), tf.constant(value, dtype)))


class QAModule(tf.Module):
    """A Transformers TF QA model plus the in-graph pre- and post-processing around it.

    `tokenizer` is a `tfqa.export.graph_tokenizer.GraphWordPiece`, or None for models
    whose tokenizer cannot run in the graph (then only `logits` is usable).
    """

    def __init__(self, model, template: PairTemplate, config: ServingConfig, tokenizer=None):
        super().__init__(name="tfqa")
        config.validate()
        # Only the weights are tracked, not the Keras model: saving a tracked Keras model
        # also serialises every layer's call functions (measured: 3× the export time and
        # the load time, for functions TF Serving never calls).
        backend = backend_of(model)
        self._takes_type_ids = "token_type_ids" in backend.input_names(model)
        self._call_model = functools.partial(backend.logits, model)
        self.weights = list(model.weights)
        self.tokenizer = tokenizer
        self._template = template
        self._config = config

    @property
    def uses_token_type_ids(self) -> bool:
        """Whether the model takes `token_type_ids` (BERT does, DistilBERT and RoBERTa do not)."""
        return self._takes_type_ids

    def logits(self, input_ids, attention_mask, token_type_ids=None) -> dict:
        """{'start_logits', 'end_logits'}: float32 [rows, length] straight from the model."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.uses_token_type_ids:
            inputs["token_type_ids"] = token_type_ids if token_type_ids is not None else tf.zeros_like(input_ids)
        start_logits, end_logits = self._call_model(inputs, training=False)
        return {START_LOGITS: start_logits, END_LOGITS: end_logits}

    def answer(self, question, context) -> dict:
        """Answers for string tensors [batch]: answer, score, answer_start/answer_end (+ null_score_diff)."""
        if self.tokenizer is None:
            raise ValueError("this model's tokenizer cannot run in the graph; use the token-id signature")
        # Bytes that are not UTF-8 (b64 requests: CESU-8 surrogates, overlong forms, stray bytes)
        # become U+FFFD first, one per maximal invalid subsequence as Python's
        # bytes.decode("utf-8", "replace") does: the tokenizer, the offsets and the answer
        # substrings then all count the same code points (b"\xc0\xafab" → "\ufffd\ufffdab").
        question, context = valid_utf8(question), valid_utf8(context)
        q_ids = self.tokenizer.tokenize(question)[:, : self._config.features.max_query_length]
        c_ids, c_start, c_end = self.tokenizer.tokenize_with_offsets(context)
        rows = self._windows(q_ids, c_ids, c_start, c_end)
        start_logits, end_logits = self._logits_in_chunks(rows)
        return self._decode(context, rows, start_logits, end_logits)

    def _logits_in_chunks(self, rows):
        """The model's logits for every row, `rows_per_call` rows per model call, one call after another.

        Each row is computed alone (attention never crosses rows), so chunks give
        the logits of one big call while peak memory stays that of one chunk.
        """
        size = self._config.rows_per_call
        n_rows, length = tf.shape(rows["input_ids"])[0], tf.shape(rows["input_ids"])[1]
        names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in rows]

        def call(i, starts, ends):
            part = {name: rows[name][i:i + size] for name in names}
            out = self.logits(part["input_ids"], part["attention_mask"], part.get("token_type_ids"))
            return i + size, tf.concat([starts, out["start_logits"]], 0), tf.concat([ends, out["end_logits"]], 0)

        none = tf.zeros([0, length], tf.float32)
        _, starts, ends = tf.while_loop(lambda i, *_: i < n_rows, call, (0, none, none), parallel_iterations=1,
                                        shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, None]),
                                                          tf.TensorShape([None, None])))
        return starts, ends

    def _windows(self, q_ids, c_ids, c_start, c_end) -> dict:
        """Model inputs and decoding bookkeeping for every window of every example (rows)."""
        tpl, cfg = self._template, self._config.features
        q_len = tf.cast(q_ids.row_lengths(), tf.int32)
        c_len = tf.cast(c_ids.row_lengths(), tf.int32)
        room = cfg.max_seq_length - q_len - tpl.num_special
        step = tf.maximum(room - cfg.doc_stride, 1)
        count = tf.where(c_len > room, 1 + (c_len - room + step - 1) // step, 1)
        example = tf.repeat(tf.range(tf.size(count)), count)  # [rows]
        k = tf.ragged.range(count).flat_values  # window number within its example
        start = k * tf.gather(step, example)
        length = tf.minimum(tf.gather(room, example), tf.gather(c_len, example) - start)
        first = tf.gather(tf.cast(c_ids.row_starts(), tf.int32), example) + start
        token = tf.ragged.range(first, first + length)  # [rows, (length)]: index into the batch's context tokens
        n_rows = tf.size(example)

        # Max-context rule (tfqa.core.features) as integers: score 100·min(left, right) + window length;
        # the earlier window wins ties, hence "- k".
        j = tf.ragged.range(length)
        score = 100 * tf.minimum(j, tf.expand_dims(length, 1) - 1 - j) + tf.expand_dims(length, 1)
        key = tf.cast(score, tf.int64) * (1 << 24) - tf.expand_dims(tf.cast(k, tf.int64), 1)
        best = tf.math.unsorted_segment_max(key.flat_values, token.flat_values, tf.size(c_ids.flat_values))
        is_max = tf.equal(key, tf.ragged.map_flat_values(tf.gather, best, token))

        q_rows = tf.gather(q_ids, example)
        parts = (_ragged_constant_rows(tpl.prefix, n_rows), q_rows, _ragged_constant_rows(tpl.middle, n_rows),
                 tf.gather(c_ids.flat_values, token), _ragged_constant_rows(tpl.suffix, n_rows))

        def layout(context_values, filler, default):
            """A dense [rows, longest] tensor: `context_values` at the context tokens, `filler` elsewhere."""
            pieces = [_filled(p, filler, context_values.dtype) if i != 3 else context_values
                      for i, p in enumerate(parts)]
            return tf.concat(pieces, axis=1).to_tensor(default_value=default)

        out = {
            "input_ids": tf.concat(parts, axis=1).to_tensor(default_value=tpl.pad_id),
            "attention_mask": tf.concat([_filled(p, 1, tf.int32) for p in parts], axis=1).to_tensor(0),
            "char_start": layout(tf.gather(c_start.flat_values, token), -1, -1),
            "char_end": layout(tf.gather(c_end.flat_values, token), -1, -1),
            "max_context": layout(is_max, False, False),
            "example": example,
        }
        if tpl.type_ids is not None:
            out["token_type_ids"] = tf.concat(
                [_filled(p, t, tf.int32) for p, t in zip(parts, tpl.type_ids)], axis=1).to_tensor(0)
        # Where the CLS token sits (the "no answer" position); the first token for models without one.
        if tpl.cls_slot is None:
            out["cls"] = tf.zeros_like(example)
        else:
            part_starts = {0: 0, 2: len(tpl.prefix) + tf.gather(q_len, example),
                           4: len(tpl.prefix) + tf.gather(q_len, example) + len(tpl.middle) + length}
            out["cls"] = part_starts[tpl.cls_slot[0]] + tpl.cls_slot[1] + tf.zeros_like(example)
        return out

    def _decode(self, context, rows, start_logits, end_logits) -> dict:
        """Best span per example, with the tie-breaking order of `tfqa.core.decoding`."""
        cfg = self._config.decoding
        real = rows["attention_mask"] > 0
        start_logits = tf.where(real, start_logits, _NEG_INF)
        end_logits = tf.where(real, end_logits, _NEG_INF)
        k = tf.minimum(cfg.n_best_size, tf.shape(start_logits)[1])
        s_val, s_idx = tf.math.top_k(start_logits, k)  # ties: lower index first, as the stable argsort
        e_val, e_idx = tf.math.top_k(end_logits, k)
        cs = tf.gather(rows["char_start"], s_idx, batch_dims=1)
        ce = tf.gather(rows["char_end"], e_idx, batch_dims=1)
        start_ok = (cs >= 0) & tf.gather(rows["max_context"], s_idx, batch_dims=1)
        span = e_idx[:, tf.newaxis, :] - s_idx[:, :, tf.newaxis] + 1
        valid = (start_ok[:, :, tf.newaxis] & (ce >= 0)[:, tf.newaxis, :] & (span >= 1)
                 & (span <= cfg.max_answer_length) & (ce[:, tf.newaxis, :] > cs[:, :, tf.newaxis]))
        # Summed in float64 like tfqa.core.decoding, so near-ties break the same way.
        score = tf.cast(s_val, tf.float64)[:, :, tf.newaxis] + tf.cast(e_val, tf.float64)[:, tf.newaxis, :]
        score = tf.reshape(tf.where(valid, score, _NEG_INF), [tf.shape(score)[0], -1])  # [rows, k·k]

        def first_at_max(values, segments, num_segments):
            """Per segment: the max of `values` and the first position reaching it.

            A segment of only -inf (a window or example without a valid span, e.g. a context
            of zero-width spaces) has max -inf and its first position, not the segment op's
            "empty" value (the dtype's lowest finite number, which no value equals, so the
            position would be int32.max and index far outside the batch).
            """
            top = tf.math.unsorted_segment_max(values, segments, num_segments)
            top = tf.where(top == values.dtype.min, tf.constant(_NEG_INF, values.dtype), top)
            positions = tf.range(tf.size(segments))
            at_top = tf.where(values == tf.gather(top, segments), positions, tf.int32.max)
            return top, tf.math.unsorted_segment_min(at_top, segments, num_segments)

        n_rows = tf.shape(score)[0]
        row_best = tf.reduce_max(score, axis=1)
        flat_rows = tf.repeat(tf.range(n_rows), tf.shape(score)[1])
        _, row_arg = first_at_max(tf.reshape(score, [-1]), flat_rows, n_rows)
        row_arg -= tf.range(n_rows) * tf.shape(score)[1]
        n_ex = tf.shape(context)[0]
        best, best_row = first_at_max(row_best, rows["example"], n_ex)
        has_span = best > _NEG_INF
        best_row = tf.minimum(best_row, n_rows - 1)
        arg = tf.gather(row_arg, best_row)
        char_start = tf.gather_nd(cs, tf.stack([best_row, arg // k], 1))
        char_end = tf.gather_nd(ce, tf.stack([best_row, arg % k], 1))
        answered = has_span
        best = tf.where(has_span, best, 0.0)
        out = {}
        score_out = best
        if cfg.version_2_with_negative:
            cls = tf.stack([tf.range(n_rows), rows["cls"]], 1)
            null_row = tf.cast(tf.gather_nd(start_logits, cls), tf.float64) + tf.cast(
                tf.gather_nd(end_logits, cls), tf.float64)
            null = tf.math.unsorted_segment_min(null_row, rows["example"], n_ex)
            diff = null - best
            answered = has_span & (diff <= cfg.null_threshold)
            score_out = tf.where(answered, best, null)
            out[NULL_SCORE_DIFF] = tf.cast(diff, tf.float32)
        char_start = tf.where(answered, char_start, -1)
        char_end = tf.where(answered, char_end, -1)
        out[ANSWER] = tf.where(answered, tf.strings.substr(context, tf.maximum(char_start, 0),
                                                             char_end - char_start, unit="UTF8_CHAR"), "")
        out[SCORE] = tf.cast(score_out, tf.float32)
        out[ANSWER_START] = char_start
        out[ANSWER_END] = char_end
        candidates = (score, tf.reshape(tf.broadcast_to(cs[:, :, tf.newaxis], tf.shape(span)), [n_rows, -1]),
                      tf.reshape(tf.broadcast_to(ce[:, tf.newaxis, :], tf.shape(span)), [n_rows, -1]))
        out.update(self._candidates(context, rows["example"], *candidates))
        return out

    def _candidates(self, context, example, score, char_start, char_end) -> dict:
        """The example's best spans, best first: `candidate_{answers,scores,starts,ends}` [batch, num_candidates].

        Ties keep the candidate order of `_decode`, so the first one is the best
        span (before any SQuAD 2.0 null decision). A span is listed once: the
        max-context rule lets each start token count in one window only. Empty
        slots (fewer valid spans) hold "", -inf→0 score, and -1 offsets.
        """
        n_ex = tf.shape(context)[0]
        k = tf.shape(score)[1]

        def per_example(values, default):  # [rows, k·k] → [batch, windows·k·k]
            ids = tf.repeat(example, k)
            flat = tf.RaggedTensor.from_value_rowids(tf.reshape(values, [-1]), ids, nrows=n_ex)
            return flat.to_tensor(default_value=default)

        scores = per_example(score, _NEG_INF)
        m = tf.minimum(self._config.num_candidates, tf.shape(scores)[1])
        top, index = tf.math.top_k(scores, m)
        found = top > _NEG_INF
        start = tf.where(found, tf.gather(per_example(char_start, -1), index, batch_dims=1), -1)
        end = tf.where(found, tf.gather(per_example(char_end, -1), index, batch_dims=1), -1)
        texts = tf.strings.substr(tf.broadcast_to(context[:, tf.newaxis], tf.shape(start)), tf.maximum(start, 0),
                                  tf.maximum(end - start, 0), unit="UTF8_CHAR")
        pad = [[0, 0], [0, self._config.num_candidates - m]]  # a fixed width whatever the batch holds
        return {CANDIDATE_ANSWERS: tf.pad(tf.where(found, texts, ""), pad),
                CANDIDATE_SCORES: tf.pad(tf.cast(tf.where(found, top, 0.0), tf.float32), pad),
                CANDIDATE_STARTS: tf.pad(start, pad, constant_values=-1),
                CANDIDATE_ENDS: tf.pad(end, pad, constant_values=-1)}
