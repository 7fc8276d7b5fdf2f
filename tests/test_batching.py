"""Server-side batching (tfqa.serving.batching, --enable_batching): TF Serving's parameters file, merging and
splitting in order, oversize requests, padding to allowed sizes, a full queue, and answers equal to unbatched ones."""

from __future__ import annotations

import socket
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from helpers import CORPUS, ROOT
from serving_helpers import ThreadedServer, build_fake_qa_model, build_tiny_export, expected_answer

from tfqa.apps.cli import main
from tfqa.rest.server import build_app
from tfqa.serving import batching
from tfqa.serving.batching import QUEUE_FULL, Batcher
from tfqa.serving.batching_config import (MAX_BATCH_TIMEOUT_MICROS, BatchingConfigError, BatchingParameters,
                                          parse_batching_parameters, read_batching_parameters)
from tfqa.serving.servables import ServingFailure, load_model

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    base = tmp_path_factory.mktemp("batching") / "tfqa"
    build_fake_qa_model(base / "1")
    return load_model(base)


def rows(n: int, seed: int) -> dict[str, np.ndarray]:
    """n distinct (question, context) rows: every row's answer and score tell which row it was."""
    rng = np.random.default_rng(seed)
    questions = ["q" * int(rng.integers(1, 40)) + "?" for _ in range(n)]
    contexts = [" ".join(rng.choice(WORDS, 3)) for _ in range(n)]
    return {"question": np.array([q.encode() for q in questions], dtype=object),
            "context": np.array([c.encode() for c in contexts], dtype=object)}


def spy_on_runs(servable, monkeypatch, gate: threading.Event | None = None) -> list[int]:
    """Records the batch size of every model call (the real model still runs); `gate` holds calls back."""
    sizes, real_run = [], servable.run

    def run(signature, arrays):
        sizes.append(len(next(iter(arrays.values()))))
        if gate is not None:
            gate.wait(30)
        return real_run(signature, arrays)

    monkeypatch.setattr(servable, "run", run)
    return sizes


def assert_same(got: dict, want: dict):
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_serve_batching_config_parses_as_tf_serving_reads_it():
    for name in ("batching.config", "batching_cpu.config"):
        params = read_batching_parameters(ROOT / "serve" / name)
        assert params.max_batch_size >= 8 and params.max_enqueued_batches >= 1 and params.num_batch_threads >= 1
    defaults = read_batching_parameters(None)  # TF Serving's defaults without a file
    assert (defaults.max_batch_size, defaults.batch_timeout_micros, defaults.max_enqueued_batches) == (1000, 0, 10)
    parsed = parse_batching_parameters("max_batch_size { value: 8 }\nallowed_batch_sizes: 2\nallowed_batch_sizes: 8\n"
                                       "pad_variable_length_inputs { value: true }")
    assert (parsed.max_batch_size, parsed.allowed_batch_sizes, parsed.pad_variable_length_inputs) == (8, (2, 8), True)
    assert parsed.batch_timeout_micros == 0 and [parsed.padded_size(n) for n in (1, 2, 3, 8)] == [2, 2, 8, 8]


