"""`python -m tfqa demo`: the backend (local export and remote server) and the page in a real headless browser."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from helpers import CORPUS, ROOT
from serving_helpers import ThreadedServer, build_fake_qa_model, build_tiny_export, free_port, TestClient

from tfqa.apps.cli import main
from tfqa.apps.demo import (MAX_PASSAGE_CHARS, Backend, LocalBackend, RemoteBackend, allowed_hosts, create_demo_app,
                            to_answer)
from tfqa.rest.json_api import RequestError
from tfqa.rest.server import create_app
from tfqa.serving.servables import ModelDirError

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# An emoji (2 UTF-16 units per code point) before the answer: the page must slice by code points.
EMOJI_PASSAGE = "👍🏽 " + CORPUS[1] + " " + CORPUS[0]
EMOJI_QUESTION = "Who won Super Bowl 50?"
SCRIPT_PASSAGE = "<script>alert(1)</script><b>x</b> " + CORPUS[0]


@pytest.fixture(scope="module")
def tiny_export(wordpiece_tokenizer, tmp_path_factory):
    """A real raw-text SQuAD 2.0 export of a tiny DistilBERT, as tests/test_export.py builds one."""
    return build_tiny_export(wordpiece_tokenizer, tmp_path_factory.mktemp("demo") / "tfqa")


@pytest.fixture(scope="module")
def local_backend(tiny_export):
    return LocalBackend(str(tiny_export))


@pytest.fixture(scope="module")
def client(local_backend):
    return TestClient(create_demo_app(local_backend))


def ask(client, question, context):
    return client.post("/api/answer", json={"question": question, "context": context})


def check_answer(result: dict, context: str) -> None:
    """Offsets are Python str (code point) offsets; candidates are real spans, best first."""
    if result["answer"]:
        assert context[result["answer_start"]:result["answer_end"]] == result["answer"]
    else:
        assert (result["answer_start"], result["answer_end"]) == (-1, -1)
    assert result["candidates"], "the export lists its best spans"
    for c in result["candidates"]:
        assert context[c["start"]:c["end"]] == c["text"] and c["text"]
    scores = [c["score"] for c in result["candidates"]]
    assert scores == sorted(scores, reverse=True)


def test_page_is_one_self_contained_file(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = response.text
    assert re.findall(r"""(?:src|href)\s*=\s*["'](?!data:)""", page) == []  # no external scripts, styles, fonts
    # User and model text reach the page only through textContent / text nodes, never parsed as HTML.
    assert re.findall(r"\.(?:inner|outer)HTML\s*\+?=|insertAdjacentHTML\(|document\.write", page) == []


def test_info_and_samples(client, tiny_export):
    info = client.get("/api/info").json()
    assert info["model"] == f"{tiny_export.name} (version 1, loaded locally)"  # no absolute path (issue 15, #21)
    assert info["max_passage_chars"] == MAX_PASSAGE_CHARS == 20_000
    samples = client.get("/api/samples").json()["samples"]
    assert len(samples) == 3 and all(s["title"] and s["question"] and s["passage"] for s in samples)
    assert max(len(s["passage"].split()) for s in samples) > 400  # several windows even at max_seq_length 384


def test_local_answers_with_code_point_offsets(client):
    samples = client.get("/api/samples").json()["samples"]
    cases = [(EMOJI_QUESTION, EMOJI_PASSAGE), ("Where was Tesla born?", "🇨🇭 中文 " + " ".join(CORPUS))]
    for question, context in cases + [(s["question"], s["passage"]) for s in samples]:
        response = ask(client, question, context)
        assert response.status_code == 200, response.text
        result = response.json()
        assert set(result) == {"answer", "score", "answer_start", "answer_end", "null_score_diff", "candidates"}
        assert isinstance(result["score"], float) and isinstance(result["null_score_diff"], float)
        check_answer(result, context)
    assert ask(client, *cases[0]).json()["answer_start"] > 0  # the answer comes after the emoji


def test_prediction_rows_become_page_answers():
    row = {"answer": "", "score": 1.5, "answer_start": -1, "answer_end": -1, "null_score_diff": float("nan"),
           "candidate_answers": ["cat", {"b64": "w6l0w6k="}, ""], "candidate_scores": [0.5, -1.0, 0.0],
           "candidate_starts": [4, 10, -1], "candidate_ends": [7, 13, -1]}
    assert to_answer(row) == {"answer": "", "score": 1.5, "answer_start": -1, "answer_end": -1,
                              "null_score_diff": None,  # NaN is not JSON a browser can parse
                              "candidates": [{"text": "cat", "score": 0.5, "start": 4, "end": 7},
                                             {"text": "été", "score": -1.0, "start": 10, "end": 13}]}


