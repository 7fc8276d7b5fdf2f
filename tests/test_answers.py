"""The answer record (tfqa.serving.answers) and the one export answerer: one shape, every conversion, one owner."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import ROOT
from serving_helpers import build_fake_qa_model, expected_answer

from tfqa.export import names
from tfqa.rest.json_api import encode_outputs
from tfqa.serving.answers import Answer, AnswerFormatError, Span, to_columns
from tfqa.serving.export_answerer import ExportAnswerer, NotRawText

OUTPUTS = {"answer": np.array([b"cat", b""], dtype=object), "score": np.array([0.2, 1.5], dtype=np.float32),
           "answer_start": np.array([4, -1], dtype=np.int32), "answer_end": np.array([7, -1], dtype=np.int32),
           "null_score_diff": np.array([-0.1, 2.0], dtype=np.float32),
           "candidate_answers": np.array([[b"cat", b""], ["\u00e9t\u00e9".encode(), b"x"]], dtype=object),
           "candidate_scores": np.array([[0.2, 0.0], [-1.0, -2.5]], dtype=np.float32),
           "candidate_starts": np.array([[4, -1], [10, 0]], dtype=np.int32),
           "candidate_ends": np.array([[7, -1], [13, 1]], dtype=np.int32)}


def test_answers_from_tensors_equal_the_rest_rows_of_the_same_tensors():
    """Answer.from_outputs reads the tensors as TF Serving's JSON writes them (float32 scores, text, -1 slots)."""
    answers = Answer.from_outputs(OUTPUTS)
    rows = encode_outputs(OUTPUTS, "row")["predictions"]
    assert answers == [Answer.from_row(row) for row in rows]
    assert answers[0] == Answer("cat", 0.2, 4, 7, -0.1, (Span("cat", 0.2, 4, 7),))
    assert answers[1].candidates == (Span("été", -1.0, 10, 13), Span("x", -2.5, 0, 1))
    columnar = encode_outputs(OUTPUTS, "columnar")["outputs"]
    assert Answer.from_outputs(columnar) == answers


def test_answer_converts_to_the_rest_row_the_columns_and_the_python_dict():
    answer = Answer("cat", 0.2, 4, 7, -0.1, (Span("cat", 0.2, 4, 7), Span("sat", -1.0, 8, 11)))
    row = answer.to_row()
    assert list(row) == ["answer", "score", "answer_start", "answer_end", "null_score_diff", "candidate_answers",
                         "candidate_scores", "candidate_starts", "candidate_ends"]
    assert Answer.from_row(row) == answer
    assert answer.to_row(candidates=False) == {"answer": "cat", "score": 0.2, "answer_start": 4, "answer_end": 7,
                                               "null_score_diff": -0.1}
    assert answer.to_dict() == {"answer": "cat", "score": 0.2, "start": 4, "end": 7, "null_score_diff": -0.1}
    assert Answer("", 1.0, -1, -1).to_dict() == {"answer": "", "score": 1.0, "start": -1, "end": -1}
    assert to_columns([answer, Answer("", 1.5, -1, -1, 2.0)], candidates=False) == {
        "answer": ["cat", ""], "score": [0.2, 1.5], "answer_start": [4, -1], "answer_end": [7, -1],
        "null_score_diff": [-0.1, 2.0]}
    assert [s.to_dict() for s in answer.spans()] == [{"answer": "cat", "score": 0.2, "start": 4, "end": 7},
                                                     {"answer": "sat", "score": -1.0, "start": 8, "end": 11}]
    # An export without candidate outputs: the answer's own span, none for "no answer".
    assert Answer("cat", 0.2, 4, 7).spans() == [Span("cat", 0.2, 4, 7)] and Answer("", 0.0, -1, -1).spans() == []


def test_rows_that_are_not_answers_are_refused_naming_the_missing_outputs():
    with pytest.raises(AnswerFormatError, match=r"outputs \(answer\) have no 'score', 'answer_start', 'answer_end'"):
        Answer.from_row({"answer": "x"})
    with pytest.raises(AnswerFormatError, match=r"outputs \(end_logits, start_logits\) have no 'answer'"):
        Answer.from_outputs({"start_logits": np.zeros((1, 2)), "end_logits": np.zeros((1, 2))})


def test_b64_answers_are_decoded_as_text():
    row = {"answer": {"b64": "w6l0w6k="}, "score": 1.0, "answer_start": 0, "answer_end": 3}
    assert Answer.from_row(row).answer == "été"


def test_export_answerer_loads_the_newest_version_and_answers_records(tmp_path):
    build_fake_qa_model(tmp_path / "tfqa" / "1")
    build_fake_qa_model(tmp_path / "tfqa" / "2", word="last")
    answerer = ExportAnswerer(tmp_path / "tfqa", "the test")
    assert answerer.version == 2 and answerer.candidate_slots == 1
    answers = answerer.answer(["Who?", "Where is it?", "What?"], ["Denver Broncos won", "in Santa Clara", "ok"],
                              batch_size=2)
    expected = [expected_answer(q, c, word="last") for q, c in
                [("Who?", "Denver Broncos won"), ("Where is it?", "in Santa Clara"), ("What?", "ok")]]
    assert [a.to_row() for a in answers] == expected
    assert ExportAnswerer(tmp_path / "tfqa" / "1", "the test").version == 1  # a version directory itself


def test_export_answerer_refuses_token_id_exports_naming_the_caller(tmp_path):
    build_fake_qa_model(tmp_path / "words" / "1", single_output=True)
    with pytest.raises(NotRawText, match=r"words/1: serving_default takes context, not raw question \+ context "
                                         r"text; the test needs a raw-text tfqa export"):
        ExportAnswerer(tmp_path / "words", "the test")


def test_signature_and_output_names_have_one_owner():
    """`"serving_default"` is spelled only in tfqa.export.names; the readers of answers spell no output name."""
    distinct = [names.SERVING_DEFAULT, names.TOKEN_IDS, names.ANSWER_START, names.ANSWER_END, names.NULL_SCORE_DIFF,
                names.CANDIDATE_ANSWERS, names.CANDIDATE_SCORES, names.CANDIDATE_STARTS, names.CANDIDATE_ENDS]
    pattern = re.compile("[\"'](" + "|".join(distinct) + ")[\"']")
    readers = [*(ROOT / "tfqa" / "serving").glob("*.py"), ROOT / "tfqa" / "rest" / "client.py",
               ROOT / "tfqa" / "rest" / "server.py", ROOT / "tfqa" / "apps" / "demo.py"]
    hits = []
    for path in sorted((ROOT / "tfqa").rglob("*.py")):
        if path == ROOT / "tfqa" / "export" / "names.py":
            continue
        code = re.sub(r'"""(.|\n)*?"""', "", path.read_text())  # docstrings may name them
        code = "\n".join(line.partition("#")[0] for line in code.splitlines())
        hits += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in pattern.finditer(code)
                 if m.group(1) == names.SERVING_DEFAULT or path in readers]
    assert hits == []
