"""One export answerer: the newest version of a raw-text tfqa export, loaded as the server loads it.

`tfqa.QuestionAnswerer` (an export path) and the demo's local backend both
answer through `ExportAnswerer`: "load the newest version and check that it
takes raw text" is written here once, and both get `Answer` records
(`tfqa.serving.answers`) computed from the same tensors the server encodes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfqa.export.names import CANDIDATE_ANSWERS, CONTEXT, QUESTION, SERVING_DEFAULT, TEXT_INPUTS
from tfqa.export.versions import is_version_name
from tfqa.serving.answers import Answer
from tfqa.serving.errors import ModelDirError
from tfqa.serving.servables import find_versions, load_servable


class NotRawText(ModelDirError):
    """The export's default signature does not take raw question + context text (a token-id export)."""


def text_arrays(questions: list[str], contexts: list[str]) -> dict[str, np.ndarray]:
    """The raw-text signature's inputs for lists of questions and contexts (UTF-8 string tensors)."""
    return {QUESTION: np.array([q.encode() for q in questions], dtype=object),
            CONTEXT: np.array([c.encode() for c in contexts], dtype=object)}


class ExportAnswerer:
    """The newest version of an export base directory (or one version directory), checked to take raw text.

    `needed_by` names the caller in the refusal of a token-id export ("the demo",
    "QuestionAnswerer"). Raises ModelDirError (one line) for unusable paths and
    `NotRawText` for exports without a raw-text default signature.
    """

    def __init__(self, path: str | os.PathLike, needed_by: str):
        path = Path(path)
        if (path / "saved_model.pb").exists():
            version = int(path.name) if is_version_name(path.name) else 0
        else:
            version, path = max(find_versions(path).items())
        self.servable = load_servable(version, path)
        self.signature = self.servable.signature(SERVING_DEFAULT)
        if set(self.signature.dtypes) != set(TEXT_INPUTS):
            raise NotRawText(f"{path}: {SERVING_DEFAULT} takes {', '.join(sorted(self.signature.dtypes))}, not raw "
                             f"question + context text; {needed_by} needs a raw-text tfqa export")
        self._candidate_slots: int | None = None

    @property
    def version(self) -> int:
        """The loaded version (0 for a SavedModel folder not named by an integer)."""
        return self.servable.version

    @property
    def candidate_slots(self) -> int:
        """How many best spans the export lists per question (1 without `candidate_*` outputs).

        Not in the signature (a dynamic dimension), so the model is asked once.
        """
        if self._candidate_slots is None:
            probe = self.run(["?"], ["probe"])
            self._candidate_slots = probe[CANDIDATE_ANSWERS].shape[1] if CANDIDATE_ANSWERS in probe else 1
        return self._candidate_slots

    def run(self, questions: list[str], contexts: list[str], batcher=None) -> dict[str, np.ndarray]:
        """The signature's outputs for these questions (through `batcher`, a `tfqa.serving.batching.Batcher`)."""
        arrays = text_arrays(questions, contexts)
        if batcher is not None:
            return batcher.run(self.servable, self.signature, arrays)
        return self.servable.run(self.signature, arrays)

    def answer(self, questions: list[str], contexts: list[str], batch_size: int = 32, batcher=None) -> list[Answer]:
        """One Answer per question, `batch_size` questions per model call; ServingFailure when the model refuses."""
        answers = []
        for i in range(0, len(questions), batch_size):
            outputs = self.run(questions[i:i + batch_size], contexts[i:i + batch_size], batcher)
            answers.extend(Answer.from_outputs(outputs))
        return answers
