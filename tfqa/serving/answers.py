"""The answer record: one shape for an export's answer, whichever way it was asked, and its conversions.

The export answers in tensors (`tfqa.export.names`); TF Serving's REST API
writes them as rows (`answer_start`/`answer_end`, strings that are not UTF-8 as
`{"b64": ...}`) or columns; Python callers get `{answer, score, start, end}`.
`Answer` is the one record between them: built from the signature's outputs
(`from_outputs`, NumPy or columnar lists) or a REST row (`from_row`), and
written back as a REST row (`to_row`), columns (`to_columns`) or the Python
dict (`to_dict`). Scores are the shortest decimal of their float32, as TF
Serving's JSON writes them, so one question gets the same numbers every way.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from tfqa.export.names import (ANSWER, ANSWER_END, ANSWER_START, CANDIDATE_ANSWERS, CANDIDATE_ENDS, CANDIDATE_SCORES,
                               CANDIDATE_STARTS, NULL_SCORE_DIFF, SCORE)

CANDIDATE_OUTPUTS = (CANDIDATE_ANSWERS, CANDIDATE_SCORES, CANDIDATE_STARTS, CANDIDATE_ENDS)


class AnswerFormatError(ValueError):
    """Outputs or a row that are not a tfqa answer (a missing output); front ends add where they came from."""


def float32(value) -> float:
    """The shortest decimal that reads back as the same float32 (TF Serving's JSON, the export's scores)."""
    return float(str(np.float32(value)))


def text_of(value) -> str:
    """An answer string from bytes, text, or TF Serving's `{"b64": ...}` (not UTF-8: U+FFFD, as the export reads)."""
    if isinstance(value, dict) and "b64" in value:
        value = base64.b64decode(value["b64"])
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


@dataclass(frozen=True)
class Span:
    """One candidate span: its text and score, and its character offsets into the context."""

    text: str
    score: float
    start: int
    end: int

    def to_dict(self) -> dict:
        """The Python shape of a span, as `QuestionAnswerer(..., top_k=k)` lists them."""
        return {"answer": self.text, "score": self.score, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class Answer:
    """One question's answer: text, score, character span (-1, -1 for ""), SQuAD 2.0 null odds, best spans.

    `null_score_diff` is None for SQuAD 1.1 exports; `candidates` are empty for
    exports without the `candidate_*` outputs.
    """

    answer: str
    score: float
    start: int
    end: int
    null_score_diff: float | None = None
    candidates: tuple[Span, ...] = ()

    @classmethod
    def from_row(cls, row: dict) -> "Answer":
        """From one REST prediction row (`{"answer", "score", "answer_start", ...}`); AnswerFormatError if not one."""
        missing = [name for name in (ANSWER, SCORE, ANSWER_START, ANSWER_END) if name not in row]
        if missing:
            raise AnswerFormatError(f"the model's outputs ({', '.join(sorted(row))}) have no "
                                    f"{', '.join(repr(m) for m in missing)}")
        columns = [row.get(name, []) for name in CANDIDATE_OUTPUTS]
        candidates = tuple(Span(text_of(t), float(s), int(a), int(b)) for t, s, a, b in zip(*columns)
                           if int(a) >= 0)  # unused slots are "" / -1
        null = row.get(NULL_SCORE_DIFF)
        return cls(text_of(row[ANSWER]), float(row[SCORE]), int(row[ANSWER_START]), int(row[ANSWER_END]),
                   None if null is None else float(null), candidates)

    @classmethod
    def from_outputs(cls, outputs: dict) -> list["Answer"]:
        """One Answer per row of the signature's outputs (NumPy arrays, or the columnar form's lists)."""
        if ANSWER not in outputs:
            raise AnswerFormatError(f"the model's outputs ({', '.join(sorted(outputs))}) have no 'answer'")
        columns = {name: _python(value) for name, value in outputs.items()}
        n = len(columns[ANSWER])
        return [cls.from_row({name: column[i] for name, column in columns.items()}) for i in range(n)]

    def to_row(self, candidates: bool = True) -> dict:
        """The REST prediction row (names of the export's outputs; `candidates=False`: the answer only)."""
        row = {ANSWER: self.answer, SCORE: self.score, ANSWER_START: self.start, ANSWER_END: self.end}
        if self.null_score_diff is not None:
            row[NULL_SCORE_DIFF] = self.null_score_diff
        if candidates and self.candidates:
            for name, field in zip(CANDIDATE_OUTPUTS, ("text", "score", "start", "end")):
                row[name] = [getattr(span, field) for span in self.candidates]
        return row

    def to_dict(self) -> dict:
        """The Python shape (`QuestionAnswerer`): {answer, score, start, end} (+ null_score_diff for SQuAD 2.0)."""
        result = {"answer": self.answer, "score": self.score, "start": self.start, "end": self.end}
        if self.null_score_diff is not None:
            result[NULL_SCORE_DIFF] = self.null_score_diff
        return result

    def spans(self) -> list[Span]:
        """The best spans, best first; the answer's own span when the export lists none (and it has one)."""
        if self.candidates or self.start < 0:
            return list(self.candidates)
        return [Span(self.answer, self.score, self.start, self.end)]


def to_columns(answers: list[Answer], candidates: bool = True) -> dict[str, list]:
    """The columnar form of several answers: {output name: one value per answer}, as a columnar response holds."""
    rows = [a.to_row(candidates) for a in answers]
    names = [name for name in rows[0]] if rows else []
    return {name: [row.get(name) for row in rows] for name in names}


def _python(value) -> list:
    """A batch of one output as Python values: text as str, float32 as its shortest decimal, ints as int."""
    if isinstance(value, np.ndarray):
        if value.dtype in (np.float16, np.float32):
            return [float32(v) if v.ndim == 0 else [float32(x) for x in v] for v in value]
        return value.tolist()
    return list(value)
