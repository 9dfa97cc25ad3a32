"""The plain-HTTP platform (Knative, Cloud Run, Code Engine) as a real process on loopback.

`python openwhisk.py` runs with PORT, K_SERVICE and K_REVISION set, as those platforms start it,
and is sent real HTTP: every recorded example sample must answer exactly as the model's own server.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from samples import SampleRequest, check_expected, curl_args, example_model_dirs, load_samples, target
from support import ECHO_APP, SHIM, ServerProcess, accepts_connections, free_port

MODEL_DIRS = example_model_dirs()
SAMPLES = [sample for model_dir in MODEL_DIRS for sample in load_samples(model_dir)]
SAMPLE_IDS = ["%s/%s" % (os.path.basename(sample.model_dir), sample.name) for sample in SAMPLES]
DIGIT_CLASSIFIER = [model_dir for model_dir in MODEL_DIRS if model_dir.endswith("max-example-digit-classifier")][0]

# Variables that would choose another platform or change the settings under test.
_FOREIGN_VARIABLES = ("__OW_API_HOST", "AWS_LAMBDA_RUNTIME_API", "SERVERLESS_MAX_PLATFORM")


class HttpService(ServerProcess):
    """openwhisk.py on the HTTP platform: started as Knative starts a container, with PORT set."""

    def __init__(self, app_dir: str, env: Optional[Dict[str, str]] = None, knative: bool = True):
        port = free_port()
        full_env = {"PORT": str(port)}
        if knative:
            full_env.update({"K_SERVICE": "max-test", "K_REVISION": "max-test-00001", "K_CONFIGURATION": "max-test"})
        full_env.update(env or {})
        ServerProcess.__init__(self, [sys.executable, SHIM, "--host", "127.0.0.1"], port, app_dir, full_env,
                               name="http-service")
        for name in _FOREIGN_VARIABLES:
            assert name not in os.environ, "%s is set in the test environment" % name

    def started(self) -> "HttpService":
        self.wait_for_port()
        return self

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict((k.lower(), v) for k, v in response.getheaders()), response.read()
        finally:
            connection.close()

    def raw(self, data: bytes, seconds: float = 30.0) -> bytes:
        """Send bytes as they are; everything the server answers until it closes the connection."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=seconds) as connection:
            connection.sendall(data)
            return read_until_closed(connection)

    def log_entries(self) -> List[Dict[str, Any]]:
        """The JSON lines on stdout (the app's own lines are plain text)."""
        entries = []
        for line in self.stdout().splitlines():
            if line.startswith("{"):
                entries.append(json.loads(line))
        return entries

    def wait_for_entry(self, text: str, seconds: float = 10.0) -> Dict[str, Any]:
        """The access-log entry whose message holds ``text`` (lines are written after the answer)."""
        deadline = time.time() + seconds
        while True:
            found = [entry for entry in self.log_entries() if text in entry.get("message", "")]
            if found or time.time() > deadline:
                assert found, "no log entry with %r in:\n%s" % (text, self.stdout())
                return found[-1]
            time.sleep(0.02)


