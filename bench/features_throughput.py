"""Feature preparation throughput: tfqa vs the standard one-call-over-all-pairs approach, and the floor.

    python -m bench.features_throughput [--data dev-v1.1.json.gz] [--repeats 3]

Three contenders alternate within each round on the same examples and
tokenizer; the fastest round of each counts:
- standard: HF `run_qa`'s one tokenizer call over every (question, context)
  pair with overflowing windows, then a Python labelling loop (`tests/reference.py`);
- tfqa: `tfqa.prepare_features`;
- floor: the Rust tokenizer's `encode_batch` alone on the distinct contexts
  and the distinct questions — the work no layout of windows can skip.
The script checks that tfqa and standard give identical input_ids, masks,
token types, offsets and labels for every window, then prints questions/s,
the ratio to the standard approach (target ≥ 4×) and tfqa's time over the
floor (target ≤ 1.5×).
"""

from __future__ import annotations

import os
import time

import numpy as np

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

from tests.reference import standard_features  # noqa: E402
from bench.common import alternate, machine_line, parse_bench_args  # noqa: E402
from tfqa import prepare_features  # noqa: E402
from tfqa.core.tokenization import rust_tokenizer  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402


def encode_floor(backend, contexts, questions) -> tuple[float, float]:
    """(contexts, questions): seconds of `encode_batch` on each (no special tokens, as tfqa calls it)."""
    start = time.perf_counter()
    backend.encode_batch(contexts, add_special_tokens=False)
    middle = time.perf_counter()
    backend.encode_batch(questions, add_special_tokens=False)
    return middle - start, time.perf_counter() - middle


def main() -> None:
    load_before = os.getloadavg()[0]
    args, examples, tokenizer, vocab = parse_bench_args(__doc__)
    # A copy: the standard approach leaves the transformers tokenizer's own backend set to truncate.
    backend = Tokenizer.from_str(rust_tokenizer(tokenizer).backend.to_str())
    contexts = list(dict.fromkeys(e.context for e in examples))
    questions = list(dict.fromkeys(e.question.lstrip() for e in examples))
    best = alternate(args.repeats, {
        "tfqa": lambda: prepare_features(examples, tokenizer),
        "standard": lambda: standard_features(examples, tokenizer),
        "floor": lambda: encode_floor(backend, contexts, questions),
    })
    (t_ours, ours), (t_std, std), (t_floor, floor_parts) = best["tfqa"], best["standard"], best["floor"]

    for name, theirs in std.items():
        mine = ours.offsets if name == "offsets" else getattr(ours, name)
        if not np.array_equal(mine, theirs):
            raise SystemExit(f"MISMATCH in {name}: tfqa and the standard approach disagree")
    n = len(examples)
    print(f"command: python -m bench.features_throughput --data {args.data} --repeats {args.repeats}")
    print(f"data: {args.data} ({n} questions, {len(contexts)} contexts, {len(ours)} windows), tokenizer: {vocab}")
    print(f"identical outputs for every window: {', '.join(std)}")
    print(f"standard (pairs + overflow + labelling loop): {t_std:7.3f} s  {n / t_std:9.0f} questions/s")
    print(f"tfqa.prepare_features (contexts once):        {t_ours:7.3f} s  {n / t_ours:9.0f} questions/s")
    print(f"floor (encode_batch: contexts {floor_parts[0]:.3f} s + questions {floor_parts[1]:.3f} s): "
          f"{t_floor:7.3f} s")
    print(f"ratio tfqa / standard: {t_std / t_ours:.2f}x (target >= 4x)   tfqa / floor: {t_ours / t_floor:.2f}x "
          f"(target <= 1.5x)   standard / floor: {t_std / t_floor:.2f}x")
    print(machine_line(load_before))


if __name__ == "__main__":
    main()
