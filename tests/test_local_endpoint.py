"""local_endpoint.py end to end: the endpoint as a subprocess, real HTTP, real actions, real curl.

Controller rules that need a particular action reply use a TinyAction: a real HTTP server on
127.0.0.1 speaking /init and /run that answers what the test chooses, handed to the endpoint as
NAME=http://127.0.0.1:PORT, as an action container would be. Local action processes are the real
shim (openwhisk.py) for the example models, or a small stand-in proxy written by the test where a
test needs one that logs, sleeps or fails on purpose. The example models are compared with their
own servers: app.py run by its own maxfw and Flask.
"""

import base64
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import local_endpoint
from samples import (EXAMPLES_DIR, SampleRequest, check_expected, curl_args, example_model_dirs, load_samples,
                     media_type, target)
from support import ROOT, free_port

LOCAL_ENDPOINT = os.path.join(ROOT, "local_endpoint.py")
MEDIA_TYPES = os.path.join(ROOT, "tests", "data", "openwhisk-media-types.json")
DIGIT_CLASSIFIER = os.path.join(EXAMPLES_DIR, "max-example-digit-classifier")
ERROR_PROCESSING = "There was an error processing your request."
NOT_HTTP = "Response is not valid 'message/http'."
TYPE_MISMATCH = "Response type in header did not match generated content type."
Answer = Tuple[int, List[Tuple[str, str]], bytes]


# ----------------------------------------------------------------------------- test harness


