"""The training run behind `train_keras.py`: data, model, fit, evaluation, outputs, export.

`train_and_evaluate(config)` is the whole run: load the data and the
checkpoint, fine-tune (`tfqa.training.fitting`) under the configured
`tf.distribute` strategy (`tfqa.training.strategies`), evaluate after every
epoch, and leave in `output_dir` (layout: `tfqa.core.run_dir`) a
`save_pretrained` model + tokenizer, the prediction files, the per-step
losses and per-epoch metrics (history.json, training.png), and a TF Serving
export (`tfqa.export`). It returns the numbers; the caller prints them.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import tensorflow as tf

from tfqa.core.config import TrainConfig
from tfqa.core.files import write_json_atomic
from tfqa.core.metrics import squad_metrics
from tfqa.core.null_threshold import tune_null_threshold
from tfqa.core.progress import SILENT, Reporter
from tfqa.core.history import finished_training
from tfqa.core.interrupts import deferred_interrupts
from tfqa.core.resume import check_resume, resume_summary
from tfqa.core.run_dir import BACKUP_DIR, RESULTS_FILE, checkpoint_path, export_base, save_settings
from tfqa.core.run_record import RunRecord
from tfqa.core.squad import DataError, load_squad, squad_version
from tfqa.modeling.backend import backend_named, check_window
from tfqa.modeling.precision import float32_logits, precision
from tfqa.modeling.prediction import predict_answers, tokenize, write_prediction_files
from tfqa.training.callbacks import EvaluateEachEpoch, RecordHistory, training_callbacks
from tfqa.training.fitting import fit
from tfqa.training.presets import preset_of
from tfqa.training.strategies import make_strategy, training_workers, worker_outputs


def load_examples(source: str, limit: int, flag: str):
    """The examples of a SQuAD file or TFDS name, only the first `limit` when it is not 0.

    No questions is a DataError: training on nothing would save an untrained model, evaluating
    on nothing would report `{}`, and both would look like success.
    """
    examples = load_squad(source)
    if not examples:
        raise DataError(f"{flag} {source}: no questions to {'train on' if flag == '--train_file' else 'evaluate'}")
    return examples[:limit] if limit else examples


def build_model_and_tokenizer(config: TrainConfig, texts):
    """The checkpoint named by the config, or the preset's own model (built with a vocab from `texts`)."""
    preset = preset_of(config)
    if preset is not None:
        return preset.build(config, texts)
    return backend_named(config.backend).load(config.model_name_or_path, config_name=config.config_name,
                                              tokenizer_name=config.tokenizer_name)


def make_features(examples, tokenizer, config: TrainConfig, purpose: str, stream: bool = False,
                  reporter: Reporter = SILENT):
    """Features for `examples` with the config's window settings, through the cache when one is set.

    `stream`: written to TFRecord shards in the cache and returned as
    `tfqa.training.feature_shards.FeatureShards` (`fit` streams them; no window is kept in memory).
    """
    what = f"{purpose} questions" if purpose else "questions"
    if not config.cache_dir:
        return tokenize(examples, tokenizer, config.features, what, reporter)
    from tfqa.training.feature_cache import cached_features
    from tfqa.training.feature_shards import streamed_features

    progress = reporter.progress(f"preparing the features of {len(examples):,} {what}")
    features, reused = (streamed_features if stream else cached_features)(examples, tokenizer, config.cache_dir,
                                                                          config.features,
                                                                          overwrite=config.overwrite_cache)
    reporter.line(f"{purpose} features: {'reused from' if reused else 'cached in'} {config.cache_dir}")
    progress.done(f" ({len(features):,} windows)")
    return features


def _finished_training(out: Path, config: TrainConfig) -> dict:
    """`tfqa.core.history.finished_training` where skipping `fit` is safe: one worker (all of them must call
    `fit` together), no teacher (its checkpoints hold the distillation model's weights), the last epoch's
    weights on disk."""
    if config.teacher_model or training_workers() > 1:
        return {}
    finished = finished_training(out, config.to_dict())
    return finished if finished and checkpoint_path(out, finished["epochs_planned"], config.backend).is_file() else {}


