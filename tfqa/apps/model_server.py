"""`tfqa model-server` and `tfqa-model-server`: tensorflow_model_server's command line, served locally.

The flags both servers have, with TF Serving's names, forms (`--port=8500`,
`--enable_batching` or `--enable_batching=true`) and defaults, so the `command:`
of `serve/docker-compose.yml` runs here unchanged apart from its paths:

    --port                            gRPC port (8500)
    --rest_api_port                   REST port (0: no REST API, TF Serving's default)
    --model_name, --model_base_path   one model, its newest version
    --model_config_file               ModelServerConfig text proto (several models, version policies, labels)
    --file_system_poll_wait_seconds   how often TF Serving looks for new versions
    --enable_batching, --batching_parameters_file
    --monitoring_config_file          MonitoringConfig: Prometheus metrics on the REST port
    --rest_api_timeout_in_ms          a REST predict not answered in time gets 504

TF Serving flags this server does not implement (`--tensorflow_intra_op_parallelism=2`,
`--rest_api_num_threads=8`, ...) get one note line and are ignored; `--host`
(default 127.0.0.1, TF Serving listens on every address) is tfqa's. gRPC and
REST serve the same models (`tfqa.serving.live.ServedModels`: new versions
picked up as TF Serving picks them up) through one batching queue and one set
of metrics.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from tfqa.apps.boundary import guarded
from tfqa.apps.console import CONSOLE
from tfqa.apps.quiet import quiet_startup
from tfqa.core.errors import TfqaError

MAX_TIMEOUT_MS = 2**31 - 1  # TF Serving's flags are int32


class ModelServerFlagError(TfqaError, ValueError):
    """A flag value the model server cannot use; one line naming the flag."""


def _flag_bool(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise argparse.ArgumentTypeError(f"expected true or false, not '{text}'")
    return value in ("true", "1")


def build_parser(prog: str = "tfqa model-server") -> argparse.ArgumentParser:
    """The parser of `tfqa model-server` (TF Serving's flag names; see the module docstring)."""
    p = argparse.ArgumentParser(prog=prog, allow_abbrev=False, description=__doc__.split("\n\n")[0] + " Serves "
                                "TF Serving's gRPC and REST APIs from one process, for machines without Docker.")
    p.add_argument("--port", type=int, default=8500, help="gRPC port, 0 for any free one (default: %(default)s)")
    p.add_argument("--rest_api_port", type=int, default=0,
                   help="REST port; 0 serves no REST API, as in TF Serving (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address both APIs listen on (tfqa's; default: %(default)s)")
    p.add_argument("--model_name", default="default", help="name of the --model_base_path model (default: %(default)s)")
    p.add_argument("--model_base_path", default=None, help="export base directory holding versions 1/, 2/, ...")
    p.add_argument("--model_config_file", default=None,
                   help="ModelServerConfig text proto, e.g. serve/models.config (instead of the two flags above)")
    p.add_argument("--file_system_poll_wait_seconds", type=int, default=1,
                   help="seconds between looks for new versions, 0 for none (default: %(default)s)")
    p.add_argument("--enable_batching", type=_flag_bool, nargs="?", const=True, default=False,
                   help="merge concurrent requests (gRPC and REST alike) into batched model calls")
    p.add_argument("--batching_parameters_file", default=None, help="BatchingParameters text proto")
    p.add_argument("--monitoring_config_file", default=None,
                   help="MonitoringConfig text proto: prometheus_config { enable: true path: \"...\" }")
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=30000,
                   help="a REST predict not answered within this gets 504 (default: %(default)s)")
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's start-up and loading messages")
    return p


def parse_model_server_args(argv: list[str], prog: str = "tfqa model-server") -> tuple[argparse.Namespace, list[str]]:
    """(flags, the TF Serving flags given that this server ignores); ModelServerFlagError for a bad value."""
    args, unknown = build_parser(prog).parse_known_args(argv)
    strays = [token for token in unknown if not token.startswith("--")]
    if strays:
        raise ModelServerFlagError(f"unexpected argument '{strays[0]}' (TF Serving flags are written --name=value)")
    problems = [f"--{name} {value} is not a TCP port (0-65535)" for name, value in
                (("port", args.port), ("rest_api_port", args.rest_api_port)) if not 0 <= value <= 65535]
    if args.port and args.port == args.rest_api_port:
        problems.append(f"--port and --rest_api_port are both {args.port}; gRPC and REST need a port each")
    if not 0 < args.rest_api_timeout_in_ms <= MAX_TIMEOUT_MS:
        problems.append(f"--rest_api_timeout_in_ms must be 1-{MAX_TIMEOUT_MS}, not {args.rest_api_timeout_in_ms}")
    if not 0 <= args.file_system_poll_wait_seconds <= MAX_TIMEOUT_MS:
        problems.append(f"--file_system_poll_wait_seconds must be 0-{MAX_TIMEOUT_MS}, not "
                        f"{args.file_system_poll_wait_seconds}")
    if not args.model_config_file and not args.model_base_path:
        problems.append("give --model_base_path (with --model_name) or --model_config_file")
    if args.batching_parameters_file and not args.enable_batching:
        problems.append("--batching_parameters_file is read only with --enable_batching")
    if problems:
        raise ModelServerFlagError("; ".join(problems))
    return args, unknown


