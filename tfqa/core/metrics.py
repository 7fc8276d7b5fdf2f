"""The official SQuAD v1.1 and v2.0 evaluation (EM/F1), re-implemented in plain Python.

The numbers equal those of the official `evaluate-v1.1.py` and `evaluate-v2.0.py`
scripts; the comments below point out where their (sometimes surprising) details
are reproduced on purpose. Examples are duck-typed: only `.id` and
`.answers[i].text` are read, so any object of that shape works (`tfqa.core.squad.Example`
in practice). An example with no answers is an unanswerable (SQuAD v2.0) question.

Where the official scripts would crash (an unanswerable question under v1.1, no
scored question at all, a na-prob missing for a scored question) we raise a
`MetricsError` (a `ValueError` and a `TfqaError`) that names the problem
instead. Where the v2.0 script crashes on a missing prediction of an
answerable question (its HasAns subset indexes the raw scores by every
answerable id), the HasAns/NoAns subsets here cover only the scored
questions, consistent with the overall totals skipping unscored ones.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from numbers import Real

from tfqa.core.errors import TfqaError
from tfqa.core.squad import squad_version

__all__ = [
    "MetricsError", "PredictionCoverage", "check_predictions", "compute_exact", "compute_f1",
    "exact_match_score", "f1_score_v1", "normalize_answer", "squad_metrics",
    "exact_match_of", "squad_v1_metrics", "squad_v2_metrics",
]

class MetricsError(TfqaError, ValueError):
    """Predictions or data the official metrics cannot score (nothing to score, bad no-answer scores...)."""


_PUNCTUATION = frozenset(string.punctuation)
# v1.1 compiles this pattern without flags and v2.0 with re.UNICODE. For `str`
# patterns Python 3 sets re.UNICODE by default, so both compile to the same
# pattern (identical `.flags`); one normalizer therefore serves both versions.
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, and collapse whitespace.

    The order matters and follows the official scripts: punctuation goes before
    articles, so "the-end" becomes "theend" (no article left to remove).
    """
    text = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _overlap_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    """Token-overlap F1 of two token lists with at least one token in common, else 0."""
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


# ---------------------------------------------------------------- SQuAD v1.1

