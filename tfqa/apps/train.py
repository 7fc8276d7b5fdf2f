"""`train_keras.py`: the flags (one per TrainConfig setting), presets, validation, the run, the closing lines."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import tfqa
from tfqa.apps.boundary import guarded
from tfqa.apps.console import CONSOLE
from tfqa.apps.quiet import quiet_startup
from tfqa.apps.run_squad_flags import add_run_squad_flags, notes
from tfqa.core.config import add_to_parser, as_typed, from_args, spelled_as
from tfqa.core.errors import TfqaError
from tfqa.core.run_dir import (KERAS_MODEL_FILE, LOGS_DIR, NULL_ODDS_FILE, PREDICTIONS_FILE, export_base,
                               finished_run)
from tfqa.core.squad import DataError

PROG = "train_keras.py"


def build_train_parser() -> argparse.ArgumentParser:
    """The `train_keras.py` parser: one option per TrainConfig setting."""
    parser = argparse.ArgumentParser(prog=PROG, description="Fine-tune, evaluate and save a QA model. Every flag "
                                     "of Transformers' legacy run_squad.py is accepted.")
    add_to_parser(parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {tfqa.__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="also show TensorFlow's and transformers' start-up and loading messages")
    add_run_squad_flags(parser)
    return parser


def parse_train_args(argv: list[str] | None = None):
    """(TrainConfig, the parsed arguments) of a command line; a `--preset` first sets its defaults.

    Flags still override a preset's defaults. Nothing is written: `prepare_run` writes the preset's
    data once the flags are known to be good.
    """
    from tfqa.training.presets import PRESETS

    parser = build_train_parser()
    early, _ = parser.parse_known_args(argv)
    preset = PRESETS.get(early.preset)
    if early.preset and preset is None:
        parser.error(f"argument --preset: invalid choice: {early.preset!r} (choose from {', '.join(PRESETS)})")
    if preset is not None:
        parser.set_defaults(**preset.defaults)
    args = parser.parse_args(argv)
    given = from_args(args)
    config = given.with_data_dir()
    changes = {"output_dir": str(Path(config.output_dir))}  # printed paths: "runs/x/" + name, never "runs/x//name"
    spelled = spelled_as(args)  # errors name the flags as typed: aliases, --fp16, --data_dir's own files
    if args.fp16:
        changes["mixed_precision"] = "fp16"
        spelled["--mixed_precision"] = "--fp16"
    for name in ("train_file", "predict_file"):
        if getattr(given, name) == getattr(type(given)(), name) != getattr(config, name):
            spelled[f"--{name}"] = "--data_dir"  # the official file name in that folder, not a flag typed
    args.spelled_as = spelled
    return config.replace(**changes), args


class FlagError(TfqaError):
    """Flags that cannot work together or with the data and model they name; one line for all of them."""


def prepare_run(config, overwrite_output_dir: bool = False, spelled: dict[str, str] | None = None,
                locks: contextlib.ExitStack | None = None):
    """The checked config of a run, with its preset's data written: FlagError before any file is written.

    `spelled` ({"--setting": "--alias"}, `tfqa.core.config.spelled_as`): the flags the messages name as typed.

    Order matters: `--num_train_epochs nan` must not leave OUTPUT_DIR/data behind. A folder holding a
    finished run is refused unless `overwrite_output_dir` (run_squad.py's flag), which first removes what
    tfqa recorded writing there (`tfqa.core.run_record`). With `locks`, the folder's lock is taken into it
    before anything is written (`tfqa.core.run_lock`). In a multi-worker job only the chief locks, clears
    and checks the folder.
    """
    from tfqa.core.files import check_output_dir
    from tfqa.core.run_lock import run_lock
    from tfqa.core.run_record import RunRecord, foreign_files
    from tfqa.modeling.checkpoints import checkpoint_problems
    from tfqa.training.presets import preset_of
    from tfqa.training.strategies import chief_process

    preset = preset_of(config)
    problems = config.validate(check_files=preset is None)
    if not problems:
        problems = checkpoint_problems(config.model_name_or_path, config.max_seq_length, "--max_seq_length") \
            if preset is None else preset.problems(config)
    if not problems and config.train and config.teacher_model:  # a teacher of the other Keras: before data/ is written
        from tfqa.training.distill import teacher_problem

        teacher = teacher_problem(config.teacher_model, config.backend)
        if teacher:
            problems.append(teacher)
    if config.train and finished_run(config.output_dir) and not overwrite_output_dir:
        problems.append(f"--output_dir {config.output_dir} holds a finished run; pass --overwrite_output_dir to "
                        "train into it again, or choose another folder")
    if config.train and not overwrite_output_dir:  # a rerun into an interrupted run must fit its backup
        from tfqa.core.resume import resume_problems

        planned = config.replace(**preset.data_files(config)) if preset is not None else config
        problems += resume_problems(planned.to_dict(), config.output_dir)
    if problems:
        raise FlagError(as_typed("; ".join(problems), spelled or {}))
    for flag in ("output_dir", "cache_dir", "export_dir"):
        value = getattr(config, flag)
        if value and value != "none":
            check_output_dir(value, f"--{flag}")
    chief = chief_process()
    if chief and locks is not None:
        locks.enter_context(run_lock(config.output_dir))
    if chief and config.train and overwrite_output_dir:
        _clear(config.output_dir)
    foreign = foreign_files(config.output_dir) if chief else []
    if foreign:
        shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
        raise FlagError(f"--output_dir {config.output_dir} holds {shown}, which tfqa did not write and a run would "
                        "replace; choose another folder")
    if preset is not None:
        if chief:
            RunRecord.begin(config.output_dir, also=preset.shared_files).save()  # claims data/ before writing it
        config = preset.prepare_data(config, CONSOLE)
        problems = config.validate()
        if problems:
            raise FlagError(as_typed("; ".join(problems), spelled or {}))
    return config


def _clear(output_dir: str) -> None:
    """--overwrite_output_dir: removes what tfqa recorded writing into the folder, and says what that was."""
    from tfqa.core.run_record import clear_run

    removed = clear_run(output_dir)
    if removed is None:
        CONSOLE.note(f"--overwrite_output_dir: {output_dir} has no record of what tfqa wrote there (not a run, or a "
                     "run of an older tfqa): nothing removed; the run writes over its own files")
    elif removed:
        shown = ", ".join(removed[:12]) + (f" and {len(removed) - 12} more" if len(removed) > 12 else "")
        CONSOLE.note(f"--overwrite_output_dir: removed the earlier run's {shown} from {output_dir}")


class _Hinted(TfqaError):
    """An error with what to try next appended."""


def _run(argv: list[str], state: dict) -> int:
    from tfqa.core.run_record import forget_empty_run

    from tfqa.modeling.backend import backend_named

    config, args = parse_train_args(argv)
    # Before the folder is made or claimed and before TensorFlow is imported: the Keras the backend needs is
    # chosen here, and the transformers backend beside transformers 5 (no TF classes) ends in one line.
    backend_named(config.backend).use()
    new_folder = not Path(config.output_dir).exists()
    try:
        with contextlib.ExitStack() as locks:  # the folder's lock, held until the run ends
            return _locked_run(config, args, state, locks)
    except BaseException:
        if new_folder:  # a run that could not start (no model, bad data) leaves no folder behind
            forget_empty_run(config.output_dir)
        raise


def _locked_run(config, args, state: dict, locks: contextlib.ExitStack) -> int:
    # creates OUTPUT_DIR to check it is writable
    config = prepare_run(config, args.overwrite_output_dir, spelled_as(args), locks)
    state["output_dir"] = config.output_dir
    for line in notes(args):
        CONSOLE.note(line)
    if args.no_cuda:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # read when TensorFlow starts, which it has not yet
    from tfqa.modeling.checkpoints import ModelLoadError
    from tfqa.training.run import train_and_evaluate

    try:
        # verbose=0: Keras' own bar would write to stdout; tfqa's progress lines go to stderr.
        results = train_and_evaluate(config, reporter=CONSOLE, verbose=0)
    except ModelLoadError as e:
        raise _Hinted(f"{e}; offline? Try the self-contained run: python train_keras.py --preset smoke") from None
    except DataError as e:
        if "TFDS" not in str(e):  # a file's own problem: the message says it all
            raise
        raise _Hinted(f"{e}; pass local SQuAD files with --train_file/--predict_file, or try: "
                      "python train_keras.py --preset smoke") from None
    print(json.dumps({k: round(v, 2) for k, v in results.items() if isinstance(v, float)}), flush=True)
    for line in closing_lines(config, results).splitlines():  # guidance, not results: stdout stays JSON
        CONSOLE.line(line)
    return 0


def train_main(argv: list[str] | None = None) -> int:
    """Entry of `train_keras.py` and `tfqa-train`: parse, check, run; one-line errors and exit status 2 on bad
    input (nothing created before the flags are good), 130 with what was kept on Ctrl-C (`tfqa.apps.boundary`)."""
    from tfqa.core.history import interruption_summary

    argv = sys.argv[1:] if argv is None else argv
    quiet_startup(verbose=bool({"--verbose", "--verbose_logging"} & set(argv)))  # before TensorFlow is imported

    state: dict = {}

    def interrupted() -> str:
        if "output_dir" not in state:
            return "interrupted before the run started"
        return interruption_summary(state["output_dir"])

    return guarded(PROG, lambda: _run(argv, state), interrupted)


def closing_lines(config, results: dict) -> str:
    """Where the outputs are and the commands to look at them next."""
    out = Path(config.output_dir)
    model = f"{KERAS_MODEL_FILE}, Keras 3" if config.backend == "keras_hub" else "save_pretrained"
    lines = [f"\nDone. Outputs in {out}/: the model and tokenizer ({model}), predictions.json, "
             f"nbest_predictions.json, eval_results.json, history.json and training.png (loss per step, dev EM/F1 "
             f"per epoch), checkpoints/, logs/ (TensorBoard).",
             f"Next: python -m tfqa inspect {out}",
             f"      python -m tfqa evaluate {config.predict_file} {out / PREDICTIONS_FILE}"
             + (f" --na-prob-file {out / NULL_ODDS_FILE} --na-prob-thresh {_applied_threshold(config, results)!r}"
                if config.version_2_with_negative or "null_threshold" in results else "")
             # the run scored only the first N questions: so does the command that reproduces its numbers
             + (f" --max-samples {config.max_eval_samples}" if config.max_eval_samples else ""),
             f"      python -m tfqa predict --model {out} --data FILE --output DIR"]
    if results.get("export"):
        lines.append(f"      python -m tfqa serve --model {export_base(config)}   (the SavedModel: {results['export']})")
    lines.append(f"      tensorboard --logdir {out / LOGS_DIR}")
    return "\n".join(lines)


def _applied_threshold(config, results: dict) -> float:
    """The null threshold the run's predictions were decoded at: the tuned one (--null_score_diff_threshold auto)
    or the number given; `evaluate` needs it as --na-prob-thresh to score them as they are."""
    return results.get("null_threshold", {}).get("threshold", config.decoding.null_threshold)