@pytest.mark.parametrize("text, message", [
    ("max_batch_sze { value: 8 }", 'f.config: 1:1 : Message type "tensorflow.serving.BatchingParameters" has no '
                                   'field named "max_batch_sze"'),
    ("max_batch_size: 8", "f.config: 1:17 : 'max_batch_size: 8': Expected \"{\"."),  # a wrapper field needs { value: N }, as in TF Serving
    ("max_batch_size { value: 8 } allowed_batch_sizes: 4", "the last entry in allowed_batch_sizes must match "
                                                           "max_batch_size; last entry was 4; expected 8"),
    ("max_batch_size { value: 8 } allowed_batch_sizes: 8 allowed_batch_sizes: 4", "monotonically increasing"),
    ("num_batch_threads { value: 0 }", "num_batch_threads must be at least 1, not 0"),
])
def test_bad_batching_files_are_one_line_errors(text, message):
    with pytest.raises(BatchingConfigError) as error:
        parse_batching_parameters(text, "f.config")
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("text, message", [
    # issue 20 #12: passed, then every batch thread died (OverflowError) and every batched predict hung
    ("batch_timeout_micros { value: 9223372036854775807 }", "batch_timeout_micros must be at most 86400000000"),
    # issue 20 #13: every predict answered "can't start new thread", with 1,614 threads held
    ("num_batch_threads { value: 200000 }", "num_batch_threads must be at most 256, not 200000"),
    ("max_batch_size { value: 1000000 } allowed_batch_sizes: 1 allowed_batch_sizes: 1000000",
     "max_batch_size must be at most 65536"),  # a 1-row request would be padded to a million rows
])
def test_batching_values_beyond_what_the_server_can_honour_are_refused(text, message):
    with pytest.raises(BatchingConfigError, match=message):
        parse_batching_parameters(text, "f.config")


def test_the_longest_batch_timeout_allowed_still_runs_full_batches(model):  # issue 20 #12
    servable = model.latest
    signature = servable.signature("serving_default")
    batcher = Batcher(BatchingParameters(max_batch_size=2, batch_timeout_micros=MAX_BATCH_TIMEOUT_MICROS,
                                         num_batch_threads=1))
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(batcher.run, servable, signature, rows(1, 0))
        wait_for(lambda: batcher.queued_rows() == 1)  # waits (a day) for a second row; its thread is alive
        second = pool.submit(batcher.run, servable, signature, rows(1, 1))
        assert_same(first.result(timeout=30), servable.run(signature, rows(1, 0)))
        assert_same(second.result(timeout=30), servable.run(signature, rows(1, 1)))
    batcher.close()


def test_a_failing_batch_thread_answers_an_error_and_keeps_serving(model, monkeypatch):  # issue 20 #12
    servable = model.latest
    signature = servable.signature("serving_default")
    batcher = Batcher(BatchingParameters(max_batch_size=4, num_batch_threads=1))
    real = batcher._run_batch
    calls = []

    def fails_once(batch):
        calls.append(batch)
        if len(calls) == 1:
            raise OverflowError("timestamp out of range")
        return real(batch)

    monkeypatch.setattr(batcher, "_run_batch", fails_once)
    with ThreadPoolExecutor(1) as pool:  # a hang would show as a timeout here, not as a stuck test run
        failed = pool.submit(batcher.run, servable, signature, rows(2, 0))
        with pytest.raises(ServingFailure, match="batching failed: OverflowError: timestamp out of range") as error:
            failed.result(timeout=30)
        assert error.value.code == 13  # INTERNAL: HTTP 500
        later = pool.submit(batcher.run, servable, signature, rows(2, 1))
        assert_same(later.result(timeout=30), servable.run(signature, rows(2, 1)))
    batcher.close()


def test_threads_the_system_refuses_leave_the_batcher_serving_with_fewer(model, monkeypatch):  # issue 20 #13
    servable = model.latest
    signature = servable.signature("serving_default")
    started = []

    class Refusing(threading.Thread):  # the system gives `allowed` threads, then "can't start new thread"
        allowed = 1

        def start(self):
            if len(started) >= Refusing.allowed:
                raise RuntimeError("can't start new thread")
            started.append(self)
            super().start()

    monkeypatch.setattr(batching, "threading", types.SimpleNamespace(Thread=Refusing, Condition=threading.Condition,
                                                                     Event=threading.Event))
    batcher = Batcher(BatchingParameters(max_batch_size=4, num_batch_threads=8))
    for seed in range(3):
        assert_same(batcher.run(servable, signature, rows(2, seed)), servable.run(signature, rows(2, seed)))
    assert len(started) == 1  # asked for once, not again on every request
    batcher.close()
    Refusing.allowed, started[:] = 0, []
    batcher = Batcher(BatchingParameters(max_batch_size=4, num_batch_threads=8))
    with pytest.raises(ServingFailure, match="cannot start a batch thread") as error:
        batcher.run(servable, signature, rows(2, 0))
    assert error.value.code == 14  # UNAVAILABLE: HTTP 503, and nothing is left waiting
    batcher.close()


