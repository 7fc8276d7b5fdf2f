"""Tests for tfqa.core.squad: SQuAD files (plain/.gz), validation messages, misaligned policies, TFDS."""

import copy
import gzip
import json
import logging
from pathlib import Path

import pytest

from tfqa.core.squad import (
    MISALIGNED_POLICIES,
    Answer,
    DataError,
    Example,
    LoadReport,
    load_squad,
    parse_squad_json,
    read_squad,
    squad_version,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared/data/squad"

CTX1 = "Paris is the capital of France. Paris is large."
CTX2 = "Zürich liegt in der Schweiz; Zürich ist groß."  # non-ASCII: offsets are characters, not bytes


def squad_v11():
    return {
        "version": "1.1",
        "data": [
            {
                "title": "France",
                "paragraphs": [
                    {
                        "context": CTX1,
                        "qas": [
                            {
                                "id": "q1",
                                "question": "What is the capital of France?",
                                "answers": [{"text": "Paris", "answer_start": 0}, {"text": "Paris", "answer_start": 0}],
                            },
                            {
                                "id": "q2",
                                "question": "  Capital of?  ",
                                "answers": [{"text": "France", "answer_start": 24}],
                            },
                        ],
                    }
                ],
            },
            {
                "title": "Schweiz",
                "paragraphs": [
                    {
                        "context": CTX2,
                        "qas": [
                            {
                                "id": "q3",
                                "question": "Wo liegt Zürich?",
                                "answers": [{"text": "der Schweiz", "answer_start": 16}],
                            }
                        ],
                    }
                ],
            },
        ],
    }


def squad_v20():
    obj = squad_v11()
    obj["version"] = "v2.0"
    for article in obj["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qa["is_impossible"] = False
    obj["data"][0]["paragraphs"][0]["qas"].append(
        {
            "id": "q4",
            "question": "What is the capital of Mars?",
            "answers": [],
            "plausible_answers": [{"text": "Paris", "answer_start": 0}],
            "is_impossible": True,
        }
    )
    return obj


def write(path: Path, obj) -> Path:
    text = json.dumps(obj, ensure_ascii=False)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def qa(obj, i=0, j=0, k=0):
    return obj["data"][i]["paragraphs"][j]["qas"][k]


def drop(d: dict, key: str) -> None:
    del d[key]


def raises(tmp_path, obj, *fragments, name="bad.json", **kwargs) -> str:
    """Writes `obj`, loads it, and checks the DataError message names the file and every fragment."""
    path = write(tmp_path / name, obj)
    with pytest.raises(DataError) as info:
        read_squad(path, **kwargs)
    message = str(info.value)
    for fragment in (name, *fragments):
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --- parsing good files ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dev.json", "dev.json.gz"])
def test_reads_v11_plain_and_gz(tmp_path, name):
    examples, report = read_squad(write(tmp_path / name, squad_v11()))
    assert [ex.id for ex in examples] == ["q1", "q2", "q3"]  # file order
    first = examples[0]
    assert first == Example(
        id="q1",
        title="France",
        question="What is the capital of France?",
        context=CTX1,
        answers=(Answer("Paris", 0), Answer("Paris", 0)),
    )
    assert examples[1].question == "  Capital of?  "  # kept as given
    ch = examples[2]
    assert ch.context[ch.answers[0].start : ch.answers[0].end] == "der Schweiz"
    assert (report.examples, report.version, report.repaired, report.skipped_answers) == (3, "1.1", 0, 0)
    assert report.source.endswith(name)
    assert report.summary() == f"{report.source}: 3 questions (SQuAD 1.1); 0 answers repaired, 0 skipped"
    assert squad_version(examples) == "1.1"


def test_reads_v20(tmp_path):
    examples, report = read_squad(write(tmp_path / "dev-v2.json.gz", squad_v20()))
    assert [ex.id for ex in examples] == ["q1", "q2", "q4", "q3"]
    impossible = examples[2]
    assert impossible.is_impossible and impossible.answers == ()
    assert not examples[0].is_impossible and examples[0].answers
    assert report.version == "2.0" and squad_version(examples) == "2.0"


def test_version_detected_from_questions_and_from_header(tmp_path):
    obj = squad_v20()
    del obj["version"]  # is_impossible alone makes it 2.0
    assert read_squad(write(tmp_path / "a.json", obj))[1].version == "2.0"
    obj = squad_v11()
    obj["version"] = "v2.0"  # and so does the header alone
    assert read_squad(write(tmp_path / "b.json", obj))[1].version == "2.0"


def test_answer_end_and_parse_squad_json_default_source():
    examples, report = parse_squad_json(squad_v11())
    assert examples[1].answers[0].end == 30 and CTX1[24:30] == "France"
    assert report.source == "<data>"


# --- bad input ------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.json: no such file"):
        read_squad(tmp_path / "nope.json")
    with pytest.raises(DataError, match="no such file"):
        read_squad("squad/v3.0")  # not a TFDS name we know either


def test_invalid_json_reports_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"data": [\n  {"title": "x",,}\n]}', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_squad(path)
    assert "broken.json: not valid JSON" in str(info.value)
    assert "line 2, column 17" in str(info.value)


def test_corrupt_and_truncated_gzip(tmp_path):
    good = gzip.compress(json.dumps(squad_v11()).encode())
    (tmp_path / "cut.json.gz").write_bytes(good[: len(good) // 2])
    (tmp_path / "notgz.json.gz").write_bytes(b"this is not gzip at all")
    for name in ["cut.json.gz", "notgz.json.gz"]:
        with pytest.raises(DataError, match=f"{name}: corrupt or truncated gzip"):
            read_squad(tmp_path / name)


def test_gzip_without_gz_name(tmp_path):
    (tmp_path / "dev.json").write_bytes(gzip.compress(b"{}"))
    with pytest.raises(DataError, match=r"dev.json: not UTF-8 text \(a gzip file needs a .gz name\)"):
        read_squad(tmp_path / "dev.json")


@pytest.mark.parametrize(
    "mutate, fragments",
    [
        (lambda o: [1, 2], ["top level", "expected a JSON object, not list"]),
        (lambda o: {"version": "1.1"}, ["top level", 'missing "data"']),
        (lambda o: {"data": {}}, ["top level", '"data" must be a list, not dict']),
        (lambda o: o["data"].append("x"), ["data[2]", "expected a JSON object, not str"]),
        (lambda o: drop(o["data"][1], "paragraphs"), ["data[1]", 'missing "paragraphs"']),
        (lambda o: o["data"][1].update(paragraphs={}), ["data[1]", '"paragraphs" must be a list']),
        (lambda o: o["data"][0].update(title=3), ["data[0]", '"title" must be a string']),
        (lambda o: o["data"][0]["paragraphs"].append(None), ["data[0].paragraphs[1]", "expected a JSON object"]),
        (lambda o: drop(o["data"][1]["paragraphs"][0], "context"), ["data[1].paragraphs[0]", 'missing "context"']),
        (lambda o: drop(o["data"][1]["paragraphs"][0], "qas"), ["data[1].paragraphs[0]", 'missing "qas"']),
        (lambda o: o["data"][1]["paragraphs"][0].update(context=7), ["data[1].paragraphs[0]", '"context" must be']),
        (lambda o: o["data"][1]["paragraphs"][0].update(context=" \n"), ["data[1].paragraphs[0]", "context is empty"]),
        (lambda o: o["data"][1]["paragraphs"][0]["qas"].append([]), ["data[1].paragraphs[0].qas[1]", "expected a"]),
        (lambda o: drop(qa(o, 1), "id"), ["data[1].paragraphs[0].qas[0]", 'missing "id"']),
        (lambda o: qa(o, 1).update(id=5), ["data[1].paragraphs[0].qas[0]", '"id" must be a string, not int']),
    ],
)
def test_bad_structure_names_the_place(tmp_path, mutate, fragments):
    obj = squad_v11()
    obj = mutate(obj) or obj  # mutators either edit in place or return a replacement
    raises(tmp_path, obj, *fragments)


@pytest.mark.parametrize(
    "mutate, fragments",
    [
        (lambda q: q.pop("question"), ['missing "question"']),
        (lambda q: q.update(question=None), ['"question" must be a string, not NoneType']),
        (lambda q: q.update(question=""), ["question text is empty"]),
        (lambda q: q.pop("answers"), ['missing "answers"']),
        (lambda q: q.update(answers="Paris"), ['"answers" must be a list']),
        (lambda q: q.update(answers=[]), ["has no answers"]),
        (lambda q: q.update(answers=["Paris"]), ["answers[0] must be a JSON object"]),
        (lambda q: q["answers"][1].pop("text"), ["answers[1]", 'missing "text"']),
        (lambda q: q["answers"][1].pop("answer_start"), ["answers[1]", 'missing "answer_start"']),
        (lambda q: q["answers"][0].update(answer_start="0"), ['answers[0]: "answer_start" must be an integer, not str']),
        (lambda q: q["answers"][0].update(answer_start=0.0), ['"answer_start" must be an integer, not float']),
        (lambda q: q["answers"][0].update(answer_start=True), ['"answer_start" must be an integer, not bool']),
        (lambda q: q["answers"][0].update(text=["Paris"]), ['"text" must be a string, not list']),
        (lambda q: q["answers"][0].update(text=""), ["answers[0] text is empty"]),
        (lambda q: q.update(is_impossible="yes"), ['"is_impossible" must be true or false']),
        (lambda q: q.update(is_impossible=True), ["marked is_impossible but has 2 answers"]),
        (lambda q: q["answers"][0].update(answer_start=-1), ["answers[0].answer_start -1 is outside the context"]),
        (lambda q: q["answers"][1].update(answer_start=900), ["answers[1].answer_start 900 is outside the context (length 47"]),
        (lambda q: q["answers"][0].update(answer_start=43), ["answer_start 43 is outside the context"]),  # 43 + 5 > 47
    ],
)
def test_bad_question_names_file_id_and_problem(tmp_path, mutate, fragments):
    obj = squad_v11()
    mutate(qa(obj))
    raises(tmp_path, obj, "question q1", *fragments)


def test_duplicate_ids(tmp_path):
    obj = squad_v11()
    qa(obj, 1)["id"] = "q1"
    raises(tmp_path, obj, "question q1", "duplicate id", "data[0].paragraphs[0].qas[0]", "data[1].paragraphs[0].qas[0]")


def test_answerable_v2_question_without_answers(tmp_path):
    obj = squad_v20()
    qa(obj)["answers"] = []
    raises(tmp_path, obj, "question q1", "has no answers")


# --- misaligned answers ---------------------------------------------------------------------


def misaligned_obj():
    obj = squad_v11()
    qa(obj)["answers"][1]["answer_start"] = 3  # "Paris" is at 0 and 32
    qa(obj, 0, 0, 1)["answers"][0]["answer_start"] = 10  # "France" only at 24: 14 away
    return obj


def test_misaligned_error_is_default_and_explains(tmp_path):
    message = raises(
        tmp_path,
        misaligned_obj(),
        "question q1",
        "answers[1] text 'Paris' is not at answer_start 3 (the context has 'is is' there)",
        'misaligned="repair"',
        'misaligned="skip"',
    )
    assert "q2" not in message


def test_misaligned_skip_drops_answers_and_emptied_questions(tmp_path):
    examples, report = read_squad(write(tmp_path / "m.json", misaligned_obj()), misaligned="skip")
    assert [ex.id for ex in examples] == ["q1", "q3"]  # q2 lost its only answer
    assert examples[0].answers == (Answer("Paris", 0),)
    assert (report.repaired, report.skipped_answers, report.skipped_questions, report.examples) == (0, 2, 1, 2)
    assert report.summary().endswith(
        "2 questions (SQuAD 1.1); 0 answers repaired, 2 skipped, 1 questions dropped (no answers left)"
    )


def test_misaligned_repair_moves_to_nearest_within_window(tmp_path):
    path = write(tmp_path / "m.json", misaligned_obj())
    examples, report = read_squad(path, misaligned="repair")
    # start 3: "Paris" at 0 (3 away) beats 32; q2's "France" at 24 is within the default window.
    assert examples[0].answers == (Answer("Paris", 0), Answer("Paris", 0))
    assert examples[1].answers == (Answer("France", 24),)
    assert (report.repaired, report.skipped_answers, report.skipped_questions) == (2, 0, 0)

    # A window too small for q2 (14 away) falls back to skipping that answer.
    examples, report = read_squad(path, misaligned="repair", repair_window=5)
    assert [ex.id for ex in examples] == ["q1", "q3"]
    assert (report.repaired, report.skipped_answers, report.skipped_questions) == (1, 1, 1)


def test_repair_prefers_nearest_occurrence_after_the_start():
    obj = squad_v11()
    qa(obj)["answers"] = [{"text": "Paris", "answer_start": 30}]  # occurrences at 0 and 32
    examples, report = parse_squad_json(obj, misaligned="repair")
    assert examples[0].answers == (Answer("Paris", 32),) and report.repaired == 1


def test_unknown_policy_and_bad_window():
    with pytest.raises(ValueError, match="'error', 'skip', 'repair'") as info:
        parse_squad_json(squad_v11(), misaligned="fix")
    assert not isinstance(info.value, DataError)
    with pytest.raises(ValueError, match="repair_window"):
        read_squad("missing.json", repair_window=-1)  # options are checked before touching the source
    assert MISALIGNED_POLICIES == ("error", "skip", "repair")


def test_load_squad_logs_summary(tmp_path, caplog):
    path = write(tmp_path / "m.json", misaligned_obj())
    with caplog.at_level(logging.INFO, logger="tfqa.core.squad"):
        assert len(load_squad(write(tmp_path / "ok.json", squad_v11()))) == 3
        assert len(load_squad(path, misaligned="repair")) == 3
    (ok, repaired) = caplog.records
    assert ok.levelno == logging.INFO and "ok.json: 3 questions (SQuAD 1.1)" in ok.getMessage()
    assert repaired.levelno == logging.WARNING and "2 answers repaired" in repaired.getMessage()


def test_parse_does_not_modify_input():
    obj = misaligned_obj()
    before = copy.deepcopy(obj)
    parse_squad_json(obj, misaligned="repair")
    assert obj == before


# --- real SQuAD files -----------------------------------------------------------------------


def shared_file(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


@pytest.mark.real_data
def test_real_dev_v11():
    examples, report = read_squad(shared_file("dev-v1.1.json.gz"))
    assert (report.examples, report.version, report.repaired, report.skipped_answers) == (10570, "1.1", 0, 0)
    assert len(examples) == 10570 and len({ex.id for ex in examples}) == 10570
    assert all(ex.context[a.start : a.end] == a.text for ex in examples for a in ex.answers)


@pytest.mark.real_data
def test_real_dev_v20_subset():
    examples, report = read_squad(shared_file("dev-v2.0-subset.json.gz"))
    assert (report.examples, report.version, report.repaired) == (6078, "2.0", 0)
    impossible = [ex for ex in examples if ex.is_impossible]
    assert len(impossible) == 3168 and all(ex.answers == () for ex in impossible)


# --- TFDS -----------------------------------------------------------------------------------

TFDS_CONTEXT = "Die Brücke über den Fluss ist alt."  # non-ASCII before the answer: char vs byte offsets


def tfds_records(version: str):
    """Consistent SQuAD records for the mock: answers really are at answer_start."""
    start = TFDS_CONTEXT.index("den Fluss")
    for i in range(3):
        impossible = version == "v2.0" and i == 2
        texts = [] if impossible else ["den Fluss", "Fluss"]
        starts = [] if impossible else [start, start + 4]
        record = {
            "id": f"t{i}",
            "title": "Brücken",
            "context": TFDS_CONTEXT,
            "question": f"Frage {i}?",
            "answers": {"text": texts, "answer_start": starts},
        }
        if version == "v2.0":
            record["is_impossible"] = impossible
            plausible = [("Brücke", 4)] if impossible else []
            record["plausible_answers"] = {"text": [t for t, _ in plausible], "answer_start": [s for _, s in plausible]}
        yield record


@pytest.fixture
def mock_tfds(tmp_path, monkeypatch):
    """Mocks TFDS so tfds.load("squad/...") goes through the real builder but reads `tfds_records`."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # TFDS leaves empty temp folders behind
    monkeypatch.setattr("tfqa.core.squad._download_reachable", lambda: True)  # the mock needs no download
    tf = pytest.importorskip("tensorflow")
    tfds = pytest.importorskip("tensorflow_datasets")
    calls = []

    def as_dataset_fn(builder, split, decoders=None, read_config=None, shuffle_files=False):
        calls.append((builder.name, builder.builder_config.name, str(split)))
        return tf.data.Dataset.from_generator(
            lambda: tfds_records(builder.builder_config.name),
            output_signature=builder.info.features.get_tensor_spec(),
        )

    # USE_CODE: take features from the builder code; there are no metadata files offline.
    with tfds.testing.mock_data(num_examples=3, as_dataset_fn=as_dataset_fn, policy=tfds.testing.MockPolicy.USE_CODE):
        yield calls


def test_tfds_v11(mock_tfds):
    examples, report = read_squad("squad/v1.1")
    assert mock_tfds == [("squad", "v1.1", "validation")]
    assert report.source == "squad/v1.1:validation"
    assert (report.examples, report.version) == (3, "1.1")
    ex = examples[0]
    assert (ex.id, ex.title, ex.question, ex.is_impossible) == ("t0", "Brücken", "Frage 0?", False)
    assert ex.context == TFDS_CONTEXT
    assert [ex.context[a.start : a.end] for a in ex.answers] == ["den Fluss", "Fluss"]


def test_tfds_v20_and_split_syntax(mock_tfds):
    examples, report = read_squad("squad/v2.0:train", split="validation")  # the name's split wins
    assert mock_tfds == [("squad", "v2.0", "train")]
    assert (report.source, report.version) == ("squad/v2.0:train", "2.0")
    got = [(ex.id, ex.is_impossible, len(ex.answers)) for ex in examples]
    assert got == [("t0", False, 2), ("t1", False, 2), ("t2", True, 0)]

    load_squad("squad/v1.1", split="train")
    assert mock_tfds[-1] == ("squad", "v1.1", "train")


def test_tfds_failure_becomes_data_error(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")

    def offline_load(name, split):
        raise tfds.core.DatasetNotFoundError(f"cannot download {name}")

    monkeypatch.setattr(tfds, "load", offline_load)
    monkeypatch.setattr("tfqa.core.squad._download_reachable", lambda: True)
    with pytest.raises(DataError) as info:
        read_squad("squad/v2.0:train")
    message = str(info.value)
    assert "squad/v2.0:train" in message and "could not be loaded or downloaded" in message
    assert "local SQuAD JSON file" in message


def test_tfds_offline_fails_fast_without_retrying(monkeypatch):
    monkeypatch.setattr("tfqa.core.squad._download_reachable", lambda: False)
    with pytest.raises(DataError, match="cannot be reached - no network"):
        read_squad("squad/v1.1")
