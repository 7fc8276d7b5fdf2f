"""Answer decoding speed: vectorised tfqa.decode_predictions vs a per-example double loop.

    python -m bench.decoding_speed [--data dev-v1.1.json.gz] [--repeats 3]

Logits are synthetic but shaped like a trained model's: noise over the real
tokens, very low values on padding, and a peak near the gold answer. Both
decoders get the same windows of the full dev set. Two races, each checked for
identical outputs:
- answers (predictions and null odds): the headline ratio (target ≥ 10×);
- answers plus the full n-best lists (`nbest_predictions.json`), where both
  sides spend most of their time building ~20 small dicts per question.
"""

from __future__ import annotations

import numpy as np

from tests.reference import loop_decode
from bench.common import best_of, parse_bench_args
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


def main() -> None:
    args, examples, tokenizer, vocab = parse_bench_args(__doc__)
    v2 = any(e.is_impossible for e in examples)
    features = prepare_features(examples, tokenizer)
    start_logits, end_logits = synthetic_logits(features)
    kwargs = dict(n_best_size=20, max_answer_length=30, version_2_with_negative=v2)

    def ours_full():
        predictions, nbest, null_odds = decode_predictions(examples, features, start_logits, end_logits, **kwargs)
        return predictions, dict(nbest), null_odds

    t_vec, ours = best_of(args.repeats, decode_predictions, examples, features, start_logits, end_logits, **kwargs)
    t_loop, loop = best_of(args.repeats, loop_decode, examples, features, start_logits, end_logits,
                           with_nbest=False, **kwargs)
    if ours[0] != loop[0] or ours[2] != loop[2]:
        raise SystemExit("MISMATCH: vectorised and loop decoding disagree on the answers")
    t_vec_full, ours_all = best_of(args.repeats, ours_full)
    t_loop_full, loop_all = best_of(args.repeats, loop_decode, examples, features, start_logits, end_logits,
                                    **kwargs)
    if ours_all[0] != loop_all[0] or not same_nbest(ours_all[1], loop_all[1]):
        raise SystemExit("MISMATCH: vectorised and loop decoding disagree on the n-best lists")

    print(f"data: {args.data} ({len(examples)} questions, {len(features)} windows), tokenizer: {vocab}")
    print("identical predictions" + (", null odds" if v2 else "") + " and n-best lists")
    print(f"answers   loop (top-20 x top-20 per window): {t_loop:7.3f} s   vectorised: {t_vec:7.3f} s   "
          f"ratio: {t_loop / t_vec:5.1f}x (target >= 10x)")
    print(f"+ n-best  loop:                              {t_loop_full:7.3f} s   vectorised: {t_vec_full:7.3f} s   "
          f"ratio: {t_loop_full / t_vec_full:5.1f}x")


if __name__ == "__main__":
    main()
