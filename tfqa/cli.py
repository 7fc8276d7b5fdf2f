"""The `python -m tfqa` command line: one argparse parser, one function per command.

Commands print results to stdout, progress and warnings to stderr, and turn
every expected failure (bad data, bad predictions, missing files) into one
`tfqa: error: …` line and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tfqa.data import MISALIGNED_POLICIES, DataError, read_squad
from tfqa.files import open_text, write_json_atomic


class CliError(Exception):
    """An expected failure to report as one line (no traceback)."""


def _read_json_object(path: str, what: str) -> dict:
    """Reads a JSON object from `path`, or raises CliError naming the file and the problem."""
    try:
        with open_text(path) as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file ({what})") from None
    except json.JSONDecodeError as e:
        raise CliError(f"{path}: not valid JSON ({what}): {e.msg} at line {e.lineno}, column {e.colno}") from None
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise CliError(f"{path}: cannot read {what}: {e}") from None
    if not isinstance(obj, dict):
        raise CliError(f"{path}: expected a JSON object {{question id: ...}} ({what}), got {type(obj).__name__}")
    return obj


def _load_predictions(path: str) -> dict[str, str]:
    predictions = _read_json_object(path, "predictions")
    for qid, text in predictions.items():
        if not isinstance(text, str):
            raise CliError(f"{path}: question {qid}: the prediction must be a string, got {type(text).__name__}")
    return predictions


def _load_na_probs(path: str, question_ids) -> dict[str, float]:
    na_probs = _read_json_object(path, "no-answer probabilities")
    for qid, value in na_probs.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CliError(f"{path}: question {qid}: expected a number, got {value!r}")
    missing = [qid for qid in question_ids if qid not in na_probs]
    if missing:
        raise CliError(f"{path}: no value for {len(missing)} predicted questions (e.g. {', '.join(missing[:3])})")
    return na_probs


def cmd_evaluate(args) -> int:
    """Scores a predictions file with the official SQuAD v1.1/v2.0 metrics."""
    from tfqa.metrics import check_predictions, squad_metrics

    examples, report = read_squad(args.data_file, misaligned=args.misaligned)
    predictions = _load_predictions(args.predictions)
    coverage = check_predictions(examples, predictions)
    if len(coverage.unknown) == len(predictions) and predictions:
        raise CliError(f"{args.predictions}: none of its {len(predictions)} predictions is for a question of "
                       f"{args.data_file} (e.g. {coverage.unknown[0]}); wrong data file?")
    version = report.version if args.version == "auto" else args.version
    if coverage.unknown:
        _warn(f"{args.predictions}: {len(coverage.unknown)} predictions are for questions not in {args.data_file} "
              f"and are ignored (e.g. {', '.join(coverage.unknown[:3])})")
    if coverage.missing:
        effect = "score 0" if version == "1.1" else "are left out, as the official v2.0 script does"
        _warn(f"{args.predictions}: {len(coverage.missing)} of {len(examples)} questions have no prediction and "
              f"{effect} (e.g. {', '.join(coverage.missing[:3])})")
    na_probs = None
    if args.na_prob_file:
        scored = [e.id for e in examples if e.id in predictions]
        na_probs = _load_na_probs(args.na_prob_file, scored)
    results = squad_metrics(examples, predictions, na_probs=na_probs, na_prob_thresh=args.na_prob_thresh,
                            version=version)
    print(json.dumps(results, indent=2))
    if args.output:
        write_json_atomic(args.output, results)
    return 0


def cmd_check(args) -> int:
    """Validates a SQuAD file and reports what loading it would repair or skip."""
    _, report = read_squad(args.data_file, misaligned=args.misaligned)
    print(report.summary())
    return 0


def _warn(message: str) -> None:
    print(f"tfqa: warning: {message}", file=sys.stderr)


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--misaligned", choices=MISALIGNED_POLICIES, default="error",
                   help="what to do with answers whose text is not at answer_start: stop with an error, skip the "
                        "answer, or repair it when the text occurs nearby (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """The whole `python -m tfqa` parser (commands are sub-parsers)."""
    parser = argparse.ArgumentParser(prog="python -m tfqa", description="Extractive question answering tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("evaluate", help="score predictions with the official SQuAD v1.1/v2.0 metrics",
                       description="Score predictions with the official SQuAD metrics; prints one JSON object.")
    p.add_argument("data_file", help="SQuAD JSON (.json or .json.gz) or TFDS name (squad/v1.1, squad/v2.0)")
    p.add_argument("predictions", help="predictions.json: {question id: answer text}")
    p.add_argument("--na-prob-file", "--na_prob_file", dest="na_prob_file", default=None,
                   help="null_odds.json: {question id: no-answer score} (SQuAD 2.0; adds best_exact/best_f1)")
    p.add_argument("--na-prob-thresh", "--na_prob_thresh", dest="na_prob_thresh", type=float, default=1.0,
                   help="predict no-answer when the no-answer score exceeds this (default: %(default)s)")
    p.add_argument("--version", choices=("auto", "1.1", "2.0"), default="auto",
                   help="metrics to use; auto picks 2.0 when the data has unanswerable questions "
                        "(default: %(default)s)")
    p.add_argument("--output", default=None, help="also write the results JSON to this file (atomically)")
    _add_data_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("check", help="validate a SQuAD file", description=cmd_check.__doc__)
    p.add_argument("data_file", help="SQuAD JSON (.json or .json.gz) or TFDS name")
    _add_data_options(p)
    p.set_defaults(func=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m tfqa`; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CliError, DataError) as e:
        print(f"tfqa: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tfqa: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