def read_until_closed(connection: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def parse_reply(reply: bytes) -> Tuple[int, Dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((name.lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:]))
    return int(lines[0].split()[1]), headers, body


@pytest.fixture(scope="module")
def echo() -> Iterator[HttpService]:
    service = HttpService(ECHO_APP, env={
        "SERVERLESS_MAX_SCRIPT_NAME": "/svc",
        "GOOGLE_CLOUD_PROJECT": "proj-1",
        "SERVERLESS_MAX_REQUEST_LIMIT": "100000",
        "SERVERLESS_MAX_RESULT_LIMIT": "200000",
        "SERVERLESS_MAX_READ_SECONDS": "2",
    })
    yield service.started()
    service.stop()


@pytest.fixture
def fresh() -> Iterator[Any]:
    services = []  # type: List[HttpService]

    def start(app_dir: str = ECHO_APP, **kwargs: Any) -> HttpService:
        service = HttpService(app_dir, **kwargs)
        services.append(service)
        return service

    yield start
    for service in services:
        service.stop()


# ----------------------------------------------------------------------------- the examples


class OwnServer(ServerProcess):
    """An example model's own server: its app.py run by its own maxfw and Flask, on a free port
    (maxfw always asks for port 5000; Flask.run is given another, nothing else changes)."""

    LAUNCHER = ("import flask, runpy, sys\n"
                "run = flask.Flask.run\n"
                "flask.Flask.run = lambda app, host=None, port=None, **options: "
                "run(app, '127.0.0.1', int(sys.argv[1]), **options)\n"
                "runpy.run_path('app.py', run_name='__main__')\n")

    def __init__(self, model_dir: str):
        port = free_port()
        ServerProcess.__init__(self, [sys.executable, "-c", self.LAUNCHER, str(port)], port, model_dir,
                               name="own-server")


@pytest.fixture(scope="module")
def example_servers() -> Iterator[Dict[str, Tuple[HttpService, OwnServer]]]:
    servers = {}  # type: Dict[str, Tuple[HttpService, OwnServer]]
    try:
        for model_dir in MODEL_DIRS:  # all started at once, then awaited: they load in parallel
            servers[model_dir] = (HttpService(model_dir), OwnServer(model_dir))
        for pair in servers.values():
            for server in pair:
                server.wait_for_port()
        yield servers
    finally:
        for pair in servers.values():
            for server in pair:
                server.stop()


def send(port: int, sample: SampleRequest, host: str) -> Tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(sample.method, target(sample), body=sample.body or None,
                           headers=dict(sample.headers, Host=host))
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_every_sample_answers_as_the_models_own_server(example_servers: Dict[str, Tuple[HttpService, OwnServer]],
                                                       sample: SampleRequest) -> None:
    service, own = example_servers[sample.model_dir]
    # Both get the same Host: some apps write it into their pages (the Swagger UI does).
    host = "models.example:8080"
    status, content_type, body = send(service.port, sample, host)
    check_expected(sample, status, content_type, body)
    assert (status, content_type, body) == send(own.port, sample, host)


def curl(url: str, args: List[str], body_path: str) -> Tuple[int, str]:
    command = (["curl", "--silent", "--show-error", "--max-time", "60", "--output", body_path,
                "--write-out", "%{http_code} %{content_type}"] + args + [url])
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                            timeout=90)
    assert result.returncode == 0, result.stderr
    status, _, content_type = result.stdout.partition(" ")
    return int(status), content_type


@pytest.mark.parametrize("sample", load_samples(DIGIT_CLASSIFIER), ids=lambda sample: sample.name)
def test_samples_sent_with_curl(example_servers: Dict[str, Tuple[HttpService, OwnServer]], sample: SampleRequest,
                                tmp_path: Any) -> None:
    answers = []
    for server in example_servers[DIGIT_CLASSIFIER]:
        body_path = str(tmp_path / ("%d.body" % server.port))
        # One Host for both: the Swagger UI page quotes it.
        status, content_type = curl("http://127.0.0.1:%d%s" % (server.port, target(sample)),
                                    ["-H", "Host: models.example:8080"] + curl_args(sample), body_path)
        with open(body_path, "rb") as body_file:
            answers.append((status, content_type, body_file.read()))
    check_expected(sample, *answers[0])
    assert answers[0] == answers[1]


# ----------------------------------------------------------------------------- the request and the response


