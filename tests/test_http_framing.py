"""Request framing on every port the runtime opens: strict RFC 9112 parsing, the read deadline, bounds.

The plain-HTTP port ($PORT) and the OpenWhisk action port run as real processes on loopback and
are sent raw bytes: every malformed framing gets a JSON 400 (431 for a head over the limit, 501 for
a transfer coding the server does not implement) and a closed connection, so nothing after it can
be read as another request. Idle connections hold no thread; a request still arriving at the read
deadline is answered 408 and never reaches the app.
"""

import json
import re
import signal
import socket
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import lambda_events
from serverless_max import aws_lambda, openwhisk, runtime, server
from support import ECHO_APP, SHIM, ServerProcess, Shim, free_port, run_payload
from test_http_service import HttpService, parse_reply, read_until_closed

READ_SECONDS = 2.0
REQUEST_LIMIT = 100000
OW_HEADER_LIMIT = 32768


class Port(object):
    """One listening port under test: where requests go, and a target its server routes."""

    def __init__(self, name: str, server: ServerProcess, target: str):
        self.name = name
        self.server = server
        self.port = server.port
        self.target = target

    def connect(self, seconds: float = 10.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=seconds)

    def exchange(self, data: bytes, seconds: float = 10.0) -> bytes:
        """Send the bytes; everything answered until the server closes (a timeout fails the test)."""
        with self.connect(seconds) as connection:
            try:
                connection.sendall(data)
            except OSError:
                pass  # the server answered and closed before taking everything
            return read_until_closed_or_reset(connection)

    def serves_on(self) -> bool:
        body = json.dumps(run_payload({})).encode() if self.name == "openwhisk" else b""
        reply = self.exchange(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                              % (self.target.encode(), len(body), body))
        return parse_reply(reply)[0] == 200

    def threads(self) -> int:
        with open("/proc/%d/status" % self.server.process.pid) as status:
            for line in status:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
        raise AssertionError("no thread count")


