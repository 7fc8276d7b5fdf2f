"""SavedModel export for TensorFlow Serving: `export/<name>/<version>/`, written atomically.

Signatures (all explicit `tf.TensorSpec`s):

- `serving_default` — raw text: `question`, `context` (string [batch]) →
  `answer` (string), `score` (start + end logit of the answer; the null score
  for a SQuAD 2.0 "no answer"), `answer_start`/`answer_end` (character offsets
  into the context as Python counts them, -1 for no answer), and for SQuAD 2.0
  models `null_score_diff` (null score − best span score; the answer is ""
  above the exported threshold); plus the best spans, best first, for UIs:
  `candidate_answers`, `candidate_scores`, `candidate_starts`,
  `candidate_ends` ([batch, num_candidates]). See `tfqa.export.qa_module` for what
  runs in the graph.
- `token_ids` — `input_ids`, `attention_mask` (+ `token_type_ids` for models
  that use them), int32 [batch, length] → `start_logits`, `end_logits`. For
  clients that tokenize themselves. Models whose tokenizer is not BERT-style
  WordPiece get only this one (it is then also `serving_default`).
- `answer_questions` — not a signature but a function on the loaded object
  taking ONE dict {"question", "context"}: what Keras 3's `TFSMLayer` calls
  (it passes a single positional input).

A version is written into a hidden temporary folder next to the others and
renamed into place, so a server watching the base folder never loads a
half-written version. TF Serving's warm-up requests go into
`assets.extra/tf_serving_warmup_requests`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from tfqa.core.config import TrainConfig
from tfqa.core.errors import TfqaError
from tfqa.core.files import scratch_dir
from tfqa.core.run_dir import load_settings
from tfqa.export.names import (ATTENTION_MASK, CONTEXT, INPUT_IDS, QUESTION, SERVING_DEFAULT, TOKEN_IDS,
                               TOKEN_TYPE_IDS)
from tfqa.export.qa_module import QAModule, ServingConfig
from tfqa.export.versions import WARMUP_FILE, next_version, remove_stale_exports, temp_prefix

KERAS_ENDPOINT = "answer_questions"

# Warm-up requests run once when TF Serving loads a version, so the first user
# request does not pay for graph optimisation; one short and one multi-window context.
_WARMUP = [
    ("Who wrote the report?", "The report was written by Ada Lovelace in 1843."),
    ("Where is the museum?", " ".join(["The old museum stands in the centre of the town, next to the river."] * 60)),
]


class ExportError(TfqaError, RuntimeError):
    """The model cannot be exported (bad checkpoint, unusable settings, unwritable folder)."""


@dataclass(frozen=True)
class ExportResult:
    path: Path  # the version folder
    version: int
    raw_text: bool  # whether the raw-text signature was exported
    note: str  # why not, when it was not


def serving_config_for(model_dir: str) -> ServingConfig:
    """The windowing/decoding settings a checkpoint was trained with (tfqa_config.json), else defaults."""
    return serving_config_from(load_settings(model_dir))


def serving_config_from(config: TrainConfig) -> ServingConfig:
    """The serving settings of a training run: its windowing and its decoding."""
    return ServingConfig(features=config.features, decoding=config.decoding)


def build_module(model, tokenizer, config: ServingConfig) -> tuple[QAModule, str]:
    """(module, note): the serving module; `note` says why raw text is unsupported ("" when it is)."""
    from tfqa.core.features import pair_template
    from tfqa.export.graph_tokenizer import GraphWordPiece, NotWordPieceError, WordPieceSpec

    template = pair_template(tokenizer)
    graph_tokenizer, note = None, ""
    try:
        if template.pad_left:
            raise NotWordPieceError(f"{type(tokenizer).__name__} pads on the left")
        graph_tokenizer = GraphWordPiece(WordPieceSpec.from_tokenizer(tokenizer))
    except NotWordPieceError as e:
        note = f"raw-text signature not exported: {e}; use the 'token_ids' signature"
    return QAModule(model, template, config, graph_tokenizer), note


def signatures(module: QAModule) -> dict:
    """The SavedModel signatures for `module` (and attaches the Keras 3 endpoint to it)."""
    ids = tf.TensorSpec([None, None], tf.int32)
    if module.uses_token_type_ids:
        @tf.function(input_signature=[ids, ids, ids])
        def token_ids(input_ids, attention_mask, token_type_ids):
            return module.logits(input_ids, attention_mask, token_type_ids)
    else:
        @tf.function(input_signature=[ids, ids])
        def token_ids(input_ids, attention_mask):
            return module.logits(input_ids, attention_mask)
    if module.tokenizer is None:
        return {SERVING_DEFAULT: token_ids, TOKEN_IDS: token_ids}

    text = tf.TensorSpec([None], tf.string)

    @tf.function(input_signature=[text, text])
    def answer(question, context):
        return module.answer(question, context)

    @tf.function(input_signature=[{QUESTION: text, CONTEXT: text}])
    def answer_questions(inputs):
        return answer(inputs[QUESTION], inputs[CONTEXT])  # calls the traced graph, no second trace

    setattr(module, KERAS_ENDPOINT, answer_questions)
    return {SERVING_DEFAULT: answer, TOKEN_IDS: token_ids}


def write_warmup(version_dir: Path, model_name: str, raw_text: bool, uses_token_type_ids: bool) -> Path:
    """Writes TF Serving warm-up requests (PredictionLog records) into `assets.extra/`."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = version_dir / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for question, context in _WARMUP:
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
                name=model_name, signature_name=SERVING_DEFAULT))
            if raw_text:
                request.inputs[QUESTION].CopyFrom(tf.make_tensor_proto([question]))
                request.inputs[CONTEXT].CopyFrom(tf.make_tensor_proto([context]))
            else:
                length = 8 if len(context) < 100 else 384
                names = [INPUT_IDS, ATTENTION_MASK] + ([TOKEN_TYPE_IDS] if uses_token_type_ids else [])
                for name in names:
                    value = [[1] * length] if name == ATTENTION_MASK else [[0] * length]
                    request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=tf.int32))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def export_model(model, tokenizer, config: ServingConfig, base: str | os.PathLike) -> ExportResult:
    """Exports `model` as the next version under `base` (e.g. export/tfqa → export/tfqa/3)."""
    base = Path(base)
    module, note = build_module(model, tokenizer, config)
    sigs = signatures(module)
    remove_stale_exports(base)  # a killed export's half-written folder would otherwise stay forever
    with scratch_dir(base, temp_prefix()) as tmp:  # in the base, so the rename stays on one file system
        tf.saved_model.save(module, str(tmp / "model"), signatures=sigs)
        write_warmup(tmp / "model", base.name, module.tokenizer is not None, module.uses_token_type_ids)
        for _ in range(100):  # another exporter may take a number between our look and our rename
            version = next_version(base)
            try:
                os.rename(tmp / "model", base / str(version))
                break
            except OSError:
                if not os.path.lexists(base / str(version)):
                    raise
        else:
            raise ExportError(f"{base}: could not claim a new version number (other exporters kept taking them)")
    return ExportResult(base / str(version), version, module.tokenizer is not None, note)


def export_checkpoint(model_dir: str, base: str | os.PathLike, config: ServingConfig | None = None) -> ExportResult:
    """Loads a saved checkpoint (save_pretrained folder) and exports it; see `export_model`.

    The result's `note` says why the raw-text signature is missing, when it is.
    """
    from tfqa.modeling.backend import check_window, load_model

    config = config or serving_config_for(model_dir)  # first: a broken tfqa_config.json fails in a second
    try:
        config.validate()
    except ValueError as e:
        raise ExportError(f"{model_dir}: {e}") from None
    model, tokenizer = load_model(model_dir, flag="--model")
    check_window(model, config.features.max_seq_length, f"{model_dir}/tfqa_config.json: max_seq_length", model_dir)
    return export_model(model, tokenizer, config, base)
