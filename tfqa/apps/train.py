"""`train_keras.py`: the flags (one per TrainConfig setting), presets, validation, the run, the closing lines."""

from __future__ import annotations

import argparse
import json
import os
import sys

from tfqa.apps.console import CONSOLE
from tfqa.core.config import add_to_parser, from_args
from tfqa.core.errors import TfqaError
from tfqa.core.run_dir import LOGS_DIR, NULL_ODDS_FILE, PREDICTIONS_FILE, export_base
from tfqa.core.squad import DataError

PROG = "train_keras.py"


def build_train_parser() -> argparse.ArgumentParser:
    """The `train_keras.py` parser: one option per TrainConfig setting."""
    parser = argparse.ArgumentParser(prog=PROG, description="Fine-tune, evaluate and save a QA model.")
    add_to_parser(parser)
    return parser


def parse_train_args(argv: list[str] | None = None):
    """The TrainConfig of a command line; a `--preset` first sets its defaults (flags still override them)."""
    from tfqa.training.presets import PRESETS

    parser = build_train_parser()
    early, _ = parser.parse_known_args(argv)
    preset = PRESETS.get(early.preset)
    if early.preset and preset is None:
        parser.error(f"argument --preset: invalid choice: {early.preset!r} (choose from {', '.join(PRESETS)})")
    if preset is not None:
        parser.set_defaults(**preset.defaults)
    config = from_args(parser.parse_args(argv))
    return preset.prepare_data(config) if preset is not None else config


def train_main(argv: list[str] | None = None) -> int:
    """Entry of `train_keras.py`: parse, check, run; one-line errors and exit status 2 on bad input."""
    config = parse_train_args(argv)
    problems = config.validate()
    if problems:
        for problem in problems:
            print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    from tfqa.modeling.checkpoints import ModelLoadError
    from tfqa.training.callbacks import TrainingError
    from tfqa.training.run import train_and_evaluate

    try:
        # Keras' progress bar on a person's terminal, one line per epoch in CI logs.
        results = train_and_evaluate(config, reporter=CONSOLE, verbose=2 if os.environ.get("CI") else 1)
    except ModelLoadError as e:
        print(f"{PROG}: error: {e}\n  Offline? Try the self-contained run: python train_keras.py --preset smoke",
              file=sys.stderr)
        return 2
    except DataError as e:
        print(f"{PROG}: error: {e}\n  Pass local SQuAD files with --train_file/--predict_file, or try: "
              "python train_keras.py --preset smoke", file=sys.stderr)
        return 2
    except TrainingError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except TfqaError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: round(v, 2) for k, v in results.items() if isinstance(v, float)}))
    print(closing_lines(config, results))
    return 0


def closing_lines(config, results: dict) -> str:
    """Where the outputs are and the commands to look at them next."""
    out = config.output_dir
    lines = [f"\nDone. Outputs in {out}/: the model and tokenizer (save_pretrained), predictions.json, "
             f"nbest_predictions.json, eval_results.json, history.json and training.png (loss per step, dev EM/F1 "
             f"per epoch), checkpoints/, logs/ (TensorBoard).",
             f"Next: python -m tfqa inspect {out}",
             f"      python -m tfqa evaluate {config.predict_file} {out}/{PREDICTIONS_FILE}"
             + (f" --na-prob-file {out}/{NULL_ODDS_FILE} --na-prob-thresh {_applied_threshold(config, results)!r}"
                if config.version_2_with_negative or "null_threshold" in results else ""),
             f"      python -m tfqa predict --model {out} --data FILE --output DIR"]
    if results.get("export"):
        lines.append(f"      python -m tfqa serve --model {export_base(config)}   (the SavedModel: {results['export']})")
    lines.append(f"      tensorboard --logdir {out}/{LOGS_DIR}")
    return "\n".join(lines)


def _applied_threshold(config, results: dict) -> float:
    """The null threshold the run's predictions were decoded at: the tuned one (--null_score_diff_threshold auto)
    or the number given; `evaluate` needs it as --na-prob-thresh to score them as they are."""
    return results.get("null_threshold", {}).get("threshold", config.decoding.null_threshold)