def serve_models(args, ignored: list[str]) -> int:
    """Loads the models and serves them over gRPC (and REST with --rest_api_port) until SIGINT/SIGTERM."""
    from tfqa.grpcapi.server import start_grpc_server
    from tfqa.rest.http import base_url, listen, run_server
    from tfqa.rest.server import build_app
    from tfqa.serving.batching import Batcher
    from tfqa.serving.batching_config import read_batching_parameters
    from tfqa.serving.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INSTANCES
    from tfqa.serving.live import load_models
    from tfqa.serving.metrics import read_monitoring_config
    from tfqa.serving.model_config import ModelSpec, read_model_config
    from tfqa.serving.servables import check_model_name, find_versions

    if ignored:
        CONSOLE.line(f"note: ignoring TF Serving flags this server does not implement: {' '.join(ignored)}")
    if args.model_config_file and args.model_base_path:
        CONSOLE.line("note: --model_config_file is used; --model_name/--model_base_path are ignored, as in TF Serving")
    metrics = read_monitoring_config(args.monitoring_config_file) if args.monitoring_config_file else None
    if metrics is not None and not args.rest_api_port:
        CONSOLE.line("note: the Prometheus metrics are served on the REST port; --rest_api_port is 0, so nowhere")
    batching = read_batching_parameters(args.batching_parameters_file) if args.enable_batching else None
    if args.model_config_file:
        specs = read_model_config(args.model_config_file)
    else:  # the one-model config TF Serving builds from the two flags
        check_model_name(args.model_name)
        specs = [ModelSpec(args.model_name, Path(args.model_base_path))]
    for spec in specs:
        find_versions(spec.base_path)  # fails fast, before the ports and TensorFlow
    rest_sock = listen(args.host, args.rest_api_port) if args.rest_api_port else None
    models = load_models(specs, CONSOLE)
    if metrics is not None:
        for model in models.models.values():
            for servable in model.servables.values():
                metrics.load(servable.path, ok=True)
        models.on_load = metrics.load
    batcher = Batcher(batching, metrics) if batching else None
    grpc_server, grpc_port = start_grpc_server(models, args.host, args.port, max_message_bytes=DEFAULT_MAX_BODY_BYTES,
                                               max_instances=DEFAULT_MAX_INSTANCES, batcher=batcher, metrics=metrics)
    banner = f"Serving {describe(models)} over gRPC at {args.host}:{grpc_port}"
    models.start_polling(args.file_system_poll_wait_seconds)
    try:
        if rest_sock is None:
            CONSOLE.line(banner)
            _wait_for_a_stop_signal()
        else:
            app = build_app(models, batcher=batcher, metrics=metrics, request_timeout=args.rest_api_timeout_in_ms / 1000)
            # uvicorn shuts down on SIGTERM, then re-raises it under the handler it found: with the default one the
            # process would die there, before the gRPC server below is stopped.
            signal.signal(signal.SIGTERM, lambda *_: None)
            run_server(app, rest_sock, f"{banner} and REST at {base_url(args.host, rest_sock)}/v1/models/{models.name}",
                       CONSOLE)
    finally:
        models.close()
        grpc_server.stop(grace=5).wait()
        if batcher is not None:
            batcher.close()
    return 0


def describe(models) -> str:
    """'tfqa (versions 1, 2), other (version 1)': the served models for the start-up line."""
    return ", ".join(f"{name} (version{'s' if len(m.servables) > 1 else ''} {', '.join(map(str, m.servables))})"
                     for name, m in models.models.items())


def _wait_for_a_stop_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def run_model_server(argv: list[str], prog: str = "tfqa model-server") -> int:
    """`tfqa model-server ARGV` inside the error boundary; returns the exit status."""
    quiet_startup(verbose="--verbose" in argv)
    return guarded("tfqa-model-server" if prog == "tfqa-model-server" else "tfqa",
                   lambda: serve_models(*parse_model_server_args(argv, prog)))


def model_server_main() -> int:
    """The `tfqa-model-server` console script."""
    return run_model_server(sys.argv[1:], "tfqa-model-server")
