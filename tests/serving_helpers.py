"""Test helpers for the serving tests: a fake QA SavedModel export and an in-thread uvicorn server.

The fake model has the signatures of `tfqa.export.savedmodel`'s contract (names, inputs,
outputs, dtypes, shapes) but answers with plain string ops, so it builds in a
second: `serving_default` answers with the first whitespace word of the context
(the last word for models built with `word="last"`, to tell versions apart) and
scores it with the question's length in characters, so every answer can be
checked against its request.
"""

from __future__ import annotations

import socket
import threading
import time
import warnings
from pathlib import Path

from helpers import ROOT

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette 1.x suggests httpx2 for its TestClient; httpx still works
    from starlette.testclient import TestClient  # noqa: F401 - re-exported for the tests


def expected_answer(question: str, context: str, word: str = "first", squad2: bool = True) -> dict:
    """What the fake model answers, computed in Python."""
    words = context.split()
    text = (words[0] if word == "first" else words[-1]) if words else ""
    start = 0 if word == "first" else len(context) - len(text)
    result = {"answer": text, "score": float(len(question)), "answer_start": start, "answer_end": start + len(text)}
    if squad2:
        result["null_score_diff"] = -1.0
    return result


def build_fake_qa_model(path: Path, *, word: str = "first", squad2: bool = True, single_output: bool = False,
                        warmup: bool = False) -> Path:
    """Writes a fake QA SavedModel to `path` (a version directory such as export/tfqa/1)."""
    import tensorflow as tf

    class FakeQA(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="question"),
                                      tf.TensorSpec([None], tf.string, name="context")])
        def serve(self, question, context):
            words = tf.strings.split(context).to_tensor(default_value="")
            if word == "first":
                text = tf.cond(tf.shape(words)[1] > 0, lambda: words[:, 0],
                               lambda: tf.fill(tf.shape(context), ""))
                start = tf.zeros_like(tf.strings.length(context))
            else:  # the last non-empty word of each row
                lengths = tf.strings.split(context).row_lengths()
                text = tf.gather(words, tf.maximum(lengths - 1, 0), batch_dims=1)
                start = tf.strings.length(context, unit="UTF8_CHAR") - tf.strings.length(text, unit="UTF8_CHAR")
            outputs = {
                "answer": text,
                "score": tf.cast(tf.strings.length(question, unit="UTF8_CHAR"), tf.float32),
                "answer_start": tf.cast(start, tf.int32),
                "answer_end": tf.cast(start + tf.strings.length(text, unit="UTF8_CHAR"), tf.int32),
            }
            if squad2:
                outputs["null_score_diff"] = -tf.ones_like(outputs["score"])
            return outputs

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="input_ids"),
                                      tf.TensorSpec([None, None], tf.int32, name="attention_mask")])
        def token_ids(self, input_ids, attention_mask):
            logits = tf.cast(input_ids * attention_mask, tf.float32)
            return {"start_logits": logits, "end_logits": -logits}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="context")])
        def first_word(self, context):
            return {"answer": tf.strings.split(context).to_tensor(default_value="", shape=[None, 1])[:, 0]}

    module = FakeQA()
    signatures = {"serving_default": module.serve.get_concrete_function(),
                  "token_ids": module.token_ids.get_concrete_function()}
    if single_output:
        signatures = {"serving_default": module.first_word.get_concrete_function()}
    tf.saved_model.save(module, str(path), signatures=signatures)
    if warmup:
        _write_warmup(path)
    return path


def _write_warmup(path: Path) -> None:
    """assets.extra/tf_serving_warmup_requests with one predict request, as TF Serving reads it."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "serving_default"
    request.inputs["question"].CopyFrom(tf.make_tensor_proto(["Who?"]))
    request.inputs["context"].CopyFrom(tf.make_tensor_proto(["Warm words"]))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    (path / "assets.extra").mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path / "assets.extra" / "tf_serving_warmup_requests")) as writer:
        writer.write(log.SerializeToString())


def build_tiny_export(tokenizer, base: Path) -> Path:
    """A real raw-text SQuAD 2.0 export (base/1) of a tiny seeded DistilBERT: real graph, deterministic answers."""
    from tfqa.export.qa_module import ServingConfig
    from tfqa.export.savedmodel import export_model
    from tfqa.modeling.checkpoints import tiny_distilbert

    model = tiny_distilbert(tokenizer.vocab_size, 64, dim=16, n_layers=1, n_heads=2, seed=3, initializer_range=0.5)
    export_model(model, tokenizer, ServingConfig(max_seq_length=64, doc_stride=16, max_query_length=16,
                                                 version_2_with_negative=True), base)
    return base


def free_port() -> int:
    """A TCP port nobody listens on right now (for 'connection refused' tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadedServer:
    """Runs an ASGI app as `serve` and `demo` run it (uvicorn, guarded), in a background thread on 127.0.0.1."""

    def __init__(self, app, limits=None):
        from tfqa.rest.connections import GuardedServer
        from tfqa.rest.limits import ConnectionLimits

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = GuardedServer(app, limits or ConnectionLimits(), log_level="warning")
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def start_serve(*args: str, timeout: float = 120.0, command: str = "serve"):
    """Starts `python -m tfqa COMMAND ARGS` and waits for its "Serving ... at URL" line: (process, url, line).

    A thread keeps draining the server's stderr (TensorFlow logs there) so it never blocks on a full pipe.
    """
    import queue
    import re
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "tfqa", command, *args], cwd=ROOT, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        match = re.match(r"Serving .* at (http://\S+)$", line.strip())
        if match:
            proc.seen = seen  # the lines before it (notes), for tests
            return proc, match.group(1), line.strip()
    proc.kill()
    proc.wait()
    raise RuntimeError("the server did not start:\n" + "".join(seen[-20:]))


def fake_export(tmp_path_factory, name: str) -> Path:
    """A module's fake export base `<tmp>/<name>/tfqa` holding version 1 (see `build_fake_qa_model`)."""
    base = tmp_path_factory.mktemp(name) / "tfqa"
    build_fake_qa_model(base / "1")
    return base


def two_version_export(tmp_path_factory, name: str) -> Path:
    """A module's fake export base `<tmp>/<name>/tfqa`: version 1 (first word, with warm-up), 2 (last word)."""
    base = tmp_path_factory.mktemp(name) / "tfqa"
    build_fake_qa_model(base / "1", warmup=True)
    build_fake_qa_model(base / "2", word="last")
    return base
