"""Feature preparation throughput: tfqa vs the standard one-call-over-all-pairs approach.

    python -m bench.features_throughput [--data dev-v1.1.json.gz] [--repeats 3]

Both run side by side on the same examples and tokenizer; the script checks that
they produce identical input_ids, masks, token types, offsets and labels, then
prints questions/s for each and the ratio (target ≥ 4×).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

from tests.reference import standard_features  # noqa: E402
from bench.common import best_of, parse_bench_args  # noqa: E402
from tfqa import prepare_features  # noqa: E402


def main() -> None:
    args, examples, tokenizer, vocab = parse_bench_args(__doc__)
    t_ours, ours = best_of(args.repeats, prepare_features, examples, tokenizer)
    t_std, std = best_of(args.repeats, standard_features, examples, tokenizer)

    for name, theirs in std.items():
        mine = ours.offsets if name == "offsets" else getattr(ours, name)
        if not np.array_equal(mine, theirs):
            raise SystemExit(f"MISMATCH in {name}: tfqa and the standard approach disagree")
    n = len(examples)
    print(f"data: {args.data} ({n} questions, {len(ours)} windows), tokenizer: {vocab}")
    print(f"identical outputs: {', '.join(std)}")
    print(f"standard (pairs + overflow + labelling loop): {t_std:7.3f} s  {n / t_std:9.0f} questions/s")
    print(f"tfqa.prepare_features (contexts once):        {t_ours:7.3f} s  {n / t_ours:9.0f} questions/s")
    print(f"ratio: {t_std / t_ours:.1f}x (target >= 4x)")


if __name__ == "__main__":
    main()
