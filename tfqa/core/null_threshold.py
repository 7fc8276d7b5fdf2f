"""SQuAD 2.0: the null-score threshold that maximises dev F1, and the predictions it gives (no TensorFlow).

The classic run_squad recipe evaluates once, reads the official
`best_f1_thresh` and reruns with `--null_score_diff_threshold` set to it.
`tune_null_threshold` does that without a rerun: the answer of a question is
its best span when `null_odds` (null score − best span score) is at most the
threshold, else "" — so the n-best lists and null odds of one prediction pass
give the predictions for any threshold.

Why the best spans, not the predictions at the old threshold, are scored to
find it: the official search walks questions by ascending null odds and
switches each from "" to *its prediction*. A question already "" at the old
threshold would count as unanswered at every cut-off, so a threshold above the
old one would be scored wrongly. With every best span in place, the F1 at the
chosen threshold is exactly the official `best_f1` (e.g. odds {a: -1, b: 2,
c: 5}, old threshold 0: b and c are ""; scored with spans, a cut-off at 2 can
find that answering b helps, and applying 2 answers a and b).
One case keeps them apart, as in the official script: when answering nothing
beats every cut-off, `best_f1_thresh` is its initial 0.0 — a model that bad
is not worth tuning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tfqa.core.metrics import squad_metrics


@dataclass(frozen=True)
class TunedThreshold:
    """The threshold chosen on dev data, the predictions it gives, and the scores before and after."""

    threshold: float
    predictions: dict[str, str]
    before: dict  # the official metrics of the predictions at the old threshold
    after: dict  # ... and at the chosen one (its "f1" equals its "best_f1")

    def summary(self) -> dict:
        """What eval_results.json records about the choice."""
        return {"threshold": self.threshold, "source": "best_f1_thresh on the evaluation data",
                "exact_before": self.before["exact"], "f1_before": self.before["f1"],
                "exact_after": self.after["exact"], "f1_after": self.after["f1"]}


def best_spans(nbest: Mapping[str, list]) -> dict[str, str]:
    """{id: the best non-empty answer of its n-best list} ("" when it has none)."""
    return {qid: next((entry["text"] for entry in entries if entry["text"]), "") for qid, entries in nbest.items()}


def apply_null_threshold(spans: dict[str, str], null_odds: dict[str, float], threshold: float) -> dict[str, str]:
    """The predictions at `threshold`: the best span where null odds ≤ threshold, else ""."""
    return {qid: text if null_odds[qid] <= threshold else "" for qid, text in spans.items()}


def scores_at(examples, predictions: dict[str, str], null_odds: dict[str, float], threshold: float) -> dict:
    """The official v2.0 metrics of predictions decoded at `threshold`, with the null odds as na-probs.

    The na-prob threshold is the decoding one: the official default (1.0)
    would score every question whose null odds exceed 1.0 as "no answer",
    even one the predictions answer (a tuned threshold of 1.1 answers it).
    """
    return squad_metrics(examples, predictions, na_probs=null_odds, na_prob_thresh=threshold, version="2.0")


def tune_null_threshold(examples, predictions: dict[str, str], nbest: Mapping[str, list],
                        null_odds: dict[str, float], old_threshold: float = 0.0) -> TunedThreshold:
    """The official `best_f1_thresh` of the examples' best spans, applied (see the module docstring).

    `predictions` are the ones decoded at `old_threshold` (for the "before" scores).
    """
    examples = list(examples)
    spans = best_spans({e.id: nbest[e.id] for e in examples})
    threshold = float(squad_metrics(examples, spans, na_probs=null_odds, version="2.0")["best_f1_thresh"])
    tuned = apply_null_threshold(spans, null_odds, threshold)
    return TunedThreshold(threshold, tuned, before=scores_at(examples, predictions, null_odds, old_threshold),
                          after=scores_at(examples, tuned, null_odds, threshold))
