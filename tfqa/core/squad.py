"""SQuAD loading: official JSON files (v1.1/v2.0, plain or .gz) or TFDS → `Example`s.

Everything goes through one validating parser, `parse_squad_json`, so a file on
disk and a TFDS dataset are checked by exactly the same rules. Bad input raises
`DataError` with a message naming the source, the question id (or the JSON
location when there is no id) and the problem, because the usual consumer is a
person looking at a stack trace from a long training run.

Answers whose text is not found at `answer_start` are handled by a policy:
"error" (default) stops, "skip" drops the answer, "repair" moves `answer_start`
to the nearest occurrence of the text. The `LoadReport` says what was done.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from tfqa.core.errors import TfqaError
from tfqa.core.files import InputFileError, read_text

logger = logging.getLogger(__name__)

MISALIGNED_POLICIES = ("error", "skip", "repair")

# `squad`, `squad/v1.1`, `squad/v2.0`, each optionally followed by `:split`
# (the split may use TFDS slicing syntax such as `train[:10%]`).
_TFDS_NAME = re.compile(r"^(squad(?:/v1\.1|/v2\.0)?)(?::(.+))?$")


@dataclass(frozen=True)
class Answer:
    """One gold answer: its text and the character offset where it starts in the context."""

    text: str
    start: int

    @property
    def end(self) -> int:
        """Exclusive end offset: `context[start:end] == text`."""
        return self.start + len(self.text)


@dataclass(frozen=True)
class Example:
    """One question about one context; `answers` is empty for unanswerable questions."""

    id: str
    title: str
    question: str
    context: str
    answers: tuple[Answer, ...]
    is_impossible: bool = False


class DataError(TfqaError, ValueError):
    """Input data that cannot be used; the message names source, question id and problem."""


@dataclass
class LoadReport:
    """What loading did: how many questions, which SQuAD version, what was repaired or skipped."""

    source: str
    examples: int
    version: str
    repaired: int = 0
    skipped_answers: int = 0
    skipped_questions: int = 0

    def summary(self) -> str:
        """One human-readable line, e.g. `dev.json: 10570 questions (SQuAD 1.1); 2 answers repaired, 0 skipped`."""
        line = (
            f"{self.source}: {self.examples} questions (SQuAD {self.version}); "
            f"{self.repaired} answers repaired, {self.skipped_answers} skipped"
        )
        if self.skipped_questions:
            line += f", {self.skipped_questions} questions dropped (no answers left)"
        return line


def squad_version(examples: Iterable[Example]) -> str:
    """Returns "2.0" if any example is unanswerable (has no gold answer), else "1.1".

    Only `.answers` is read, so any example-shaped object works (the metrics take such objects).
    """
    return "2.0" if any(not ex.answers for ex in examples) else "1.1"


def is_tfds_name(source) -> bool:
    """Whether `source` names a TFDS SQuAD dataset (`squad`, `squad/v1.1`, `squad/v2.0`, optionally `:split`)."""
    return isinstance(source, str) and _TFDS_NAME.match(source) is not None


def load_squad(
    source, *, split: str = "validation", misaligned: str = "error", repair_window: int = 100
) -> list[Example]:
    """Like `read_squad` but returns only the examples, logging the report.

    The summary is logged at INFO, or at WARNING when answers were repaired or
    skipped, since then the data differs from what the file says.
    """
    examples, report = read_squad(source, split=split, misaligned=misaligned, repair_window=repair_window)
    changed = report.repaired or report.skipped_answers or report.skipped_questions
    logger.log(logging.WARNING if changed else logging.INFO, "%s", report.summary())
    return examples


def read_squad(
    source, *, split: str = "validation", misaligned: str = "error", repair_window: int = 100
) -> tuple[list[Example], LoadReport]:
    """Reads SQuAD from a JSON file (plain or .gz) or a TFDS name; returns examples and a report.

    `source` is a path when it exists on disk; otherwise `squad`, `squad/v1.1`
    or `squad/v2.0` (optionally `squad/v1.1:train`, which overrides `split`)
    is loaded with TFDS. Anything else raises DataError("... no such file").
    """
    _check_options(misaligned, repair_window)
    if not isinstance(source, (str, os.PathLike)):  # an int would be taken as an open file descriptor
        raise DataError(f"{source!r}: expected the path of a SQuAD JSON file or a TFDS name, "
                        f"not {type(source).__name__}")
    if os.path.exists(source):
        name = str(source)
        obj = _read_json_file(Path(source), name)
    else:
        match = _TFDS_NAME.match(str(source))
        if not match:
            raise DataError(f"{source}: no such file")
        tfds_name, tfds_split = match.group(1), match.group(2) or split
        name = f"{tfds_name}:{tfds_split}"
        obj = _load_tfds(tfds_name, tfds_split)
    return parse_squad_json(obj, source=name, misaligned=misaligned, repair_window=repair_window)


def _check_options(misaligned: str, repair_window: int) -> None:
    if misaligned not in MISALIGNED_POLICIES:
        raise ValueError(f"misaligned must be one of {', '.join(map(repr, MISALIGNED_POLICIES))}, not {misaligned!r}")
    if isinstance(repair_window, bool) or not isinstance(repair_window, int) or repair_window < 0:
        raise ValueError(f"repair_window must be a non-negative int, not {repair_window!r}")


def _read_json_file(path: Path, name: str) -> Any:
    try:
        return json.loads(read_text(path))
    except InputFileError as e:
        raise DataError(str(e)) from None
    except json.JSONDecodeError as e:
        raise DataError(f"{name}: not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from e
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        # EOFError: gzip stream cut short; zlib.error: damaged compressed data.
        raise DataError(f"{name}: corrupt or truncated gzip file ({e or type(e).__name__})") from e
    except UnicodeDecodeError as e:
        hint = " (a gzip file needs a .gz name)" if path.suffix != ".gz" and e.object[:2] == b"\x1f\x8b" else ""
        raise DataError(f"{name}: not UTF-8 text{hint}: {e}") from e
    except OSError as e:
        raise DataError(f"{name}: cannot read file: {e.strerror or e}") from e
    except RecursionError:  # e.g. 100,000 nested "[": no SQuAD file is more than 6 levels deep
        raise DataError(f"{name}: JSON nested too deeply to be SQuAD data") from None
    except ValueError as e:  # Python refuses to convert integers of more than 4,300 digits
        raise DataError(f"{name}: not usable JSON: {e}") from None


SQUAD_DOWNLOAD_HOST = "rajpurkar.github.io"  # where the TFDS squad builder downloads from


def host_reachable(host: str, timeout: float = 5.0) -> bool:
    """Whether `host` accepts an HTTPS connection: download clients retry for minutes when offline."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _download_reachable() -> bool:
    return host_reachable(SQUAD_DOWNLOAD_HOST)


