"""Fine-tuning and evaluation: strategy, optimizer, Keras `fit`, outputs (callbacks: `tfqa.callbacks`).

`train_and_evaluate(config)` is the whole run behind `train_keras.py`: load the
data and the checkpoint, fine-tune with AdamW (linear warmup then linear decay,
no weight decay on LayerNorm and bias, global-norm clipping) under
`tf.distribute.MirroredStrategy`, evaluate after every epoch, and leave a
`save_pretrained` model + tokenizer and the prediction files in `output_dir`,
with the per-step losses and per-epoch metrics in `history.json` and drawn in
`training.png` after every epoch (`tfqa.report`, `tfqa.plots`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfqa.callbacks import PredictProgress, RecordHistory, StopOnNaN  # noqa: E402
from tfqa.config import TrainConfig  # noqa: E402
from tfqa.data import load_squad, squad_version  # noqa: E402
from tfqa.decoding import decode_predictions  # noqa: E402
from tfqa.features import prepare_features  # noqa: E402
from tfqa.files import write_json_atomic  # noqa: E402
from tfqa.metrics import squad_metrics  # noqa: E402
from tfqa.modeling import float32_logits, precision  # noqa: E402
from tfqa.pipeline import predict_dataset, train_dataset  # noqa: E402
from tfqa.progress import Progress  # noqa: E402
from tfqa.report import RESULTS_FILE, SETTINGS_FILE  # noqa: E402


def make_strategy(devices: list[str] | None = None, name: str = "auto") -> tf.distribute.Strategy:
    """The strategy for `--strategy name` (`tfqa.distribute.make_strategy`); `devices`: mirror over exactly those.

    "auto" on one machine: MirroredStrategy over every visible GPU, the default
    strategy on a CPU-only one.
    """
    from tfqa.distribute import make_strategy as _make

    return _make(name, devices)


def make_optimizer(config: TrainConfig, total_steps: int):
    """AdamW: linear warmup over `warmup_ratio` of the steps, then linear decay to 0."""
    from transformers import create_optimizer

    optimizer, _ = create_optimizer(
        init_lr=config.learning_rate, num_train_steps=total_steps,
        num_warmup_steps=int(config.warmup_ratio * total_steps), weight_decay_rate=config.weight_decay,
        adam_global_clipnorm=config.max_grad_norm or None)
    return optimizer


def predict_answers(model, features, examples, config: TrainConfig, batch_size: int,
                    progress: Progress | None = None):
    """Runs the model over the features and decodes: (predictions, nbest, null_odds).

    Shows its progress on stderr: through `progress` when given (the caller
    ends it), else with its own start and end lines.
    """
    own = progress is None
    if own:
        progress = Progress(f"predicting {len(examples):,} questions ({len(features):,} windows)")
    batches = math.ceil(len(features) / batch_size)
    outputs = model.predict(predict_dataset(features, batch_size, input_names(model)), verbose=0,
                            callbacks=[PredictProgress(progress, batches)])
    answers = decode_predictions(
        examples, features, np.asarray(outputs["start_logits"]), np.asarray(outputs["end_logits"]),
        n_best_size=config.n_best_size, max_answer_length=config.max_answer_length,
        version_2_with_negative=config.version_2_with_negative,
        null_score_diff_threshold=config.null_score_diff_threshold)
    if own:
        progress.done()
    return answers


def input_names(model) -> set[str]:
    """The inputs a Transformers TF model's call takes (its serving signature names them)."""
    return set(model.input_signature)


class EvaluateEachEpoch(tf.keras.callbacks.Callback):
    """Scores the dev set after every epoch; adds `eval_exact`/`eval_f1` to the epoch logs."""

    def __init__(self, features, examples, config, batch_size):
        super().__init__()
        self.features, self.examples, self.config, self.batch_size = features, examples, config, batch_size
        self.history: list[dict] = []

    def on_epoch_end(self, epoch, logs=None):
        if self.params.get("verbose") == 1:  # Keras' progress bar (stdout) is mid-line until the epoch's end
            print(flush=True)
        progress = Progress(f"epoch {epoch + 1}: evaluating {len(self.examples):,} questions "
                            f"({len(self.features):,} windows)")
        predictions, _, null_odds = predict_answers(self.model, self.features, self.examples, self.config,
                                                    self.batch_size, progress)
        metrics = squad_metrics(self.examples, predictions, na_probs=null_odds or None)
        exact = metrics.get("exact_match", metrics.get("exact"))
        if logs is not None:
            logs["eval_exact"], logs["eval_f1"] = exact, metrics["f1"]
        self.history.append({"epoch": epoch + 1, "loss": (logs or {}).get("loss"), **metrics})
        progress.done(f": eval EM {exact:.2f} F1 {metrics['f1']:.2f}")