class Response(object):
    def __init__(self, status: int, headers: List[Tuple[str, str]], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def all(self, name: str) -> List[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def header(self, name: str) -> Optional[str]:
        values = self.all(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class LocalEndpoint(object):
    """local_endpoint.py running on a free port; entering waits for its 'ready' line."""

    def __init__(self, *arguments: str, cwd: str = ROOT, preexec_fn: Optional[Callable[[], None]] = None):
        self.port = free_port()
        command = [sys.executable, LOCAL_ENDPOINT] + list(arguments) + ["--port", str(self.port)]
        # Its own process group, so that teardown can end it and whatever it started.
        self.process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        universal_newlines=True, encoding="utf-8", errors="replace",
                                        start_new_session=True, preexec_fn=preexec_fn)
        self.children = []  # type: List[int]
        self.lines = []  # type: List[str]
        self.errors = []  # type: List[str]
        self.ready = threading.Event()
        # Both streams are read to the end, so that activation logs never fill a pipe and stall the endpoint.
        self.readers = [threading.Thread(target=self._read, args=(self.process.stdout, self.lines), daemon=True),
                        threading.Thread(target=self._read, args=(self.process.stderr, self.errors), daemon=True)]
        for reader in self.readers:
            reader.start()

    def __enter__(self) -> "LocalEndpoint":
        deadline = time.time() + 120
        while not self.ready.wait(0.1):
            if self.process.poll() is not None or time.time() > deadline:
                self.stop()
                raise AssertionError("local_endpoint.py did not get ready:\n" + self.output())
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _read(self, stream: Any, lines: List[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))
            if line.strip() == "ready":
                self.ready.set()

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[Dict[str, str]] = None, timeout: float = 60) -> Response:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Response(response.status, response.getheaders(), response.read())
        finally:
            connection.close()

    def url(self, action: str) -> str:
        return "http://127.0.0.1:%d%s" % (self.port, web(action))

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.children = child_pids(self.process.pid)
            self.process.send_signal(signum)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # Whatever is left of its process group and of its action processes (each in its own session).
        for group in [self.process.pid] + self.children:
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for reader in self.readers:
            reader.join(5)
        return self.process.returncode

    def output(self) -> str:
        return "\n".join(self.lines + self.errors)

    def wait_for_output(self, text: str, seconds: float = 10) -> str:
        deadline = time.time() + seconds
        while text not in self.output() and time.time() < deadline:
            time.sleep(0.05)
        return self.output()


def child_pids(pid: int) -> List[int]:
    """The processes whose parent is pid (Linux /proc)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry))
    return children


def web(action: str, rest: str = "", namespace: str = "guest", package: str = "default") -> str:
    return "/api/v1/web/%s/%s/%s%s" % (namespace, package, action, rest)


def json_answer(value: Any, status: int = 200) -> Answer:
    body = json.dumps(value).encode("utf-8")
    return status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body


def result_answer(result: Dict[str, Any]) -> Callable[[Dict[str, Any]], Answer]:
    return lambda message: json_answer(result)


class TinyAction(object):
    """A real action container in miniature: /init and /run on 127.0.0.1, replies chosen by the test.

    `reply(run_message)` returns the raw answer (status, headers, body), so a test can also send
    what a broken container would: no Content-Length, a non-JSON body, a 502.
    """

    def __init__(self) -> None:
        self.inits = []  # type: List[Dict[str, Any]]
        self.runs = []  # type: List[Dict[str, Any]]
        self.raw_runs = []  # type: List[bytes]
        self.reply = result_answer({"statusCode": 200, "body": "ok"})
        self.init_reply = None  # type: Optional[Answer]
        self.active = 0
        self.most_active = 0
        self.lock = threading.Lock()
        self.server = _TinyServer(("127.0.0.1", 0), _TinyHandler)
        self.server.action = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def reset(self, reply: Optional[Callable[[Dict[str, Any]], Answer]] = None) -> "TinyAction":
        self.runs, self.raw_runs, self.most_active = [], [], 0
        self.reply = reply or result_answer({"statusCode": 200, "body": "ok"})
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _TinyServer(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    action = None  # type: TinyAction


class _TinyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server = None  # type: _TinyServer

    def do_POST(self) -> None:
        action = self.server.action
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        message = json.loads(raw.decode("utf-8"))
        if self.path == "/init":
            # As the reference runtimes: a second /init is refused.
            answer = json_answer({"ok": True}) if not action.inits else json_answer(
                {"error": "Cannot initialize the action more than once."}, 403)
            action.inits.append(message)
            answer = action.init_reply or answer
        else:
            with action.lock:
                action.runs.append(message)
                action.raw_runs.append(raw)
                action.active += 1
                action.most_active = max(action.most_active, action.active)
            try:
                answer = action.reply(message)
            finally:
                with action.lock:
                    action.active -= 1
        status, headers, body = answer
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


# A stand-in action proxy for local action processes that must log, sleep or fail on purpose. It
# speaks the protocol as the shim does: /init, /run, and the sentinel lines after every activation.
FAKE_SHIM = r'''
import json, os, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        message = json.loads(self.rfile.read(int(self.headers["Content-Length"])).decode("utf-8"))
        result = {"ok": True}
        if self.path == "/run":
            path = message["value"]["__ow_path"]
            print("hello from " + path, flush=True)
            print("a warning from " + path, file=sys.stderr, flush=True)
            if path == "/sleep":
                time.sleep(10)
            if path == "/exit":
                os._exit(1)
            for stream in (sys.stdout, sys.stderr):
                print(SENTINEL, file=stream, flush=True)
            result = {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "pid %d" % os.getpid()}
        body = json.dumps(result).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


print("starting the stand-in proxy", file=sys.stderr, flush=True)
if os.path.exists("broken"):
    print("cannot load the model", file=sys.stderr, flush=True)
    sys.exit(3)
with open("proxy.pid", "w") as pid_file:
    pid_file.write(str(os.getpid()))
HTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), Handler).serve_forever()
'''


@pytest.fixture
def fake_model(tmp_path: Any) -> Tuple[str, str]:
    """A model directory (with an app.py) and the stand-in proxy to start for it."""
    model_dir = tmp_path / "fake"
    model_dir.mkdir()
    (model_dir / "app.py").write_text("# started by the proxy given with --shim\n")
    shim = tmp_path / "fake_shim.py"
    shim.write_text(FAKE_SHIM)
    return str(model_dir), str(shim)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ----------------------------------------------------------------------------- endpoints shared by the rule tests


@pytest.fixture(scope="module")
def raw_action() -> Iterator[TinyAction]:
    action = TinyAction()
    yield action
    action.close()


@pytest.fixture(scope="module")
def raw_endpoint(raw_action: TinyAction) -> Iterator[LocalEndpoint]:
    with LocalEndpoint("echo=" + raw_action.address) as endpoint:
        yield endpoint


@pytest.fixture
def echo(raw_action: TinyAction, raw_endpoint: LocalEndpoint) -> Tuple[LocalEndpoint, TinyAction]:
    return raw_endpoint, raw_action.reset()


@pytest.fixture(scope="module")
def merged_action() -> Iterator[TinyAction]:
    action = TinyAction()
    yield action
    action.close()


@pytest.fixture(scope="module")
def merged_endpoint(merged_action: TinyAction) -> Iterator[LocalEndpoint]:
    with LocalEndpoint("echo=" + merged_action.address, "--web", "true") as endpoint:
        yield endpoint


@pytest.fixture
def merged(merged_action: TinyAction, merged_endpoint: LocalEndpoint) -> Tuple[LocalEndpoint, TinyAction]:
    return merged_endpoint, merged_action.reset()


@pytest.fixture(scope="module")
def limited_action() -> Iterator[TinyAction]:
    action = TinyAction()
    yield action
    action.close()


@pytest.fixture(scope="module")
def limited_endpoint(limited_action: TinyAction) -> Iterator[LocalEndpoint]:
    with LocalEndpoint("small=" + limited_action.address, "--payload-limit", "1000", "--result-limit", "2000",
                       "--timeout", "2") as endpoint:
        yield endpoint


@pytest.fixture
def limited(limited_action: TinyAction, limited_endpoint: LocalEndpoint) -> Tuple[LocalEndpoint, TinyAction]:
    return limited_endpoint, limited_action.reset()


def reply_with(action: TinyAction, result: Any) -> None:
    action.reply = result_answer(result)


def assert_controller_error(response: Response, status: int, message: str) -> None:
    """The controller's error body: pretty JSON with the error and the transaction id as code."""
    assert response.status == status, response.body
    assert response.header("Content-Type") == "application/json"
    code = response.header("X-Request-ID")
    assert response.body.decode("utf-8") == '{\n  "error": %s,\n  "code": "%s"\n}' % (json.dumps(message), code)


# ----------------------------------------------------------------------------- request -> /run


def test_a_raw_request_becomes_the_invokers_run_payload(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    body = b'{"text": ["caf\xc3\xa9"]}'
    before = int(time.time() * 1000)
    response = endpoint.request("POST", web("echo", "/model/predict?b=2&a=x%20y+z"), body,
                                {"Content-Type": "application/json; charset=utf-8", "X-Custom-Header": "Value"})
    assert response.status == 200 and response.body == b"ok"
    message = action.runs[-1]
    params = message["value"]
    assert params["__ow_method"] == "post"
    assert params["__ow_path"] == "/model/predict"
    assert params["__ow_query"] == "b=2&a=x+y+z"
    assert base64.b64decode(params["__ow_body"]) == body
    headers = params["__ow_headers"]
    assert headers["x-custom-header"] == "Value"
    assert headers["content-type"] == "application/json"  # re-rendered: the fixed charset is dropped
    assert headers["host"] == "127.0.0.1:%d" % endpoint.port
    assert "content-length" not in headers and "X-Custom-Header" not in headers
    assert sorted(params) == ["__ow_body", "__ow_headers", "__ow_method", "__ow_path", "__ow_query"]
    assert message["namespace"] == "guest"
    assert message["action_name"] == "/guest/echo"
    assert message["action_version"] == "0.0.1"
    assert re.match(r"\A[0-9a-f]{32}\Z", message["activation_id"])
    assert message["activation_id"] == response.header("x-openwhisk-activation-id")
    assert message["transaction_id"] == response.header("X-Request-ID")
    assert isinstance(message["deadline"], str)
    assert before + 59000 <= int(message["deadline"]) <= int(time.time() * 1000) + 61000
    assert "api_key" not in message


def test_init_is_sent_once_with_the_docker_action_payload(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    endpoint.request("GET", web("echo"))
    assert len(action.inits) == 1
    value = action.inits[0]["value"]
    assert "code" not in value
    assert (value["name"], value["binary"], value["main"]) == ("echo", False, "main")
    env = value["env"]
    assert sorted(env) == ["__OW_ACTION_NAME", "__OW_ACTION_VERSION", "__OW_ACTIVATION_ID", "__OW_DEADLINE",
                           "__OW_NAMESPACE", "__OW_TRANSACTION_ID"]
    assert all(isinstance(setting, str) for setting in env.values())
    assert (env["__OW_NAMESPACE"], env["__OW_ACTION_NAME"]) == ("guest", "/guest/echo")


def test_path_and_query_are_re_encoded_as_akka_renders_them(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    endpoint.request("GET", web("echo", '/a%7eb/c%20d/%22q%22/?k=%7e&sp=a+b%20c&flag&e=&u=%C3%A9&s=%2B%26'))
    params = action.runs[-1]["value"]
    assert params["__ow_path"] == "/a~b/c%20d/%22q%22/"
    assert params["__ow_query"] == "k=~&sp=a+b+c&flag&e=&u=%C3%A9&s=%2B%26"
    endpoint.request("GET", web("echo"))
    params = action.runs[-1]["value"]
    assert (params["__ow_path"], params["__ow_query"], params["__ow_body"]) == ("", "", "")
    assert "content-type" not in params["__ow_headers"]


@pytest.mark.parametrize("content_type, body, expected", [
    ("text/plain", "café".encode("utf-8"), "café"),
    ("application/json", b'{"x": 1}', base64.b64encode(b'{"x": 1}').decode()),
    ("application/vnd.api+json", b'{"x": 1}', '{"x": 1}'),
    ("application/hal+json", b"{}", base64.b64encode(b"{}").decode()),
    ("application/hal+json; charset=utf-8", b"{}", "{}"),
    ("image/png", b"\x89PNG\r\n", base64.b64encode(b"\x89PNG\r\n").decode()),
    ("image/svg+xml", b"<svg/>", base64.b64encode(b"<svg/>").decode()),
    ("multipart/form-data; boundary=b", b"--b--\r\n", base64.b64encode(b"--b--\r\n").decode()),
    ("application/x-www-form-urlencoded", b"a=1&b=2", "a=1&b=2"),
    (None, b"\x00\x01", base64.b64encode(b"\x00\x01").decode()),
], ids=["text", "json", "json-api", "unregistered", "unregistered-charset", "png", "svg", "multipart", "form",
        "no-type"])
def test_raw_bodies_are_base64_for_binary_types_and_exactly_application_json(
        echo: Tuple[LocalEndpoint, TinyAction], content_type: Optional[str], body: bytes, expected: str) -> None:
    endpoint, action = echo
    endpoint.request("PUT", web("echo"), body, {"Content-Type": content_type} if content_type else {})
    params = action.runs[-1]["value"]
    assert params["__ow_body"] == expected
    if content_type is None:
        assert params["__ow_headers"]["content-type"] == "application/octet-stream"


def test_headers_are_lowercased_and_a_repeated_header_keeps_its_last_value(
        echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
    try:
        connection.putrequest("POST", web("echo"))
        for name, value in [("X-Twice", "one"), ("X-Twice", "two"), ("Content-Type", "Text/Plain; Charset=utf-8"),
                            ("Content-Length", "2")]:
            connection.putheader(name, value)
        connection.endheaders(b"hi")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    headers = action.runs[-1]["value"]["__ow_headers"]
    assert headers["x-twice"] == "two"
    assert headers["content-type"] == "text/plain; charset=UTF-8"
    assert all(name == name.lower() for name in headers)


def test_a_container_initialized_before_is_used_as_it_is(raw_action: TinyAction, raw_endpoint: LocalEndpoint) -> None:
    # The endpoint of the other tests sent the first /init: this one gets 403, as after a restart of the endpoint.
    with LocalEndpoint("echo=" + raw_action.reset().address) as endpoint:
        assert "initialized before; using it as it is" in endpoint.output()
        assert endpoint.request("GET", web("echo")).status == 200
    assert len(raw_action.inits) >= 2


def test_the_transaction_id_comes_from_x_request_id(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    response = endpoint.request("GET", web("echo"), headers={"X-Request-ID": "my-request-1"})
    assert response.header("X-Request-ID") == "my-request-1"
    assert action.runs[-1]["transaction_id"] == "my-request-1"


def test_chunked_request_bodies_are_read_whole(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
    try:
        connection.request("POST", web("echo"), body=iter([b"one ", b"two"]), encode_chunked=True,
                           headers={"Content-Type": "text/plain", "Transfer-Encoding": "chunked"})
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    params = action.runs[-1]["value"]
    assert params["__ow_body"] == "one two"
    assert "transfer-encoding" not in params["__ow_headers"]


def test_without_web_raw_query_and_body_are_merged_into_the_params(
        merged: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = merged
    endpoint.request("POST", web("echo", "/p?q=1&q=2&r&s=a+b"), b'{"a": [1], "b": 1.50, "s": "body wins"}',
                     {"Content-Type": "application/json"})
    params = action.runs[-1]["value"]
    assert (params["q"], params["r"], params["s"], params["a"]) == ("2", "", "body wins", [1])
    assert b'"b":1.50' in action.raw_runs[-1]  # the number as written, as spray-json keeps it
    assert "__ow_body" not in params and "__ow_query" not in params
    assert params["__ow_path"] == "/p"

    endpoint.request("POST", web("echo"), b"x=1&y=a+b%21", {"Content-Type": "application/x-www-form-urlencoded"})
    params = action.runs[-1]["value"]
    assert (params["x"], params["y"]) == ("1", "a b!") and "__ow_body" not in params

    for content_type, body, expected in [("application/json", b"[1, 2]", [1, 2]), ("text/plain", b"hi", "hi"),
                                         ("image/png", b"\x89", base64.b64encode(b"\x89").decode())]:
        endpoint.request("POST", web("echo"), body, {"Content-Type": content_type})
        assert action.runs[-1]["value"]["__ow_body"] == expected, content_type


def test_without_web_raw_reserved_params_and_malformed_json_are_refused(
        merged: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = merged
    response = endpoint.request("GET", web("echo", "?__ow_method=put"))
    assert_controller_error(response, 400,
                            "Request defines parameters that are not allowed (e.g., reserved properties).")
    assert response.header("Access-Control-Allow-Origin") == "*"
    assert response.header("x-openwhisk-activation-id") is None
    response = endpoint.request("POST", web("echo"), b'{"__ow_path": "/x"}', {"Content-Type": "application/json"})
    assert response.status == 400
    response = endpoint.request("POST", web("echo"), b'{"a": ', {"Content-Type": "application/json"})
    assert response.status == 400
    assert response.json()["error"].startswith("The request content was malformed:")
    assert response.header("Access-Control-Allow-Origin") is None  # an akka rejection, outside the route
    assert action.runs == []


# ----------------------------------------------------------------------------- result -> response


def test_binary_result_bodies_are_decoded_strictly(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
    reply_with(action, {"headers": {"Content-Type": "image/png"}, "body": base64.b64encode(png).decode()})
    response = endpoint.request("GET", web("echo"))
    assert (response.status, response.header("Content-Type"), response.body) == (200, "image/png", png)
    # Unpadded base64 is accepted, as by java.util.Base64.
    reply_with(action, {"headers": {"Content-Type": "application/octet-stream"}, "body": "YQ"})
    assert endpoint.request("GET", web("echo")).body == b"a"
    # Line breaks (base64.encodebytes) are not.
    reply_with(action, {"headers": {"Content-Type": "image/png"}, "body": base64.encodebytes(png).decode()})
    assert_controller_error(endpoint.request("GET", web("echo")), 400, TYPE_MISMATCH)


def test_json_typed_string_bodies_that_look_like_base64_are_decoded(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    # The hazard: a JSON body of 1234, sent as text, looks like base64 and is corrupted.
    reply_with(action, {"headers": {"Content-Type": "application/json"}, "body": "1234"})
    response = endpoint.request("GET", web("echo"))
    assert response.status == 200 and response.body == base64.b64decode("1234") != b"1234"
    # Sent base64-encoded (as the shim does) it arrives intact.
    reply_with(action, {"headers": {"Content-Type": "application/json"}, "body": "dHJ1ZQ=="})
    assert endpoint.request("GET", web("echo")).body == b"true"
    # Text that does not look like base64 goes out as is.
    reply_with(action, {"headers": {"Content-Type": "application/json"}, "body": "[1, 2]"})
    assert endpoint.request("GET", web("echo")).body == b"[1, 2]"
    # Looks like base64 once trimmed, but the decoder gets the untrimmed text.
    reply_with(action, {"headers": {"Content-Type": "application/problem+json"}, "body": " dHJ1ZQ=="})
    assert_controller_error(endpoint.request("GET", web("echo")), 400, TYPE_MISMATCH)


def test_text_result_bodies_go_out_as_utf8(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    reply_with(action, {"headers": {"Content-Type": "text/plain; charset=iso-8859-1"}, "body": "café"})
    response = endpoint.request("GET", web("echo"))
    assert (response.header("Content-Type"), response.body) == ("text/plain; charset=UTF-8", "café".encode())
    reply_with(action, {"body": "<p>hi</p>"})
    response = endpoint.request("GET", web("echo"))
    assert (response.header("Content-Type"), response.body) == ("text/html; charset=UTF-8", b"<p>hi</p>")
    reply_with(action, {"headers": {"Content-Type": "nonsense"}, "body": "x"})
    assert_controller_error(endpoint.request("GET", web("echo")), 400, "Response did not specify a known content-type.")


def test_an_empty_body_is_204_and_loses_its_content_type(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    for result, status in [({}, 204), ({"body": ""}, 204), ({"body": None, "statusCode": 404}, 404),
                           ({"statusCode": 200, "headers": {"Content-Type": "text/plain"}}, 200)]:
        reply_with(action, result)
        response = endpoint.request("GET", web("echo"))
        assert (response.status, response.body, response.header("Content-Type")) == (status, b"", None), result


def test_header_arrays_become_lines_and_platform_headers_are_dropped(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    reply_with(action, {"headers": {"Set-Cookie": ["a=1", "b=2"], "X-Number": 5, "X-Flag": True,
                                    "X-Nested": [["x", "y"]], "Content-Length": "999", "Date": "yesterday",
                                    "Server": "mine", "Connection": "upgrade", "Transfer-Encoding": "gzip"},
                        "body": "ok"})
    response = endpoint.request("GET", web("echo"))
    assert response.status == 200 and response.body == b"ok"
    assert response.all("Set-Cookie") == ["a=1", "b=2"]
    assert (response.header("X-Number"), response.header("X-Flag")) == ("5", "true")
    assert response.all("X-Nested") == ["x", "y"]
    assert response.all("Content-Length") == ["2"]
    assert "yesterday" not in response.all("Date") and "mine" not in response.all("Server")
    assert response.header("Transfer-Encoding") is None and response.header("Connection") != "upgrade"


def test_json_bodies_are_reserialised_pretty(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    reply_with(action, {"statusCode": 201, "body": {"a": [1, {"b": None}], "n": 1.5}})
    response = endpoint.request("GET", web("echo"))
    assert (response.status, response.header("Content-Type")) == (201, "application/json")
    assert response.body == b'{\n  "a": [1, {\n    "b": null\n  }],\n  "n": 1.5\n}'
    reply_with(action, {"headers": {"Content-Type": "application/problem+json; charset=utf-8"}, "body": {"t": 1}})
    response = endpoint.request("GET", web("echo"))
    assert (response.header("Content-Type"), response.body) == ("application/problem+json", b'{\n  "t": 1\n}')
    reply_with(action, {"body": 42})
    assert endpoint.request("GET", web("echo")).body == b"42"
    reply_with(action, {"headers": {"Content-Type": "text/html"}, "body": {"t": 1}})
    assert_controller_error(endpoint.request("GET", web("echo")), 400, TYPE_MISMATCH)


@pytest.mark.parametrize("result", [
    {"statusCode": "abc"}, {"statusCode": 600}, {"statusCode": True}, {"statusCode": 200.5}, {"headers": ["x"]},
    {"headers": {"X": None}}, {"headers": {"X": {"a": 1}}},
], ids=["status-text", "status-out-of-range", "status-bool", "status-fraction", "headers-array", "header-null",
        "header-object"])
def test_a_result_that_is_not_http_shaped_is_400(echo: Tuple[LocalEndpoint, TinyAction], result: Any) -> None:
    endpoint, action = echo
    reply_with(action, result)
    assert_controller_error(endpoint.request("GET", web("echo")), 400, NOT_HTTP)


def test_status_codes_may_be_strings_or_whole_numbers(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    for code, expected in [("201", 201), (404.0, 404), ("+418", 418), (599, 599)]:
        reply_with(action, {"statusCode": code, "body": "x"})
        assert endpoint.request("GET", web("echo")).status == expected


def test_an_application_error_projects_its_error_field(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    reply_with(action, {"error": {"statusCode": 418, "body": "short and stout"}})
    response = endpoint.request("GET", web("echo"))
    assert (response.status, response.body) == (418, b"short and stout")
    assert re.match(r"\A[0-9a-f]{32}\Z", response.header("x-openwhisk-activation-id"))
    reply_with(action, {"error": "boom"})
    assert_controller_error(endpoint.request("GET", web("echo")), 400, NOT_HTTP)


def no_length_answer(message: Dict[str, Any]) -> Answer:
    return 200, [("Content-Type", "application/json")], b'{"body": "ok"}'


def chunked_answer(message: Dict[str, Any]) -> Answer:
    return 200, [("Transfer-Encoding", "chunked")], b"e\r\n{\"body\": \"ok\"}\r\n0\r\n\r\n"


@pytest.mark.parametrize("reply", [
    lambda message: json_answer({"error": "the container failed"}, 502),
    lambda message: json_answer({"body": "ok"}, 500),
    lambda message: (200, [("Content-Length", "4")], b"oops"),
    lambda message: json_answer([1, 2]),
    lambda message: (204, [], b""),
    no_length_answer,
    chunked_answer,
], ids=["502", "500-without-error", "not-json", "array", "204", "no-content-length", "chunked"])
def test_a_failed_action_is_400_error_processing(echo: Tuple[LocalEndpoint, TinyAction],
                                                 reply: Callable[[Dict[str, Any]], Answer]) -> None:
    endpoint, action = echo
    action.reply = reply
    response = endpoint.request("GET", web("echo"))
    assert_controller_error(response, 400, ERROR_PROCESSING)
    activation_id = response.header("x-openwhisk-activation-id")
    assert activation_id is not None
    assert "echo %s: the action failed" % activation_id in endpoint.wait_for_output(activation_id + ": the action")


def test_extensions_choose_how_the_result_is_sent(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    result = {"body": "<b>hi</b>", "html": "h", "svg": "s", "text": "t", "n": 1}
    reply_with(action, result)
    response = endpoint.request("GET", web("echo.json"))
    assert (response.header("Content-Type"), response.json()) == ("application/json", result)
    assert response.body.startswith(b'{\n  "body": ')
    for extension, content_type in [(".html", "text/html; charset=UTF-8"), (".svg", "image/svg+xml"),
                                    (".text", "text/plain; charset=UTF-8"), (".http", "text/html; charset=UTF-8")]:
        response = endpoint.request("GET", web("echo" + extension, "/model/x"))
        assert (response.status, response.header("Content-Type"), response.body) == (200, content_type, b"<b>hi</b>")
    assert action.runs[-1]["value"]["__ow_path"] == "/model/x"
    reply_with(action, {"text": "t"})
    assert endpoint.request("GET", web("echo.text")).body == b"t"
    reply_with(action, {"n": 1})
    assert_controller_error(endpoint.request("GET", web("echo.text")), 404,
                            "Response does not include requested property.")
    assert_controller_error(endpoint.request("GET", web("echo.html")), 400, "Response is not valid 'text/html'.")
    assert_controller_error(endpoint.request("GET", web("echo.xml")), 404, "The requested resource does not exist.")


def test_options_gets_the_controllers_cors_answer_without_the_action(
        echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    response = endpoint.request("OPTIONS", web("echo"), headers={"Access-Control-Request-Headers": "X-Mine"})
    assert (response.status, response.body) == (200, b"")
    assert response.header("Access-Control-Allow-Origin") == "*"
    assert response.header("Access-Control-Allow-Methods") == "OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH"
    assert response.header("Access-Control-Allow-Headers") == "X-Mine"
    assert action.runs == []
    response = endpoint.request("GET", web("echo"))
    assert response.header("Access-Control-Allow-Headers") == (
        "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent")


def test_activations_of_one_action_never_overlap(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo

    def slow(message: Dict[str, Any]) -> Answer:
        time.sleep(0.2)
        return json_answer({"body": "done"})

    action.reply = slow
    statuses = []  # type: List[int]
    threads = [threading.Thread(target=lambda: statuses.append(endpoint.request("GET", web("echo")).status))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 4
    assert action.most_active == 1 and len(action.runs) == 4


# ----------------------------------------------------------------------------- limits


def test_a_request_over_the_payload_limit_is_413(limited: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = limited
    response = endpoint.request("POST", web("small"), b"x" * 1001, {"Content-Type": "text/plain"})
    assert_controller_error(response, 413, "Request larger than allowed: 1001 > 1000 bytes.")
    assert action.runs == []
    assert endpoint.request("POST", web("small"), b"x" * 1000, {"Content-Type": "text/plain"}).status == 200
    assert action.runs[-1]["value"]["__ow_body"] == "x" * 1000


def test_a_chunked_request_over_the_payload_limit_is_413(limited: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = limited
    runs_before = len(action.runs)
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
    try:
        connection.request("POST", web("small"), body=iter([b"x" * 600, b"y" * 600]), encode_chunked=True,
                           headers={"Content-Type": "text/plain", "Transfer-Encoding": "chunked"})
        assert connection.getresponse().status == 413
    finally:
        connection.close()
    assert len(action.runs) == runs_before


def test_a_result_over_the_result_limit_is_an_application_error(limited: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = limited
    reply_with(action, {"body": "y" * 2990})
    run_reply = json_answer({"body": "y" * 2990})[2]
    assert_controller_error(endpoint.request("GET", web("small")), 400, NOT_HTTP)
    response = endpoint.request("GET", web("small.text"))
    expected = ("The action produced a response that exceeded the allowed length: %d > 2000 bytes. "
                "The truncated response was: %s" % (len(run_reply), run_reply[:2000].decode()))
    assert (response.status, response.body.decode()) == (200, expected)


def test_no_result_within_the_timeout_is_202(limited: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = limited

    def slow(message: Dict[str, Any]) -> Answer:
        time.sleep(6)
        return json_answer({"body": "late"})

    action.reply = slow
    started = time.time()
    response = endpoint.request("GET", web("small"))
    assert 2 <= time.time() - started < 5
    assert_controller_error(response, 202, "Response not yet ready.")
    assert re.match(r"\A[0-9a-f]{32}\Z", response.header("x-openwhisk-activation-id"))


# ----------------------------------------------------------------------------- routing


@pytest.fixture(scope="module")
def pair() -> Iterator[Tuple[LocalEndpoint, TinyAction, TinyAction]]:
    first, second = TinyAction(), TinyAction()
    with LocalEndpoint("first=" + first.address, "second=" + second.address, "--namespace", "team") as endpoint:
        yield endpoint, first, second
    first.close()
    second.close()


def test_several_actions_each_get_their_own_activations(pair: Tuple[LocalEndpoint, TinyAction, TinyAction]) -> None:
    endpoint, first, second = pair
    reply_with(first, {"body": "from first"})
    reply_with(second, {"body": "from second"})
    assert endpoint.request("GET", web("first", namespace="team")).body == b"from first"
    assert endpoint.request("GET", web("second", "/x", namespace="team")).body == b"from second"
    assert [run["action_name"] for run in first.runs] == ["/team/first"]
    assert [run["value"]["__ow_path"] for run in second.runs] == ["/x"]
    lines = endpoint.lines[:endpoint.lines.index("ready")]
    assert "first: http://127.0.0.1:%d/api/v1/web/team/default/first" % endpoint.port in lines
    assert "second: http://127.0.0.1:%d/api/v1/web/team/default/second" % endpoint.port in lines


@pytest.mark.parametrize("path", [
    web("third", namespace="team"), web("first"), web("first", namespace="team", package="utils"),
], ids=["unknown-action", "other-namespace", "other-package"])
def test_an_unknown_action_is_404(pair: Tuple[LocalEndpoint, TinyAction, TinyAction], path: str) -> None:
    endpoint, _, _ = pair
    assert_controller_error(endpoint.request("GET", path), 404, "The requested resource does not exist.")


def test_other_paths_and_methods_get_akkas_rejections(pair: Tuple[LocalEndpoint, TinyAction, TinyAction]) -> None:
    endpoint, _, _ = pair
    for path in ["/", "/api/v1/web/team/default", "/api/v1/web/team/default/bad%21name"]:
        response = endpoint.request("GET", path)
        assert response.status == 404
        assert response.body == ('{"error":"The requested resource could not be found.","code":"%s"}'
                                 % response.header("X-Request-ID")).encode()
    response = endpoint.request("TRACE", web("first", namespace="team"))
    assert response.status == 405
    assert response.json()["error"] == ("HTTP method not allowed, supported methods: "
                                        "GET, DELETE, POST, PUT, HEAD, OPTIONS, PATCH")


# ----------------------------------------------------------------------------- local action processes


def test_activation_logs_show_under_the_activation_id(fake_model: Tuple[str, str]) -> None:
    model_dir, shim = fake_model
    with LocalEndpoint("fake=" + model_dir, "--shim", shim) as endpoint:
        assert "fake stderr: starting the stand-in proxy" in endpoint.wait_for_output("starting the stand-in")
        response = endpoint.request("GET", web("fake", "/logs"))
        assert response.status == 200
        activation_id = response.header("x-openwhisk-activation-id")
        # Each stream is read on its own: either line may show first.
        for line in ["fake %s stdout: hello from /logs" % activation_id,
                     "fake %s stderr: a warning from /logs" % activation_id]:
            assert line in endpoint.wait_for_output(line)
        assert "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX" not in endpoint.output()


@pytest.mark.parametrize("path, status, message", [
    ("/sleep", 202, "Response not yet ready."), ("/exit", 400, ERROR_PROCESSING),
], ids=["timed-out", "crashed"])
def test_a_local_action_that_timed_out_or_crashed_is_replaced(fake_model: Tuple[str, str], path: str, status: int,
                                                              message: str) -> None:
    model_dir, shim = fake_model
    with LocalEndpoint("fake=" + model_dir, "--shim", shim, "--timeout", "3") as endpoint:
        first = endpoint.request("GET", web("fake")).body
        assert_controller_error(endpoint.request("GET", web("fake", path)), status, message)
        second = endpoint.request("GET", web("fake"))
        assert second.status == 200 and second.body != first  # a new process answered
        assert not process_exists(int(first.split()[1]))
        assert "fake: starting a new action process" in endpoint.wait_for_output("fake: starting a new")


# ----------------------------------------------------------------------------- misuse


def run_endpoint(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, LOCAL_ENDPOINT] + list(arguments), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60, cwd=ROOT)


def assert_usage_error(result: subprocess.CompletedProcess, text: str) -> None:
    assert result.returncode == 2, result
    first_line = result.stderr.splitlines()[0]
    assert first_line.startswith("local_endpoint.py: error: ") and text in first_line, result.stderr


def test_a_port_in_use_is_refused() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        result = run_endpoint("x=http://127.0.0.1:9", "--port", str(port))
    assert_usage_error(result, "cannot listen on 127.0.0.1:%d" % port)
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("spec, text", [
    ("x=ftp://127.0.0.1:8080", "expected http://HOST:PORT"),
    ("x=http://127.0.0.1", "expected http://HOST:PORT"),
    ("x=http://127.0.0.1:8080/run", "expected http://HOST:PORT"),
    ("http://127.0.0.1:8080", "needs a name"),
    ("bad!name=http://127.0.0.1:8080", "not a valid OpenWhisk action name"),
    (EXAMPLES_DIR, "not a MAX model directory: it has no app.py"),
], ids=["scheme", "no-port", "path", "no-name", "bad-name", "no-app-py"])
def test_a_bad_action_is_refused(spec: str, text: str) -> None:
    result = run_endpoint(spec)
    assert_usage_error(result, text)
    assert len(result.stderr.splitlines()) == 1


def test_two_actions_with_one_name_are_refused() -> None:
    assert_usage_error(run_endpoint("a=http://127.0.0.1:1", "a=http://127.0.0.1:2"), "two actions are named a")


def test_an_action_that_fails_init_is_reported() -> None:
    action = TinyAction()
    action.init_reply = json_answer({"error": "The model app failed to load"}, 502)
    try:
        result = run_endpoint("broken=" + action.address, "--port", str(free_port()))
    finally:
        action.close()
    assert_usage_error(result, 'action broken answered /init with 502: {"error": "The model app failed to load"}')


def test_an_action_process_that_dies_at_start_is_reported(fake_model: Tuple[str, str]) -> None:
    model_dir, shim = fake_model
    open(os.path.join(model_dir, "broken"), "w").close()
    result = run_endpoint("fake=" + model_dir, "--shim", shim, "--port", str(free_port()))
    assert_usage_error(result, "action fake exited with status 3 before listening")
    assert "  fake stderr: cannot load the model" in result.stderr.splitlines()[1:]


# ----------------------------------------------------------------------------- the media table


def test_the_media_table_is_the_controllers() -> None:
    with open(MEDIA_TYPES) as table_file:
        table = json.load(table_file)
    assert local_endpoint.BINARY_TYPES == set(name for name, binary in table.items() if binary)
    assert local_endpoint.TEXT_FIXED_CHARSET | local_endpoint.TEXT_OPEN_CHARSET == set(
        name for name, binary in table.items() if not binary)


# ----------------------------------------------------------------------------- the example models, end to end

MODEL_DIRS = example_model_dirs()
SAMPLES = [sample for model_dir in MODEL_DIRS for sample in load_samples(model_dir)]
SAMPLE_IDS = ["%s:%s" % (os.path.basename(s.model_dir), s.name) for s in SAMPLES]


class OwnServer(object):
    """A model's own server: its app.py run by its own maxfw and Flask, on a free loopback port.

    maxfw always serves on port 5000, where test_examples.py keeps its servers for the whole session;
    Flask.run is given another port, nothing else changes.
    """

    # Mounted under the action's web URL prefix, as behind any proxy that sets SCRIPT_NAME: the
    # action's app sees the same prefix, and both write it into links (the Swagger document's basePath).
    LAUNCHER = ("import flask, runpy, sys\n"
                "run = flask.Flask.run\n"
                "def serve(app, host=None, port=None, **options):\n"
                "    inner = app.wsgi_app\n"
                "    app.wsgi_app = lambda environ, start: inner(dict(environ, SCRIPT_NAME=sys.argv[2]), start)\n"
                "    run(app, '127.0.0.1', int(sys.argv[1]), **options)\n"
                "flask.Flask.run = serve\n"
                "runpy.run_path('app.py', run_name='__main__')\n")

    def __init__(self, model_dir: str):
        self.model_dir = model_dir
        self.port = free_port()
        prefix = "/api/v1/web/guest/default/" + os.path.basename(model_dir)
        self.process = subprocess.Popen([sys.executable, "-c", self.LAUNCHER, str(self.port), prefix], cwd=model_dir,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while not local_endpoint._accepts_connections("127.0.0.1", self.port):
            assert self.process.poll() is None and time.time() < deadline, "app.py in %s did not serve" % model_dir
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def send(port: int, sample: SampleRequest, prefix: str, host: str) -> Tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(sample.method, prefix + target(sample), body=sample.body or None,
                           headers=dict(sample.headers, Host=host))
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def examples_endpoint() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(*MODEL_DIRS) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def own_servers() -> Iterator[Dict[str, OwnServer]]:
    servers = {}  # type: Dict[str, OwnServer]
    try:
        for model_dir in MODEL_DIRS:
            servers[model_dir] = OwnServer(model_dir)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def charset(content_type: str) -> str:
    match = re.search(r"charset=([^;]+)", content_type, re.IGNORECASE)
    return match.group(1).strip().lower() if match else ""


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_every_sample_answers_as_the_models_own_server(examples_endpoint: LocalEndpoint,
                                                       own_servers: Dict[str, OwnServer],
                                                       sample: SampleRequest) -> None:
    # Both get the same Host: some apps write it into their pages (flask-restplus's Swagger UI does).
    host = "127.0.0.1:%d" % examples_endpoint.port
    status, content_type, body = send(examples_endpoint.port, sample, web(os.path.basename(sample.model_dir)), host)
    own_status, own_content_type, own_body = send(own_servers[sample.model_dir].port, sample, "", host)
    check_expected(sample, status, content_type, body)
    assert status == own_status
    own_media_type = media_type(own_content_type)
    # The controller sends text as UTF-8 and says so, whether the app declared a charset (Werkzeug 2+)
    # or not (Werkzeug 0.14); it writes the name in capitals.
    own_charset = "utf-8" if own_media_type in local_endpoint.TEXT_OPEN_CHARSET else charset(own_content_type)
    assert (media_type(content_type), charset(content_type)) == (own_media_type, own_charset)
    assert body == own_body


@pytest.mark.parametrize("sample", load_samples(DIGIT_CLASSIFIER), ids=lambda sample: sample.name)
def test_samples_with_curl(examples_endpoint: LocalEndpoint, sample: SampleRequest, tmp_path: Any) -> None:
    body_path = str(tmp_path / "body")
    url = examples_endpoint.url(os.path.basename(sample.model_dir)) + target(sample)
    command = (["curl", "--silent", "--show-error", "--max-time", "60", "--output", body_path,
                "--write-out", "%{http_code} %{content_type}"] + curl_args(sample) + [url])
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                            timeout=90)
    assert result.returncode == 0, result.stderr
    status, _, content_type = result.stdout.partition(" ")
    with open(body_path, "rb") as body_file:
        check_expected(sample, int(status), content_type, body_file.read())


def test_the_default_action_answers_the_readme_curl() -> None:
    with LocalEndpoint() as endpoint:
        url = endpoint.url("max-example-digit-classifier")
        assert "max-example-digit-classifier: " + url in endpoint.lines
        result = subprocess.run(
            ["curl", "--silent", "--show-error", "--write-out", "\n%{http_code} %{content_type}",
             "-F", "image=@examples/max-example-digit-classifier/samples/digit-3.png", "-XPOST", url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=90, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    body, _, status_line = result.stdout.rpartition(b"\n")
    status, _, content_type = status_line.decode().partition(" ")
    sample = next(s for s in load_samples(DIGIT_CLASSIFIER) if s.name == "predict-digit-3")
    check_expected(sample, int(status), content_type, body)
