"""The `python -m tfqa` command line: one argparse parser, one function per command.

Commands print results to stdout, progress and warnings to stderr, and raise
`TfqaError`s for every expected failure (bad data, bad predictions, missing
files, unwritable outputs); `main` runs them inside the error boundary
(`tfqa.apps.boundary`), which prints one `tfqa: error: …` line, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import tfqa
from tfqa.apps.boundary import guarded
from tfqa.apps.console import CONSOLE
from tfqa.apps.quiet import quiet_startup
from tfqa.core.config import MAX_INT
from tfqa.core.errors import TfqaError
from tfqa.core.files import check_output_dir, check_output_file, read_text, write_json_atomic
from tfqa.core.squad import MISALIGNED_POLICIES, read_squad
from tfqa.export.names import SERVING_DEFAULT, TOKEN_IDS
from tfqa.rest.limits import ConnectionLimits
from tfqa.serving.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INSTANCES, DEFAULT_MAX_TEXT_BYTES


class CliError(TfqaError):
    """An expected failure to report as one line (no traceback)."""


def _read_json_object(path: str, what: str) -> dict:
    """Reads a JSON object from `path`, or raises CliError naming the file and the problem."""
    try:
        obj = json.loads(read_text(path))
    except FileNotFoundError:
        raise CliError(f"{path}: no such file ({what})") from None
    except json.JSONDecodeError as e:
        raise CliError(f"{path}: not valid JSON ({what}): {e.msg} at line {e.lineno}, column {e.colno}") from None
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise CliError(f"{path}: cannot read {what}: {e}") from None
    except RecursionError:
        raise CliError(f"{path}: JSON nested too deeply ({what})") from None
    except ValueError as e:  # integers of more than 4,300 digits
        raise CliError(f"{path}: not usable JSON ({what}): {e}") from None
    if not isinstance(obj, dict):
        raise CliError(f"{path}: expected a JSON object {{question id: ...}} ({what}), got {type(obj).__name__}")
    return obj


def _load_predictions(path: str) -> dict[str, str]:
    predictions = _read_json_object(path, "predictions")
    if not predictions:
        raise CliError(f"{path}: no predictions (an empty JSON object); nothing to score")
    for qid, text in predictions.items():
        if not isinstance(text, str):
            raise CliError(f"{path}: question {qid}: the prediction must be a string, got {type(text).__name__}")
    return predictions


def _load_na_probs(path: str, question_ids) -> dict[str, float]:
    na_probs = _read_json_object(path, "no-answer probabilities")
    for qid, value in na_probs.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CliError(f"{path}: question {qid}: expected a number, got {value!r}")
        if not math.isfinite(value):  # NaN/Infinity: Python's json reads them, but no threshold can use them
            raise CliError(f"{path}: question {qid}: expected a finite number, got {value}")
    missing = [qid for qid in question_ids if qid not in na_probs]
    if missing:
        raise CliError(f"{path}: no value for {len(missing)} predicted questions (e.g. {', '.join(missing[:3])})")
    return na_probs


def _require_model_dir(path: str) -> None:
    from tfqa.export.versions import is_export

    if not Path(path).is_dir():
        raise CliError(f"--model {path}: no such model directory (expected a folder written by train_keras.py)")
    if is_export(path):  # it has no config.json: transformers would ask for its `model_type`
        raise CliError(f"--model {path} is a SavedModel export, not a training run's --output_dir; answer with it "
                       f"through `python -m tfqa ask --model {path}` or `python -m tfqa serve --model {path}`")


def _check_window(model_dir: str, max_seq_length: int) -> None:
    """The model's saved window length against its position embeddings, from config.json: before loading it."""
    from tfqa.core.run_dir import SETTINGS_FILE
    from tfqa.modeling.checkpoints import checkpoint_problems

    problems = checkpoint_problems(model_dir, max_seq_length, f"{Path(model_dir) / SETTINGS_FILE}: max_seq_length")
    if problems:
        raise CliError("; ".join(problems))


