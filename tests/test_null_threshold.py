"""--null_score_diff_threshold auto: the setting, and the threshold tuned on dev data (tfqa.core.null_threshold)."""

from __future__ import annotations

import argparse
import json
import random

import pytest

from helpers import make_example
from tfqa.core.config import DecodeConfig, TrainConfig, add_to_parser, from_args
from tfqa.core.metrics import squad_metrics
from tfqa.core.null_threshold import apply_null_threshold, best_spans, tune_null_threshold
from tfqa.core.run_dir import RunDirError, load_settings, save_settings

CONTEXT = "Ada Lovelace wrote the first program in 1843 for the Analytical Engine in London."


def parse(*argv) -> TrainConfig:
    parser = argparse.ArgumentParser()
    add_to_parser(parser)
    return from_args(parser.parse_args(list(argv)))


def test_auto_is_the_default_and_a_number_fixes_it():
    assert parse().null_score_diff_threshold == "auto" and parse().decoding.auto_threshold
    assert parse().decoding.null_threshold == 0.0  # what decoding applies until a dev set tunes it
    fixed = parse("--null_score_diff_threshold", "-1.5")
    assert fixed.null_score_diff_threshold == -1.5 and fixed.decoding.null_threshold == -1.5
    assert not fixed.decoding.auto_threshold and parse("--null_score_diff_threshold", "AUTO").decoding.auto_threshold
    with pytest.raises(SystemExit):
        parse("--null_score_diff_threshold", "best")
    assert TrainConfig(null_score_diff_threshold=float("inf")).validate() == [
        "--null_score_diff_threshold must be a finite number or 'auto' (got inf)"]
    assert DecodeConfig(null_score_diff_threshold="sometimes").problems()


def test_saved_settings_keep_a_number_or_auto(tmp_path):
    for value in (1.25, 2, "auto"):
        save_settings(tmp_path, TrainConfig(null_score_diff_threshold=value))
        assert load_settings(tmp_path).null_score_diff_threshold == value
    (tmp_path / "tfqa_config.json").write_text(json.dumps({"null_score_diff_threshold": "high"}))
    with pytest.raises(RunDirError, match="null_score_diff_threshold"):
        load_settings(tmp_path)


def nbest_of(text: str) -> list[dict]:
    # Decoding's n-best lists: the null answer ranks among the spans by its score.
    return [{"text": ""}, {"text": text}] if text else [{"text": ""}]


def test_the_docstring_example():
    """Odds {a: -1, b: 2, c: 5} at threshold 0: b is "" although answering it is right; the tuned threshold
    answers a and b (2 is b's odds), c stays "" (it is unanswerable)."""
    examples = [make_example("a", "Who wrote it?", CONTEXT, "Ada Lovelace"),
                make_example("b", "When?", CONTEXT, "1843"),
                make_example("c", "Who painted it?", CONTEXT, None)]
    spans = {"a": "Ada Lovelace", "b": "1843", "c": "London"}
    odds = {"a": -1.0, "b": 2.0, "c": 5.0}
    before = apply_null_threshold(spans, odds, 0.0)
    assert before == {"a": "Ada Lovelace", "b": "", "c": ""}
    tuned = tune_null_threshold(examples, before, {q: nbest_of(t) for q, t in spans.items()}, odds)
    assert tuned.threshold == 2.0 and tuned.predictions == {"a": "Ada Lovelace", "b": "1843", "c": ""}
    assert tuned.before["f1"] == pytest.approx(200 / 3) and tuned.after["f1"] == 100.0
    assert tuned.summary()["f1_after"] == 100.0 and tuned.summary()["threshold"] == 2.0


@pytest.mark.parametrize("seed", range(5))
def test_the_tuned_f1_is_the_official_best_f1(seed):
    rng = random.Random(seed)
    words = [w for w in CONTEXT.split() if w != "the"]  # a gold "the" normalizes to "" (a no-answer, in effect)
    examples, spans, odds = [], {}, {}
    for i in range(60):
        answer = rng.choice(words) if rng.random() < 0.7 else None
        examples.append(make_example(f"q{i}", f"question {i}?", CONTEXT, answer))
        spans[f"q{i}"] = answer if answer and rng.random() < 0.6 else rng.choice(words)
        odds[f"q{i}"] = rng.uniform(-5, 5)
    before = apply_null_threshold(spans, odds, 0.0)
    tuned = tune_null_threshold(examples, before, {q: nbest_of(t) for q, t in spans.items()}, odds)
    official = squad_metrics(examples, spans, na_probs=odds)
    assert tuned.threshold == official["best_f1_thresh"]
    assert tuned.after["f1"] == pytest.approx(official["best_f1"]) == pytest.approx(tuned.after["best_f1"])
    assert tuned.after["best_f1_thresh"] == tuned.threshold and tuned.after["f1"] >= tuned.before["f1"]
    assert tuned.predictions == apply_null_threshold(spans, odds, tuned.threshold)


def test_best_spans_skip_the_null_entry():
    assert best_spans({"a": [{"text": ""}, {"text": "x"}, {"text": "y"}], "b": [{"text": ""}]}) == {"a": "x", "b": ""}