@pytest.mark.parametrize("body, status, message", [
    ({"question": "", "context": "The cat sat."}, 400, "The question is empty: type a question first."),
    ({"question": "   ", "context": "The cat sat."}, 400, "The question is empty"),
    ({"question": "Who?", "context": " \n "}, 400, "The passage is empty: paste a passage or pick a sample first."),
    ({"question": "Who?", "context": "x" * 20_001}, 413, "The passage has 20,001 characters; the limit is 20,000."),
    ({"question": "Who?" * 300, "context": "The cat sat."}, 413, "the limit is 1,000"),
    ({"question": "Who?"}, 400, 'send a JSON object {"question": "...", "context": "..."}'),
    ({"question": 3, "context": "The cat sat."}, 400, "with two strings"),
    (["Who?", "The cat sat."], 400, "send a JSON object"),
    (b"{not json", 400, "send a JSON object"),
    (b"x" * (600 * 1024), 413, "The request is over 524,288 bytes"),
])
def test_bad_questions_get_json_errors(client, body, status, message):
    kwargs = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes) else {
        "json": body}
    response = client.post("/api/answer", **kwargs)
    assert response.status_code == status and message in response.json()["error"]
    assert "Traceback" not in response.text


def test_model_failures_are_json_errors(client, local_backend, monkeypatch):
    def refuse(question, context):
        raise RequestError("Invalid argument: bad input", 400)

    def crash(question, context):
        raise RuntimeError("boom")

    monkeypatch.setattr(local_backend, "predict", refuse)
    response = ask(client, "Who?", "The cat sat.")
    assert (response.status_code, response.json()) == (400, {"error": "The model could not answer: Invalid "
                                                                      "argument: bad input"})
    monkeypatch.setattr(local_backend, "predict", crash)
    response = ask(client, "Who?", "The cat sat.")
    assert (response.status_code, response.json()) == (500, {"error": "Model error: RuntimeError: boom"})
    monkeypatch.undo()
    assert ask(client, "Who?", "The cat sat.").status_code == 200


def test_exports_without_candidates_or_raw_text(tmp_path):
    """Exports from before the candidate_* outputs still answer; token-id-only exports are refused at start."""
    build_fake_qa_model(tmp_path / "old" / "1")
    result = ask(TestClient(create_demo_app(LocalBackend(str(tmp_path / "old")))), "Who?", "Denver Broncos won").json()
    assert (result["answer"], result["answer_start"], result["candidates"]) == ("Denver", 0, [])
    build_fake_qa_model(tmp_path / "words" / "1", single_output=True)
    with pytest.raises(ModelDirError, match="not raw question \\+ context text"):
        LocalBackend(str(tmp_path / "words"))


def test_remote_mode_answers_like_local_mode(client, tiny_export):
    with ThreadedServer(create_app(tiny_export)) as server:
        url = f"http://127.0.0.1:{server.port}/v1/models/tfqa"
        remote = TestClient(create_demo_app(RemoteBackend(url)))
        assert remote.get("/api/info").json()["model"] == f"{url} (model server)"
        for question, context in [(EMOJI_QUESTION, EMOJI_PASSAGE), ("Where did the cat sit?", SCRIPT_PASSAGE)]:
            got = ask(remote, question, context)
            assert got.status_code == 200 and got.json() == ask(client, question, context).json()
        assert ask(remote, "", "x").json() == {"error": "The question is empty: type a question first."}


def test_remote_mode_without_a_server_is_an_error_message():
    url = f"http://127.0.0.1:{free_port()}/v1/models/tfqa"
    response = ask(TestClient(create_demo_app(RemoteBackend(url))), "Who?", "The cat sat.")
    assert response.status_code == 502
    error = response.json()["error"]
    assert error.startswith(f"The model server did not answer: {url}:predict: connection refused")