def train_and_evaluate(config: TrainConfig, strategy: tf.distribute.Strategy | None = None,
                       reporter: Reporter = SILENT, verbose: int = 2) -> dict:
    """Trains and/or evaluates as configured; writes everything into `config.output_dir`.

    Returns the final evaluation metrics (empty without evaluation), plus the
    per-epoch history under "epochs" and the export's path under "export".
    Progress and notes go to `reporter`; `verbose` is Keras' fit verbosity.
    """
    # The Python API's entry: a transformers run in a process whose tf.keras is Keras 3 ends in one line here.
    backend_named(config.backend).use()
    strategy = strategy or make_strategy(config.strategy)  # first: MultiWorkerMirroredStrategy needs that
    backup = Path(config.output_dir) / BACKUP_DIR  # every worker's: tf-keras restores them all from backup/chief
    with worker_outputs(config, strategy) as config:  # non-chief workers write into a temporary folder
        return _train_and_evaluate(config, strategy, backup, reporter, verbose)


def deterministic_kernels(config: TrainConfig) -> bool:
    """Whether the run turns TensorFlow's op determinism on: on CPU, in one process, unless Keras 3 is asked for
    XLA (Keras 3 compiles without XLA, after a warning, while op determinism is on: `model_supports_jit` in
    keras/src/trainers/trainer.py)."""
    keras3_xla = config.jit_compile and config.backend == "keras_hub"
    return not tf.config.list_physical_devices("GPU") and training_workers() == 1 and not keras3_xla


