"""Distillation on the smoke corpus: a small student trained with a fine-tuned teacher vs without one.

    python -m bench.distill_smoke [--teacher-steps 508] [--student-steps 508] [--alpha 0.5] [--temperature 2]
                                  [--train-paragraphs 300] [--dev-paragraphs 100] [--seeds 0]
                                  [--student-dim 64] [--student-layers 1]

1. A teacher (`tiny_distilbert`, hidden size 64, 2 layers: the smoke preset's
   model) is fine-tuned on the synthetic smoke corpus (`tfqa.core.synthetic`).
2. A smaller student (by default hidden size 64, 1 layer) is trained for the same number of
   steps, from the same initialisation and data order (same seed), twice:
   with the teacher (`tfqa.training.distill.DistillationModel` through `tfqa.training.fitting.fit`)
   and without (the plain hard-label loss).
3. All three are scored on the dev corpus (EM/F1, SQuAD 2.0), and the students'
   soft cross-entropy to the teacher (T² × mean of start/end, at the
   distillation temperature) is measured on the dev windows before and after training.

Everything runs through tfqa's `fit` (AdamW, warmup 10%, lr 1e-3, batch 32,
max_seq_length 64 as in the smoke preset). Prints one JSON line per seed plus a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time

from tfqa import use_backend  # noqa: E402

use_backend("transformers")  # tf.keras = tf-keras, before TensorFlow loads (tfqa.core.keras_choice)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfqa.core.config import TrainConfig  # noqa: E402
from tfqa.core.squad import parse_squad_json  # noqa: E402
from tfqa.training.distill import DistillationModel  # noqa: E402
from tfqa.training.distill_loss import soft_cross_entropy  # noqa: E402
from tfqa.core.features import prepare_features  # noqa: E402
from tfqa.core.metrics import squad_metrics  # noqa: E402
from tfqa.modeling.checkpoints import tiny_distilbert  # noqa: E402
from tfqa.modeling.pipeline import predict_dataset  # noqa: E402
from tfqa.core.synthetic import synthetic_squad  # noqa: E402
from tfqa.modeling.pipeline import input_names  # noqa: E402
from tfqa.modeling.prediction import predict_answers  # noqa: E402
from tfqa.training.fitting import fit  # noqa: E402
from tfqa.training.strategies import make_strategy  # noqa: E402
from tfqa.core.vocab import train_wordpiece  # noqa: E402

SMOKE = dict(version_2_with_negative=True, max_seq_length=64, doc_stride=24, max_query_length=16,
             per_replica_batch_size=32, learning_rate=1e-3, warmup_ratio=0.1, eval_batch_size=128)
TEACHER = dict(dim=64, n_layers=2, n_heads=4)
STUDENT = dict(dim=64, n_layers=1, n_heads=2)  # 32 wide did not learn in 508 steps (F1 12.85 = always "no answer")


def _quiet_fit(model, features, config, steps: int, strategy):
    """`tfqa.training.fitting.fit` for about `steps` optimizer steps (whole epochs of ceil(steps / epochs) steps)."""
    per_pass = math.ceil(len(features) / config.per_replica_batch_size)
    config = dataclasses.replace(config, num_train_epochs=steps / per_pass)
    return fit(model, features, config, strategy, verbose=0)


def _logits(model, features, batch: int = 128):
    outputs = model.predict(predict_dataset(features, batch, input_names(model)), verbose=0)
    return np.asarray(outputs["start_logits"], np.float32), np.asarray(outputs["end_logits"], np.float32)


def soft_loss_to(teacher_logits, student, features, temperature: float) -> float:
    """Mean over the windows of T² × (soft CE start + soft CE end) / 2 of `student` to the teacher's logits."""
    start, end = _logits(student, features)
    mask = features.attention_mask
    soft = (soft_cross_entropy(start, teacher_logits[0], mask, temperature)
            + soft_cross_entropy(end, teacher_logits[1], mask, temperature)) / 2.0
    return float(temperature ** 2 * tf.reduce_mean(soft))


def score(model, features, examples, config) -> dict:
    predictions, _, null_odds = predict_answers(model, features, examples, config.decoding, config.eval_batch_size)
    metrics = squad_metrics(examples, predictions, na_probs=null_odds or None)
    return {"em": round(metrics.get("exact_match", metrics.get("exact")), 2), "f1": round(metrics["f1"], 2)}