def load_examples(source: str, limit: int):
    examples = load_squad(source)
    return examples[:limit] if limit else examples


def build_model_and_tokenizer(config: TrainConfig, texts):
    """The checkpoint named by the config, or for the smoke preset a tiny model with a vocab from `texts`."""
    if config.preset == "smoke":
        from tfqa.modeling import tiny_distilbert
        from tfqa.vocab import tokenizer_from_vocab, train_wordpiece, write_vocab

        # WordPiece training is not reproducible token for token across processes, so the vocab of
        # the first run is kept: a resumed run must rebuild exactly the model its backup holds.
        vocab = Path(config.output_dir) / "smoke_vocab.txt"
        if vocab.exists():
            tokenizer = tokenizer_from_vocab(vocab, token_type_ids=False)
        else:
            tokenizer = train_wordpiece(texts, vocab_size=2000, token_type_ids=False)
            write_vocab(sorted(tokenizer.vocab, key=tokenizer.vocab.get), vocab)
        return tiny_distilbert(len(tokenizer), config.max_seq_length, seed=config.seed), tokenizer
    from tfqa.modeling import load_qa_model

    return load_qa_model(config.model_name_or_path)


def fit(model, features, config: TrainConfig, strategy: tf.distribute.Strategy, callbacks=(),
        verbose: int | None = None) -> tf.keras.callbacks.History:
    """Compiles `model` with the AdamW schedule and fits it on `features` for `config.num_train_epochs`.

    The global batch is `per_replica_batch_size` × replicas; a fractional epoch
    count trains that fraction of the data in the last epoch. `jit_compile`
    drops the last partial batch so that XLA sees one shape and compiles once.
    """
    global_batch = config.per_replica_batch_size * strategy.num_replicas_in_sync
    steps_per_pass = max(1, math.ceil(len(features) / global_batch))
    total_steps = max(1, round(config.num_train_epochs * steps_per_pass))
    epochs = max(1, math.ceil(config.num_train_epochs))
    with strategy.scope():
        model.compile(optimizer=make_optimizer(config, total_steps), jit_compile=config.jit_compile)
    # The logged loss is already the global mean on every worker; tf-keras' default ("auto" → "sum") adds it
    # up over MultiWorkerMirroredStrategy workers (2 workers: 2× the loss). No effect on one machine.
    model.distribute_reduction_method = "first"
    if verbose is None:
        verbose = 2 if os.environ.get("CI") else 1
    dataset = train_dataset(features, global_batch, config.seed, drop_remainder=config.jit_compile,
                            input_names=input_names(model))
    return model.fit(dataset, epochs=epochs, steps_per_epoch=math.ceil(total_steps / epochs),
                     callbacks=list(callbacks), verbose=verbose)


def make_features(examples, tokenizer, config: TrainConfig, purpose: str, stream: bool = False):
    """Features for `examples` with the config's window settings, through the cache when one is set.

    `stream`: written to TFRecord shards in the cache and returned as `tfqa.shards.FeatureShards`
    (`fit` streams them; no window is kept in memory)."""
    settings = dict(max_seq_length=config.max_seq_length, doc_stride=config.doc_stride,
                    max_query_length=config.max_query_length)
    what = f"{purpose} questions" if purpose else "questions"
    if not config.cache_dir:
        progress = Progress(f"tokenizing {len(examples):,} {what}")
        features = prepare_features(examples, tokenizer, **settings, progress=progress.update)
    else:
        from tfqa.cache import cached_features
        from tfqa.shards import streamed_features

        progress = Progress(f"preparing the features of {len(examples):,} {what}")
        features, reused = (streamed_features if stream else cached_features)(examples, tokenizer, config.cache_dir,
                                                                              **settings)
        print(f"{purpose} features: {'reused from' if reused else 'cached in'} {config.cache_dir}", file=sys.stderr)
    progress.done(f" ({len(features):,} windows)")
    return features


def train_and_evaluate(config: TrainConfig, strategy: tf.distribute.Strategy | None = None) -> dict:
    """Trains and/or evaluates as configured; writes everything into `config.output_dir`.

    Returns the final evaluation metrics (empty without evaluation), plus the
    per-epoch history under "epochs".
    """
    strategy = strategy or make_strategy(name=config.strategy)  # first: MultiWorkerMirroredStrategy needs that
    from tfqa.distribute import worker_outputs

    backup = Path(config.output_dir) / "backup"  # every worker's: tf-keras restores them all from backup/chief
    with worker_outputs(config, strategy) as config:  # non-chief workers write into a temporary folder
        return _train_and_evaluate(config, strategy, backup)


