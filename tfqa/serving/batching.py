"""Server-side request batching, as TF Serving's `--enable_batching` does it.

Concurrent predict requests for the same servable and signature are queued
and merged into one model call of at most `max_batch_size` rows; the outputs
are split back, row for row, to the requests they came from. A worked example
with `max_batch_size` 4, requests A (1 row), B (2 rows), C (3 rows) arriving
together: batch 1 = A0 B0 B1 C0, batch 2 = C1 C2. C is split over two batches
(TF Serving's large-batch splitting) and answered once both have run, its rows
in its own order. The queue holds at most `max_enqueued_batches` batches; a
request that does not fit is refused at once with TF Serving's UNAVAILABLE
error (HTTP 503) and everything already queued still runs.

A batch is handed to one of `num_batch_threads` threads when it is full, when
its oldest request has waited `batch_timeout_micros`, or (timeout 0) as soon as
a thread is free: while a thread runs one batch, requests arriving meanwhile
fill the next, so batches grow with the load and a lone request never waits.

Only rows are merged: a signature qualifies when every input has a known rank
with a free batch dimension, and requests are merged only with requests whose
inputs agree beyond that dimension (dtype and the other dimensions). Anything
else runs alone, exactly as without batching.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import numpy as np

from tfqa.serving.batching_config import BatchingParameters
from tfqa.serving.errors import Code, ServingFailure
from tfqa.serving.metrics import ServingMetrics
from tfqa.serving.servables import Servable, Signature

SHUTTING_DOWN = "the server is shutting down"
QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"
log = logging.getLogger("tfqa.serving.batching")


class _Task:
    """One request: its input rows, and its outputs as the batches holding its pieces finish."""

    def __init__(self, arrays: dict[str, np.ndarray], size: int):
        self.arrays, self.size = arrays, size
        self.pieces: dict[int, dict[str, np.ndarray]] = {}  # row offset → outputs of those rows
        self.pending = 0
        self.finished: set[int] = set()  # offsets of the pieces answered (a failing thread skips them)
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.enqueued = time.monotonic()

    def finish_piece(self, offset: int, outputs: dict | None, error: BaseException | None) -> None:
        # Called under the batcher's lock, so `pending` needs no lock of its own.
        self.finished.add(offset)
        if error is not None and self.error is None:
            self.error = error
        if outputs is not None:
            self.pieces[offset] = outputs
        self.pending -= 1
        if self.pending == 0:
            self.done.set()

    def result(self) -> dict[str, np.ndarray]:
        self.done.wait()
        if self.error is not None:
            raise self.error
        parts = [self.pieces[offset] for offset in sorted(self.pieces)]
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


class _Batch:
    """Rows for one model call: (task, offset, count) slices in arrival order."""

    def __init__(self, servable: Servable, signature: Signature):
        self.servable, self.signature = servable, signature
        self.slices: list[tuple[_Task, int, int]] = []
        self.size = 0
        self.created = time.monotonic()

    def inputs(self, padded: int) -> dict[str, np.ndarray]:
        """The merged inputs, padded to `padded` rows with copies of the first row (as TF Serving pads)."""
        merged = {}
        for name in self.signature.dtypes:
            parts = [task.arrays[name][offset:offset + count] for task, offset, count in self.slices]
            if padded > self.size:
                parts.append(np.repeat(parts[0][:1], padded - self.size, axis=0))
            merged[name] = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return merged


def batch_size_of(signature: Signature, arrays: dict[str, np.ndarray]) -> int | None:
    """The request's rows when it can be merged with others (see the module docstring), else None."""
    sizes = set()
    for name, array in arrays.items():
        shape = signature.shapes.get(name)
        if shape is None or not shape or shape[0] is not None or array.ndim == 0:
            return None
        sizes.add(array.shape[0])
    return sizes.pop() if len(sizes) == 1 and 0 not in sizes else None


