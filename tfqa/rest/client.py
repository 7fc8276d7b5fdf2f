"""A client for TensorFlow Serving's REST API, for tfqa's question-answering exports.

Works against TF Serving (the `tensorflow/serving` image) and `python -m tfqa
serve` alike:

    client = ServingClient("http://localhost:8501/v1/models/tfqa")
    client.answer(["Who won?", "Where?"], "Denver Broncos won Super Bowl 50 in Santa Clara.")
    # [{"answer": "Denver Broncos", "score": ..., "answer_start": 0, "answer_end": 14}, ...]

Every failure (no server, timeout, HTTP error, a response that is not the
expected JSON) raises `ServingError` with one line saying what went wrong.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import requests

from tfqa.core.errors import TfqaError
from tfqa.export.names import CONTEXT, QUESTION, SERVING_DEFAULT
from tfqa.serving.answers import Answer, AnswerFormatError
from tfqa.serving.limits import seconds_problem

_MODEL_URL = re.compile(r"(https?://[^/\s]+(?:/[^\s]*)?/v1/models/[^/:\s]+)(?:/versions/(\d+)|/labels/([^/:\s]+))?/?")


class ServingError(TfqaError, RuntimeError):
    """A request to the model server failed; the message is one line."""


class ServingClient:
    """Speaks TF Serving's REST API to one model: status, metadata and batched QA predictions.

    `server` is the model URL (`http://HOST:8501/v1/models/NAME`, optionally
    with `/versions/N` or `/labels/L`); `version=`/`label=` pick one too.
    `format` is the request layout: "row" (`instances`) or "columnar"
    (`inputs`); both give the same answers. `timeout` is in seconds.
    """

    def __init__(self, server: str, *, version: int | None = None, label: str | None = None,
                 signature_name: str = SERVING_DEFAULT, format: str = "row", batch_size: int = 32,
                 timeout: float = 30.0, session: requests.Session | None = None):
        match = _MODEL_URL.fullmatch(server.strip())
        if not match:
            raise ValueError(f"{server!r} is not a model URL like http://localhost:8501/v1/models/tfqa")
        base, url_version, url_label = match.groups()
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
            raise ValueError(f"version must be a non-negative integer, not {version!r}")
        version = version if version is not None else (int(url_version) if url_version else None)
        # A label given apart is one path segment, quoted ("../x" must not reach /v1/models/x:predict);
        # one in the URL is already written as a URL segment.
        label = quote(label, safe="") if label is not None else url_label
        if version is not None and label is not None:
            raise ValueError("give a version or a label, not both")
        if format not in ("row", "columnar"):
            raise ValueError(f"format must be 'row' or 'columnar', not {format!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        problem = seconds_problem(timeout, "timeout")
        if problem:
            raise ValueError(problem)
        self.model_url = base + (f"/versions/{version}" if version is not None else "") + (
            f"/labels/{label}" if label is not None else "")
        self.signature_name, self.format, self.batch_size, self.timeout = signature_name, format, batch_size, timeout
        self.session = session or requests.Session()

    def status(self) -> dict:
        """The model's GetModelStatusResponse JSON (`model_version_status`)."""
        return self._call("GET", self.model_url)

    def metadata(self) -> dict:
        """The model's GetModelMetadataResponse JSON (`model_spec`, `metadata.signature_def`)."""
        return self._call("GET", self.model_url + "/metadata")

    def predict(self, inputs: dict[str, list], signature_name: str | None = None) -> list[dict]:
        """One predict call: {input: [value per example]} → [{output: value} per example], in `self.format`."""
        if not inputs:
            raise ValueError("predict needs at least one named input")
        sig = signature_name or self.signature_name
        n = len(next(iter(inputs.values())))
        if self.format == "row":
            body = {"signature_name": sig, "instances": [{k: v[i] for k, v in inputs.items()} for i in range(n)]}
        else:
            body = {"signature_name": sig, "inputs": inputs}
        response = self._call("POST", self.model_url + ":predict", body)
        return self._rows(response, n)

    def answer(self, questions: str | list[str], contexts: str | list[str]) -> list[dict]:
        """Answers each question about its context (one context string serves all), `batch_size` per call.

        Returns one dict per question: answer, score, answer_start, answer_end
        (character offsets into the context, -1 without an answer) and, for
        SQuAD 2.0 models, null_score_diff.
        """
        questions = [questions] if isinstance(questions, str) else list(questions)
        contexts = [contexts] * len(questions) if isinstance(contexts, str) else list(contexts)
        if len(contexts) != len(questions):
            raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts")
        results = []
        for start in range(0, len(questions), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            rows = self.predict({QUESTION: questions[chunk], CONTEXT: contexts[chunk]})
            results.extend(self._answer(row).to_row(candidates=False) for row in rows)
        return results

    def _answer(self, row: dict) -> Answer:
        try:
            return Answer.from_row(row)
        except AnswerFormatError as e:
            raise ServingError(f"{self.model_url}: {e}; is this a tfqa export and the right signature?") from None

    def _rows(self, response: dict, n: int) -> list[dict]:
        """Per-example output dicts from a row (`predictions`) or columnar (`outputs`) response."""
        try:
            if self.format == "row":
                rows = response["predictions"]
                if rows and not isinstance(rows[0], dict):  # one-output signatures leave the name out
                    rows = [{"output": value} for value in rows]
            else:
                outputs = response["outputs"]
                if not isinstance(outputs, dict):
                    outputs = {"output": outputs}
                rows = [{k: v[i] for k, v in outputs.items()} for i in range(n)]
            if len(rows) != n:
                raise ValueError(f"{len(rows)} results for {n} examples")
            return rows
        except (KeyError, TypeError, IndexError, ValueError) as e:
            raise ServingError(f"{self.model_url}: unexpected predict response ({e}): "
                               f"{json.dumps(response)[:200]}") from None

    def _call(self, method: str, url: str, body: dict | None = None) -> dict:
        """One HTTP request; the parsed JSON object it returns, or ServingError."""
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
        try:
            response = self.session.request(method, url, data=data, timeout=self.timeout,
                                            headers={"Content-Type": "application/json"} if data else None)
        except requests.exceptions.ConnectTimeout:
            raise ServingError(f"{url}: could not connect within {self.timeout:g} s (timeout)") from None
        except requests.exceptions.Timeout:
            raise ServingError(f"{url}: no answer within {self.timeout:g} s (timeout; raise it with "
                               "timeout= / --timeout)") from None
        except requests.exceptions.ConnectionError as e:
            if "refused" in str(e).lower():
                raise ServingError(f"{url}: connection refused: no server answers there (start one with "
                                   "`python -m tfqa serve --model export/NAME` or TensorFlow Serving)") from None
            raise ServingError(f"{url}: connection failed: {_reason(e)}") from None
        except requests.exceptions.RequestException as e:
            raise ServingError(f"{url}: request failed: {_reason(e)}") from None
        try:
            payload = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            payload = None
        if response.status_code >= 400:
            error = payload.get("error") if isinstance(payload, dict) else None
            detail = error or response.text.strip()[:200] or "(empty body)"
            raise ServingError(f"{url}: HTTP {response.status_code} {response.reason}: {detail}")
        if not isinstance(payload, dict):
            raise ServingError(f"{url}: the response is not a JSON object: {response.text.strip()[:200]!r}")
        return payload


def _reason(error: Exception) -> str:
    """The innermost cause of a requests error, without urllib3's pool boilerplate."""
    text = str(error)
    inner = re.findall(r"\(Caused by \w+\((.*)\)\)", text)
    return (inner[-1] if inner else text).strip("'\" ")[:200]