def _load_tfds(name: str, split: str) -> dict:
    """Loads a TFDS SQuAD split and rebuilds it as an official-format JSON object.

    Consecutive examples with the same title/context are regrouped into
    articles/paragraphs so the result looks like the file TFDS was built from.
    """
    source = f"{name}:{split}"
    try:
        import tensorflow_datasets as tfds  # lazy: TensorFlow is slow to import and not needed for files

        if not tfds.builder(name).is_prepared() and not _download_reachable():
            raise DataError(f"{source}: TFDS has not prepared this dataset yet and its download site "
                            f"({SQUAD_DOWNLOAD_HOST}) cannot be reached - no network? Pass the path of a local "
                            "SQuAD JSON file instead")
        records = tfds.as_numpy(tfds.load(name, split=split))
        articles: list[dict] = []
        for rec in records:
            title, context = _text(rec["title"]), _text(rec["context"])
            qa = {
                "id": _text(rec["id"]),
                "question": _text(rec["question"]),
                "answers": [
                    {"text": _text(t), "answer_start": int(s)}
                    for t, s in zip(rec["answers"]["text"], rec["answers"]["answer_start"])
                ],
            }
            if "is_impossible" in rec:
                qa["is_impossible"] = bool(rec["is_impossible"])
            if not articles or articles[-1]["title"] != title:
                articles.append({"title": title, "paragraphs": []})
            paragraphs = articles[-1]["paragraphs"]
            if not paragraphs or paragraphs[-1]["context"] != context:
                paragraphs.append({"context": context, "qas": []})
            paragraphs[-1]["qas"].append(qa)
    except DataError:
        raise
    except Exception as e:  # DatasetNotFoundError, download failures, tf.errors...: all mean "not available"
        raise DataError(
            f"{source}: the TFDS dataset could not be loaded or downloaded ({type(e).__name__}: {e}); "
            "TFDS needs network access to download it the first time - "
            "pass the path of a local SQuAD JSON file instead"
        ) from e
    return {"version": "2.0" if name.endswith("v2.0") else "1.1", "data": articles}


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def parse_squad_json(
    obj, *, source: str = "<data>", misaligned: str = "error", repair_window: int = 100
) -> tuple[list[Example], LoadReport]:
    """Validates an already-decoded SQuAD JSON object and converts it to examples, in file order.

    Raises DataError for any structural problem, duplicate ids, offsets outside
    the context, and (with misaligned="error") answers not found at their offset.
    """
    _check_options(misaligned, repair_window)
    return _Parser(source, misaligned, repair_window).parse(obj)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def find_lone_surrogate(text: str) -> int:
    """Index of the first lone surrogate in `text`, -1 when there is none.

    JSON may spell one (`"\\ud800"` alone); Python then holds a string that
    cannot be encoded as UTF-8, which tokenizers, TensorFlow and files all
    refuse later, far from the record at fault. tfqa refuses such text where it
    enters (SQuAD files, REST requests), naming the record.
    (A pair such as "\\ud83d\\ude00" is decoded by `json` to one code point, 😀, and is fine.)
    """
    match = _LONE_SURROGATE.search(text)
    return -1 if match is None else match.start()