def read_until_closed_or_reset(connection: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def settings(**extra: str) -> Dict[str, str]:
    env = {"SERVERLESS_MAX_REQUEST_LIMIT": str(REQUEST_LIMIT), "SERVERLESS_MAX_READ_SECONDS": str(READ_SECONDS)}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def ports() -> Iterator[Dict[str, Port]]:
    http = HttpService(ECHO_APP, env=settings())
    action = Shim(ECHO_APP, env=settings(SERVERLESS_MAX_HEADER_LIMIT=str(OW_HEADER_LIMIT)))
    try:
        http.started()
        yield {"http": Port("http", http, "/echo"), "openwhisk": Port("openwhisk", action, "/run")}
    finally:
        http.stop()
        action.stop()


@pytest.fixture(params=["http", "openwhisk"])
def port(request: Any, ports: Dict[str, Port]) -> Port:
    return ports[request.param]


def check_error(port: Port, reply: bytes, status: int, text: str = "") -> Dict[str, Any]:
    """One JSON error answer, the connection closed after it, and the server serving on."""
    assert len(re.findall(rb"HTTP/1\.1 [0-9]{3} ", reply)) == 1, reply[:600]
    reply_status, headers, body = parse_reply(reply)
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    answer = json.loads(body.decode("utf-8"))
    if port.name == "openwhisk" and status == 413:
        # A /run over the limit is answered as an activation result: the controller sends its 413.
        assert (reply_status, answer["statusCode"]) == (200, 413), reply[:600]
        answer = json.loads(answer["body"])
    else:
        assert reply_status == status, reply[:600]
    error = answer["error"]
    assert text.lower() in error.lower(), error
    assert port.serves_on()
    return headers


def post(port: Port, head: bytes, body: bytes = b"") -> bytes:
    return b"POST " + port.target.encode() + b" HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n" + body


# ----------------------------------------------------------------------------- chunked bodies


@pytest.mark.parametrize("size_line", [
    b"-3", b"0x5", b"+5", b"0_5", b" 5", b"5 ", b"5\t", b"", b"g",
    b"0" * 17 + b"5",  # more digits than any size needs
    b"5;" + b"a" * 5000,  # an extension over the bound
    b"5;a b", b"5;=x", b"5;a=\"x", b"5;",
    b"5 ;a=b",  # whitespace before an extension: h11, llhttp and Node refuse it
])
def test_a_chunk_size_that_is_not_hex_digits_is_400(port: Port, size_line: bytes) -> None:
    reply = port.exchange(post(port, b"Transfer-Encoding: chunked\r\n", size_line + b"\r\nhello\r\n0\r\n\r\n"))
    check_error(port, reply, 400, "chunk")


def test_a_negative_chunk_size_does_not_lift_the_limit(port: Port) -> None:
    started = time.monotonic()
    with port.connect() as connection:
        connection.sendall(post(port, b"Transfer-Encoding: chunked\r\n", b"-3\r\n"))
        try:
            for _ in range(100):  # 6.4 MB, far over the limit, had it been read
                connection.sendall(b"x" * 65536)
        except OSError:
            pass
        reply = read_until_closed_or_reset(connection)
    assert time.monotonic() - started < READ_SECONDS
    check_error(port, reply, 400, "chunk")


@pytest.mark.parametrize("body", [
    b"5\r\nhelloXX0\r\n\r\n",  # chunk data not followed by CRLF
    b"5\r\nhello\n0\r\n\r\n",
    b"5\nhello\r\n0\r\n\r\n",  # bare LF after the size
    b"5\r\nhello\r\n0\r\nX-T : y\r\n\r\n",  # a malformed trailer field
    b"5\r\nhello\r\n0\r\n\n",
])
def test_chunk_framing_must_be_exact(port: Port, body: bytes) -> None:
    check_error(port, port.exchange(post(port, b"Transfer-Encoding: chunked\r\n", body)), 400)


def test_the_limit_holds_over_the_running_total_of_chunks(port: Port) -> None:
    body = b"%x\r\n%s\r\n" % (REQUEST_LIMIT - 10, b"x" * (REQUEST_LIMIT - 10)) + b"b\r\n"
    check_error(port, port.exchange(post(port, b"Transfer-Encoding: chunked\r\n", body)), 413, "limit")


def test_valid_chunked_forms_are_served(ports: Dict[str, Port]) -> None:
    port = ports["http"]
    # Extensions, with BWS before ";" as RFC 9112 7.1.1 allows, and a trailer field.
    body = b"5;name=value;other\r\nhello\r\nA; q=\"a b\"\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
    reply = port.exchange(post(port, b"Transfer-Encoding: Chunked\r\nConnection: close\r\n", body))
    status, _, answer = parse_reply(reply)
    assert status == 200, reply
    assert json.loads(answer.decode("utf-8"))["content_length"] == 15


# ----------------------------------------------------------------------------- the head


MALFORMED_HEADS = [
    (b"Content-Length: 5\r\nContent-Length: 6\r\n", "Content-Length"),
    (b"Content-Length: 5\r\nContent-Length: 5\r\n", "Content-Length"),
    (b"Content-Length: 5, 5\r\n", "Content-Length"),
    (b"Content-Length: +5\r\n", "Content-Length"),
    (b"Content-Length: 0_5\r\n", "Content-Length"),
    (b"Content-Length: -0\r\n", "Content-Length"),
    (b"Content-Length: 5a\r\n", "Content-Length"),
    (b"Content-Length: \r\n", "Content-Length"),
    (b"Content-Length: \xd9\xa5\r\n", "Content-Length"),  # an Arabic-Indic five: a digit to Python, not to HTTP
    (b"Transfer-Encoding: chunked\x0b\r\n", "Transfer-Encoding"),
    (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "Transfer-Encoding"),
    (b"Transfer-Encoding: chunked, chunked\r\n", "Transfer-Encoding"),
    (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "both"),
    (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "both"),
    (b"X-Folded: a\r\n b\r\n", "folded"),
    (b"X-Folded: a\r\n\tb\r\n", "folded"),
    (b"X-Junk : y\r\n", "header"),
    (b"X-Junk\t: y\r\n", "header"),
    (b"No-Colon-Line\r\n", "header"),
    (b"X Junk: y\r\n", "header"),
    (b"X\x00Junk: y\r\n", "header"),
    (b": no-name\r\n", "header"),
    (b"X-A: a\rb\r\n", "header"),
    (b"X-A: a\x00b\r\n", "header"),
    (b"X-A: a\x01b\r\n", "header"),
    (b"X-A: a\x7fb\r\n", "header"),
    (b"X-A: a\r\n\n", "line"),
    (b"X-A: a\n", "line"),
    (b"Host: y\r\n", "Host"),
]


@pytest.mark.parametrize("head, text", MALFORMED_HEADS, ids=[repr(head)[2:40] for head, _ in MALFORMED_HEADS])
def test_malformed_heads_are_400_and_the_connection_closes(port: Port, head: bytes, text: str) -> None:
    # Everything after the head would be a second request on a lenient server: it must never be served.
    smuggled = b"hello" + b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"
    reply = port.exchange(post(port, head, smuggled))
    check_error(port, reply, 400, text)


def test_the_headers_after_a_malformed_line_are_never_dropped_silently(ports: Dict[str, Port]) -> None:
    port = ports["http"]
    reply = port.exchange(b"DELETE /echo HTTP/1.1\r\nHost: x\r\nX-Junk : y\r\nAuthorization: Bearer t\r\n"
                          b"Content-Length: 5\r\n\r\nhello")
    check_error(port, reply, 400)


@pytest.mark.parametrize("unknown", [b"gzip", b"gzip, chunked", b"chunked, gzip", b"identity"])
def test_a_transfer_coding_not_implemented_is_501(port: Port, unknown: bytes) -> None:
    check_error(port, port.exchange(post(port, b"Transfer-Encoding: " + unknown + b"\r\n", b"5\r\nhello\r\n0\r\n\r\n")),
                501, "Transfer-Encoding")


def test_transfer_encoding_in_an_http_1_0_request_is_400(port: Port) -> None:
    request = (b"POST " + port.target.encode() + b" HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\n\r\n")
    check_error(port, port.exchange(request), 400, "Transfer-Encoding")


MALFORMED_REQUEST_LINES = [
    b"GET  /echo HTTP/1.1", b"GET /echo  HTTP/1.1", b"GET /echo HTTP/1.1 ", b" GET /echo HTTP/1.1",
    b"GET\t/echo HTTP/1.1", b"GET /echo http/1.1", b"GET /echo HTTP/1.10", b"GET /echo HTTP/1", b"GET /echo HTTP/1.x",
    b"G(T /echo HTTP/1.1", b"GET /e\x00cho HTTP/1.1", b"GET /e\x7fcho HTTP/1.1", b"GET /echo HTTP/1.1\n",
    b"GET /echo", b"GET", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
]


@pytest.mark.parametrize("line", MALFORMED_REQUEST_LINES, ids=[repr(line)[2:30] for line in MALFORMED_REQUEST_LINES])
def test_a_request_line_that_is_not_method_sp_target_sp_version_is_400(port: Port, line: bytes) -> None:
    check_error(port, port.exchange(line + b"\r\nHost: x\r\n\r\n"), 400)


def test_http_1_1_needs_exactly_one_host(port: Port) -> None:
    request = b"POST " + port.target.encode() + b" HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    check_error(port, port.exchange(request), 400, "Host")
    request = b"POST " + port.target.encode() + b" HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 0\r\n\r\n"
    check_error(port, port.exchange(request), 400, "Host")


def test_valid_heads_are_served_as_sent(ports: Dict[str, Port]) -> None:
    port = ports["http"]
    request = (b"\r\nPUT /echo HTTP/1.1\r\nHost: x\r\nX-Tab:\tv\t w \r\nX-Latin: caf\xe9\r\nX-Empty:\r\n"
               b"Content-Length: 5\r\nConnection: close\r\n\r\nhello")
    status, _, body = parse_reply(port.exchange(request))
    assert status == 200
    seen = json.loads(body.decode("utf-8"))
    assert seen["headers"]["x-tab"] == "v\t w" and seen["headers"]["x-latin"] == "caf\u00e9"
    assert seen["headers"]["x-empty"] == "" and seen["content_length"] == 5
    # HTTP/1.0 needs no Host.
    status, _, _ = parse_reply(port.exchange(b"GET /echo HTTP/1.0\r\n\r\n"))
    assert status == 200


def test_keep_alive_and_pipelined_requests_are_answered_in_order(ports: Dict[str, Port]) -> None:
    port = ports["http"]
    requests = b"".join(b"POST /echo/%d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" % index
                        for index in range(5))
    reply = port.exchange(requests + b"GET /echo/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.count(b"HTTP/1.1 200 ") == 6
    assert [b'"path": "/echo/%d"' % index in reply for index in range(5)] == [True] * 5


# ----------------------------------------------------------------------------- the header section's bound


def test_a_head_over_the_limit_is_431_json_on_every_port(port: Port) -> None:
    filler = b"".join(b"X-Fill-%d: %s\r\n" % (index, b"a" * 1000) for index in range(70))
    headers = check_error(port, port.exchange(post(port, filler + b"Content-Length: 0\r\n")), 431, "header")
    assert headers["content-type"] == "application/json"


def test_the_header_limit_is_a_setting(ports: Dict[str, Port]) -> None:
    # The OpenWhisk port runs with SERVERLESS_MAX_HEADER_LIMIT=32768, the plain-HTTP one with the default.
    filler = b"X-Fill: " + b"a" * 40000 + b"\r\n"
    check_error(ports["openwhisk"], ports["openwhisk"].exchange(post(ports["openwhisk"], filler)), 431,
                "SERVERLESS_MAX_HEADER_LIMIT")
    reply = ports["http"].exchange(post(ports["http"], filler + b"Connection: close\r\n"))
    assert parse_reply(reply)[0] == 200


def test_a_request_line_over_the_limit_is_414(port: Port) -> None:
    check_error(port, port.exchange(b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"), 414)


# ----------------------------------------------------------------------------- the read deadline


def trickle(port: Port, data: bytes, seconds_per_byte: float) -> Tuple[float, bytes]:
    started = time.monotonic()
    with port.connect(30) as connection:
        connection.settimeout(seconds_per_byte)
        reply = b""
        for index in range(len(data)):
            try:
                connection.sendall(data[index:index + 1])
            except OSError:
                break
            try:
                reply = connection.recv(65536)
            except socket.timeout:
                continue
            break
        connection.settimeout(30)
        reply += read_until_closed_or_reset(connection)
    return time.monotonic() - started, reply


def test_a_head_still_arriving_at_the_deadline_is_408_and_never_runs(port: Port) -> None:
    head = (b"DELETE " + port.target.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"p" * 200 + b"\r\n"
            b"Content-Length: 0\r\n\r\n")
    elapsed, reply = trickle(port, head, 0.04)
    assert READ_SECONDS <= elapsed < READ_SECONDS + 2
    check_error(port, reply, 408, "within 2 s")


def test_a_head_that_stalls_is_408(port: Port) -> None:
    started = time.monotonic()
    with port.connect(30) as connection:
        connection.sendall(b"POST " + port.target.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Le")
        reply = read_until_closed_or_reset(connection)
    assert READ_SECONDS <= time.monotonic() - started < READ_SECONDS + 2
    check_error(port, reply, 408)


def test_a_body_still_arriving_at_the_deadline_is_408(port: Port) -> None:
    elapsed, reply = trickle(port, post(port, b"Content-Length: 200\r\n", b"b" * 200), 0.04)
    assert READ_SECONDS <= elapsed < READ_SECONDS + 2
    check_error(port, reply, 408)


# Worker threads left from earlier requests end after this long without work.
WORKER_IDLE = 2.5


def test_idle_connections_hold_no_thread(port: Port) -> None:
    time.sleep(WORKER_IDLE)
    before = port.threads()
    connections = [port.connect() for _ in range(200)]
    try:
        # Some have sent a whole request and wait, kept alive, for the next one.
        if port.name == "http":
            for connection in connections[:50]:
                connection.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            for connection in connections[:50]:
                assert connection.recv(65536).startswith(b"HTTP/1.1 200 ")
        time.sleep(WORKER_IDLE)
        assert port.threads() <= before
        assert port.serves_on()
    finally:
        for connection in connections:
            connection.close()


def test_threads_and_connections_are_bounded(fresh: Any) -> None:
    service = fresh(env=settings(SERVERLESS_MAX_THREADS="4", SERVERLESS_MAX_CONNECTIONS="30")).started()
    port = Port("http", service, "/echo")
    time.sleep(WORKER_IDLE)
    before = port.threads()
    stalled = []
    for _ in range(10):
        stalled.append(port.connect(30))
        stalled[-1].sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")  # a head begun, never finished
    time.sleep(0.5)
    idle = [port.connect(30) for _ in range(40)]
    try:
        time.sleep(0.5)
        assert port.threads() <= before + 4
        # Over the connection bound the longest-idle connections are let go; a new request is served
        # once the stalled ones have had their 408, four at a time.
        started = time.monotonic()
        assert port.serves_on()
        assert time.monotonic() - started < 3 * READ_SECONDS + 5
        closed = 0
        for connection in idle:
            connection.settimeout(0.5)
            try:
                closed += connection.recv(1) == b""
            except socket.timeout:
                pass
        assert closed >= 10
        for connection in stalled:
            assert parse_reply(read_until_closed_or_reset(connection))[0] == 408
    finally:
        for connection in stalled + idle:
            connection.close()


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


# ----------------------------------------------------------------------------- Expect, large lengths


def test_expect_100_continue_is_never_sent_for_a_length_it_will_not_take(port: Port) -> None:
    reply = port.exchange(post(port, b"Content-Length: +40000000\r\nExpect: 100-continue\r\n"))
    assert not reply.startswith(b"HTTP/1.1 100")
    check_error(port, reply, 400, "Content-Length")
    reply = port.exchange(post(port, b"Content-Length: 40000000\r\nExpect: 100-continue\r\n"))
    assert not reply.startswith(b"HTTP/1.1 100")
    check_error(port, reply, 413)


def test_a_huge_length_without_expect_is_413_at_once(port: Port) -> None:
    started = time.monotonic()
    reply = port.exchange(post(port, b"Content-Length: 10000000000\r\n", b"x" * 1000))
    assert time.monotonic() - started < READ_SECONDS
    check_error(port, reply, 413, "limit")
    reply = port.exchange(post(port, b"Content-Length: 1" + b"0" * 400 + b"\r\n", b"x" * 1000))
    check_error(port, reply, 413, "limit")


def test_leading_zeros_in_a_length_are_still_the_length(ports: Dict[str, Port]) -> None:
    port = ports["http"]
    reply = port.exchange(post(port, b"Connection: close\r\nContent-Length: " + b"0" * 30 + b"5\r\n", b"hello"))
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
    reply = port.exchange(post(port, b"Content-Length: " + b"0" * 30 + b"99999999999\r\n", b"x"))
    check_error(port, reply, 413, "is 99999999999 bytes, over the limit")


def test_expect_100_continue_within_the_limit_is_answered_100_then_served(ports: Dict[str, Port]) -> None:
    port = ports["http"]
    with port.connect() as connection:
        connection.sendall(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
                           b"Connection: close\r\n\r\n")
        assert connection.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        connection.sendall(b"hello")
        status, _, body = parse_reply(read_until_closed(connection))
    assert status == 200 and json.loads(body.decode("utf-8"))["content_length"] == 5


# ----------------------------------------------------------------------------- statuses the app answers


def status_app(status: str) -> runtime.ModelApp:
    def app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        start_response(status, [("Content-Type", "text/plain")])
        return [b"body"]

    return runtime.ModelApp(app)


@pytest.mark.parametrize("status", ["0 Zero", "99 Low", "1000 High", "100 Continue", "101 Switching Protocols",
                                    "103 Early Hints", "199 Odd", "600 Beyond", "abc", "", "2OO OK", "-200 OK"])
def test_a_status_http_cannot_send_as_final_is_502_on_every_platform(status: str) -> None:
    request = runtime.Request("GET", "/", "", [], b"")
    response = status_app(status).respond(request)
    assert response.status == 502
    error = json.loads(response.body.decode("utf-8"))["error"]
    assert repr(status.split(" ")[0]) in error or status.split(" ")[0] in error
    # Lambda: the statusCode in the result.
    event = json.dumps(lambda_events.function_url("GET", "/")).encode("utf-8")
    function = aws_lambda.Function(status_app(status), "/", aws_lambda.DEFAULT_RESULT_LIMIT)
    result = json.loads(function.invoke(aws_lambda.Invocation("r1", None, "", None, event)).decode("utf-8"))
    assert result["statusCode"] == 502
    # OpenWhisk: the statusCode of the web result.
    action = openwhisk.Action(status_app(status), None, "/", openwhisk.DEFAULT_RESULT_LIMIT, concurrent=True)
    code, result = action.run({"value": {"__ow_method": "get", "__ow_path": "/"}})
    assert code == 200 and result["statusCode"] == 502


@pytest.mark.parametrize("status", ["200 OK", "599 Custom", "418 I'm a teapot", "299 "])
def test_a_status_in_range_goes_through(status: str) -> None:
    response = status_app(status).respond(runtime.Request("GET", "/", "", [], b""))
    assert response.status == int(status.split()[0])


def test_out_of_range_statuses_on_the_wire_are_502(ports: Dict[str, Port]) -> None:
    port = ports["http"]
    for status in (0, 99, 1000, 101, 100):
        reply = port.exchange(b"GET /respond?status=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % status)
        assert reply.startswith(b"HTTP/1.1 502 "), reply[:200]
        assert str(status) in json.loads(parse_reply(reply)[2].decode("utf-8"))["error"]


def test_the_apps_reason_phrase_goes_back_as_set(ports: Dict[str, Port]) -> None:
    port = ports["http"]
    reply = port.exchange(b"GET /respond?status=418&reason=Short%20and%20stout HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 418 Short and stout\r\n"), reply[:200]


def test_a_reason_phrase_http_cannot_carry_is_replaced_by_the_standard_one() -> None:
    reason_phrase = server.reason_phrase
    assert reason_phrase(418, "Short and stout") == "Short and stout"
    assert reason_phrase(200, "caf\u00e9\tok") == "caf\u00e9\tok"  # obs-text and HTAB are allowed
    assert reason_phrase(404, "") == "Not Found"
    assert reason_phrase(404, None) == "Not Found"
    assert reason_phrase(404, "Not\r\nSet-Cookie: x") == "Not Found"
    assert reason_phrase(404, "bad\x00") == "Not Found"
    assert reason_phrase(404, "\u20ac") == "Not Found"  # not latin-1
    assert reason_phrase(299, None) == "Unknown"


def test_the_apps_reason_phrase_is_the_albs_status_description() -> None:
    response = runtime.Response(418, [("Content-Type", "text/plain")], b"x", reason="Short and stout")
    result = aws_lambda.shape_result(response, aws_lambda.ALB, multi_value=False)
    assert result["statusDescription"] == "418 Short and stout"


# ----------------------------------------------------------------------------- Lambda and forwarded addresses


@pytest.mark.parametrize("flag, body, expected", [
    (True, "aGVsbG8=", b"hello"),
    (False, "aGVsbG8=", b"aGVsbG8="),
    (None, "aGVsbG8=", b"aGVsbG8="),
])
def test_only_a_json_true_is_base64(flag: Any, body: str, expected: bytes) -> None:
    event = lambda_events.function_url("POST", "/echo")
    event.update({"body": body, "isBase64Encoded": flag})
    request = aws_lambda.build_request(event, aws_lambda.event_kind(event), "/")
    assert request.body == expected


@pytest.mark.parametrize("flag", ["false", "true", 1, 0, 1.0, [], {}])
def test_an_is_base64_encoded_that_is_not_a_boolean_is_a_400(flag: Any) -> None:
    event = lambda_events.function_url("POST", "/echo")
    event.update({"body": "aGVsbG8=", "isBase64Encoded": flag})
    with pytest.raises(runtime.BadRequest, match="isBase64Encoded"):
        aws_lambda.build_request(event, aws_lambda.event_kind(event), "/")


def test_alb_takes_the_peer_it_appended_to_x_forwarded_for() -> None:
    event = lambda_events.alb("GET", "/echo", headers=[("X-Forwarded-For", "198.51.100.66, 203.0.113.9")])
    event["headers"]["x-forwarded-for"] = "198.51.100.66, 203.0.113.9"
    request = aws_lambda.build_request(event, aws_lambda.ALB, "/")
    assert request.remote_addr == "203.0.113.9"


def test_the_access_logs_remote_ip_is_not_the_clients_own_claim(ports: Dict[str, Port]) -> None:
    service = ports["http"].server
    marker = "remote-ip-%d" % time.time()
    reply = ports["http"].exchange(b"GET /echo/%s HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.66, 10.0.0.1\r\n"
                                   b"Connection: close\r\n\r\n" % marker.encode())
    assert parse_reply(reply)[0] == 200
    assert service.wait_for_entry(marker)["httpRequest"]["remoteIp"] == "10.0.0.1"


# ----------------------------------------------------------------------------- SIGINT


def start_runtime(env: Dict[str, str], args: List[str]) -> ServerProcess:
    base = {"TEST_MODEL_LOAD_SECONDS": "30"}
    base.update(env)
    return ServerProcess([sys.executable, SHIM] + args, 0, ECHO_APP, base, name="sigint")


@pytest.mark.parametrize("platform", ["openwhisk", "http", "lambda"])
def test_sigint_while_the_model_loads_stops_cleanly(platform: str) -> None:
    env = {"SERVERLESS_MAX_PLATFORM": platform, "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9",
           "PORT": str(free_port())}
    process = start_runtime(env, ["--port", str(free_port())])
    try:
        process.wait_until(lambda: "loading the model" in process.stderr(), 60)
        time.sleep(0.5)
        process.process.send_signal(signal.SIGINT)
        assert process.process.wait(20) == 0
    finally:
        process.stop()
    assert "Traceback" not in process.stderr(), process.stderr()
    assert "stopped by SIGINT" in process.stderr()


def test_sigint_during_a_lambda_invocation_stops_cleanly() -> None:
    from test_lambda import StandInRuntimeApi
    event = json.dumps(lambda_events.function_url("POST", "/slow", "seconds=30", body=b"x")).encode("utf-8")
    stand_in = StandInRuntimeApi([({"Lambda-Runtime-Aws-Request-Id": "r1"}, event)])
    try:
        process = ServerProcess([sys.executable, SHIM], 0, ECHO_APP,
                                {"AWS_LAMBDA_RUNTIME_API": stand_in.address(), "SERVERLESS_MAX_PLATFORM": "lambda"},
                                name="lambda-sigint")
        try:
            process.wait_until(lambda: "serving Lambda invocations" in process.stderr(), 60)
            time.sleep(1.0)  # the invocation is in the app
            process.process.send_signal(signal.SIGINT)
            assert process.process.wait(20) == 0
        finally:
            process.stop()
    finally:
        stand_in.close()
    assert "Traceback" not in process.stderr(), process.stderr()
    assert "stopped by SIGINT" in process.stderr()


class _TrickleReader(object):
    """A socket whose peer takes one byte at a time, each after a pause: a slow-read attack."""

    def __init__(self) -> None:
        self.timeout = None  # type: Any
        self.written = 0

    def settimeout(self, seconds: Any) -> None:
        self.timeout = seconds

    def sendmsg(self, views: List[memoryview]) -> int:
        if self.timeout is not None and self.timeout <= 0:
            raise socket.timeout("timed out")
        time.sleep(0.02)
        self.written += 1
        return 1


def test_a_response_read_a_byte_at_a_time_is_given_up_at_its_deadline() -> None:
    """Every byte the peer takes just in time must not restart the clock: the write has one deadline in all."""
    peer = _TrickleReader()
    with pytest.raises(socket.timeout):
        server.send_all(peer, [b"x" * 10000], time.monotonic() + 0.1)  # type: ignore[arg-type]
    assert peer.written < 10000


class _TwoAtOnceHandler(server.Handler):
    """Answers 200 once two requests are in the app together, so that each has its own worker."""

    def __init__(self) -> None:
        self.together = threading.Barrier(2, timeout=30)

    def respond(self, exchange: server.Exchange) -> None:
        self.together.wait()
        exchange.send(200, server.standard_headers(2), b"ok")

    def refuse(self, exchange: server.Exchange, error: server.HttpError) -> None:
        exchange.send(error.status, server.standard_headers(0))


def test_a_worker_that_finishes_does_not_end_the_idle_ones(monkeypatch: Any) -> None:
    """Idle workers stay for WORKER_IDLE_SECONDS: one finishing its request must not wake them into ending."""
    monkeypatch.setattr(server, "WORKER_IDLE_SECONDS", 60.0)
    http = server.Server(("127.0.0.1", 0), _TwoAtOnceHandler(), read_seconds=30, idle_seconds=30, threads=4,
                         connections=10)
    selector = threading.Thread(target=http.serve_forever, daemon=True)
    selector.start()
    try:
        clients = [socket.create_connection(http.server_address[:2], timeout=30) for _ in range(2)]
        for client in clients:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for client in clients:
            assert read_until_closed(client).startswith(b"HTTP/1.1 200 ")
            client.close()
        assert http.wait_until_done(time.monotonic() + 30) == 0
        time.sleep(0.3)  # time enough for a woken worker to end, were it to
        assert http._threads == 2
    finally:
        http.shutdown()
        selector.join(30)
        http.server_close()


class _ListenerOutOfDescriptors(object):
    """The server's listening socket, whose first accept fails as when the process is out of descriptors."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.failed = False

    def fileno(self) -> int:
        return self.listener.fileno()

    def accept(self) -> Any:
        if not self.failed:
            self.failed = True
            raise OSError(24, "Too many open files")
        return self.listener.accept()

    def close(self) -> None:
        self.listener.close()


class _OkHandler(server.Handler):
    def respond(self, exchange: server.Exchange) -> None:
        exchange.send(200, server.standard_headers(2), b"ok")

    def refuse(self, exchange: server.Exchange, error: server.HttpError) -> None:
        exchange.send(error.status, server.standard_headers(0))


def test_accepting_resumes_after_running_out_of_descriptors_with_no_connection_open() -> None:
    """With no connection to close (descriptors held elsewhere, then freed), accepting is retried all the same."""
    http = server.Server(("127.0.0.1", 0), _OkHandler(), read_seconds=30, idle_seconds=30, threads=4,
                         connections=10)
    http.listener = _ListenerOutOfDescriptors(http.listener)  # type: ignore[assignment]
    selector = threading.Thread(target=http.serve_forever, daemon=True)
    selector.start()
    try:
        client = socket.create_connection(http.server_address[:2], timeout=15)
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_until_closed(client).startswith(b"HTTP/1.1 200 ")
        assert http.listener.failed  # type: ignore[attr-defined]
        client.close()
    finally:
        http.shutdown()
        selector.join(30)
        http.server_close()


class _ExitingHandler(_OkHandler):
    """Its first request ends as a model app calling sys.exit() would; the next are answered."""

    def __init__(self) -> None:
        self.exited = False

    def respond(self, exchange: server.Exchange) -> None:
        if not self.exited:
            self.exited = True
            raise SystemExit(1)
        _OkHandler.respond(self, exchange)


def test_a_request_ending_in_system_exit_leaves_the_server_serving() -> None:
    """SystemExit is no Exception: it must not take a worker out of the count, nor leave its request busy."""
    http = server.Server(("127.0.0.1", 0), _ExitingHandler(), read_seconds=30, idle_seconds=30, threads=1,
                         connections=10)
    selector = threading.Thread(target=http.serve_forever, daemon=True)
    selector.start()
    try:
        for expected in (b"", b"HTTP/1.1 200 "):
            client = socket.create_connection(http.server_address[:2], timeout=15)
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_until_closed(client).startswith(expected)
            client.close()
        assert http.wait_until_done(time.monotonic() + 15) == 0
    finally:
        http.shutdown()
        selector.join(30)
        http.server_close()


def test_a_model_app_calling_sys_exit_while_answering_gets_a_500() -> None:
    """ModelApp.respond never raises for anything the app does, sys.exit() included."""
    def exiting_app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        sys.exit(3)

    response = runtime.ModelApp(exiting_app).respond(runtime.Request("GET", "/", "", [], b""))
    assert response.status == 500
    assert json.loads(response.body.decode("utf-8"))["error"]