@pytest.mark.parametrize("argv, message", [
    (["--model", "{tmp}/nowhere"], "nowhere: no such directory"),
    (["--model", "{tmp}"], "no version subdirectory"),
    (["--server", "localhost:8501"], "is not a model URL like http://localhost:8501/v1/models/tfqa"),
])
def test_bad_model_or_server_is_a_one_line_error(tmp_path, capsys, argv, message):
    assert main(["demo", *[a.format(tmp=tmp_path) for a in argv], "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfqa: error: ") and message in err and err.count("\n") == 1


def test_demo_command_prints_its_url():
    """`--port 0` picks a free port and the start-up line says which; the page and API answer there."""
    server = f"http://127.0.0.1:{free_port()}/v1/models/tfqa"  # nobody listens: the page will say so
    proc = subprocess.Popen([sys.executable, "-m", "tfqa", "demo", "--server", server, "--port", "0"], cwd=ROOT,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    stderr: queue.Queue = queue.Queue()  # drained by a thread, so a silent process cannot hang the test
    threading.Thread(target=lambda: [stderr.put(line) for line in proc.stderr], daemon=True).start()
    try:
        lines = [stderr.get(timeout=30), stderr.get(timeout=30)]
        assert lines[0].startswith(f"tfqa: warning: {server}: connection refused")
        match = re.fullmatch(r"Demo at (http://127\.0\.0\.1:(\d+)/) \(model: (.*)\)\n", lines[1])
        assert match and int(match.group(2)) > 0 and match.group(3) == f"{server} (model server)"
        url = match.group(1)
        assert "<title>tfqa — question answering demo</title>" in requests.get(url, timeout=10).text
        response = requests.post(url + "api/answer", json={"question": "Who?", "context": "Ann."}, timeout=10)
        assert response.status_code == 502 and "connection refused" in response.json()["error"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


# --- the page in a real browser -----------------------------------------------------------------------------------


class StubBackend(Backend):
    """A slow model that never finds an answer: progress feedback and the "no answer" view."""

    description = "stub model (tests)"

    def predict(self, question, context):
        time.sleep(1.0)
        first = context.split()[0]
        return {"answer": "", "score": 3.5, "answer_start": -1, "answer_end": -1, "null_score_diff": 2.25,
                "candidate_answers": [first, ""], "candidate_scores": [1.25, 0.0], "candidate_starts": [0, -1],
                "candidate_ends": [len(first), -1]}


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium through chromedriver; Selenium Manager is never asked to download anything."""
    if os.environ.get("TFQA_SKIP_BROWSER") == "1":
        pytest.skip("TFQA_SKIP_BROWSER=1")
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    if missing:
        pytest.fail(f"the browser test needs {' and '.join(missing)}: install with `sudo apt-get install -y "
                    "chromium chromium-driver` and `pip install -r requirements-test.txt` (.ci/run does both), or "
                    "set TFQA_SKIP_BROWSER=1 to skip it", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900",
                     "--lang=en-US"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def artifacts():
    path = Path(os.environ.get("TFQA_ARTIFACTS_DIR") or ROOT / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait_for(driver, condition, timeout=30.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition())


def by_id(driver, name):
    return driver.find_element("id", name)


def submit(driver, question):
    """Types `question` and presses Enter in the question field; waits for an answer or an error."""
    from selenium.webdriver.common.keys import Keys

    field = by_id(driver, "question")
    field.clear()
    field.send_keys(question + Keys.ENTER)
    wait_for(driver, lambda: by_id(driver, "ask-form").get_attribute("data-state") in ("answered", "error"))
    return by_id(driver, "ask-form").get_attribute("data-state")


def set_passage(driver, text):
    # ChromeDriver cannot type characters outside the BMP (emoji): set the value and fire the input event.
    driver.execute_script("const t = arguments[0]; t.value = arguments[1];"
                          "t.dispatchEvent(new Event('input', {bubbles: true}));", by_id(driver, "passage"), text)


def mark_text(driver):
    marks = driver.find_elements("css selector", "#highlighted mark")
    assert len(marks) == 1
    return driver.execute_script("return arguments[0].textContent", marks[0])


def visible_candidates(driver):
    return [driver.execute_script("return arguments[0].textContent", e)
            for e in driver.find_elements("css selector", "#candidates .candidate .text")]


def save_whole_page(driver, path, width=1200):
    """A screenshot of the whole page: the window is made as tall as the page (headless windows can be)."""
    chrome = driver.execute_script("return window.outerHeight - window.innerHeight")
    for _ in range(2):  # the page reflows once the window changes
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(height, 2400) + chrome)
    driver.save_screenshot(str(path))


def test_browser_asks_highlights_and_fits_a_phone(browser, client, local_backend, artifacts):
    # As `run_demo` builds it: the page's own requests pass the Host and same-origin checks.
    with ThreadedServer(create_demo_app(local_backend, allowed_hosts("127.0.0.1"))) as server:
        url = f"http://127.0.0.1:{server.port}/"
        browser.set_window_size(1200, 900)
        browser.get(url)
        wait_for(browser, lambda: len(browser.find_elements("css selector", "#samples .sample")) == 3)
        assert "version 1, loaded locally" in by_id(browser, "model").text

        # A built-in sample, asked with Enter: the <mark> is exactly the answer's span of the passage.
        samples = client.get("/api/samples").json()["samples"]
        browser.find_elements("css selector", "#samples .sample")[2].click()
        assert by_id(browser, "passage").get_attribute("value") == samples[2]["passage"]
        assert by_id(browser, "count").text == f"{len(samples[2]['passage']):,} / 20,000 characters"
        assert submit(browser, samples[2]["question"]) == "answered"
        expected = ask(client, samples[2]["question"], samples[2]["passage"]).json()
        assert expected["answer"], "the tiny export answers this question (deterministic weights)"
        assert mark_text(browser) == by_id(browser, "answer").text == expected["answer"]
        others = [c for c in expected["candidates"] if (c["start"], c["end"]) != (expected["answer_start"],
                                                                                   expected["answer_end"])]
        assert others and visible_candidates(browser) == [f"“{c['text']}”" for c in others]
        assert by_id(browser, "score").text.startswith(f"score {expected['score']:.2f}")
        save_whole_page(browser, artifacts / "demo.png")

        # Phone width: nothing scrolls sideways and the question field and button stack.
        browser.set_window_size(390, 844)
        wait_for(browser, lambda: browser.execute_script("return window.innerWidth") <= 400)
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        field, button = by_id(browser, "question").rect, by_id(browser, "ask").rect
        assert button["y"] >= field["y"] + field["height"] - 1
        browser.execute_script("document.getElementById('result').scrollIntoView()")
        browser.save_screenshot(str(artifacts / "demo-phone.png"))
        browser.set_window_size(1200, 900)

        # An emoji before the answer: code-point offsets must not shift the highlight.
        set_passage(browser, EMOJI_PASSAGE)
        assert submit(browser, EMOJI_QUESTION) == "answered"
        expected = ask(client, EMOJI_QUESTION, EMOJI_PASSAGE).json()
        start, end = expected["answer_start"], expected["answer_end"]
        assert start > 0 and mark_text(browser) == EMOJI_PASSAGE[start:end] == expected["answer"]
        before = browser.execute_script("return arguments[0].firstChild.textContent", by_id(browser, "highlighted"))
        assert before == EMOJI_PASSAGE[:start]
        # A candidate clicked is highlighted in its place.
        browser.find_elements("css selector", "#candidates .candidate")[0].click()
        assert mark_text(browser) == EMOJI_PASSAGE[others_span(expected)]

        # Errors are shown on the page; the last answer is cleared.
        assert submit(browser, "   ") == "error"
        error = by_id(browser, "error")
        assert error.is_displayed() and error.text == "The question is empty: type a question first."
        assert not by_id(browser, "result").is_displayed()
        set_passage(browser, "x" * 20_001)
        assert by_id(browser, "count").get_attribute("class") == "count over"
        assert submit(browser, "Who?") == "error" and "the limit is 20,000" in error.text

        # Markup in the passage is text: nothing runs, no element is made from it.
        set_passage(browser, SCRIPT_PASSAGE)
        assert submit(browser, "Where did the cat sit?") == "answered" and not error.is_displayed()
        assert by_id(browser, "highlighted").text == SCRIPT_PASSAGE
        assert browser.find_elements("css selector", "#highlighted script, #highlighted b, #result b") == []
        assert browser.execute_script("return document.scripts.length") == 1
        assert_no_alert(browser)


def others_span(result):
    """The slice of the first candidate that is not the answer itself."""
    first = next(c for c in result["candidates"] if (c["start"], c["end"]) != (result["answer_start"],
                                                                                result["answer_end"]))
    return slice(first["start"], first["end"])


def assert_no_alert(driver):
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - reading it is what raises when there is none


def test_browser_progress_no_answer_and_unreachable_server(browser):
    with ThreadedServer(create_demo_app(StubBackend())) as server:
        browser.get(f"http://127.0.0.1:{server.port}/")
        wait_for(browser, lambda: by_id(browser, "model").text == "stub model (tests)")
        set_passage(browser, "Nobody here painted the door.")
        field = by_id(browser, "question")
        field.clear()
        field.send_keys("Who painted the door?\n")
        button = by_id(browser, "ask")
        assert not button.is_enabled() and button.text == "Asking…"  # the stub takes a second
        wait_for(browser, lambda: by_id(browser, "ask-form").get_attribute("data-state") == "answered")
        assert button.is_enabled() and button.text == "Ask"
        assert by_id(browser, "answer").text == "No answer found in the passage"
        assert browser.find_elements("css selector", "#highlighted mark") == []
        assert by_id(browser, "candidates-title").text == "Best candidates (below the no-answer threshold)"
        assert visible_candidates(browser) == ["“Nobody”"]

    url = f"http://127.0.0.1:{free_port()}/v1/models/tfqa"
    with ThreadedServer(create_demo_app(RemoteBackend(url))) as server:
        browser.get(f"http://127.0.0.1:{server.port}/")
        wait_for(browser, lambda: by_id(browser, "model").text == f"{url} (model server)")
        set_passage(browser, CORPUS[0])
        assert submit(browser, "Where did the cat sit?") == "error"
        assert by_id(browser, "error").text.startswith(f"The model server did not answer: {url}:predict: "
                                                       "connection refused")