def exact_match_score(prediction: str, ground_truth: str) -> float:
    """v1.1 exact match: 1.0 if both normalize to the same string, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score_v1(prediction: str, ground_truth: str) -> float:
    """v1.1 token F1. Unlike v2.0, two empty normalizations score 0 (no tokens in common)."""
    return _overlap_f1(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


def squad_v1_metrics(examples, predictions: dict[str, str]) -> dict:
    """Official SQuAD v1.1 scores: ``{"exact_match": ..., "f1": ...}`` in percent.

    Every question counts in the denominator; a question without a prediction
    scores 0. The best score over *all* gold answers is taken (v1.1 does not
    filter answers that normalize to ""). Predictions for unknown ids are ignored.
    """
    examples = list(examples)
    _check_predictions_type(predictions)
    if not examples:
        raise MetricsError("no examples to evaluate")
    exact_total = f1_total = 0.0
    for ex in examples:
        golds = [a.text for a in ex.answers]
        if not golds:
            # The official script fails on max() of an empty list here.
            raise MetricsError(f"question {ex.id!r} has no gold answer; SQuAD v1.1 cannot score it "
                             "(use version='2.0' for unanswerable questions)")
        if ex.id not in predictions:
            continue
        pred = predictions[ex.id]
        exact_total += max(exact_match_score(pred, g) for g in golds)
        f1_total += max(f1_score_v1(pred, g) for g in golds)
    n = len(examples)
    return {"exact_match": 100.0 * exact_total / n, "f1": 100.0 * f1_total / n}


# ---------------------------------------------------------------- SQuAD v2.0

def compute_exact(a_gold: str, a_pred: str) -> int:
    """v2.0 exact match: 1 if both normalize to the same string, else 0."""
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold: str, a_pred: str) -> float:
    """v2.0 token F1; if either side has no tokens, 1.0 when both have none, else 0.0."""
    gold_toks = normalize_answer(a_gold).split()
    pred_toks = normalize_answer(a_pred).split()
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)
    return _overlap_f1(pred_toks, gold_toks)


def _subset_eval(exact: dict, f1: dict, qids: list[str]) -> dict:
    # Sum in the given id order, as the official make_eval_dict does.
    n = len(qids)
    return {"exact": 100.0 * sum(exact[q] for q in qids) / n,
            "f1": 100.0 * sum(f1[q] for q in qids) / n,
            "total": n}


def _best_thresh(preds, scores, na_probs, has_ans) -> tuple[float, float]:
    """The official find_best_thresh: the best score over cut-offs on the na-prob ranking.

    Start as if every question were answered "no answer" (worth the number of
    unanswerable questions in the *whole* data, scored or not, as the official
    script counts them), then walk ids by ascending na-prob, switching each to
    its real prediction. `sorted` is stable over the dict's order, so ties
    resolve exactly as in the official script.
    """
    cur = best = sum(1 for q in has_ans if not has_ans[q])
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_ans[qid]:
            cur += scores[qid]
        elif preds[qid]:
            cur -= 1
        if cur > best:
            best, best_thresh = cur, na_probs[qid]
    return 100.0 * best / len(scores), best_thresh


def squad_v2_metrics(examples, predictions: dict[str, str], na_probs: dict[str, float] | None = None,
                     na_prob_thresh: float = 1.0) -> dict:
    """Official SQuAD v2.0 scores, as the dict the official script prints.

    Questions without a prediction are skipped (not counted). Gold answers that
    normalize to "" are dropped; a question left with none has the single gold
    answer "". A question whose na-prob exceeds `na_prob_thresh` is scored as a
    "no answer" prediction (1 if unanswerable, else 0). Without `na_probs` every
    na-prob is 0.0 and, as in the official script, no ``best_*`` keys are added;
    with them, ``best_exact``, ``best_exact_thresh``, ``best_f1`` and
    ``best_f1_thresh`` follow (computed on the raw, unthresholded scores).
    """
    examples = list(examples)
    _check_predictions_type(predictions)
    has_ans: dict[str, bool] = {}
    exact_raw: dict[str, int] = {}
    f1_raw: dict[str, float] = {}
    for ex in examples:
        has_ans[ex.id] = bool(ex.answers)
        if ex.id not in predictions:
            continue
        golds = [a.text for a in ex.answers if normalize_answer(a.text)] or [""]
        pred = predictions[ex.id]
        exact_raw[ex.id] = max(compute_exact(g, pred) for g in golds)
        f1_raw[ex.id] = max(compute_f1(g, pred) for g in golds)
    if not exact_raw:
        raise MetricsError("no question of the data has a prediction; nothing to score")

    if not math.isfinite(na_prob_thresh):
        raise MetricsError(f"na_prob_thresh must be a finite number, not {na_prob_thresh}")
    given = na_probs is not None
    if given:
        _check_na_probs(na_probs, exact_raw)
    else:
        na_probs = dict.fromkeys(predictions, 0.0)

    def threshold(scores):
        return {q: float(not has_ans[q]) if na_probs[q] > na_prob_thresh else s for q, s in scores.items()}

    exact, f1 = threshold(exact_raw), threshold(f1_raw)
    out = _subset_eval(exact, f1, list(exact))
    for prefix, want in (("HasAns", True), ("NoAns", False)):
        # Only scored questions: the official script would raise KeyError on an unscored one.
        qids = [q for q, h in has_ans.items() if h is want and q in exact]
        if qids:
            out.update({f"{prefix}_{k}": v for k, v in _subset_eval(exact, f1, qids).items()})
    if given:
        out["best_exact"], out["best_exact_thresh"] = _best_thresh(predictions, exact_raw, na_probs, has_ans)
        out["best_f1"], out["best_f1_thresh"] = _best_thresh(predictions, f1_raw, na_probs, has_ans)
    return out


# ---------------------------------------------------------------- entry points

def squad_metrics(examples, predictions, na_probs=None, na_prob_thresh=1.0, version=None) -> dict:
    """SQuAD scores under v1.1 or v2.0 rules.

    `version` None picks "2.0" when any example is unanswerable (has no answers),
    else "1.1"; "1.1" or "2.0" forces the version. v1.1 ignores `na_probs`.
    """
    examples = list(examples)
    if version is None:
        version = squad_version(examples)
    if version == "1.1":
        return squad_v1_metrics(examples, predictions)
    if version == "2.0":
        return squad_v2_metrics(examples, predictions, na_probs, na_prob_thresh)
    raise MetricsError(f"unknown SQuAD version {version!r}; expected '1.1', '2.0' or None")


def exact_match_of(results: dict):
    """The EM of a results dict: v1.1 calls it "exact_match", v2.0 "exact" (None when absent)."""
    return results.get("exact", results.get("exact_match"))


@dataclass
class PredictionCoverage:
    """How predictions cover the data: ids without a prediction, and prediction ids not in the data."""

    missing: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def check_predictions(examples, predictions) -> PredictionCoverage:
    """Report question ids lacking a prediction and prediction ids unknown to the data (in order)."""
    _check_predictions_type(predictions)
    ids = list(dict.fromkeys(ex.id for ex in examples))
    known = set(ids)
    return PredictionCoverage(missing=[q for q in ids if q not in predictions],
                              unknown=[q for q in predictions if q not in known])


def _check_predictions_type(predictions) -> None:
    if not isinstance(predictions, dict):
        raise TypeError(f"predictions must be a dict of question id -> answer text, not {type(predictions).__name__}")
    for qid, text in predictions.items():
        if not isinstance(qid, str):
            raise TypeError(f"prediction id {qid!r} is a {type(qid).__name__}, not a str")
        if not isinstance(text, str):
            raise TypeError(f"prediction for {qid!r} is a {type(text).__name__}, not a str")


def _check_na_probs(na_probs, scored) -> None:
    if not isinstance(na_probs, dict):
        raise TypeError(f"na_probs must be a dict of question id -> probability, not {type(na_probs).__name__}")
    for qid, p in na_probs.items():
        # bool is a Real subclass but never a probability a model would emit.
        if isinstance(p, bool) or not isinstance(p, Real):
            raise TypeError(f"na_prob for {qid!r} is a {type(p).__name__}, not a number")
        if not math.isfinite(p):  # NaN would make every threshold comparison false, and the output invalid JSON
            raise MetricsError(f"na_prob for {qid!r} is {p}, not a finite number")
    for qid in scored:
        if qid not in na_probs:
            raise MetricsError(f"na_probs has no entry for question {qid!r}")