def test_the_app_gets_the_request_as_it_arrived(echo: HttpService) -> None:
    status, headers, body = echo.request("GET", "/echo/a%20b/%C3%A9?x=1%202&x=3&flag", headers={
        "X-Custom": "kept", "X-Forwarded-Proto": "https", "Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    seen = json.loads(body.decode("utf-8"))
    assert seen["path"] == "/echo/a b/\u00e9"
    assert seen["query"] == "x=1%202&x=3&flag"
    assert seen["args"] == {"x": ["1 2", "3"], "flag": [""]}
    assert seen["headers"]["x-custom"] == "kept"
    assert seen["headers"]["accept-encoding"] == "gzip"  # the app may compress: nothing re-encodes its answer
    assert seen["headers"]["host"] == "127.0.0.1:%d" % echo.port


def test_bodies_arrive_whole_by_length_chunked_or_absent(echo: HttpService) -> None:
    payload = os.urandom(50000)
    status, _, body = echo.request("PUT", "/echo", payload, {"Content-Type": "application/octet-stream"})
    assert status == 200
    seen = json.loads(body.decode("utf-8"))
    assert seen["content_length"] == len(payload) and seen["method"] == "PUT"

    chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    reply = echo.raw(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked)
    status, _, body = parse_reply(reply)
    seen = json.loads(body.decode("utf-8"))
    assert status == 200 and seen["body_base64"] == "aGVsbG8gd29ybGQ=" and seen["content_length"] == 11
    assert "transfer-encoding" not in seen["headers"]

    # A POST without Content-Length has no body (RFC 9112), as for the model's own server: no 411.
    reply = echo.raw(b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, _, body = parse_reply(reply)
    assert status == 200 and json.loads(body.decode("utf-8"))["content_length"] == 0


def test_the_mount_prefix_is_script_name(echo: HttpService) -> None:
    # SERVERLESS_MAX_SCRIPT_NAME=/svc: links the app writes carry it, with or without it in the path.
    for path in ("/swagger.json", "/svc/swagger.json"):
        status, _, body = echo.request("GET", path)
        assert status == 200, body
        assert json.loads(body.decode("utf-8"))["basePath"] == "/svc"


def test_head_has_no_body_and_the_connection_is_kept(echo: HttpService) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", echo.port, timeout=30)
    try:
        connection.request("GET", "/model/metadata")
        get = connection.getresponse()
        get_body = get.read()
        connection.request("HEAD", "/model/metadata")
        head = connection.getresponse()
        assert head.status == 200 and head.read() == b""
        assert head.getheader("Content-Length") == str(len(get_body))  # the size a GET has
        for _ in range(3):  # the same connection serves on
            connection.request("GET", "/echo")
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read().decode("utf-8"))["method"] == "GET"
    finally:
        connection.close()


def test_the_apps_status_headers_and_errors_come_through(echo: HttpService) -> None:
    status, headers, body = echo.request("GET", "/respond?status=418&type=text/x-teapot&body_base64=c2hvcnQ%3D"
                                                "&cookie=a%3D1&cookie=b%3D2")
    assert (status, headers["content-type"], body) == (418, "text/x-teapot", b"short")
    connection = http.client.HTTPConnection("127.0.0.1", echo.port, timeout=30)
    try:
        connection.request("GET", "/respond?cookie=a%3D1&cookie=b%3D2")
        assert connection.getresponse().msg.get_all("Set-Cookie") == ["a=1", "b=2"]
    finally:
        connection.close()
    status, headers, body = echo.request("GET", "/fail")
    assert status == 500
    status, _, body = echo.request("DELETE", "/model/metadata")
    assert status == 405
    status, _, _ = echo.request("GET", "/no/such/route")
    assert status == 404


# ----------------------------------------------------------------------------- limits and malformed requests


def test_a_request_over_the_limit_is_413(echo: HttpService) -> None:
    status, headers, body = echo.request("POST", "/echo", b"x" * 100001, {"Content-Type": "text/plain"})
    assert status == 413 and headers["content-type"] == "application/json"
    assert "over the limit of 100000 bytes" in json.loads(body.decode("utf-8"))["error"]
    # Chunked: refused at the chunk that goes over the limit (the client waits, its data unsent).
    reply = echo.raw(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"4\r\nxxxx\r\n%x\r\n" % 99997)
    status, _, body = parse_reply(reply)
    assert status == 413 and "over the limit of 100000 bytes" in json.loads(body.decode("utf-8"))["error"]
    # Expect: 100-continue: refused before the body is sent.
    reply = echo.raw(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100001\r\nExpect: 100-continue\r\n\r\n")
    status, _, body = parse_reply(reply)
    assert status == 413 and "SERVERLESS_MAX_REQUEST_LIMIT" in json.loads(body.decode("utf-8"))["error"]
    assert echo.request("GET", "/echo")[0] == 200


def test_a_result_over_the_limit_is_413(echo: HttpService) -> None:
    status, headers, body = echo.request("GET", "/respond?type=application/octet-stream&body_base64=eHh4eA%3D%3D"
                                                "&repeat=50001")
    assert status == 413 and headers["content-type"] == "application/json"
    error = json.loads(body.decode("utf-8"))["error"]
    assert "200004 bytes" in error and "SERVERLESS_MAX_RESULT_LIMIT" in error
    status, _, body = echo.request("GET", "/respond?type=application/octet-stream&body_base64=eHh4eA%3D%3D"
                                          "&repeat=50000")
    assert status == 200 and len(body) == 200000


@pytest.mark.parametrize("request_bytes, status, text", [
    (b"GARBAGE\r\n\r\n", 400, "not an HTTP/1.x request"),
    (b"GET /echo\r\n\r\n", 400, "not an HTTP/1.x request"),
    (b"G(T /echo HTTP/1.1\r\n\r\n", 400, "not an HTTP/1.x request"),
    (b"GET echo HTTP/1.1\r\nHost: x\r\n\r\n", 400, "not a path"),
    (b"GET /echo HTTP/2.0\r\n\r\n", 505, ""),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", 400, "Content-Length"),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n", 400, "chunked"),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "Transfer-Encoding gzip"),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414, ""),
])
def test_malformed_requests_get_a_json_error_and_the_server_serves_on(echo: HttpService, request_bytes: bytes,
                                                                      status: int, text: str) -> None:
    reply_status, headers, body = parse_reply(echo.raw(request_bytes))
    assert reply_status == status, body
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert text in json.loads(body.decode("utf-8"))["error"]
    assert echo.request("GET", "/echo")[0] == 200