def _train_and_evaluate(config: TrainConfig, strategy: tf.distribute.Strategy, backup: Path, reporter: Reporter,
                        verbose: int) -> dict:
    out = Path(config.output_dir)
    preset = preset_of(config)
    record = RunRecord.begin(out, also=preset.shared_files if preset else ())  # before anything is written
    backend = backend_named(config.backend)
    keras = backend.keras()  # the Keras the model lives in: its seeding and its own callbacks
    keras.utils.set_random_seed(config.seed)  # Keras 3 also seeds its own generator
    if deterministic_kernels(config):
        # --seed repeats a run on this machine: deterministic kernels cost nothing measurable on CPU (best of
        # 4 smoke runs: 14.3 s vs 15.5 s of training), unlike on GPUs, where they replace atomics and cuDNN's pick.
        # Not for several workers (their runs are not reproduced, README): the kernels it picks there change the
        # float order of the all-reduced gradients away from the one-process run they are tested against.
        tf.config.experimental.enable_op_determinism()
    if config.train:  # train_keras.py refuses this earlier, before writing anything; this guards the API
        check_resume(config, out)
        if config.teacher_model:  # a teacher of the other Keras: refused before the data and the models load
            from tfqa.training.distill import check_teacher

            check_teacher(config.teacher_model, config.backend)

    train_examples = load_examples(config.train_file, config.max_train_samples, "--train_file") if config.train else []
    eval_examples = load_examples(config.predict_file, config.max_eval_samples, "--predict_file") \
        if config.evaluate else []
    if eval_examples:
        matched = config.for_squad_version(squad_version(eval_examples))
        if matched is not config:
            reporter.note("the evaluation data has unanswerable questions; decoding as SQuAD 2.0")
            config = matched

    with strategy.scope(), precision(config.mixed_precision):
        texts = [e.context for e in train_examples] + [e.question for e in train_examples]
        model, tokenizer = build_model_and_tokenizer(config, texts)
        check_window(model, config.max_seq_length, name=config.model_name_or_path)
        float32_logits(model)
    # The folder appears once the data and the model have loaded: a run that fails on them leaves nothing behind.
    out.mkdir(parents=True, exist_ok=True)
    record.save()
    replicas = strategy.num_replicas_in_sync
    eval_batch = config.eval_batch_size * replicas
    eval_features = make_features(eval_examples, tokenizer, config, "evaluation", reporter=reporter) \
        if eval_examples else None

    history, recorder = [], None
    if train_examples:
        features = make_features(train_examples, tokenizer, config, "training", stream=config.stream_features,
                                 reporter=reporter)
        evaluator = None if eval_features is None else EvaluateEachEpoch(eval_features, eval_examples, config,
                                                                          eval_batch, reporter)
        recorder = RecordHistory(out, {
            "config": config.to_dict(), "train_questions": len(train_examples),
            "train_windows": len(features), "eval_questions": len(eval_examples),
            "eval_windows": len(eval_features) if eval_features is not None else 0, "replicas": replicas,
            "global_batch": config.effective_batch_size * replicas}, evaluator, reporter)
        reporter.line(f"training: {len(train_examples)} questions, {len(features)} windows, {replicas} replica(s), "
                      f"global batch {config.effective_batch_size * replicas}")
        trainee = model
        if config.teacher_model:  # distillation: fit trains the student with a frozen teacher (tfqa.training.distill)
            from tfqa.training.distill import with_teacher

            trainee = with_teacher(model, tokenizer, config, strategy, probes=texts[:1])
        finished = _finished_training(out, config)
        if finished:
            epochs = finished["epochs_planned"]
            reporter.line(f"training finished earlier (all {epochs} epochs; its end was cut off): evaluating and "
                          f"exporting the weights of epoch {epochs} without training again")
            model.load_weights(str(checkpoint_path(out, epochs, config.backend)))
            recorder.history.update({k: finished.get(k) for k in ("steps_per_epoch", "epochs_planned")})
        else:
            resuming = resume_summary(config.to_dict(), out)
            if resuming:
                reporter.line(resuming)
            try:
                fit(trainee, features, config, strategy,
                    [*training_callbacks(out, config, recorder, evaluator, backup, reporter, keras),
                     keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: record.save())],
                    verbose=verbose)
            except BaseException:
                with contextlib.suppress(Exception):  # keep the steps trained so far visible (a NaN loss, Ctrl-C)
                    recorder.stopped()
                raise
        history = recorder.epochs()

    record.add(backend.save(model, tokenizer, out))
    save_settings(out, config)

    results: dict = {}
    if eval_features is not None:
        progress = reporter.progress(f"evaluating the final model on {len(eval_examples):,} questions "
                                     f"({len(eval_features):,} windows)")
        predictions, nbest, null_odds = predict_answers(model, eval_features, eval_examples, config.decoding,
                                                        eval_batch, progress)
        # The na-prob threshold is the decoding one (see tfqa.core.null_threshold.scores_at).
        results = squad_metrics(eval_examples, predictions, na_probs=null_odds or None,
                                na_prob_thresh=config.decoding.null_threshold)
        progress.done()
        if null_odds and config.decoding.auto_threshold:
            tuned = tune_null_threshold(eval_examples, predictions, nbest, null_odds, config.decoding.null_threshold)
            predictions, results = tuned.predictions, {**tuned.after, "null_threshold": tuned.summary()}
            config = config.replace(null_score_diff_threshold=tuned.threshold)
            reporter.line(f"null score threshold: {tuned.threshold:.4f} (the dev set's best_f1_thresh): F1 "
                          f"{tuned.before['f1']:.2f} at 0.0 → {tuned.after['f1']:.2f}")
        write_prediction_files(out, predictions, nbest, null_odds)
        write_json_atomic(out / RESULTS_FILE, {**results, "epochs": history})
    if config.decoding.auto_threshold:  # nothing to tune it on: the number decoding used all along
        if config.version_2_with_negative:
            reporter.note("--null_score_diff_threshold auto: no SQuAD 2.0 evaluation data to tune it on; using 0.0")
        config = config.replace(null_score_diff_threshold=0.0)
    save_settings(out, config)  # again: the threshold is now a number (the export bakes it in)
    extra = {}
    base = export_base(config)
    if train_examples and base:
        from tfqa.export.savedmodel import export_model, serving_config_from

        progress = reporter.progress(f"exporting the SavedModel to {base}")
        with deferred_interrupts(reporter.warn, "the export"):  # a cut export leaves nothing usable
            exported = export_model(model, tokenizer, serving_config_from(config), base)
        progress.done(f": version {exported.version}, {exported.path}"
                      + (f" ({exported.note})" if exported.note else ""))
        extra["export"] = str(exported.path)
        record.add([exported.path])  # when --export_dir is inside the run folder
    if recorder is not None:
        recorder.finish(final=results or None, config=config.to_dict(), **extra)
    # Leftovers of training: the preset's scratch files, the backup folder tf-keras has emptied.
    for name in (*(preset.scratch_files if preset else ()), f"{BACKUP_DIR}/chief", BACKUP_DIR):
        record.discard(name)
    record.finish(trained=bool(train_examples))
    return {**results, "epochs": history, **extra}