def prepare(train_paragraphs: int = 300, dev_paragraphs: int = 100):
    """(tokenizer, train features, dev features, dev examples, config) on the smoke corpus."""
    config = TrainConfig(**SMOKE)
    train, _ = parse_squad_json(synthetic_squad(train_paragraphs, seed=1, name_offset=0), source="train")
    dev, _ = parse_squad_json(synthetic_squad(dev_paragraphs, seed=2), source="dev")
    tokenizer = train_wordpiece([e.context for e in train] + [e.question for e in train], vocab_size=2000,
                                token_type_ids=False)
    settings = dict(max_seq_length=config.max_seq_length, doc_stride=config.doc_stride,
                    max_query_length=config.max_query_length)
    return tokenizer, prepare_features(train, tokenizer, **settings), prepare_features(dev, tokenizer, **settings), \
        dev, config


def train_teacher(tokenizer, features, config, steps: int, seed: int = 0, strategy=None, **dims):
    strategy = strategy or make_strategy()
    with strategy.scope():
        teacher = tiny_distilbert(len(tokenizer), config.max_seq_length, seed=seed, **{**TEACHER, **dims})
    _quiet_fit(teacher, features, dataclasses.replace(config, seed=seed), steps, strategy)
    return teacher


def compare_students(teacher, tokenizer, features, dev_features, dev, config, steps: int, seed: int = 0,
                     alpha: float = 0.5, temperature: float = 2.0, strategy=None, **dims) -> dict:
    """Trains the same student (same seed: initialisation, data order) with and without the teacher."""
    strategy = strategy or make_strategy()
    config = dataclasses.replace(config, seed=seed)
    teacher_logits = _logits(teacher, dev_features)
    result = {"steps": steps, "seed": seed, "alpha": alpha, "temperature": temperature,
              "teacher": score(teacher, dev_features, dev, config)}
    for name in ("distilled", "baseline"):
        with strategy.scope():
            student = tiny_distilbert(len(tokenizer), config.max_seq_length, seed=1000 + seed,
                                      **{**STUDENT, **dims})
            trainee = DistillationModel(student, teacher, alpha, temperature) if name == "distilled" else student
        before = soft_loss_to(teacher_logits, student, dev_features, temperature)
        start = time.perf_counter()
        history = _quiet_fit(trainee, features, config, steps, strategy).history
        seconds = time.perf_counter() - start
        result[name] = {**score(student, dev_features, dev, config),
                        "soft_loss_to_teacher_before": round(before, 4),
                        "soft_loss_to_teacher_after": round(soft_loss_to(teacher_logits, student, dev_features,
                                                                         temperature), 4),
                        "train_loss_per_epoch": [round(v, 4) for v in history["loss"]],
                        "seconds": round(seconds, 1)}
        if name == "distilled":
            result[name]["train_soft_loss_per_epoch"] = [round(v, 4) for v in history["soft_loss"]]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-steps", type=int, default=508, help="the smoke preset's 4 epochs × 127 steps")
    parser.add_argument("--student-steps", type=int, default=508)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--train-paragraphs", type=int, default=300)
    parser.add_argument("--dev-paragraphs", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--student-dim", type=int, default=STUDENT["dim"])
    parser.add_argument("--student-layers", type=int, default=STUDENT["n_layers"])
    args = parser.parse_args(argv)

    student = {**STUDENT, "dim": args.student_dim, "n_layers": args.student_layers}
    tokenizer, features, dev_features, dev, config = prepare(args.train_paragraphs, args.dev_paragraphs)
    print(f"smoke corpus: {len(features)} train windows, {len(dev)} dev questions ({len(dev_features)} windows); "
          f"teacher {TEACHER} {args.teacher_steps} steps, student {student} {args.student_steps} steps, "
          f"alpha {args.alpha}, T {args.temperature}", file=sys.stderr)
    start = time.perf_counter()
    teacher = train_teacher(tokenizer, features, config, args.teacher_steps)
    print(f"teacher trained in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    rows = []
    for seed in args.seeds:
        result = compare_students(teacher, tokenizer, features, dev_features, dev, config, args.student_steps,
                                  seed=seed, alpha=args.alpha, temperature=args.temperature, **student)
        print(json.dumps(result), flush=True)
        rows.append(result)
    print(f"\n{'seed':>4}  {'teacher EM/F1':>14}  {'distilled EM/F1':>16}  {'no teacher EM/F1':>17}  "
          f"{'soft CE to teacher: distilled / no teacher':>42}")
    for r in rows:
        d, b, t = r["distilled"], r["baseline"], r["teacher"]
        print(f"{r['seed']:>4}  {t['em']:6.2f}/{t['f1']:6.2f}  {d['em']:7.2f}/{d['f1']:7.2f}  "
              f"{b['em']:8.2f}/{b['f1']:7.2f}  {d['soft_loss_to_teacher_after']:>21.4f} / "
              f"{b['soft_loss_to_teacher_after']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