class Batcher:
    """Merges concurrent `run` calls into batched model calls (see the module docstring); threads start lazily."""

    def __init__(self, params: BatchingParameters, metrics: ServingMetrics | None = None):
        params.validate()
        self.params, self.metrics = params, metrics
        self._cond = threading.Condition()
        self._queues: dict[tuple, deque[_Batch]] = {}
        self._threads: list[threading.Thread] = []
        self._thread_limit = params.num_batch_threads  # lowered when the system refuses more threads
        self._closed = False
        self.batches_run = 0  # model calls made (tests and benchmarks read the merge rate off it)

    def run(self, servable: Servable, signature: Signature, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What `servable.run(signature, arrays)` returns, computed in a batch with concurrent requests.

        Raises ServingFailure(Code.UNAVAILABLE) when the queue is full, and the model's own ServingFailure.
        """
        size = batch_size_of(signature, arrays)
        if size is None:
            return servable.run(signature, arrays)
        key = (id(servable), signature.name,
               tuple((name, str(a.dtype), a.shape[1:]) for name, a in sorted(arrays.items())))
        task = _Task(arrays, size)
        with self._cond:
            if self._closed:
                raise ServingFailure(SHUTTING_DOWN, Code.UNAVAILABLE)
            self._start_threads()
            queue = self._queues.setdefault(key, deque())
            self._enqueue(queue, task, servable, signature)
            self._cond.notify_all()
        return task.result()

    def queued_rows(self) -> int:
        """Rows waiting in the queues (not yet handed to a thread)."""
        with self._cond:
            return sum(batch.size for queue in self._queues.values() for batch in queue)

    def _enqueue(self, queue: deque[_Batch], task: _Task, servable: Servable, signature: Signature) -> None:
        limit, room = self.params.max_batch_size, 0
        if queue:
            room = limit - queue[-1].size
        room += (self.params.max_enqueued_batches - len(queue)) * limit
        if task.size > room:
            raise ServingFailure(QUEUE_FULL, Code.UNAVAILABLE)
        offset = 0
        while offset < task.size:
            if not queue or queue[-1].size == limit:
                queue.append(_Batch(servable, signature))
            batch = queue[-1]
            count = min(task.size - offset, limit - batch.size)
            batch.slices.append((task, offset, count))
            batch.size += count
            task.pending += 1
            offset += count

    def _start_threads(self) -> None:
        """Starts the batch threads still missing; when the system has no more, serves with those it has."""
        while len(self._threads) < min(self.params.num_batch_threads, self._thread_limit):
            thread = threading.Thread(target=self._work, name=f"{self.params.thread_pool_name}_{len(self._threads)}",
                                      daemon=True)
            try:
                thread.start()
            except RuntimeError:  # "can't start new thread": do not try again on every request
                self._thread_limit = len(self._threads)
                log.warning("could start only %d of %d batch threads", len(self._threads),
                            self.params.num_batch_threads)
                if not self._threads:
                    raise ServingFailure("cannot start a batch thread (the system has no more threads)",
                                         Code.UNAVAILABLE) from None
                return
            self._threads.append(thread)

    def _next_batch(self) -> tuple[_Batch | None, float | None]:
        """(the oldest batch ready to run, None) or (None, seconds until one may be ready; None: no batch)."""
        timeout = self.params.batch_timeout_micros / 1e6
        now, wait = time.monotonic(), None
        ready: deque[_Batch] | None = None
        for queue in self._queues.values():
            if not queue:
                continue
            head = queue[0]
            due = head.created + timeout
            if head.size >= self.params.max_batch_size or len(queue) > 1 or due <= now:
                if ready is None or head.created < ready[0].created:
                    ready = queue
            else:
                wait = due - now if wait is None else min(wait, due - now)
        if ready is None:
            return None, wait
        return ready.popleft(), None

    def _work(self) -> None:
        while True:
            batch = None
            try:
                with self._cond:
                    while True:
                        if self._closed:
                            return
                        batch, wait = self._next_batch()
                        if batch is not None:
                            break
                        self._cond.wait(wait)
                self._run_batch(batch)
            except Exception as e:  # noqa: BLE001 - a bug here must not leave requests waiting forever
                log.exception("batch thread error; failing the requests it holds")
                self._fail_all(batch, ServingFailure(f"batching failed: {type(e).__name__}: {e}", Code.INTERNAL))

    def _fail_all(self, batch: _Batch | None, error: ServingFailure) -> None:
        """Answers `error` to the requests of `batch` and of every queue (nothing is known to be sound)."""
        with self._cond:
            batches = ([batch] if batch is not None else []) + [b for queue in self._queues.values() for b in queue]
            for queue in self._queues.values():
                queue.clear()
            for failed in batches:
                for task, offset, _ in failed.slices:
                    if offset not in task.finished:
                        task.finish_piece(offset, None, error)

    def _run_batch(self, batch: _Batch) -> None:
        if self.metrics is not None:  # TF Serving's queuing latency: enqueued → its batch's model call starts
            now = time.monotonic()
            for task, _, _ in batch.slices:
                self.metrics.queued(self.params.thread_pool_name, now - task.enqueued)
        results = self._call(batch)
        with self._cond:
            self.batches_run += 1
            for (task, offset, _), (outputs, error) in zip(batch.slices, results):
                task.finish_piece(offset, outputs, error)

    def _call(self, batch: _Batch) -> list[tuple[dict | None, BaseException | None]]:
        """(outputs, error) per slice of the batch."""
        padded = self.params.padded_size(batch.size)
        whole = len(batch.slices) == 1 and batch.slices[0][2] == batch.slices[0][0].size == padded
        try:
            outputs = batch.servable.run(batch.signature, batch.inputs(padded))
            if whole:  # one whole request, unpadded: its outputs as they are, whatever their shapes
                return [(outputs, None)]
            for name, value in outputs.items():
                if value.ndim == 0 or value.shape[0] != padded:
                    raise ServingFailure(f"Batched output tensor '{name}' has {value.shape[0] if value.ndim else 0}"
                                         f" rows for a batch of {padded}: this signature cannot be batched")
        except ServingFailure as e:
            if len(batch.slices) == 1:
                return [(None, e)]
            # One bad request must not fail the others merged with it: run each slice alone.
            return [self._call_alone(batch, s) for s in batch.slices]
        except Exception as e:  # noqa: BLE001 - handed to the waiting request, which reports it as a 500
            return [(None, e)] * len(batch.slices)
        answers, start = [], 0
        for _, _, count in batch.slices:
            answers.append(({name: value[start:start + count] for name, value in outputs.items()}, None))
            start += count
        return answers

    def _call_alone(self, batch: _Batch, piece: tuple[_Task, int, int]):
        single = _Batch(batch.servable, batch.signature)
        single.slices, single.size = [piece], piece[2]
        return self._call(single)[0]

    def close(self) -> None:
        """Stops the threads after their current batch; requests still queued get UNAVAILABLE."""
        with self._cond:
            self._closed = True
            for queue in self._queues.values():
                for batch in queue:
                    for task, offset, _ in batch.slices:
                        task.finish_piece(offset, None, ServingFailure(SHUTTING_DOWN, Code.UNAVAILABLE))
                queue.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