def test_cli_refuses_bad_batching_options(tmp_path, capsys, model):
    bad = tmp_path / "b.config"
    bad.write_text("max_batch_size { value: -1 }")
    for args, message in [(["--batching_parameters_file", str(bad)], "is read only with --enable_batching"),
                          (["--enable_batching", "--batching_parameters_file", str(bad)],
                           f"{bad}: max_batch_size must be at least 1, not -1"),
                          (["--enable_batching", "--batching_parameters_file", str(tmp_path / "none")],
                           "cannot read the batching parameters file: No such file")]:
        assert main(["serve", "--model", str(model.base_dir), "--port", "0", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("tfqa: error: ") and message in err and err.count("\n") == 1


def test_concurrent_requests_merge_and_split_back_in_order(model, monkeypatch):
    servable = model.latest
    signature = servable.signature("serving_default")
    requests_ = [rows(n, seed) for seed, n in enumerate([1, 2, 3, 1, 2])]
    expected = [servable.run(signature, r) for r in requests_]
    sizes = spy_on_runs(servable, monkeypatch)
    # A long timeout and room for all 9 rows: everything submitted together goes into one model call.
    batcher = Batcher(BatchingParameters(max_batch_size=9, batch_timeout_micros=2_000_000, num_batch_threads=1))
    with ThreadPoolExecutor(len(requests_)) as pool:
        got = list(pool.map(lambda r: batcher.run(servable, signature, r), requests_))
    batcher.close()
    for g, e in zip(got, expected):
        assert_same(g, e)
    assert sizes == [9] and batcher.batches_run == 1


def test_oversize_requests_are_split_and_reassembled(model, monkeypatch):
    servable = model.latest
    signature = servable.signature("serving_default")
    request = rows(7, seed=11)
    expected = servable.run(signature, request)
    sizes = spy_on_runs(servable, monkeypatch)
    batcher = Batcher(BatchingParameters(max_batch_size=3, num_batch_threads=2))
    assert_same(batcher.run(servable, signature, request), expected)
    assert sorted(sizes) == [1, 3, 3]
    # Padded to the next allowed batch size with copies of the first row; the padding is dropped again.
    sizes.clear()
    batcher = Batcher(BatchingParameters(max_batch_size=4, allowed_batch_sizes=(2, 4), num_batch_threads=1))
    assert_same(batcher.run(servable, signature, rows(7, seed=11)), expected)
    assert sorted(sizes) == [4, 4]
    batcher.close()


def test_requests_that_cannot_merge_run_alone(model, monkeypatch):
    """token_ids requests of different lengths cannot be concatenated: each runs as without batching."""
    servable = model.latest
    signature = servable.signature("token_ids")
    batcher = Batcher(BatchingParameters(max_batch_size=8, batch_timeout_micros=300_000))
    inputs = [{"input_ids": np.full((2, width), 3, np.int32), "attention_mask": np.ones((2, width), np.int32)}
              for width in (4, 6)]
    expected = [servable.run(signature, i) for i in inputs]
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda i: batcher.run(servable, signature, i), inputs))
    for g, e in zip(got, expected):
        assert_same(g, e)
    batcher.close()