def _int_from(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be a {'positive' if low else 'non-negative'} integer, not {value}")
    if value > MAX_INT:  # TensorFlow counts batches and shapes in int32
        raise argparse.ArgumentTypeError(f"must be at most {MAX_INT}, not {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer from 1 to MAX_INT (batch sizes)."""
    return _int_from(text, 1)


def count_or_all(text: str) -> int:
    """argparse type: an integer from 0 (all) to MAX_INT (--max-samples)."""
    return _int_from(text, 0)


def finite_float(text: str) -> float:
    """argparse type: a float that is not NaN or infinite (thresholds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def cmd_evaluate(args) -> int:
    """Scores a predictions file with the official SQuAD v1.1/v2.0 metrics."""
    from tfqa.core.metrics import check_predictions, squad_metrics

    if args.output:
        check_output_file(args.output, "--output")
    examples, report = read_squad(args.data_file, misaligned=args.misaligned)
    if not examples:
        raise CliError(f"{args.data_file}: no questions to score")
    if args.version == "1.1" and report.version == "2.0":
        unanswerable = next(e.id for e in examples if not e.answers)
        raise CliError(f"{args.data_file}: has unanswerable questions (e.g. {unanswerable}), which SQuAD v1.1 "
                       "metrics cannot score; use --version 2.0 (or auto)")
    if args.max_samples:  # what train_keras.py --max_eval_samples scored
        examples = examples[:args.max_samples]
    predictions = _load_predictions(args.predictions)
    coverage = check_predictions(examples, predictions)
    if len(coverage.unknown) == len(predictions) and predictions:
        raise CliError(f"{args.predictions}: none of its {len(predictions)} predictions is for a question of "
                       f"{args.data_file} (e.g. {coverage.unknown[0]}); wrong data file?")
    version = report.version if args.version == "auto" else args.version
    if coverage.unknown:
        CONSOLE.warn(f"{args.predictions}: {len(coverage.unknown)} predictions are for questions not in {args.data_file} "
              f"and are ignored (e.g. {', '.join(coverage.unknown[:3])})")
    if coverage.missing:
        effect = "score 0" if version == "1.1" else "are left out, as the official v2.0 script does"
        CONSOLE.warn(f"{args.predictions}: {len(coverage.missing)} of {len(examples)} questions have no prediction and "
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


def cmd_inspect(args) -> int:
    """Reports on a training run from the files in its output directory."""
    from tfqa.apps.report import format_report, run_report
    from tfqa.core.history import redraw_plot

    run_report(args.output_dir)  # is it a run at all? (RunDirError: one line)
    if args.plot:
        CONSOLE.line(f"drew {redraw_plot(args.output_dir)}")
    report = run_report(args.output_dir)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 0


def cmd_predict(args) -> int:
    """Runs a saved model over a SQuAD-format file and writes the prediction files."""
    from tfqa.core.run_dir import load_settings
    from tfqa.modeling.backend import load_model
    from tfqa.modeling.prediction import predict_answers, tokenize, write_prediction_files

    _require_model_dir(args.model)
    config = load_settings(args.model)
    _check_window(args.model, config.max_seq_length)
    check_output_dir(args.output, "--output")
    examples, report = read_squad(args.data, misaligned=args.misaligned)
    if not examples:
        raise CliError(f"{args.data}: no questions to answer")
    config = config.for_squad_version(report.version)
    model, tokenizer = load_model(args.model, flag="--model")
    features = tokenize(examples, tokenizer, config.features, reporter=CONSOLE)
    predictions, nbest, null_odds = predict_answers(model, features, examples, config.decoding, args.batch_size,
                                                    reporter=CONSOLE)
    write_prediction_files(Path(args.output), predictions, nbest, null_odds)
    CONSOLE.line(f"{len(predictions)} predictions written to {Path(args.output)}/")
    return 0


def cmd_serve(args) -> int:
    """Serves an export directory (or the models of a TF Serving --model_config_file) over TensorFlow Serving's
    REST API, for local use and tests; new versions are served as they appear (--file_system_poll_wait_seconds)."""
    from tfqa.rest.server import serve
    from tfqa.serving.servables import parse_labels

    if (args.model is None) == (args.model_config_file is None):
        raise CliError("serve needs --model DIR or --model_config_file FILE (one of them)")
    if args.model_config_file is not None and (args.name or args.label or args.all_versions):
        raise CliError("--name, --label and --all-versions are set per model in --model_config_file "
                       "(name, version_labels, model_version_policy)")
    batching = _batching_parameters(args)
    limits = ConnectionLimits(max_connections=args.max_connections, read_timeout=args.read_timeout,
                              idle_timeout=args.idle_timeout)
    serve(args.model, host=args.host, port=args.port, name=args.name, max_body_bytes=args.max_body_bytes,
          all_versions=args.all_versions, labels=parse_labels(args.label), max_instances=args.max_instances,
          limits=limits, batching=batching, model_config_file=args.model_config_file,
          poll_seconds=args.file_system_poll_wait_seconds, reporter=CONSOLE, max_text_bytes=args.max_text_bytes)
    return 0


def _batching_parameters(args):
    """The BatchingParameters of --enable_batching [--batching_parameters_file FILE], or None."""
    from tfqa.serving.batching_config import read_batching_parameters

    if args.batching_parameters_file and not args.enable_batching:
        raise CliError("--batching_parameters_file is read only with --enable_batching")
    return read_batching_parameters(args.batching_parameters_file) if args.enable_batching else None


def _add_batching_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--enable_batching", "--enable-batching", action="store_true",
                   help="merge concurrent requests into batched model calls (TF Serving's flag; see serve/)")
    p.add_argument("--batching_parameters_file", "--batching-parameters-file", default=None, metavar="FILE",
                   help="TF Serving BatchingParameters text proto, e.g. serve/batching.config (default: TF "
                        "Serving's defaults: max_batch_size 1000, batch_timeout_micros 0, max_enqueued_batches 10)")


def cmd_ask(args) -> int:
    """Asks a running model server (TF Serving or `serve`), or a model loaded here (--model), questions about one
    context; prints the answers."""
    if args.context is not None:
        context = args.context
    elif args.context_file is not None:
        try:
            context = Path(args.context_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CliError(f"{args.context_file}: cannot read the context: {e}") from None
    elif sys.stdin.isatty():
        raise CliError("no context: pass --context TEXT or --context-file FILE, or pipe the context on stdin")
    else:
        context = sys.stdin.read()
    if not context.strip() or not all(q.strip() for q in args.question):
        raise CliError("the context and every --question must contain some text")
    results = _ask_model(args, context) if args.model is not None else _ask_server(args, context)
    for question, result in zip(args.question, results):
        if args.json:
            print(json.dumps({"question": question, **result}, ensure_ascii=False))
        else:  # one line per question, in order; newlines inside an answer would break that
            print(" ".join(result["answer"].split()) or "(no answer)")
    return 0


def _ask_server(args, context: str) -> list[dict]:
    from tfqa.rest.client import ServingClient
    from tfqa.serving.limits import seconds_problem

    problem = seconds_problem(args.timeout, "--timeout")
    if problem:
        raise CliError(problem)
    if args.version is not None and not 0 <= args.version < 2**63:  # TF Serving's versions are int64
        raise CliError(f"--version must be a model version from 0 to {2**63 - 1}, not {args.version}")
    try:
        client = ServingClient(args.server, version=args.version, label=args.label, format=args.format,
                               signature_name=args.signature_name, batch_size=args.batch_size, timeout=args.timeout)
    except ValueError as e:  # a malformed URL or option
        raise CliError(str(e)) from None
    return client.answer(args.question, context)


def _ask_model(args, context: str) -> list[dict]:
    """The answers of `tfqa.QuestionAnswerer` as the server's rows (the same lines as with --server)."""
    from tfqa.apps.answerer import QuestionAnswerer

    if args.version is not None or args.label is not None:
        raise CliError("--version/--label pick a version on a --server; with --model pass the version directory "
                       "(e.g. export/tfqa/2)")
    try:
        qa = QuestionAnswerer.from_pretrained(args.model, batch_size=args.batch_size, verbose=args.verbose)
        return [answer.to_row(candidates=False) for answer in qa.answers(args.question, context)]
    except ValueError as e:  # bad --batch-size or text; load problems are TfqaErrors (one line too)
        raise CliError(str(e)) from None


def cmd_export(args) -> int:
    """Exports a trained model (a save_pretrained folder) as the next version of a TF Serving model folder."""
    from tfqa.export.savedmodel import export_checkpoint, serving_config_for

    _require_model_dir(args.model)
    config = serving_config_for(args.model)  # a broken tfqa_config.json: one line, before the progress line
    _check_window(args.model, config.features.max_seq_length)
    check_output_dir(args.output, "--output")
    progress = CONSOLE.progress(f"exporting {args.model} as a SavedModel into {args.output}")
    result = export_checkpoint(args.model, args.output, config)
    if result.note:
        CONSOLE.note(result.note)
    progress.done(f": {result.path}")
    signatures = (f"{SERVING_DEFAULT} (raw text), {TOKEN_IDS}" if result.raw_text
                  else f"{SERVING_DEFAULT} = {TOKEN_IDS}")
    print(f"exported version {result.version}: {result.path} (signatures: {signatures})")
    CONSOLE.line(f"Serve it: python -m tfqa serve --model {args.output}   (production: TF Serving, see serve/)")
    return 0


def cmd_convert(args) -> int:
    """Converts a transformers-backend run (or a TF checkpoint folder) into a keras_hub run that answers the same."""
    from tfqa.modeling.convert import convert_run

    _require_model_dir(args.model)
    print(convert_run(args.model, args.output, to=args.to, reporter=CONSOLE))
    return 0


def cmd_demo(args) -> int:
    """Serves a one-page web demo: paste a passage, ask a question, see the answer highlighted in it."""
    from tfqa.apps.demo import run_demo

    batching = _batching_parameters(args)
    if batching and args.server:
        raise CliError("--enable_batching applies to --model; start the server with it instead")
    run_demo(model=args.model, server=args.server, host=args.host, port=args.port, batching=batching,
             reporter=CONSOLE)
    return 0


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--misaligned", choices=MISALIGNED_POLICIES, default="error",
                   help="what to do with answers whose text is not at answer_start: stop with an error, skip the "
                        "answer, or repair it when the text occurs nearby (default: %(default)s)")


def _prog() -> str:
    """How the user called us: `tfqa` (the console script) or `python -m tfqa`."""
    return "tfqa" if Path(sys.argv[0]).name == "tfqa" else "python -m tfqa"


def build_parser() -> argparse.ArgumentParser:
    """The whole `python -m tfqa` parser (commands are sub-parsers)."""
    parser = argparse.ArgumentParser(prog=_prog(), description="Extractive question answering tools.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {tfqa.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("evaluate", help="score predictions with the official SQuAD v1.1/v2.0 metrics",
                       description="Score predictions with the official SQuAD metrics; prints one JSON object.")
    p.add_argument("data_file", help="SQuAD JSON (.json or .json.gz) or TFDS name (squad/v1.1, squad/v2.0)")
    p.add_argument("predictions", help="predictions.json: {question id: answer text}")
    p.add_argument("--na-prob-file", "--na_prob_file", dest="na_prob_file", default=None,
                   help="null_odds.json: {question id: no-answer score} (SQuAD 2.0; adds best_exact/best_f1)")
    p.add_argument("--na-prob-thresh", "--na_prob_thresh", dest="na_prob_thresh", type=finite_float, default=1.0,
                   help="predict no-answer when the no-answer score exceeds this (default: %(default)s)")
    p.add_argument("--version", choices=("auto", "1.1", "2.0"), default="auto",
                   help="metrics to use; auto picks 2.0 when the data has unanswerable questions "
                        "(default: %(default)s)")
    p.add_argument("--output", default=None, help="also write the results JSON to this file (atomically)")
    p.add_argument("--max-samples", "--max_samples", dest="max_samples", type=count_or_all, default=0,
                   help="score only the first N questions of the data, as train_keras.py --max_eval_samples N does "
                        "(default: all)")
    _add_data_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="run a saved model over a SQuAD-format file",
                       description=cmd_predict.__doc__)
    p.add_argument("--model", required=True, help="directory written by train_keras.py (save_pretrained)")
    p.add_argument("--data", required=True, help="SQuAD JSON (.json or .json.gz) or TFDS name")
    p.add_argument("--output", required=True, help="folder for predictions.json, nbest_predictions.json, null_odds.json")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=positive_int, default=64,
                   help="windows per model call (default: %(default)s)")
    _add_data_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a trained model for TensorFlow Serving", description=cmd_export.__doc__
                       + " Windowing and decoding settings come from the model's tfqa_config.json.")
    p.add_argument("--model", required=True, help="directory written by train_keras.py (save_pretrained)")
    p.add_argument("--output", default="export/tfqa",
                   help="model folder TF Serving watches; the export becomes its next integer version "
                        "(default: %(default)s)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("convert", help="convert a transformers-backend run to a keras_hub (Keras 3) run",
                       description=cmd_convert.__doc__ + " DistilBERT and BERT; the weights are tf_model.h5 or "
                       "TF-format model.safetensors, QA head included. The new run holds model.keras, the tokenizer files and "
                       "tfqa_config.json (the source's settings, backend keras_hub); prints its path.")
    p.add_argument("--model", required=True, help="directory written by train_keras.py, or a TF checkpoint folder")
    p.add_argument("--to", choices=("keras_hub",), default="keras_hub", help="the backend to convert to "
                   "(default: %(default)s)")
    p.add_argument("--output", required=True, help="the new run's folder: must not exist, or be empty")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("check", help="validate a SQuAD file", description=cmd_check.__doc__)
    p.add_argument("data_file", help="SQuAD JSON (.json or .json.gz) or TFDS name")
    _add_data_options(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("inspect", help="report on a training run (data, model, settings, metrics per epoch, export)",
                       description=cmd_inspect.__doc__ + " Data sizes, model, settings, loss and dev EM/F1 per "
                       "epoch, the best epoch, final metrics, the export's versions and the plot; missing files are "
                       "named and the rest is still reported.")
    p.add_argument("output_dir", help="the --output_dir of a train_keras.py run")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--plot", action="store_true",
                   help="first (re)draw OUTPUT_DIR/training.png from history.json (or eval_results.json)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("serve", help="serve an exported SavedModel over TensorFlow Serving's REST API (local use)",
                       description=cmd_serve.__doc__ + " Answers GET /v1/models/NAME[/versions/N|/labels/L][/metadata] "
                       "and POST .../NAME[/versions/N|/labels/L]:predict like TF Serving. Production deployments use "
                       "the tensorflow/serving image (docker run -p 8501:8501 -v $PWD/export/tfqa:/models/tfqa "
                       "-e MODEL_NAME=tfqa tensorflow/serving); this server is for machines without Docker and tests.")
    p.add_argument("--model", default=None, help="export base directory holding version subdirectories 1/, 2/, ...")
    p.add_argument("--model_config_file", "--model-config-file", default=None, metavar="FILE",
                   help="instead of --model: TF Serving's ModelServerConfig text proto (several models, "
                        "model_version_policy, version_labels), e.g. serve/models.config")
    p.add_argument("--file_system_poll_wait_seconds", "--file-system-poll-wait-seconds", type=float, default=1.0,
                   metavar="SECONDS", help="read the export directories again this often and serve new versions "
                                           "(0: never; default: %(default)s, as TF Serving)")
    p.add_argument("--port", type=int, default=8501, help="REST port, 0 for any free one (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--name", default=None, help="model name in the URLs (default: the export directory's name)")
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                   help="larger request bodies get HTTP 413 (default: %(default)s)")
    p.add_argument("--max-instances", type=int, default=DEFAULT_MAX_INSTANCES,
                   help="more instances in one predict request get HTTP 400, as TF Serving refuses batches over "
                        "its maximum (default: %(default)s)")
    p.add_argument("--max-text-bytes", type=int, default=DEFAULT_MAX_TEXT_BYTES,
                   help="more bytes of text (all questions and contexts) in one predict request get HTTP 400: the "
                        "bound on the work one request causes (default: %(default)s)")
    p.add_argument("--max-connections", type=int, default=ConnectionLimits.max_connections,
                   help="more open connections get HTTP 503 and are closed (default: %(default)s)")
    p.add_argument("--read-timeout", type=float, default=ConnectionLimits.read_timeout,
                   help="seconds to receive a request's headers, and then its body; slower clients get HTTP 408 "
                        "(default: %(default)s)")
    p.add_argument("--idle-timeout", type=float, default=ConnectionLimits.idle_timeout,
                   help="seconds a keep-alive connection may wait for its next request (default: %(default)s)")
    p.add_argument("--all-versions", action="store_true",
                   help="load every version, not only the newest (TF Serving's 'all' version policy)")
    p.add_argument("--label", action="append", default=[], metavar="LABEL=VERSION",
                   help="version label for /labels/LABEL URLs, e.g. stable=1 (repeatable; the version is loaded)")
    _add_batching_options(p)
    p.set_defaults(func=cmd_serve)

    # Listed for --help only: main() hands `model-server` to tfqa.apps.model_server, whose flags are TF Serving's.
    sub.add_parser("model-server", add_help=False,
                   help="serve exports like tensorflow_model_server: gRPC and REST, its flags and config files")

    p = sub.add_parser("ask", help="ask a model questions about a context (a running server, or a run/export here)",
                       description=cmd_ask.__doc__ + " The context comes from --context, --context-file or stdin.")
    answerer = p.add_mutually_exclusive_group(required=True)
    answerer.add_argument("--server", default=None, help="model URL, e.g. http://localhost:8501/v1/models/tfqa")
    answerer.add_argument("--model", default=None,
                          help="answer here, without a server: a training run's --output_dir or an export (base "
                               "directory, its newest version is used, or one version directory)")
    p.add_argument("--question", required=True, action="append", help="a question (repeat for several: one call)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--context", default=None, help="the context text")
    source.add_argument("--context-file", default=None, help="a UTF-8 file holding the context")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, default=None, help="ask this model version (default: the newest)")
    which.add_argument("--label", default=None, help="ask the version with this label")
    p.add_argument("--signature-name", default=SERVING_DEFAULT, help="signature to call (default: %(default)s)")
    p.add_argument("--format", choices=("row", "columnar"), default="row",
                   help="request layout: instances (row) or inputs (columnar) (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="questions per request (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object per question instead of the answer text")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("demo", help="a web page to ask a model questions about a passage",
                       description=cmd_demo.__doc__ + " The answers come from an export directory loaded here "
                       "(--model) or from a running TF Serving / `python -m tfqa serve` (--server).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", default=None, help="export base directory (its newest version is loaded)")
    source.add_argument("--server", default=None, help="model URL, e.g. http://localhost:8501/v1/models/tfqa")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="port, 0 for any free one (default: %(default)s)")
    _add_batching_options(p)
    p.set_defaults(func=cmd_demo)
    for command in sub.choices.values():
        command.add_argument("--verbose", action="store_true",
                             help="also show TensorFlow's and transformers' start-up and loading messages")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m tfqa` and of the `tfqa` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["model-server"]:
        from tfqa.apps.model_server import run_model_server

        return run_model_server(argv[1:], f"{_prog()} model-server")
    quiet_startup(verbose="--verbose" in argv)  # before anything imports TensorFlow
    args = build_parser().parse_args(argv)
    return guarded("tfqa", lambda: _use_backend_of(args) or args.func(args))


def _use_backend_of(args) -> None:
    """Readies the process for the backend of the run folder a command loads, before the command imports
    TensorFlow (which Keras `tf.keras` is: `tfqa.core.keras_choice`). Exports need none: they are SavedModels."""
    from tfqa.core.run_dir import saved_model_backend
    from tfqa.modeling.backend import backend_named

    model = getattr(args, "model", None)
    if args.func is cmd_convert:
        backend = "transformers"  # it reads the transformers run it converts (the keras_hub side is Keras 3 anyway)
    else:
        backend = saved_model_backend(model) if model is not None else None
    if backend is not None:
        backend_named(backend).use()


if __name__ == "__main__":
    raise SystemExit(main())
