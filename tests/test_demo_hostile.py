"""Hostile requests to `python -m tfqa demo` (issue 15: #6, #7, #20, #21, #15): JSON errors, no 5xx, no rebinding."""

from __future__ import annotations

import json

import pytest
from serving_helpers import TestClient, fake_export

from tfqa.apps.cli import main
from tfqa.apps.demo import LocalBackend, allowed_hosts, create_demo_app

JSON = {"content-type": "application/json"}
ORIGIN = "http://127.0.0.1:8080"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return fake_export(tmp_path_factory, "demo-hostile")


@pytest.fixture(scope="module")
def client(export_dir):
    """The demo as `run_demo` builds it for --host 127.0.0.1, reached as http://127.0.0.1:8080."""
    app = create_demo_app(LocalBackend(str(export_dir)), allowed_hosts("127.0.0.1"))
    return TestClient(app, base_url=ORIGIN)


def ask(client, body: bytes, headers=None):
    return client.post("/api/answer", content=body, headers={**JSON, **(headers or {})})


def check_json_error(response, status, fragment):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert fragment in response.json()["error"] and "Traceback" not in response.text


def test_a_good_question_is_answered_with_nosniff(client):
    response = ask(client, json.dumps({"question": "Who?", "context": "Denver Broncos won"}).encode())
    assert response.status_code == 200 and response.json()["answer"] == "Denver"
    assert response.headers["x-content-type-options"] == "nosniff"
    for url in ("/", "/api/info", "/api/samples"):
        assert client.get(url).headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"question": ' + b"[" * 5000 + b"]" * 5000 + b', "context": "x"}',
                                  b'{"question": "Who?", "context": "x", "n": ' + b"1" * 5000 + b"}"],
                         ids=["100k-open", "5000-deep", "5000-digits"])
def test_nested_bodies_and_huge_numbers_are_400(client, body):
    check_json_error(ask(client, body), 400, 'send a JSON object {"question"')  # was 500 (RecursionError)


@pytest.mark.parametrize("field, body", [
    ("question", b'{"question": "Who \\ud800?", "context": "Ada Lovelace"}'),
    ("passage", b'{"question": "Who?", "context": "a Lovelace \\udfff"}'),
])
def test_lone_surrogates_are_refused_naming_the_field(client, field, body):
    check_json_error(ask(client, body), 400, f"The {field} is not valid text: the string has a lone surrogate")


@pytest.mark.parametrize("method, url, status", [("GET", "/nowhere", 404), ("POST", "/api/info", 405),
                                                 ("TRACE", "/", 405), ("DELETE", "/api/answer", 405)])
def test_unknown_routes_and_methods_get_json(client, method, url, status):
    check_json_error(client.request(method, url, headers=JSON), status, url)


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8080", "127.0.0.2:8080", ""])
def test_other_host_names_are_refused_against_dns_rebinding(client, host):
    check_json_error(client.get("/api/info", headers={"host": host}), 400, "this demo answers for")
    check_json_error(client.get("/", headers={"host": host}), 400, "this demo answers for")


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "localhost", "[::1]:8080"])
def test_loopback_names_are_answered(client, host):
    assert client.get("/api/info", headers={"host": host}).status_code == 200


def test_hosts_the_demo_answers_follow_its_address():
    assert allowed_hosts("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}
    assert allowed_hosts("192.168.1.5") == {"127.0.0.1", "localhost", "::1", "192.168.1.5"}
    assert allowed_hosts("0.0.0.0") is None and allowed_hosts("::") is None  # public: no names to check


GOOD = json.dumps({"question": "Who?", "context": "Denver Broncos won"}).encode()


@pytest.mark.parametrize("headers, status, fragment", [
    ({"content-type": "text/plain"}, 415, "Content-Type: application/json"),  # a no-preflight cross-site fetch
    ({"content-type": "application/x-www-form-urlencoded"}, 415, "Content-Type: application/json"),  # a form
    ({"origin": "http://attacker.example"}, 403, "cross-origin request refused"),
    ({"origin": "null"}, 403, "cross-origin request refused"),
    ({"sec-fetch-site": "cross-site"}, 403, "cross-origin request refused"),
])
def test_cross_origin_and_non_json_posts_do_not_run_the_model(client, headers, status, fragment):
    check_json_error(ask(client, GOOD, headers), status, fragment)


def test_same_origin_page_posts_are_answered(client):
    for headers in ({"origin": ORIGIN, "sec-fetch-site": "same-origin"}, {"content-type": "application/json; "
                                                                                          "charset=utf-8"}):
        assert ask(client, GOOD, headers).status_code == 200


def test_info_names_no_local_path(client, export_dir):
    model = client.get("/api/info").json()["model"]
    assert model == "tfqa (version 1, loaded locally)" and str(export_dir.parent) not in model


def test_bad_port_is_a_one_line_error(export_dir, capsys):
    assert main(["demo", "--model", str(export_dir), "--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert err == "tfqa: error: --port 70000 is not a TCP port (0-65535; 0 picks a free one)\n"