def test_demo_local_backend_batches_concurrent_questions(model, capsys):
    from tfqa.apps.demo import LocalBackend

    backend = LocalBackend(str(model.base_dir), BatchingParameters(max_batch_size=8, batch_timeout_micros=200_000))
    qa = [(f"Question {i}?", f"{WORDS[i]} then more") for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        rows = list(pool.map(lambda x: backend.predict(*x), qa))
    assert rows == [expected_answer(q, c) for q, c in qa]
    assert backend.batcher.batches_run < len(qa)
    backend.batcher.close()
    assert main(["demo", "--server", "http://127.0.0.1:1/v1/models/tfqa", "--enable_batching"]) == 2
    assert "--enable_batching applies to --model" in capsys.readouterr().err


def wait_for(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def post(url, questions, contexts, columnar=False):
    body = ({"inputs": {"question": questions, "context": contexts}} if columnar else
            {"instances": [{"question": q, "context": c} for q, c in zip(questions, contexts)]})
    return requests.post(url, json=body, timeout=60)


def test_full_queue_answers_503_and_the_server_keeps_serving(model, monkeypatch):
    gate = threading.Event()
    sizes = spy_on_runs(model.latest, monkeypatch, gate)
    params = BatchingParameters(max_batch_size=2, max_enqueued_batches=1, num_batch_threads=1)
    qa = [("Who?", "Denver Broncos won"), ("What?", "Carolina Panthers lost"), ("Where?", "Santa Clara")]
    app = build_app(model, batching=params)
    with ThreadedServer(app) as server, ThreadPoolExecutor(2) as pool:
        url = f"http://127.0.0.1:{server.port}/v1/models/tfqa:predict"
        first = pool.submit(post, url, ["Who?"], ["Denver Broncos won"])  # taken by the one batch thread, held
        wait_for(lambda: sizes)
        queued = pool.submit(post, url, ["What?", "Where?"], ["Carolina Panthers lost", "Santa Clara"])
        wait_for(lambda: app.state.batcher.queued_rows() == 2)  # the one batch the queue may hold is full
        refused = post(url, ["Why?"], ["No room"])
        assert (refused.status_code, refused.json()) == (503, {"error": QUEUE_FULL})
        gate.set()
        assert first.result().json() == {"predictions": [expected_answer(*qa[0])]}
        assert queued.result().json() == {"predictions": [expected_answer(*q) for q in qa[1:]]}
        later = post(url, ["Who won?"], ["Broncos won"], columnar=True)
        assert later.status_code == 200 and later.json()["outputs"]["answer"] == ["Broncos"]
    assert sizes[:2] == [1, 2]
    app.state.batcher.close()


def test_shutdown_while_the_model_computes_answers_503_not_a_traceback(model, monkeypatch, caplog):  # issue 20 #12
    from tfqa.rest.connections import GuardedServer
    from tfqa.rest.limits import ConnectionLimits

    gate = threading.Event()
    sizes = spy_on_runs(model.latest, monkeypatch, gate)
    app = build_app(model, batching=BatchingParameters(max_batch_size=4, num_batch_threads=1))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = GuardedServer(app, ConnectionLimits(), log_level="warning", timeout_graceful_shutdown=0.5)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started)
    try:
        with ThreadPoolExecutor(1) as pool:
            url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1/models/tfqa:predict"
            pending = pool.submit(post, url, ["Who?"], ["Denver Broncos won"])
            wait_for(lambda: sizes)  # the model is computing (held by the gate)
            server.should_exit = True  # SIGTERM; the graceful wait runs out while the model still computes
            answer = pending.result(timeout=30)
        assert (answer.status_code, answer.json()) == (
            503, {"error": "the server is shutting down; the request was not finished"})
    finally:
        gate.set()
        thread.join(timeout=30)
        sock.close()
    assert "CancelledError" not in caplog.text and "Exception in ASGI application" not in caplog.text


def strip_floats(value):
    if isinstance(value, dict):
        return {k: strip_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_floats(v) for v in value]
    return None if isinstance(value, float) else value


def floats(value) -> list[float]:
    if isinstance(value, dict):
        return [f for k in sorted(value) for f in floats(value[k])]
    if isinstance(value, list):
        return [f for v in value for f in floats(v)]
    return [value] if isinstance(value, float) else []


@pytest.mark.slow  # the tiny export takes ~20-60 s to build on 2 busy cores
def test_answers_are_identical_with_and_without_batching(wordpiece_tokenizer, tmp_path_factory):
    """A real (tiny) raw-text export, 8 concurrent clients: the same JSON whether or not requests are merged."""
    base = build_tiny_export(wordpiece_tokenizer, tmp_path_factory.mktemp("tiny") / "tfqa")
    loaded = load_model(base)
    questions = ["Who won Super Bowl 50?", "Where was the game played?", "What color was used?",
                 "Which team lost?", "Who was the MVP?", "When was it?"]
    work = [((questions[i % 6:] + questions[:i % 6])[: 1 + i % 3], i % 2 == 1) for i in range(24)]

    def answers(app) -> list:
        with ThreadedServer(app) as server, ThreadPoolExecutor(8) as pool:
            url = f"http://127.0.0.1:{server.port}/v1/models/tfqa:predict"
            return list(pool.map(lambda w: post(url, w[0], [CORPUS[len(w[0]) % len(CORPUS)]] * len(w[0]),
                                                columnar=w[1]).json(), work))

    plain = answers(build_app(loaded))
    app = build_app(loaded, batching=BatchingParameters(max_batch_size=4, batch_timeout_micros=20_000))
    batched = answers(app)
    assert all("error" not in a for a in plain)
    # Answers, spans and candidates are identical; scores may differ in the last float32 bits (~1e-7
    # relative), as they do without batching when the same question comes in a request with others:
    # the padded window length of a model call changes the order of float additions.
    assert strip_floats(batched) == strip_floats(plain)
    np.testing.assert_allclose(floats(batched), floats(plain), rtol=1e-5, atol=1e-5)
    assert app.state.batcher.batches_run < len(work), "some requests were merged"
    app.state.batcher.close()


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow  # a client stalls for 30 s by design
def test_load_safety_32_clients_and_a_stalled_half_request(model):
    """32 clients × 10 requests while another client sends half a request and stalls for 30 s."""
    import socket

    from serving_helpers import start_serve

    proc, url, _ = start_serve("--model", str(model.base_dir), "--port", "0", "--enable_batching",
                               "--batching_parameters_file", str(ROOT / "serve" / "batching.config"))
    try:
        predict = url + ":predict"
        for _ in range(20):  # warm-up, then the start-up memory level
            post(predict, ["Who?"], ["warm up"])
        start_rss = rss_mb(proc.pid)
        host, port = url.split("//")[1].split("/")[0].split(":")
        body = b'{"instances": [{"question": "Who?", "context": "half a request"}]}'
        stalled = socket.create_connection((host, int(port)))
        stalled.sendall(b"POST /v1/models/tfqa:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(body) + body[: len(body) // 2])
        stall_started = time.monotonic()

        def client(k: int) -> list:
            wrong = []
            with requests.Session() as session:
                for i in range(10):
                    q, c = f"Question {k} {i}?", f"{WORDS[(k + i) % len(WORDS)]} and more words {k}"
                    got = session.post(predict, json={"instances": [{"question": q, "context": c}]}, timeout=60)
                    if got.status_code != 200 or got.json() != {"predictions": [expected_answer(q, c)]}:
                        wrong.append((k, i, got.status_code, got.text[:200]))
            return wrong

        with ThreadPoolExecutor(32) as pool:
            wrong = [w for ws in pool.map(client, range(32)) for w in ws]
        assert wrong == []
        assert time.monotonic() - stall_started < 30, "the stalled request did not hold the others up"
        time.sleep(max(0.0, 30 - (time.monotonic() - stall_started)))
        stalled.close()
        assert post(predict, ["Who won?"], ["Broncos won"]).json()["predictions"][0]["answer"] == "Broncos"
        time.sleep(1)
        grown = rss_mb(proc.pid) - start_rss
        assert grown < 64, f"the server's memory grew by {grown:.0f} MB under load"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
