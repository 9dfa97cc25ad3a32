"""serverless-max predict end to end: the command as a user runs it, against real servers on loopback.

The example models run on the plain-HTTP platform (`python openwhisk.py` with PORT set, as Knative,
Cloud Run and Code Engine start it), behind the local endpoint (OpenWhisk web actions, with its
container pool and the controller's 429 throttles), and under AWS's Runtime Interface Emulator
(lambda:// through the Invoke API path). A fault-injecting HTTP proxy written here (connection
resets, 502s, slow answers, a stall) stands in front where a test needs the network to misbehave;
it is a stand-in for a flaky network, not for any platform. Answers are compared with the recorded
answers of the models' own servers (samples/expected).

The client needs Python 3.9+; it is installed in the current-era venv only.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Any, Callable, Dict, Iterator, List

import pytest

if sys.version_info < (3, 9):
    pytest.skip("the batch client runs on Python 3.9+ (installed in the current-era venv only)",
                allow_module_level=True)

from support import ROOT, SHIM, ServerProcess, free_port, lambda_emulator  # noqa: E402

EXAMPLES = os.path.join(ROOT, "examples")
DIGITS = os.path.join(EXAMPLES, "max-example-digit-classifier")
UPSCALER = os.path.join(EXAMPLES, "max-example-image-upscaler")
SENTIMENT = os.path.join(EXAMPLES, "max-example-text-sentiment")
LOCAL_ENDPOINT = os.path.join(ROOT, "local_endpoint.py")
DIGIT_SAMPLES = {"digit-2.png": "predict-digit-2.json", "digit-3.png": "predict-digit-3.json",
                 "digit-7.jpg": "predict-digit-7-jpeg.json"}


# ----------------------------------------------------------------------------- servers

class ThreadingHTTPServer(ThreadingMixIn, HTTPServer):
    daemon_threads = True


def http_service(model_dir: str) -> ServerProcess:
    """openwhisk.py on the plain-HTTP platform, as Knative starts it."""
    port = free_port()
    env = {"PORT": str(port), "K_SERVICE": "max-test", "K_REVISION": "max-test-00001"}
    return ServerProcess([sys.executable, SHIM, "--host", "127.0.0.1"], port, model_dir, env, name="http-service")


@pytest.fixture(scope="module")
def services() -> Iterator[Dict[str, ServerProcess]]:
    started = {name: http_service(model_dir) for name, model_dir in
               (("digits", DIGITS), ("upscaler", UPSCALER), ("sentiment", SENTIMENT))}
    try:
        for service in started.values():
            service.wait_for_port()
        yield started
    finally:
        for service in started.values():
            service.stop()


def url(service: Any) -> str:
    return "http://127.0.0.1:%d" % service.port


class LocalEndpoint(ServerProcess):
    """local_endpoint.py serving model directories as web actions; ready once it says so."""

    def __init__(self, *arguments: str):
        port = free_port()
        ServerProcess.__init__(self, [sys.executable, LOCAL_ENDPOINT, "--port", str(port)] + list(arguments), port,
                               ROOT, name="local-endpoint")
        self.wait_until(lambda: "\nready" in "\n" + self.stdout(), 120)

    def action_url(self, action: str) -> str:
        return "http://127.0.0.1:%d/api/v1/web/guest/default/%s" % (self.port, action)


# ----------------------------------------------------------------------------- the fault proxy

class FaultProxy(object):
    """A real HTTP server that forwards to a model, except where `plan(n)` (n: the n-th predict
    request, from 1) names a fault: "reset" (RST, no answer), "502", "slow" (`slow` seconds, then the
    answer), "stall" (no answer for `stall` seconds, then close)."""

    def __init__(self, upstream_port: int, plan: Callable[[int], str], stall: float = 5.0,
                 spec_statuses: Iterator[int] = iter(()), slow: float = 0.3):
        self.upstream_port = upstream_port
        self.plan = plan
        self.slow = slow
        self.spec_statuses = spec_statuses  # what the first GETs answer instead of the model (then: the model)
        self.stall = stall
        self.count = 0
        self.faults = []  # type: List[str]
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status = next(proxy.spec_statuses, None)
                if status is not None:
                    self.answer(status, [("Content-Type", "text/plain")], b"pending request queue full\n")
                    return
                self.forward(b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy.lock:
                    proxy.count += 1
                    fault = proxy.plan(proxy.count)
                    proxy.faults.append(fault)
                if fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if fault == "502":
                    self.answer(502, [("Content-Type", "text/plain")], b"Bad Gateway")
                    return
                if fault == "stall":
                    time.sleep(proxy.stall)
                    self.close_connection = True
                    return
                if fault == "slow":
                    time.sleep(proxy.slow)
                self.forward(body)

            def forward(self, body: bytes) -> None:
                connection = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                try:
                    headers = dict((name, value) for name, value in self.headers.items()
                                   if name.lower() not in ("host", "connection"))
                    connection.request(self.command, self.path, body=body or None, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                    kept = [(name, value) for name, value in response.getheaders()
                            if name.lower() not in ("connection", "transfer-encoding", "content-length")]
                    self.answer(response.status, kept, data)
                finally:
                    connection.close()

            def answer(self, status: int, headers: List[Any], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def finish(self) -> None:
                try:
                    BaseHTTPRequestHandler.finish(self)
                except OSError:
                    pass  # the reset fault closed the socket

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ----------------------------------------------------------------------------- running the client

CLIENT = [sys.executable, "-m", "serverless_max_client"]


def client(*arguments: str, cwd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(CLIENT + list(arguments), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout)


def lines(path: str) -> List[Dict[str, Any]]:
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


def by_input(records: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    table = {}  # type: Dict[str, Dict[str, Any]]
    for record in records:
        assert record["input"] not in table, "two lines for %s" % record["input"]
        table[record["input"]] = record
    return table


def expected(model_dir: str, name: str) -> Any:
    with open(os.path.join(model_dir, "samples", "expected", name), encoding="utf-8") as stream:
        return json.load(stream)


def digit_copies(directory: str, count: int) -> List[str]:
    """count digit images (copies of the three samples), named 0000-digit-3.png..."""
    os.makedirs(directory, exist_ok=True)
    names = sorted(DIGIT_SAMPLES)
    paths = []
    for number in range(count):
        source = names[number % len(names)]
        path = os.path.join(directory, "%04d-%s" % (number, source))
        shutil.copyfile(os.path.join(DIGITS, "samples", source), path)
        paths.append(path)
    return paths


def expected_digit(path: str) -> Any:
    return expected(DIGITS, DIGIT_SAMPLES[os.path.basename(path).split("-", 1)[1]])


# ----------------------------------------------------------------------------- the three examples

def test_image_model_over_plain_http(services, tmp_path):
    paths = [os.path.join(DIGITS, "samples", name) for name in sorted(DIGIT_SAMPLES)]
    result = client("predict", url(services["digits"]), *paths, "-o", "out.jsonl", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    table = by_input(lines(str(tmp_path / "out.jsonl")))
    for path in paths:
        record = table[path]
        assert record["status"] == "ok" and record["http_status"] == 200 and record["attempts"] == 1
        assert record["response"] == expected(DIGITS, DIGIT_SAMPLES[os.path.basename(path)])
        assert record["started_at"] <= record["finished_at"] and record["latency_ms"] > 0
        assert record["attempt_log"] == [[record["started_at"], record["finished_at"], 200]]
        assert record["error"] is None
    assert "3 ok, 0 failed" in result.stderr and "p50" in result.stderr and "concurrency settled at" in result.stderr


def test_binary_answers_land_in_the_output_dir(services, tmp_path):
    samples = os.path.join(UPSCALER, "samples")
    inputs = [os.path.join(samples, name) for name in ("shapes.png", "photo.jpg", "not-an-image.txt")]
    result = client("predict", url(services["upscaler"]), *inputs, "-o", "out.jsonl", "--output-dir", "big",
                    cwd=str(tmp_path))
    assert result.returncode == 1, result.stderr  # not-an-image.txt is the input's fault
    table = by_input(lines(str(tmp_path / "out.jsonl")))
    for name in ("shapes.png", "photo.jpg"):
        response = table[os.path.join(samples, name)]["response"]
        assert response["content_type"] == "image/png"
        # Exactly the bytes the model answers to the same upload sent directly.
        direct = post_file(services["upscaler"].port, os.path.join(samples, name))
        assert (tmp_path / response["file"]).read_bytes() == direct and response["bytes"] == len(direct)
    assert response["file"] == os.path.join("big", "photo.png")  # a file given by an absolute path: its name
    failed = table[os.path.join(samples, "not-an-image.txt")]
    assert (failed["status"], failed["http_status"], failed["error_kind"]) == ("failed", 400, "HTTP 400")
    assert failed["attempts"] == 1 and "valid image" in failed["error"]
    assert "failed 1x: HTTP 400" in result.stderr


def test_text_model_batches_and_splits_answers(services, tmp_path):
    texts = ["I love this", "I hate that", "meh", "great, really great", "awful"]
    manifest = tmp_path / "texts.jsonl"
    manifest.write_text("".join(json.dumps({"id": "t%d" % number, "text": text}) + "\n"
                                for number, text in enumerate(texts)))
    result = client("predict", url(services["sentiment"]), "--manifest", str(manifest), "--batch-size", "2",
                    "-o", "out.jsonl", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    table = by_input(lines(str(tmp_path / "out.jsonl")))
    assert sorted(table) == ["t0", "t1", "t2", "t3", "t4"]
    assert "3 sent" in result.stderr  # five inputs in three requests
    for number, text in enumerate(texts):
        alone = post_json(services["sentiment"].port, {"text": [text]})
        assert table["t%d" % number]["response"] == alone
        assert table["t%d" % number]["batch"] in (1, 2, None)


def post_file(port: int, path: str, field: str = "image") -> bytes:
    boundary = "smx-test-boundary"
    with open(path, "rb") as stream:
        data = stream.read()
    body = ("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n" % (boundary, field, os.path.basename(path))).encode()
    body += data + ("\r\n--%s--\r\n" % boundary).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/model/predict", body=body,
                           headers={"Content-Type": "multipart/form-data; boundary=" + boundary})
        response = connection.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        connection.close()


def post_json(port: int, value: Any) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/model/predict", body=json.dumps(value), headers={"Content-Type": "application/json"})
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def test_dry_run_shows_the_shape_from_swagger(services, tmp_path):
    result = client("predict", url(services["digits"]) + "/model/predict", "a.png", "-F", "threshold=0.2",
                    "--dry-run", "b.png", cwd=str(tmp_path))  # inputs before and after the options
    assert result.returncode == 0, result.stderr
    assert "file field 'image'; query threshold=0.2 (shape from swagger.json)" in result.stdout
    assert "input: a.png\ninput: b.png\n" in result.stdout
    result = client("predict", url(services["digits"]), "a.png", "--no-such-flag", cwd=str(tmp_path))
    assert result.returncode == 2 and "unrecognized arguments: --no-such-flag" in result.stderr
    assert not (tmp_path / "results.jsonl").exists()
    result = client("predict", url(services["sentiment"]), "a.txt", "--dry-run", cwd=str(tmp_path))
    assert "JSON {'text': [...]}" in result.stdout


# ----------------------------------------------------------------------------- a misbehaving network

def test_faults_are_retried_and_every_input_answered_once(services, tmp_path):
    plan = {2: "reset", 3: "502", 4: "slow", 5: "stall", 7: "502", 8: "reset", 9: "reset"}
    proxy = FaultProxy(services["digits"].port, lambda n: plan.get(n, "pass"), stall=3.0)
    try:
        paths = digit_copies(str(tmp_path / "in"), 12)
        result = client("predict", url(proxy), str(tmp_path / "in"), "-j", "3", "--timeout", "1", "--retries", "5",
                        "-o", "out.jsonl", cwd=str(tmp_path))
    finally:
        proxy.close()
    assert result.returncode == 0, result.stderr
    table = by_input(lines(str(tmp_path / "out.jsonl")))
    assert sorted(table) == sorted(paths)
    outcomes = [entry[2] for record in table.values() for entry in record["attempt_log"]]
    assert 502 in outcomes and "timeout" in outcomes
    assert any(kind in outcomes for kind in ("connection reset", "connection closed"))
    for path in paths:
        assert table[path]["response"] == expected_digit(path)
        assert table[path]["attempts"] == len(table[path]["attempt_log"])
    assert sum(record["attempts"] for record in table.values()) == len(proxy.faults)


def test_the_spec_is_fetched_through_throttles(services, tmp_path):
    proxy = FaultProxy(services["digits"].port, lambda n: "pass", spec_statuses=iter([503, 429, 502]))
    try:
        result = client("predict", url(proxy), os.path.join(DIGITS, "samples", "digit-3.png"), "-o", "out.jsonl",
                        cwd=str(tmp_path))
    finally:
        proxy.close()
    assert result.returncode == 0, result.stderr
    assert "shape from swagger.json" in result.stderr


def test_retries_are_bounded(services, tmp_path):
    proxy = FaultProxy(services["digits"].port, lambda n: "502")
    try:
        result = client("predict", url(proxy), os.path.join(DIGITS, "samples", "digit-3.png"), "--retries", "2",
                        "-o", "out.jsonl", cwd=str(tmp_path))
    finally:
        proxy.close()
    assert result.returncode == 1
    (record,) = lines(str(tmp_path / "out.jsonl"))
    assert (record["status"], record["attempts"], record["error_kind"]) == ("failed", 3, "gave up: HTTP 502")
    assert "no answer after 3 attempts (--retries 2)" in record["error"]


# ----------------------------------------------------------------------------- kill, resume

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_killed_then_resumed_every_input_exactly_once(services, tmp_path, signum):
    proxy = FaultProxy(services["digits"].port, lambda n: "slow", slow=0.15)
    paths = digit_copies(str(tmp_path / "in"), 20)
    results = str(tmp_path / "out.jsonl")
    try:
        process = subprocess.Popen(CLIENT + ["predict", url(proxy), str(tmp_path / "in"), "-j", "3", "-o", results],
                                   cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   universal_newlines=True)
        deadline = time.time() + 30
        while (not os.path.exists(results) or len(open(results).readlines()) < 5) and time.time() < deadline:
            time.sleep(0.05)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == (130 if signum == signal.SIGINT else -signal.SIGKILL), stderr
        first = lines(results)
        assert 5 <= len(first) < 20 and all(record["status"] == "ok" for record in first)
        if signum == signal.SIGINT:
            assert "interrupted" in stderr and "--resume" in stderr
        else:  # a kill can cut a line short: the resume must take that too
            with open(results, "a") as stream:
                stream.write('{"input": "%s", "status": "ok", "resp' % paths[-1])
        again = client("predict", url(proxy), str(tmp_path / "in"), "-j", "3", "-o", results, "--resume",
                       cwd=str(tmp_path))
    finally:
        proxy.close()
    assert again.returncode == 0, again.stderr
    table = by_input(lines(results))
    assert sorted(table) == sorted(paths)
    assert all(table[path]["response"] == expected_digit(path) for path in paths)
    assert "%d inputs" % (20 - len(first)) in again.stderr


def test_existing_results_need_resume_and_a_full_disk_is_named(services, tmp_path):
    (tmp_path / "out.jsonl").write_text('{"input": "x", "status": "ok"}\n')
    result = client("predict", url(services["digits"]), "x.png", "-o", "out.jsonl", cwd=str(tmp_path))
    assert result.returncode == 2 and "--resume" in result.stderr
    image = os.path.join(DIGITS, "samples", "digit-3.png")
    result = client("predict", url(services["digits"]), image, "-o", "/dev/full", cwd=str(tmp_path))
    assert result.returncode == 2 and "No space left on device" in result.stderr
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------------------- clear messages

class TinyServer(object):
    """A real HTTP server answering every GET with one fixed answer (not a model, or a broken one)."""

    def __init__(self, status: int, content_type: str, body: bytes):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_wrong_url_not_a_model_and_no_predict_operation(tmp_path):
    image = os.path.join(DIGITS, "samples", "digit-3.png")
    result = client("predict", "http://127.0.0.1:%d" % free_port(), image, cwd=str(tmp_path))
    assert result.returncode == 2 and "cannot reach" in result.stderr and "connection refused" in result.stderr
    not_a_model = TinyServer(404, "text/html", b"<html><body>Not Found</body></html>")
    metadata_only = TinyServer(200, "application/json", json.dumps({
        "swagger": "2.0", "basePath": "/", "paths": {"/model/metadata": {"get": {"operationId": "get_metadata"}}}
    }).encode("utf-8"))
    try:
        result = client("predict", url(not_a_model), image, cwd=str(tmp_path))
        assert result.returncode == 2 and "does not look like a deployed MAX model" in result.stderr
        assert "404" in result.stderr
        result = client("predict", url(metadata_only), image, cwd=str(tmp_path))
        assert result.returncode == 2 and "no predict operation" in result.stderr
        assert "--field NAME" in result.stderr and "--json-field NAME" in result.stderr
    finally:
        not_a_model.close()
        metadata_only.close()
    assert not (tmp_path / "results.jsonl").exists()
    result = client("predict", "ftp://x", image, cwd=str(tmp_path))
    assert result.returncode == 2 and "https://, http:// or lambda://" in result.stderr


def test_unreadable_inputs_fail_alone(services, tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "fine.txt").write_text("I love this")
    result = client("predict", url(services["sentiment"]), "missing.txt", "latin1.txt", "fine.txt",
                    "--batch-size", "3", "-o", "out.jsonl", cwd=str(tmp_path))
    assert result.returncode == 1
    table = by_input(lines(str(tmp_path / "out.jsonl")))
    assert table["fine.txt"]["status"] == "ok"
    assert table["missing.txt"]["error"] == "cannot read missing.txt: No such file or directory"
    assert "not UTF-8" in table["latin1.txt"]["error"]
    assert table["latin1.txt"]["attempts"] == 0 and table["latin1.txt"]["error_kind"] == "unreadable input"
    assert "failed 2x: unreadable input" in result.stderr


# ----------------------------------------------------------------------------- OpenWhisk: the local endpoint

def test_openwhisk_web_action_and_its_size_limit(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 6000)
    endpoint = LocalEndpoint("--payload-limit", "4000", "digits=" + DIGITS)
    try:
        paths = [os.path.join(DIGITS, "samples", name) for name in sorted(DIGIT_SAMPLES)]
        result = client("predict", endpoint.action_url("digits"), *paths, str(big), "-o", "out.jsonl",
                        cwd=str(tmp_path))
    finally:
        endpoint.stop()
    assert result.returncode == 1, result.stderr
    table = by_input(lines(str(tmp_path / "out.jsonl")))
    for path in paths:
        assert table[path]["response"] == expected(DIGITS, DIGIT_SAMPLES[os.path.basename(path)])
        assert len(table[path]["request_id"]) == 32  # x-openwhisk-activation-id
    over = table[str(big)]
    assert (over["status"], over["http_status"], over["attempts"]) == ("failed", 413, 1)
    assert "Request larger than allowed" in over["error"] and "OpenWhisk: 1 MB" in over["error"]
    assert "resize" in over["error"]


def test_openwhisk_throttling_every_input_once(tmp_path):
    """The local endpoint with two containers and the namespace's concurrent limit at 2: the client
    at -j 12 meets the controller's 429s, cuts its concurrency, retries, and the run ends with every
    input answered exactly once."""
    endpoint = LocalEndpoint("--containers", "2", "--concurrent-limit", "2", "digits=" + DIGITS)
    try:
        paths = digit_copies(str(tmp_path / "in"), 40)
        result = client("predict", endpoint.action_url("digits"), str(tmp_path / "in"), "-j", "12",
                        "--retries", "20", "-o", "out.jsonl", cwd=str(tmp_path), timeout=120)
    finally:
        endpoint.stop()
    assert result.returncode == 0, result.stderr
    table = by_input(lines(str(tmp_path / "out.jsonl")))
    assert sorted(table) == sorted(paths)
    assert all(table[path]["response"] == expected_digit(path) for path in paths)
    outcomes = [entry[2] for record in table.values() for entry in record["attempt_log"]]
    assert 429 in outcomes
    assert "met" in result.stderr and "OpenWhisk 429 Too many concurrent requests in flight" in result.stderr
    settled = float(result.stderr.split("concurrency settled at ")[1].split()[0])
    assert settled < 12


# ----------------------------------------------------------------------------- Lambda: the Invoke API

def test_lambda_invoke_api_through_the_emulator(tmp_path):
    """-j 1: the emulator is one execution environment and takes one invocation at a time (a second
    one at once makes it panic: ReserveFailed: AlreadyReserved)."""
    rie = lambda_emulator()
    port = free_port()
    emulator = ServerProcess([rie, "--runtime-interface-emulator-address", "127.0.0.1:%d" % port,
                              "--runtime-api-address", "127.0.0.1:%d" % free_port(), sys.executable, SHIM],
                             port, DIGITS, {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, name="rie")
    try:
        emulator.wait_for_port()
        paths = [os.path.join(DIGITS, "samples", name) for name in sorted(DIGIT_SAMPLES)]
        paths.append(os.path.join(DIGITS, "samples", "not-an-image.txt"))
        result = client("predict", "lambda://function", *paths, "--lambda-endpoint", "http://127.0.0.1:%d" % port,
                        "-j", "1", "-o", "out.jsonl", cwd=str(tmp_path), timeout=120)
    finally:
        emulator.stop()
    assert result.returncode == 1, result.stderr
    table = by_input(lines(str(tmp_path / "out.jsonl")))
    for path in paths[:-1]:
        assert table[path]["status"] == "ok", table[path]
        assert table[path]["response"] == expected(DIGITS, DIGIT_SAMPLES[os.path.basename(path)])
    failed = table[paths[-1]]
    assert (failed["status"], failed["http_status"]) == ("failed", 400)
    assert "AWS Lambda (Invoke API)" in result.stderr


def test_openwhisk_202_not_ready_is_resent_then_reported(tmp_path):
    """An action that always runs past the controller's wait: each 202 "Response not yet ready." is
    re-sent (predictions are idempotent); after the retries the line says how to fetch the result.
    The echo app's swagger.json has no predict parameters, so the flags give the request's shape."""
    echo = os.path.join(ROOT, "tests", "apps", "max-test-echo")
    endpoint = LocalEndpoint("--timeout", "0.3", "echo=" + echo)
    try:
        (tmp_path / "a.txt").write_text("a")
        result = client("predict", endpoint.action_url("echo"), "a.txt", "--field", "file", "--path",
                        "/slow?seconds=1", "--retries", "1", "-o", "out.jsonl", cwd=str(tmp_path))
    finally:
        endpoint.stop()
    assert result.returncode == 1, result.stderr
    assert "using the flags' request shape" in result.stderr
    (record,) = lines(str(tmp_path / "out.jsonl"))
    assert [entry[2] for entry in record["attempt_log"]] == [202, 202]
    assert record["error_kind"] == "gave up: HTTP 202"
    assert "wsk activation result %s" % record["request_id"] in record["error"]
    assert "OpenWhisk 202 Response not yet ready (re-sent)" in result.stderr


# ----------------------------------------------------------------------------- auth, progress, plot

class CapturingServer(TinyServer):
    """A model stand-in that records each request's headers and answers a fixed JSON document:
    only the headers the client sends are under test here."""

    def __init__(self) -> None:
        self.seen = []  # type: List[Dict[str, str]]
        spec_body = json.dumps({"swagger": "2.0", "basePath": "/", "paths": {"/model/predict": {"post": {
            "parameters": [{"name": "image", "in": "formData", "type": "file"}]}}}}).encode("utf-8")
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.seen.append(dict(self.headers.items()))
                self.reply(spec_body)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.seen.append(dict(self.headers.items()))
                self.reply(b'{"status": "ok"}')

            def reply(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_headers_whisk_auth_and_sigv4(tmp_path):
    server = CapturingServer()
    image = os.path.join(DIGITS, "samples", "digit-3.png")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="secret", AWS_REGION="eu-west-1")
    env.pop("AWS_SESSION_TOKEN", None)
    try:
        result = subprocess.run(CLIENT + ["predict", url(server), image, "-H", "Authorization: Bearer t0k",
                                          "--whisk-auth", "s3cret", "-o", "a.jsonl"], cwd=str(tmp_path),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert all(seen["Authorization"] == "Bearer t0k" and seen["X-Require-Whisk-Auth"] == "s3cret"
                   for seen in server.seen)
        server.seen.clear()
        result = subprocess.run(CLIENT + ["predict", url(server), image, "--aws-sigv4", "-o", "b.jsonl"],
                                cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True, timeout=60, env=env)
        assert result.returncode == 0, result.stderr
        for seen in server.seen:
            assert seen["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            assert "/eu-west-1/lambda/aws4_request" in seen["Authorization"] and "X-Amz-Date" in seen
        # Without botocore: the message says what to install, and nothing is sent.
        (tmp_path / "nobotocore" / "botocore").mkdir(parents=True)
        (tmp_path / "nobotocore" / "botocore" / "__init__.py").write_text("raise ImportError('no botocore here')\n")
        result = subprocess.run(CLIENT + ["predict", url(server), image, "--aws-sigv4", "-o", "c.jsonl"],
                                cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True, timeout=60,
                                env=dict(env, PYTHONPATH=str(tmp_path / "nobotocore")))
        assert result.returncode == 2 and "needs botocore" in result.stderr and "[aws]" in result.stderr
    finally:
        server.close()


def test_progress_bar_on_a_terminal_and_plain_lines_otherwise(tmp_path):
    import fcntl
    import pty
    import termios
    server = CapturingServer()
    images = digit_copies(str(tmp_path / "in"), 6)
    try:
        controller, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal's size
        process = subprocess.Popen(CLIENT + ["predict", url(server), str(tmp_path / "in"), "-o", "a.jsonl",
                                             "--plot", "run.png"], cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=terminal)
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        process.wait(30)
        os.close(controller)
        text = shown.decode("utf-8", "replace")
        assert process.returncode == 0, text
        assert "6/6" in text and "in_flight=" in text and "6 ok, 0 failed" in text
        plain = client("predict", url(server), str(tmp_path / "in"), "-o", "b.jsonl", "--progress-interval", "0.01",
                       cwd=str(tmp_path))
        assert "done 6 (ok 6, failed 0)" in plain.stderr or "done: 6 inputs" in plain.stderr
        quiet = client("predict", url(server), str(tmp_path / "in"), "-o", "c.jsonl", "-q", cwd=str(tmp_path))
        assert quiet.returncode == 0 and quiet.stderr == ""
        assert len(lines(str(tmp_path / "c.jsonl"))) == len(images)
    finally:
        server.close()


def test_a_bad_manifest_line_stops_the_run_with_its_line_number(services, tmp_path):
    manifest = tmp_path / "texts.jsonl"
    manifest.write_text('{"id": "a", "text": "I love this"}\n{"id": "b", "text": \n')
    result = client("predict", url(services["sentiment"]), "--manifest", str(manifest), "-o", "out.jsonl",
                    cwd=str(tmp_path))
    assert result.returncode == 2
    assert "texts.jsonl line 2 is not JSON" in result.stderr


@pytest.mark.parametrize("platform", ["openwhisk", "lambda"])
def test_faults_in_front_of_the_other_platforms(tmp_path, platform):
    """The fault proxy in front of the local endpoint (web action URL) and of the emulator (the
    Invoke API, -j 1: one execution environment): every input answered once all the same."""
    plan = {2: "reset", 3: "502", 4: "stall", 5: "slow", 7: "reset"}
    if platform == "openwhisk":
        server = LocalEndpoint("digits=" + DIGITS)  # type: ServerProcess
        target = lambda proxy: [url(proxy) + "/api/v1/web/guest/default/digits"]  # noqa: E731
    else:
        port = free_port()
        server = ServerProcess([lambda_emulator(), "--runtime-interface-emulator-address", "127.0.0.1:%d" % port,
                                "--runtime-api-address", "127.0.0.1:%d" % free_port(), sys.executable, SHIM],
                               port, DIGITS, name="rie")
        server.wait_for_port()
        # The model loads on the first invocation: done before the client's timeouts start to count,
        # as one that timed out would leave the emulator busy, and it takes one invocation at a time.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        connection.request("POST", "/2015-03-31/functions/function/invocations", body=b'{"warm-up": true}')
        connection.getresponse().read()
        connection.close()
        target = lambda proxy: ["lambda://function", "--lambda-endpoint", url(proxy), "-j", "1"]  # noqa: E731
    proxy = FaultProxy(server.port, lambda n: plan.get(n, "pass"), stall=2.0)
    try:
        paths = digit_copies(str(tmp_path / "in"), 6)
        result = client("predict", *(target(proxy) + [str(tmp_path / "in"), "--timeout", "1.5", "-o", "out.jsonl"]),
                        cwd=str(tmp_path), timeout=120)
    finally:
        proxy.close()
        server.stop()
    assert result.returncode == 0, result.stderr
    table = by_input(lines(str(tmp_path / "out.jsonl")))
    assert sorted(table) == sorted(paths)
    assert all(table[path]["response"] == expected_digit(path) for path in paths)
    outcomes = [entry[2] for record in table.values() for entry in record["attempt_log"]]
    assert 502 in outcomes and "timeout" in outcomes