def test_a_request_that_does_not_arrive_in_time_is_408(echo: HttpService) -> None:
    # SERVERLESS_MAX_READ_SECONDS=2: the body never comes whole.
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", echo.port), timeout=30) as connection:
        connection.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        status, headers, body = parse_reply(read_until_closed(connection))
    assert time.monotonic() - started >= 2
    assert status == 408 and "within 2 s" in json.loads(body.decode("utf-8"))["error"]
    assert echo.request("GET", "/echo")[0] == 200


# ----------------------------------------------------------------------------- access log


def test_one_json_access_log_line_per_request(echo: HttpService) -> None:
    marker = uuid.uuid4().hex
    status, _, body = echo.request("POST", "/echo/%s?q=1" % marker, b"12345", {
        "User-Agent": "probe/1.0", "Referer": "http://example.com/", "X-Forwarded-For": "203.0.113.7, 10.0.0.1",
        "X-Forwarded-Proto": "https", "Host": "svc.example.com",
        "X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/2;o=1"})
    assert status == 200
    entry = echo.wait_for_entry(marker)
    assert entry["severity"] == "INFO"
    request = entry["httpRequest"]
    assert request["requestMethod"] == "POST"
    assert request["requestUrl"] == "https://svc.example.com/echo/%s?q=1" % marker
    assert request["status"] == 200
    assert request["requestSize"] == "5" and request["responseSize"] == str(len(body))
    assert request["userAgent"] == "probe/1.0" and request["referer"] == "http://example.com/"
    # The entry the nearest proxy appended: the client writes what comes before it.
    assert request["remoteIp"] == "10.0.0.1" and request["protocol"] == "HTTP/1.1"
    assert request["latency"].endswith("s") and float(request["latency"][:-1]) >= 0
    assert entry["logging.googleapis.com/trace"] == "projects/proj-1/traces/105445aa7843bc8bf206b12000100000"
    assert entry["logging.googleapis.com/spanId"] == "0000000000000002"
    assert entry["logging.googleapis.com/trace_sampled"] is True

    marker = uuid.uuid4().hex
    echo.request("GET", "/no-such-route/" + marker,
                 headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"})
    entry = echo.wait_for_entry(marker)
    assert entry["severity"] == "WARNING" and entry["httpRequest"]["status"] == 404
    assert entry["logging.googleapis.com/trace"] == "projects/proj-1/traces/0af7651916cd43dd8448eb211c80319c"
    assert entry["logging.googleapis.com/spanId"] == "b7ad6b7169203331"
    assert entry["logging.googleapis.com/trace_sampled"] is False

    marker = uuid.uuid4().hex
    echo.request("GET", "/fail?" + marker)
    assert echo.wait_for_entry(marker)["severity"] == "ERROR"


def test_the_apps_own_output_is_left_as_it_is(echo: HttpService) -> None:
    marker = uuid.uuid4().hex
    assert echo.request("POST", "/log", marker.encode())[0] == 200
    echo.wait_for_entry("/log")
    assert "to stdout: " + marker + "\n" in echo.stdout()


def test_no_trace_fields_without_a_project(fresh: Any) -> None:
    service = fresh(env={"SERVERLESS_MAX_ACCESS_LOG": "on"}).started()
    service.request("GET", "/echo/untraced", headers={"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/2"})
    entry = service.wait_for_entry("/echo/untraced")
    assert not [key for key in entry if key.startswith("logging.googleapis.com/")]


# ----------------------------------------------------------------------------- concurrency


def test_concurrent_requests_are_bounded_and_wait_for_a_slot(fresh: Any) -> None:
    service = fresh(env={"SERVERLESS_MAX_CONCURRENCY": "2"}).started()
    seconds = 0.5
    replies = {}  # type: Dict[int, Tuple[int, Dict[str, str], bytes]]

    def slow(index: int) -> None:
        replies[index] = service.request("POST", "/slow?seconds=%g" % seconds, str(index).encode())

    started = time.monotonic()
    threads = [threading.Thread(target=slow, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    elapsed = time.monotonic() - started
    # None refused; with two slots six requests of 0.5 s take at least three rounds.
    assert sorted(replies) == list(range(6))
    for index, (status, _, body) in replies.items():
        assert status == 200 and json.loads(body.decode("utf-8"))["tag"] == str(index)
    assert elapsed >= 3 * seconds


def test_a_request_waiting_longer_than_the_queue_allows_is_503(fresh: Any) -> None:
    service = fresh(env={"SERVERLESS_MAX_CONCURRENCY": "1", "SERVERLESS_MAX_QUEUE_SECONDS": "0.3"}).started()
    holder = threading.Thread(target=service.request, args=("POST", "/slow?seconds=2", b"holder"))
    holder.start()
    try:
        statuses = []
        while holder.is_alive() and 503 not in statuses:
            status, headers, body = service.request("GET", "/echo")
            statuses.append(status)
        assert statuses[-1] == 503, statuses
        assert headers["retry-after"] == "1"
        assert "SERVERLESS_MAX_CONCURRENCY" in json.loads(body.decode("utf-8"))["error"]
    finally:
        holder.join(30)


# ----------------------------------------------------------------------------- start and stop


@pytest.mark.parametrize("knative, reason", [(True, "K_SERVICE is set"), (False, "PORT is set")])
def test_the_platform_is_chosen_from_the_environment_and_named_first(fresh: Any, knative: bool, reason: str) -> None:
    service = fresh(knative=knative).started()  # listening on $PORT, no --port given
    first_line = service.stderr().splitlines()[0]
    assert "serving http (%s)" % reason in first_line
    assert service.request("GET", "/model/metadata")[0] == 200


def test_a_probe_sees_nothing_until_the_model_has_loaded(fresh: Any) -> None:
    service = fresh(env={"TEST_MODEL_LOAD_SECONDS": "1.5"})
    refused = 0
    while not accepts_connections(service.port):
        assert service.process.poll() is None, service.stderr()
        refused += 1
        time.sleep(0.02)
    # The port opened after the model's load message, and the first request is answered at once.
    assert refused > 0
    assert "test model loaded" in service.stdout()
    assert service.request("GET", "/model/metadata")[0] == 200


def test_a_model_that_fails_to_load_exits_1_without_opening_the_port(fresh: Any) -> None:
    service = fresh(env={"TEST_MODEL_FAIL_TO_LOAD": "1"})
    assert service.process.wait(60) == 1
    assert not accepts_connections(service.port)
    stderr = service.stderr()
    assert "weights not found" in stderr  # the full text is in the logs
    assert "failed to load (RuntimeError)" in stderr and "exits with status 1" in stderr


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(fresh: Any) -> None:
    service = fresh().started()
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
    try:
        connection.request("GET", "/echo")  # the connection is accepted and served before the signal
        assert connection.getresponse().read()
        connection.request("POST", "/slow?seconds=2", body=b"in-flight")
        time.sleep(0.5)  # the request is in the app
        service.process.send_signal(signal.SIGTERM)
        # New connections are refused at once, while the slow request still runs.
        deadline = time.time() + 10
        while accepts_connections(service.port) and time.time() < deadline:
            time.sleep(0.05)
        assert not accepts_connections(service.port)
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Connection") == "close"
        assert json.loads(response.read().decode("utf-8"))["tag"] == "in-flight"
    finally:
        connection.close()
    assert service.process.wait(30) == 0
    assert "every request in flight was answered" in service.stderr()
    assert service.wait_for_entry("/slow")["httpRequest"]["status"] == 200


def test_sigterm_exits_0_after_the_shutdown_grace_even_if_a_request_runs_on(fresh: Any) -> None:
    service = fresh(env={"SERVERLESS_MAX_SHUTDOWN_SECONDS": "0.5"}).started()
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
    try:
        connection.request("GET", "/echo")
        assert connection.getresponse().read()
        connection.request("POST", "/slow?seconds=30", body=b"too slow")
        time.sleep(0.5)
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(20) == 0
    finally:
        connection.close()
    assert "exiting with 1 request(s) still running" in service.stderr()


def test_idle_keep_alive_connections_are_closed_on_sigterm(fresh: Any) -> None:
    service = fresh().started()
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as connection:
        connection.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        service.process.send_signal(signal.SIGTERM)
        reply = read_until_closed(connection)  # the answer, then the server's end of the connection
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert service.process.wait(30) == 0


def test_a_large_response_to_a_slow_reader_is_not_cut_off_by_the_read_deadline(fresh: Any) -> None:
    # SERVERLESS_MAX_READ_SECONDS bounds receiving the request, not sending the answer.
    service = fresh(env={"SERVERLESS_MAX_READ_SECONDS": "1"}).started()
    size = 8 * 1024 * 1024
    with socket.socket() as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # a small window: the server must wait
        connection.settimeout(30)
        connection.connect(("127.0.0.1", service.port))
        connection.sendall(b"GET /respond?type=application/octet-stream&body_base64=eA%%3D%%3D&repeat=%d HTTP/1.1\r\n"
                           b"Host: x\r\nConnection: close\r\n\r\n" % size)
        received = 0
        reply = []
        started = time.monotonic()
        while True:
            chunk = connection.recv(256 * 1024)
            if not chunk:
                break
            reply.append(chunk)
            received += len(chunk)
            if time.monotonic() - started < 2.5:
                time.sleep(0.05)  # read slowly for longer than the read deadline
    status, headers, body = parse_reply(b"".join(reply))
    assert status == 200 and len(body) == size == int(headers["content-length"])
