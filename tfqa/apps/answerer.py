"""`tfqa.QuestionAnswerer`: answers from Python in one call, from a training run or an export.

    qa = tfqa.QuestionAnswerer.from_pretrained("runs/squad")   # or runs/squad/export/tfqa, or .../export/tfqa/3
    qa("Who won?", "Denver Broncos won Super Bowl 50.")
    # {"answer": "Denver Broncos", "score": 11.3, "start": 0, "end": 14}   (+ "null_score_diff": SQuAD 2.0)
    qa(["Who won?", "Which Super Bowl?"], "Denver Broncos won Super Bowl 50.")   # a list of dicts
    qa("Who won?", "Denver Broncos won Super Bowl 50.", top_k=3)             # the 3 best spans, best first

A run directory is answered by the Python pipeline `python -m tfqa predict`
runs (`tfqa.modeling.prediction`), an export by its raw-text signature loaded
as `python -m tfqa serve` loads it (`tfqa.serving.export_answerer`). Either way the
windowing and decoding settings — window size, stride, n-best, maximum answer
length, SQuAD 2.0 and its null threshold — are the run's own (its
`tfqa_config.json`, baked into the export), never given again here, and the
result is one `tfqa.serving.answers.Answer` per question, turned into dicts last.

Why this lives in `tfqa.apps`: it loads run directories (`tfqa.modeling`) and
exports (`tfqa.serving`), and only the apps layer may use both; it is
what a person calls, like the command line. `import tfqa` stays TensorFlow-free:
`tfqa.QuestionAnswerer` imports this module on first use.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from tfqa.apps.quiet import quiet_while
from tfqa.core.config import MAX_INT
from tfqa.core.errors import TfqaError
from tfqa.core.run_dir import KERAS_MODEL_FILE, MODEL_CONFIG_FILE, saved_model_backend
from tfqa.export.versions import is_export
from tfqa.serving.answers import Answer, Span, float32


class AnswererLoadError(TfqaError, ValueError):
    """The path is neither a training run directory nor an export; one line."""


class _RunDir:
    """A `save_pretrained` model + tokenizer + tfqa_config.json, answered by the Python pipeline."""

    def __init__(self, path: Path, batch_size: int):
        from tfqa.core.run_dir import load_settings
        from tfqa.modeling.backend import load_model

        self.config = load_settings(path)
        self.model, self.tokenizer = load_model(str(path))
        self.batch_size = batch_size
        self.max_top_k = self.config.n_best_size
        self.description = f"{path} (training run, answered by the Python pipeline)"

    def answer(self, questions: list[str], contexts: list[str]) -> list[Answer]:
        from tfqa.core.features import prepare_features
        from tfqa.core.squad import Example
        from tfqa.modeling.prediction import predict_answers

        examples = [Example(str(i), "", q, c, ()) for i, (q, c) in enumerate(zip(questions, contexts))]
        features = prepare_features(examples, self.tokenizer, config=self.config.features)
        predictions, nbest, null_odds = predict_answers(self.model, features, examples, self.config.decoding,
                                                        self.batch_size)
        results = []
        for e in examples:
            # The n-best entries as the export's candidates: the same Span records, scored alike.
            spans = [Span(x["text"], x["start_logit"] + x["end_logit"], x["answer_start"],
                          x["answer_start"] + len(x["text"])) for x in nbest[e.id] if x["text"]]
            best_score = spans[0].score if spans else 0.0  # decoding's score when there is no span
            diff = null_odds.get(e.id)
            answered = bool(predictions[e.id])
            # As the export: an answer's score is its span's, a SQuAD 2.0 "no answer"'s the null score.
            score = best_score if answered or diff is None else diff + best_score
            results.append(Answer(predictions[e.id], float32(score), spans[0].start if answered else -1,
                                  spans[0].end if answered else -1, None if diff is None else float32(diff),
                                  tuple(replace(s, score=float32(s.score)) for s in spans)))
        return results


class _Export:
    """The newest version of a raw-text tfqa export (`tfqa.serving.export_answerer`, shared with the demo)."""

    def __init__(self, path: Path, batch_size: int):
        from tfqa.serving.export_answerer import ExportAnswerer, NotRawText

        try:
            self.answerer = ExportAnswerer(path, "QuestionAnswerer")
        except NotRawText as e:
            raise AnswererLoadError(str(e)) from None
        self.batch_size = batch_size
        self.max_top_k = self.answerer.candidate_slots
        self.description = f"{self.answerer.servable.path} (export version {self.answerer.version})"

    def answer(self, questions: list[str], contexts: list[str]) -> list[Answer]:
        # The tensors `python -m tfqa serve` encodes, so `ask --model` prints what `ask --server` does.
        return self.answerer.answer(questions, contexts, self.batch_size)


class QuestionAnswerer:
    """Extractive QA in one call: `qa(question, context)` → {"answer", "score", "start", "end"}.

    Build it with `from_pretrained(path)`. `start`/`end` are character offsets
    into the context as Python counts them (`context[start:end] == answer`),
    -1 when a SQuAD 2.0 model answers "" (then `score` is the null score and
    `null_score_diff` — null score − best span score — exceeds the run's
    threshold). Lists of questions (with one context each, or one context for
    all) give a list of results, answered in batches.
    """

    def __init__(self, backend):
        self._backend = backend

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, batch_size: int = 32,
                        verbose: bool = False) -> "QuestionAnswerer":
        """Loads a training run directory (`save_pretrained` model + tokenizer + tfqa_config.json) or an export
        (a base directory with integer versions, its newest one is used, or one version directory).

        `batch_size`: questions per model call (a run directory: windows per batch), an int from 1 to
        `MAX_INT`. `verbose`: also show TensorFlow's and transformers' start-up and loading messages, which
        are otherwise kept off stderr while loading (`tfqa.apps.quiet.quiet_while`; nothing else changes).
        Raises TypeError/ValueError for bad arguments, before anything loads.
        """
        _check_arguments(path, batch_size, verbose)
        path = Path(path)
        if not path.is_dir():
            raise AnswererLoadError(f"{path}: no such directory (expected a training run's --output_dir or an "
                                    "export such as OUTPUT_DIR/export/tfqa)")
        with quiet_while(verbose):
            if is_export(path):
                return cls(_Export(path, batch_size))
            if saved_model_backend(path):
                return cls(_RunDir(path, batch_size))
        raise AnswererLoadError(f"{path}: neither a training run ({MODEL_CONFIG_FILE} of a save_pretrained model, or "
                                f"{KERAS_MODEL_FILE}) "
                                "nor an export (saved_model.pb, or version folders 1/, 2/, ...)")

    @property
    def description(self) -> str:
        """What answers: the path and whether it is a run directory or an export version."""
        return self._backend.description

    def __call__(self, question: str | list[str], context: str | list[str], *, top_k: int = 1):
        """The answer to `question` about `context` (lists: one result per question, in order).

        `top_k` > 1: instead of one dict, a list of the `top_k` best spans per
        question ({"answer", "score", "start", "end"}, best first; fewer when the
        context has fewer), before any SQuAD 2.0 "no answer" decision.
        Raises ValueError for empty or non-string inputs.
        """
        questions, contexts = _checked(question, context)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= self._backend.max_top_k:
            raise ValueError(f"top_k must be an integer from 1 to {self._backend.max_top_k} (the spans this model "
                             f"ranks per question), got {top_k!r}")
        answers = self._backend.answer(questions, contexts)
        results = [[s.to_dict() for s in a.spans()[:top_k]] if top_k > 1 else a.to_dict() for a in answers]
        return results[0] if isinstance(question, str) else results

    def answers(self, questions: str | list[str], contexts: str | list[str]) -> list[Answer]:
        """The `tfqa.serving.answers.Answer` records of the questions (one context for all, or one each), in order.

        What `__call__` converts to dicts; `to_row()` gives TF Serving's JSON row of the same answer.
        """
        return self._backend.answer(*_checked(questions, contexts))


def _check_arguments(path, batch_size, verbose) -> None:
    """TypeError/ValueError naming the parameter of `from_pretrained` that cannot work (see its docstring)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"batch_size must be an int, not {type(batch_size).__name__} ({batch_size!r})")
    if not 1 <= batch_size <= MAX_INT:
        raise ValueError(f"batch_size must be from 1 to {MAX_INT} (got {batch_size})")
    if not isinstance(verbose, bool):
        raise TypeError(f"verbose must be True or False, not {verbose!r}")


def _checked(question, context) -> tuple[list[str], list[str]]:
    """(questions, contexts) as equal-length lists of non-blank strings, else ValueError saying which."""
    def strings(value, what: str) -> list[str]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"{what} must be a string or a list of strings, not {type(value).__name__}")
        if not items:
            raise ValueError(f"{what}: the list is empty")
        for i, item in enumerate(items):
            where = what if isinstance(value, str) else f"{what}[{i}]"
            if not isinstance(item, str):
                raise ValueError(f"{where} must be a string, not {type(item).__name__}")
            if not item.strip():
                raise ValueError(f"{where} is empty")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(f"{where} is not valid text ({e.reason} at character {e.start})") from None
        return list(items)

    questions = strings(question, "question")
    contexts = strings(context, "context")
    if isinstance(question, str) and not isinstance(context, str):
        raise ValueError("one question with a list of contexts: pass a list of questions, one per context")
    if isinstance(context, str):
        contexts = contexts * len(questions)
    elif len(contexts) != len(questions):
        raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts (give one context per question, "
                         "or one context string for all)")
    return questions, contexts