_KIND_NAMES = {str: "a string", int: "an integer", list: "a list", bool: "true or false"}


class _Parser:
    """One validation pass; holds the source name for messages and the report being filled in."""

    def __init__(self, source: str, misaligned: str, repair_window: int):
        self.source = source
        self.misaligned = misaligned
        self.repair_window = repair_window

    def fail(self, where: str, problem: str) -> DataError:
        return DataError(f"{self.source}: {where}: {problem}")

    def get(self, container: dict, key: str, kind: type, where: str):
        """container[key], checked to exist and to be of JSON type `kind`."""
        if key not in container:
            raise self.fail(where, f'missing "{key}"')
        value = container[key]
        # bool is an int subclass in Python, but `true` is never a valid offset.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(where, f'"{key}" must be {_KIND_NAMES[kind]}, not {type(value).__name__}')
        if kind is str:
            self.check_text(value, f'"{key}"', where)
        return value

    def check_text(self, text: str, what: str, where: str) -> None:
        at = find_lone_surrogate(text)
        if at >= 0:
            raise self.fail(where, f"{what} holds a lone surrogate ({ascii(text[at])}) at character {at}: not valid "
                                   "Unicode text (a \\uD800-\\uDFFF escape must be half of a pair)")

    def expect_object(self, value, where: str) -> None:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a JSON object, not {type(value).__name__}")

    def parse(self, obj) -> tuple[list[Example], LoadReport]:
        self.expect_object(obj, "top level")
        data = self.get(obj, "data", list, "top level")
        declared_v2 = str(obj.get("version", "")).lstrip("v").startswith("2")
        self.report = LoadReport(source=self.source, examples=0, version="2.0" if declared_v2 else "1.1")

        examples: list[Example] = []
        seen_ids: dict[str, str] = {}
        for i, article in enumerate(data):
            where = f"data[{i}]"
            self.expect_object(article, where)
            title = article.get("title", "")  # optional: TFDS also defaults it to ""
            if not isinstance(title, str):
                raise self.fail(where, f'"title" must be a string, not {type(title).__name__}')
            self.check_text(title, '"title"', where)
            for j, paragraph in enumerate(self.get(article, "paragraphs", list, where)):
                where = f"data[{i}].paragraphs[{j}]"
                self.expect_object(paragraph, where)
                context = self.get(paragraph, "context", str, where)
                if not context.strip():
                    raise self.fail(where, "context is empty")
                for k, qa in enumerate(self.get(paragraph, "qas", list, where)):
                    where = f"data[{i}].paragraphs[{j}].qas[{k}]"
                    self.expect_object(qa, where)
                    qid = self.get(qa, "id", str, where)
                    if qid in seen_ids:
                        raise self.fail(f"question {qid}", f"duplicate id (at {seen_ids[qid]} and at {where})")
                    seen_ids[qid] = where
                    example = self.question(qa, qid, title, context)
                    if example is not None:
                        examples.append(example)

        self.report.examples = len(examples)
        if self.report.version != "2.0":
            self.report.version = squad_version(examples)
        return examples, self.report

    def question(self, qa: dict, qid: str, title: str, context: str) -> Example | None:
        """Builds one Example, or None when the skip/repair policy left it without answers."""
        where = f"question {qid}"
        question = self.get(qa, "question", str, where)
        if not question.strip():
            raise self.fail(where, "question text is empty")
        is_impossible = self.get(qa, "is_impossible", bool, where) if "is_impossible" in qa else False
        raw_answers = self.get(qa, "answers", list, where)
        if is_impossible and raw_answers:
            raise self.fail(where, f"marked is_impossible but has {len(raw_answers)} answers")
        if not is_impossible and not raw_answers:
            raise self.fail(where, "has no answers (and is not marked is_impossible)")

        answers = []
        for n, raw in enumerate(raw_answers):
            answer = self.answer(raw, f"answers[{n}]", where, context)
            if answer is not None:
                answers.append(answer)
        if raw_answers and not answers:
            self.report.skipped_questions += 1
            return None
        return Example(
            id=qid, title=title, question=question, context=context, answers=tuple(answers), is_impossible=is_impossible
        )

    def answer(self, raw, label: str, where: str, context: str) -> Answer | None:
        """Validates one answer; applies the misaligned policy (None means skipped)."""
        if not isinstance(raw, dict):
            raise self.fail(where, f"{label} must be a JSON object, not {type(raw).__name__}")
        text = self.get(raw, "text", str, f"{where}: {label}")
        start = self.get(raw, "answer_start", int, f"{where}: {label}")
        if not text:
            raise self.fail(where, f"{label} text is empty")
        # Out-of-range offsets are never "repaired": they point at the wrong context or a broken file.
        if start < 0 or start + len(text) > len(context):
            raise self.fail(
                where,
                f"{label}.answer_start {start} is outside the context (length {len(context)}) "
                f"for an answer of {len(text)} characters",
            )
        found = context[start : start + len(text)]
        if found == text:
            return Answer(text, start)
        if self.misaligned == "error":
            raise self.fail(
                where,
                f"{label} text {_clip(text)} is not at answer_start {start} (the context has {_clip(found)} there); "
                'use misaligned="repair" (CLI: --misaligned repair) to move it to the nearest occurrence, '
                'or misaligned="skip" to drop it',
            )
        if self.misaligned == "repair":
            moved = _nearest_occurrence(context, text, start, self.repair_window)
            if moved is not None:
                self.report.repaired += 1
                return Answer(text, moved)
        self.report.skipped_answers += 1
        return None


def _nearest_occurrence(context: str, text: str, start: int, window: int) -> int | None:
    """Start of the occurrence of `text` nearest to `start` within ±window characters (earlier wins ties)."""
    best = None
    pos = context.find(text, max(0, start - window), start + window + len(text))
    while pos != -1:
        if best is None or abs(pos - start) < abs(best - start):
            best = pos
        pos = context.find(text, pos + 1, start + window + len(text))
    return best


def _clip(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
