"""Answer decoding speed: vectorised tfqa.decode_predictions vs a per-example double loop.

    python -m bench.decoding_speed [--data dev-v1.1.json.gz] [--repeats 3]

Logits are synthetic but shaped like a trained model's: noise over the real
tokens, very low values on padding, and a peak near the gold answer. Both
decoders get the same windows of the full dev set. Two races, each checked for
identical outputs:
- answers (predictions and null odds): the headline ratio (target ≥ 10×);
- answers plus the full n-best lists (`nbest_predictions.json`), where both
  sides spend most of their time building ~20 small dicts per question.
The contenders alternate within each round (best round counts), with a floor
beside them: one `np.partition` of each logits matrix, which finds the top-20
start and end candidates of every window unsorted — the least work any
top-20 × top-20 decoder does before it looks at a single span.
"""

from __future__ import annotations

import numpy as np

from tests.reference import loop_decode
import os

from bench.common import alternate, machine_line, parse_bench_args
from tfqa import decode_predictions, prepare_features


def synthetic_logits(features, seed: int = 0):
    """Noise on real tokens, -10 on padding, +4 at the labelled start/end."""
    rng = np.random.default_rng(seed)
    shape = features.input_ids.shape
    rows = np.arange(shape[0])
    logits = []
    for labels in (features.start_positions, features.end_positions):
        x = rng.normal(size=shape).astype(np.float32)
        x[features.attention_mask == 0] = -10.0
        x[rows, labels] += 4.0
        logits.append(x)
    return logits


def same_nbest(a, b) -> bool:
    """Equal n-best lists (probabilities to 1e-12: they are normalised in a different order)."""
    for key in a:
        if len(a[key]) != len(b[key]):
            return False
        for x, y in zip(a[key], b[key]):
            if any(x[f] != y[f] for f in ("text", "start_logit", "end_logit", "answer_start")):
                return False
            if abs(x["probability"] - y["probability"]) > 1e-12:
                return False
    return a.keys() == b.keys()


def top_k_floor(start_logits, end_logits, k: int = 20):
    """The top-k candidates of every window, unsorted: one partition per logits matrix."""
    width = start_logits.shape[1]
    return [np.partition(x, width - k, axis=1)[:, width - k:] for x in (start_logits, end_logits)]


def main() -> None:
    load_before = os.getloadavg()[0]
    args, examples, tokenizer, vocab = parse_bench_args(__doc__)
    v2 = any(e.is_impossible for e in examples)
    features = prepare_features(examples, tokenizer)
    start_logits, end_logits = synthetic_logits(features)
    kwargs = dict(n_best_size=20, max_answer_length=30, version_2_with_negative=v2)
    data = (examples, features, start_logits, end_logits)

    def ours_full():
        predictions, nbest, null_odds = decode_predictions(*data, **kwargs)
        return predictions, dict(nbest), null_odds

    best = alternate(args.repeats, {
        "vectorised": lambda: decode_predictions(*data, **kwargs),
        "loop": lambda: loop_decode(*data, with_nbest=False, **kwargs),
        "vectorised + n-best": ours_full,
        "loop + n-best": lambda: loop_decode(*data, **kwargs),
        "floor": lambda: top_k_floor(start_logits, end_logits, kwargs["n_best_size"]),
    })
    (t_vec, ours), (t_loop, loop) = best["vectorised"], best["loop"]
    (t_vec_full, ours_all), (t_loop_full, loop_all) = best["vectorised + n-best"], best["loop + n-best"]
    t_floor = best["floor"][0]
    if ours[0] != loop[0] or ours[2] != loop[2]:
        raise SystemExit("MISMATCH: vectorised and loop decoding disagree on the answers")
    if ours_all[0] != loop_all[0] or not same_nbest(ours_all[1], loop_all[1]):
        raise SystemExit("MISMATCH: vectorised and loop decoding disagree on the n-best lists")

    print(f"command: python -m bench.decoding_speed --data {args.data} --repeats {args.repeats}")
    print(f"data: {args.data} ({len(examples)} questions, {len(features)} windows), tokenizer: {vocab}")
    print("identical predictions" + (", null odds" if v2 else "") + " and n-best lists")
    print(f"answers   loop (top-20 x top-20 per window): {t_loop:7.3f} s   vectorised: {t_vec:7.3f} s   "
          f"ratio: {t_loop / t_vec:5.1f}x (target >= 10x)   vectorised / floor: {t_vec / t_floor:5.1f}x")
    print(f"+ n-best  loop:                              {t_loop_full:7.3f} s   vectorised: {t_vec_full:7.3f} s   "
          f"ratio: {t_loop_full / t_vec_full:5.1f}x   vectorised / floor: {t_vec_full / t_floor:5.1f}x")
    print(f"floor (one np.partition of each logits matrix: the top-20 candidates, unsorted): {t_floor:7.3f} s")
    print(machine_line(load_before))


if __name__ == "__main__":
    main()
