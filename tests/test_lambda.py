"""The AWS Lambda platform, under AWS's own Runtime Interface Emulator (RIE).

The emulator (from the aws-sam-cli wheel, fetched by scripts/lambda-rie.sh) runs
`python openwhisk.py` in the model's directory with AWS_LAMBDA_RUNTIME_API set, exactly as Lambda
runs a container image's command, and takes invocations on a loopback port. Each test sends the
event AWS's services send for an HTTP request and rebuilds the HTTP response from the result. The
runtime runs on this era's Python; the emulator is the same static binary on both eras.
"""

import base64
import http.client
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from lambda_events import (INVOCATIONS, KINDS, api_gateway_v1, alb, event_for, forwarded_headers, function_url, header,
                           host_of, http_response, script_name_of)
from samples import SampleRequest, check_expected, example_model_dirs, load_samples
from serverless_max import aws_lambda, runtime
from support import ECHO_APP, SHIM, ServerProcess, free_port, lambda_emulator

MODEL_DIRS = example_model_dirs()
SAMPLES = [sample for model_dir in MODEL_DIRS for sample in load_samples(model_dir)]


@pytest.fixture(scope="session")
def rie() -> str:
    return lambda_emulator()


class Emulator(ServerProcess):
    """The RIE running the runtime for one model directory; invocations on a free loopback port."""

    def __init__(self, rie: str, app_dir: str, env: Optional[Dict[str, str]] = None):
        port = free_port()
        command = [rie, "--runtime-interface-emulator-address", "127.0.0.1:%d" % port,
                   "--runtime-api-address", "127.0.0.1:%d" % free_port(), sys.executable, SHIM]
        ServerProcess.__init__(self, command, port, app_dir, env, name="rie")

    def invoke(self, event: Any, timeout: float = 120.0) -> Tuple[int, bytes]:
        """The emulator's answer to one invocation: its status and the function's result."""
        body = event if isinstance(event, bytes) else json.dumps(event).encode("utf-8")
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("POST", INVOCATIONS, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def result(self, event: Any) -> Dict[str, Any]:
        status, body = self.invoke(event)
        assert status == 200, body[:500]
        return json.loads(body.decode("utf-8"))

    def wait_until_logged(self, text: str, seconds: float = 10.0) -> str:
        """The emulator's and the runtime's output once it holds ``text`` (or the time is up)."""
        deadline = time.time() + seconds
        while True:
            log = self.stdout() + self.stderr()
            if text in log or time.time() > deadline:
                return log
            time.sleep(0.05)


def started(emulators: List[Emulator]) -> None:
    """Wait for the emulators, then have their models load side by side: the emulator starts the
    runtime (the function's init) on the first invocation."""
    for emulator in emulators:
        emulator.wait_for_port()
    warm_ups = [threading.Thread(target=emulator.invoke, args=({"warm-up": True},)) for emulator in emulators]
    for thread in warm_ups:
        thread.start()
    for thread in warm_ups:
        thread.join()


class OwnServer(object):
    """A model's own server (its app.py, its Flask), behind a proxy that sets SCRIPT_NAME and the scheme.

    Each request names its prefix in X-Test-Script-Name, so one server stands for every event kind;
    X-Forwarded-Proto sets the URL scheme, as the runtime takes it from the gateway.
    """

    LAUNCHER = ("import flask, runpy, sys\n"
                "run = flask.Flask.run\n"
                "def serve(app, host=None, port=None, **options):\n"
                "    inner = app.wsgi_app\n"
                "    def proxied(environ, start):\n"
                "        environ['SCRIPT_NAME'] = environ.pop('HTTP_X_TEST_SCRIPT_NAME', '')\n"
                "        environ['wsgi.url_scheme'] = environ.get('HTTP_X_FORWARDED_PROTO', 'http')\n"
                "        return inner(environ, start)\n"
                "    app.wsgi_app = proxied\n"
                "    run(app, '127.0.0.1', int(sys.argv[1]), **options)\n"
                "flask.Flask.run = serve\n"
                "runpy.run_path('app.py', run_name='__main__')\n")

    def __init__(self, model_dir: str):
        self.port = free_port()
        self.process = ServerProcess([sys.executable, "-c", self.LAUNCHER, str(self.port)], self.port, model_dir,
                                     name="own-server")

    def send(self, sample: SampleRequest, kind: str) -> Tuple[int, str, bytes]:
        headers = dict(forwarded_headers(kind, list(sample.headers.items())))
        headers["X-Test-Script-Name"] = script_name_of(kind)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            target = sample.path + ("?" + sample.query if sample.query else "")
            connection.request(sample.method, target, body=sample.body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def examples(rie: str) -> Iterator[Tuple[Dict[str, Emulator], Dict[str, OwnServer]]]:
    emulators = {}  # type: Dict[str, Emulator]
    own = {}  # type: Dict[str, OwnServer]
    try:
        for model_dir in MODEL_DIRS:  # all started first: the models load side by side
            emulators[model_dir] = Emulator(rie, model_dir)
            own[model_dir] = OwnServer(model_dir)
        started(list(emulators.values()))
        for server in own.values():
            server.process.wait_for_port()
        yield emulators, own
    finally:
        for emulator in emulators.values():
            emulator.stop()
        for server in own.values():
            server.process.stop()


@pytest.fixture(scope="module")
def echo(rie: str) -> Iterator[Emulator]:
    emulator = Emulator(rie, ECHO_APP)
    try:
        emulator.wait_for_port()
        yield emulator
    finally:
        emulator.stop()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: "%s-%s" % (os.path.basename(s.model_dir), s.name))
def test_every_sample_answers_as_the_models_own_server(examples: Tuple[Dict[str, Emulator], Dict[str, OwnServer]],
                                                       sample: SampleRequest, kind: str) -> None:
    emulators, own = examples
    event = event_for(kind, sample.method, sample.path, sample.query, list(sample.headers.items()), sample.body)
    status, headers, body = http_response(emulators[sample.model_dir].result(event))
    content_type = header(headers, "Content-Type")
    check_expected(sample, status, content_type, body)
    # Same prefix, Host and scheme on both sides: the Swagger document's basePath and the Swagger
    # UI page's links are written from them, so those compare byte for byte too. (flask-restplus
    # builds the document on its first request and keeps it: both sides see the kinds in one order.)
    assert (status, content_type, body) == own[sample.model_dir].send(sample, kind)


def test_path_query_and_headers_reach_the_app(echo: Emulator) -> None:
    for kind in KINDS:
        result = echo.result(event_for(kind, "GET", "/echo/x", "a=1&a=2&b=%2F%20", [("X-Custom", "yes")]))
        seen = json.loads(http_response(result)[2].decode("utf-8"))
        assert seen["path"] == "/echo/x"
        # An ALB target group without multi-value headers gets the last value of a repeated parameter.
        assert seen["args"] == {"a": ["2"] if kind == "alb" else ["1", "2"], "b": ["/ "]}, kind
        assert seen["headers"]["host"] == host_of(kind)
        assert seen["headers"]["x-custom"] == "yes"
        assert seen["headers"]["x-forwarded-proto"] == "https"


def test_binary_bodies_both_ways(echo: Emulator) -> None:
    data = bytes(range(256)) * 4
    for kind in KINDS:
        event = event_for(kind, "POST", "/echo", "", [("Content-Type", "application/octet-stream")], data)
        assert event["isBase64Encoded"] is True
        result = echo.result(event)
        assert result["isBase64Encoded"] is False  # JSON text comes back as text
        seen = json.loads(http_response(result)[2].decode("utf-8"))
        assert base64.b64decode(seen["body_base64"]) == data
        assert seen["content_length"] == len(data)

        query = "type=image/png&body_base64=" + base64.b64encode(data).decode("ascii").replace("+", "%2B")
        result = echo.result(event_for(kind, "GET", "/respond", query))
        assert result["isBase64Encoded"] is True
        status, headers, body = http_response(result)
        assert (status, header(headers, "Content-Type"), body) == (200, "image/png", data)


def test_text_that_is_not_utf8_is_sent_as_base64(echo: Emulator) -> None:
    latin1 = "caf\xe9".encode("latin-1")
    query = "type=text/plain;%20charset=latin-1&body_base64=" + base64.b64encode(latin1).decode("ascii")
    result = echo.result(function_url("GET", "/respond", query))
    assert result["isBase64Encoded"] is True
    assert http_response(result)[2] == latin1


def test_several_set_cookie_headers_survive(echo: Emulator) -> None:
    query = "cookie=a%3D1%3B%20Path%3D%2F&cookie=b%3D2%3B%20Expires%3DWed,%2021%20Oct%202026%2007:28:00%20GMT"
    expected = ["a=1; Path=/", "b=2; Expires=Wed, 21 Oct 2026 07:28:00 GMT"]
    for kind in ("apigateway-v1", "apigateway-v2", "function-url", "alb-multi-value"):
        result = echo.result(event_for(kind, "GET", "/respond", query))
        _, headers, _ = http_response(result)
        assert [value for name, value in headers if name.lower() == "set-cookie"] == expected, kind
        if kind in ("apigateway-v2", "function-url"):
            assert result["cookies"] == expected
        else:
            assert result["multiValueHeaders"]["Set-Cookie"] == expected
    # An ALB target group without multi-value headers takes one value per header: the last is kept.
    result = echo.result(alb("GET", "/respond", query))
    assert result["headers"]["Set-Cookie"] == expected[-1]
    assert result["statusDescription"] == "200 OK"


def test_cookies_reach_the_app_as_one_cookie_header(echo: Emulator) -> None:
    for kind in KINDS:
        seen = json.loads(http_response(echo.result(event_for(kind, "GET", "/echo", "", [
            ("Cookie", "a=1; b=2")])))[2].decode("utf-8"))
        assert seen["headers"]["cookie"] == "a=1; b=2", kind


def test_an_answer_over_6_mb_becomes_a_413(echo: Emulator) -> None:
    chunk = base64.b64encode(b"x" * 3000).decode("ascii")
    for kind in ("apigateway-v2", "alb"):
        result = echo.result(event_for(kind, "GET", "/respond", "type=text/plain&repeat=2200&body_base64=" + chunk))
        status, headers, body = http_response(result)
        assert status == 413 and header(headers, "Content-Type") == "application/json"
        message = json.loads(body.decode("utf-8"))["error"]
        assert "over its response limit of 6291556 bytes" in message


def test_a_result_of_exactly_6291556_bytes_passes_and_one_more_is_a_413(echo: Emulator) -> None:
    def invoke(size: int) -> Tuple[int, bytes]:
        query = "type=text/plain&body_base64=eA%%3D%%3D&repeat=%d" % size  # "x" * size
        return echo.invoke(function_url("GET", "/respond", query))

    status, small = invoke(10)
    assert status == 200
    framing = len(small) - 10  # the emulator returns the runtime's result byte for byte
    status, whole = invoke(aws_lambda.DEFAULT_RESULT_LIMIT - framing)
    assert status == 200 and len(whole) == aws_lambda.DEFAULT_RESULT_LIMIT
    assert json.loads(whole.decode("utf-8"))["statusCode"] == 200
    status, over = invoke(aws_lambda.DEFAULT_RESULT_LIMIT - framing + 1)
    assert status == 200 and json.loads(over.decode("utf-8"))["statusCode"] == 413


@pytest.mark.parametrize("event,named", [
    ({"foo": 1}, "its keys are: foo"),
    ({"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]}, "aws:s3"),
    ([1, 2], "a JSON list"),
    (b"not json", "not JSON"),
])
def test_an_event_that_is_not_http_gets_a_clear_error(echo: Emulator, event: Any, named: str) -> None:
    status, body = echo.invoke(event)
    error = json.loads(body.decode("utf-8"))
    assert error["errorType"] == "UnsupportedEvent"
    assert "API Gateway REST API or HTTP API" in error["errorMessage"]
    assert "Application Load Balancer" in error["errorMessage"] and named in error["errorMessage"]
    # The function keeps serving.
    assert echo.result(function_url("GET", "/model/metadata"))["statusCode"] == 200


def test_an_empty_path_goes_to_the_default_path(echo: Emulator) -> None:
    event = function_url("POST", "", "", [("Content-Type", "application/json")], b"{}")
    seen = json.loads(http_response(echo.result(event))[2].decode("utf-8"))
    assert seen["request"]["path"] == "/model/predict"


def test_an_app_failure_is_a_500_result_not_an_invocation_error(echo: Emulator) -> None:
    result = echo.result(api_gateway_v1("GET", "/fail"))
    assert result["statusCode"] == 500  # Flask's own error page, as the model's server answers
    assert "Internal Server Error" in result["body"]


def test_a_model_that_fails_to_load_reports_an_init_error(rie: str) -> None:
    emulator = Emulator(rie, ECHO_APP, env={"TEST_MODEL_FAIL_TO_LOAD": "1"})
    try:
        emulator.wait_for_port()
        status, body = emulator.invoke(function_url("GET", "/model/metadata"))
        assert status == 502
        error = json.loads(body.decode("utf-8"))
        assert error["errorType"] == "ModelLoadError"
        assert "failed to load (RuntimeError)" in error["errorMessage"]
        assert "s3cret" not in error["errorMessage"]  # the exception's text stays in the logs
        log = emulator.wait_until_logged("Init failed")
        assert "s3cret-password" in log  # ... where it is
    finally:
        emulator.stop()


CONTEXT_APP = """
import json, os
from flask import Flask, request
app = Flask(__name__)

@app.route('/context')
def context():
    event = request.environ['aws.lambda.event']
    return json.dumps({'context': request.environ['aws.lambda.context'], 'body' : 'body' in event,
                       'stage': event['requestContext']['stage'], 'trace': os.environ.get('_X_AMZN_TRACE_ID')})

app.run()
"""


def test_the_request_id_and_deadline_reach_the_app(rie: str, tmp_path: Any) -> None:
    (tmp_path / "app.py").write_text(CONTEXT_APP)
    emulator = Emulator(rie, str(tmp_path))
    try:
        emulator.wait_for_port()
        before = time.time() * 1000
        result = emulator.result(api_gateway_v1("GET", "/context"))
        seen = json.loads(result["body"])
        context = seen["context"]
        assert re.match(r"\A[0-9a-f-]{36}\Z", context["request_id"])
        assert "RequestId: " + context["request_id"] in emulator.stdout() + emulator.stderr()
        assert context["deadline_ms"] > before
        assert context["invoked_function_arn"].startswith("arn:aws:lambda:")
        assert seen["stage"] == "prod" and seen["body"] is False
    finally:
        emulator.stop()



# ----------------------------------------------------------------------------- the mapping, in process


def request_for(event: Dict[str, Any], default_path: str = "/model/predict") -> runtime.Request:
    return aws_lambda.build_request(event, aws_lambda.event_kind(event), default_path)


def test_rest_api_stage_and_custom_domain_base_paths() -> None:
    # The default endpoint: path lacks the stage, requestContext.path has it.
    request = request_for(api_gateway_v1("GET", "/model/metadata"))
    assert (request.script_name, request.path) == ("/prod", "/model/metadata")
    request = request_for(api_gateway_v1("GET", "/"))
    assert (request.script_name, request.path) == ("/prod", "/")
    bare = api_gateway_v1("GET", "/")
    bare["requestContext"]["path"] = "/prod"
    request = request_for(bare)
    assert (request.script_name, request.path) == ("/prod", "/model/predict")
    # A custom domain with base path "api": path starts with it; the resource lies below it.
    event = api_gateway_v1("GET", "/model/metadata")
    event["path"] = event["requestContext"]["path"] = "/api/model/metadata"
    request = request_for(event)
    assert (request.script_name, request.path) == ("/api", "/model/metadata")
    # A custom domain mapped at its root: nothing to strip.
    event["path"] = event["requestContext"]["path"] = "/model/metadata"
    request = request_for(event)
    assert (request.script_name, request.path) == ("", "/model/metadata")
    # The root resource on a custom domain's base path.
    root = api_gateway_v1("GET", "/")
    root["path"] = root["requestContext"]["path"] = "/api/"
    request = request_for(root)
    assert (request.script_name, request.path) == ("/api", "/")
    root["path"] = root["requestContext"]["path"] = "/api"
    request = request_for(root)
    assert (request.script_name, request.path) == ("/api", "/model/predict")


def test_rest_api_paths_and_query_values_are_decoded_once() -> None:
    request = request_for(api_gateway_v1("GET", "/echo/a%20b%2Fc", "q=%26%3D%20x&q=2"))
    assert request.path == "/echo/a b/c"
    assert request.query == "q=%26%3D%20x&q=2"


def test_http_api_payload_1_0_strips_a_named_stage() -> None:
    event = api_gateway_v1("GET", "/prod/model/metadata")
    event["version"] = "1.0"
    request = request_for(event)
    assert (request.script_name, request.path) == ("/prod", "/model/metadata")


def test_payload_2_0_stage_and_function_url_paths() -> None:
    event = event_for("apigateway-v2", "GET", "/model/metadata")
    request = request_for(event)
    assert (request.script_name, request.path) == ("/prod", "/model/metadata")
    event["requestContext"]["stage"] = "$default"
    request = request_for(event)
    assert (request.script_name, request.path) == ("", "/prod/model/metadata")
    # Function URLs give the path percent-encoded; HTTP APIs give it decoded.
    request = request_for(function_url("GET", "/echo/a%20b"))
    assert (request.script_name, request.path) == ("", "/echo/a b")


def test_alb_query_is_kept_as_sent() -> None:
    # Without multi-value headers, ALB keeps the last value of a repeated parameter.
    request = request_for(alb("GET", "/echo", "a=%2F%20&b=c+d&a=2"))
    assert request.query == "a=2&b=c+d"
    request = request_for(alb("GET", "/echo", "a=%2F%20&a=2", multi_value=True))
    assert request.query == "a=%2F%20&a=2"
    assert request.scheme == "https" and request.remote_addr == "203.0.113.7"


def test_script_name_override(monkeypatch: Any) -> None:
    monkeypatch.setenv(runtime.SCRIPT_NAME_ENV, "/models/digits/")
    request = request_for(function_url("GET", "/models/digits/model/metadata"))
    assert (request.script_name, request.path) == ("/models/digits", "/model/metadata")
    request = request_for(api_gateway_v1("GET", "/model/metadata"))
    assert (request.script_name, request.path) == ("/models/digits", "/model/metadata")
    monkeypatch.setenv(runtime.SCRIPT_NAME_ENV, "")
    request = request_for(event_for("apigateway-v2", "GET", "/model/metadata"))
    assert (request.script_name, request.path) == ("", "/prod/model/metadata")


def test_invalid_base64_body_is_a_400_result() -> None:
    event = function_url("POST", "/echo", "", [("Content-Type", "image/png")], b"\x89PNG")
    event["body"] = "not base64!"
    function = aws_lambda.Function(None, "/model/predict", aws_lambda.DEFAULT_RESULT_LIMIT)  # type: ignore
    payload = function.invoke(aws_lambda.Invocation("id", None, "", None, json.dumps(event).encode()))
    result = json.loads(payload.decode("utf-8"))
    assert result["statusCode"] == 400
    assert "not valid base64" in json.loads(result["body"])["error"]


class StandInRuntimeApi(object):
    """A loopback stand-in for the Runtime API that hands out given invocations, then goes away.

    The emulator sends no trace id; this one does, as Lambda does with active tracing.
    """

    def __init__(self, invocations: List[Tuple[Dict[str, str], bytes]]):
        self.invocations = list(invocations)
        self.posted = []  # type: List[Tuple[str, Dict[str, str], bytes]]
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if not stand_in.invocations:
                    self.send_response(500)  # the environment is going away
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    return
                headers, body = stand_in.invocations.pop(0)
                self.send_response(200)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stand_in.posted.append((self.path, dict(self.headers), body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever)
        self.thread.start()

    def address(self) -> str:
        return "127.0.0.1:%d" % self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_trace_id_is_exported_per_invocation(monkeypatch: Any) -> None:
    seen = []  # type: List[Tuple[Any, Optional[str]]]

    def app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        seen.append((environ[aws_lambda.ENVIRON_CONTEXT], os.environ.get("_X_AMZN_TRACE_ID")))
        start_response("204 No Content", [])
        return []

    event = json.dumps(function_url("GET", "/")).encode("utf-8")
    traced = {"Lambda-Runtime-Aws-Request-Id": "r1", "Lambda-Runtime-Deadline-Ms": "1795843661536",
              "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:f",
              "Lambda-Runtime-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"}
    untraced = {"Lambda-Runtime-Aws-Request-Id": "r2", "Lambda-Runtime-Deadline-Ms": "1795843661999"}
    stand_in = StandInRuntimeApi([(traced, event), (untraced, event)])
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    try:
        api = aws_lambda.RuntimeApi(stand_in.address())
        with pytest.raises(aws_lambda.RuntimeApiError):
            aws_lambda.serve(api, aws_lambda.Function(runtime.ModelApp(app), "/", aws_lambda.DEFAULT_RESULT_LIMIT))
    finally:
        stand_in.close()
    assert seen == [
        ({"request_id": "r1", "deadline_ms": 1795843661536, "trace_id": traced["Lambda-Runtime-Trace-Id"],
          "invoked_function_arn": traced["Lambda-Runtime-Invoked-Function-Arn"]}, traced["Lambda-Runtime-Trace-Id"]),
        ({"request_id": "r2", "deadline_ms": 1795843661999, "trace_id": None, "invoked_function_arn": ""}, None),
    ]
    assert [path for path, _, _ in stand_in.posted] == ["/2018-06-01/runtime/invocation/r1/response",
                                                        "/2018-06-01/runtime/invocation/r2/response"]
    assert json.loads(stand_in.posted[0][2].decode("utf-8"))["statusCode"] == 204