def _train_and_evaluate(config: TrainConfig, strategy: tf.distribute.Strategy, backup: Path) -> dict:
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tf.keras.utils.set_random_seed(config.seed)

    train_examples = load_examples(config.train_file, config.max_train_samples) if config.train else []
    eval_examples = load_examples(config.predict_file, config.max_eval_samples) if config.evaluate else []
    if eval_examples and squad_version(eval_examples) == "2.0" and not config.version_2_with_negative:
        print("note: the evaluation data has unanswerable questions; decoding as SQuAD 2.0", file=sys.stderr)
        config = dataclasses.replace(config, version_2_with_negative=True)

    with strategy.scope(), precision(config.mixed_precision):
        texts = [e.context for e in train_examples] + [e.question for e in train_examples]
        model, tokenizer = build_model_and_tokenizer(config, texts)
        float32_logits(model)
    replicas = strategy.num_replicas_in_sync
    eval_batch = config.eval_batch_size * replicas
    eval_features = make_features(eval_examples, tokenizer, config, "evaluation") if eval_examples else None

    history = []
    recorder = None
    if train_examples:
        features = make_features(train_examples, tokenizer, config, "training", stream=config.stream_features)
        callbacks = [
            StopOnNaN(),
            tf.keras.callbacks.BackupAndRestore(str(backup)),  # a restarted run resumes here
            tf.keras.callbacks.ModelCheckpoint(str(out / "checkpoints" / "epoch-{epoch:02d}.h5"),
                                               save_weights_only=True),
            tf.keras.callbacks.TensorBoard(str(out / "logs"), update_freq=config.logging_steps),
        ]
        evaluator = None
        if eval_features is not None:
            evaluator = EvaluateEachEpoch(eval_features, eval_examples, config, eval_batch)
            callbacks.insert(1, evaluator)
        # Before BackupAndRestore: an epoch is in the history before the backup says it is done.
        recorder = RecordHistory(out, {
            "config": dataclasses.asdict(config), "train_questions": len(train_examples),
            "train_windows": len(features), "eval_questions": len(eval_examples),
            "eval_windows": len(eval_features) if eval_features is not None else 0, "replicas": replicas,
            "global_batch": config.per_replica_batch_size * replicas}, evaluator)
        callbacks.insert(2 if evaluator else 1, recorder)
        print(f"training: {len(train_examples)} questions, {len(features)} windows, {replicas} replica(s), "
              f"global batch {config.per_replica_batch_size * replicas}", file=sys.stderr)
        trainee = model
        if config.teacher_model:  # distillation: fit trains the student with a frozen teacher (tfqa.distill)
            from tfqa.distill import with_teacher

            trainee = with_teacher(model, tokenizer, config, strategy, probes=texts[:1])
        try:
            fit(trainee, features, config, strategy, callbacks)
        except BaseException:
            with contextlib.suppress(Exception):  # keep the steps trained so far visible (a NaN loss, Ctrl-C)
                recorder.stopped()
            raise
        history = recorder.epochs()

    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    write_json_atomic(out / SETTINGS_FILE, dataclasses.asdict(config))

    results: dict = {}
    if eval_features is not None:
        progress = Progress(f"evaluating the final model on {len(eval_examples):,} questions "
                            f"({len(eval_features):,} windows)")
        predictions, nbest, null_odds = predict_answers(model, eval_features, eval_examples, config, eval_batch,
                                                        progress)
        results = squad_metrics(eval_examples, predictions, na_probs=null_odds or None)
        progress.done()
        write_prediction_files(out, predictions, nbest, null_odds)
        write_json_atomic(out / RESULTS_FILE, {**results, "epochs": history})
    extra = {}
    if train_examples and config.export_base:
        from tfqa.export import export_model, serving_config_from

        progress = Progress(f"exporting the SavedModel to {config.export_base}")
        exported = export_model(model, tokenizer, serving_config_from(config), config.export_base)
        progress.done(f": version {exported.version}, {exported.path}"
                      + (f" ({exported.note})" if exported.note else ""))
        extra["export"] = str(exported.path)
    if recorder is not None:
        recorder.finish(final=results or None, **extra)
    return {**results, "epochs": history, **extra}


def write_prediction_files(out: Path, predictions, nbest, null_odds) -> None:
    """predictions.json, nbest_predictions.json and (SQuAD 2.0) null_odds.json, each written atomically."""
    write_json_atomic(out / "predictions.json", predictions)
    write_json_atomic(out / "nbest_predictions.json", dict(nbest))
    if null_odds:
        write_json_atomic(out / "null_odds.json", null_odds)


def load_settings(model_dir: str) -> TrainConfig:
    """The TrainConfig a model directory was trained with (defaults when it has none)."""
    path = Path(model_dir) / SETTINGS_FILE
    if not path.exists():
        return TrainConfig(model_name_or_path=model_dir)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in json.loads(path.read_text()).items() if k in known}
    return dataclasses.replace(TrainConfig(**values), model_name_or_path=model_dir, preset="")
