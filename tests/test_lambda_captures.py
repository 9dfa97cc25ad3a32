"""Events recorded from AWS's services (tests/data/lambda-events/, see its README for each file's
source) through the runtime's event mapping into a real Flask app, in process.

Each expectation is read off the event itself: what a client sent to the function URL, HTTP API,
REST API or load balancer that produced it, as the app should see it in its WSGI environ.
"""

import base64
import json
import os
from typing import Any, Dict, List

import pytest
from flask import Flask, request

from serverless_max import aws_lambda, runtime
from support import ROOT

EVENTS = os.path.join(ROOT, "tests", "data", "lambda-events")
FUNCTION_URL_HOST = "lambda-url-id.lambda-url.us-west-2.on.aws"


def capture_app() -> Flask:
    # Paths given: Flask 1.0 cannot find them itself under pytest's import hook.
    app = Flask(__name__, root_path=EVENTS, instance_path=EVENTS)

    @app.route("/", defaults={"rest": ""}, methods=["GET", "POST"])
    @app.route("/<path:rest>", methods=["GET", "POST"])
    def seen(rest: str) -> str:
        environ = request.environ
        return json.dumps({
            "method": request.method, "script_name": environ.get("SCRIPT_NAME", ""), "path": environ["PATH_INFO"],
            "args": dict((name, request.args.getlist(name)) for name in request.args),
            "cookie": environ.get("HTTP_COOKIE"),
            "cookies": dict(request.cookies.items()),
            "host": environ.get("HTTP_HOST"), "scheme": environ["wsgi.url_scheme"],
            "remote_addr": environ.get("REMOTE_ADDR"), "content_type": environ.get("CONTENT_TYPE", ""),
            "body_base64": base64.b64encode(request.get_data()).decode("ascii"),
            "headers": dict((name.lower(), value) for name, value in request.headers.items()),
        })

    return app


FUNCTION = aws_lambda.Function(runtime.ModelApp(capture_app()), "/model/predict", aws_lambda.DEFAULT_RESULT_LIMIT)


def invoke(name: str) -> Dict[str, Any]:
    with open(os.path.join(EVENTS, name), "rb") as event:
        payload = FUNCTION.invoke(aws_lambda.Invocation("request-id", None, "", None, event.read()))
    return json.loads(payload.decode("utf-8"))


def seen_by_the_app(result: Dict[str, Any]) -> Dict[str, Any]:
    assert result["statusCode"] == 200, result
    seen = json.loads(result["body"])
    seen["body"] = base64.b64decode(seen.pop("body_base64"))
    return seen


# What the app must see for each event: only the fields named are compared.
EXPECTED = {
    # Function URLs: the cookies come in `cookies` and in the `cookie` header; the app sees them once.
    "aws-lambda-go/function-url-request-with-headers-and-cookies-and-text-body.json": dict(
        method="POST", script_name="", path="/hello", args={"hello": ["world"], "foo": ["bar"]},
        cookie="foo=bar; hello=hello", cookies={"foo": "bar", "hello": "hello"}, host=FUNCTION_URL_HOST,
        scheme="https", remote_addr="127.0.0.1", content_type="application/json", body=b'{"hello": "world"}',
        headers={"header1": "h1", "header2": "h1,h2", "header3": "h3", "content-length": "18"}),
    "aws-lambda-go/function-url-domain-only-request-with-base64-encoded-body.json": dict(
        method="POST", script_name="", path="/", args={}, cookie=None, host=FUNCTION_URL_HOST, scheme="https",
        content_type="idk", body=b"<idk/>"),
    "aws-lambda-go/function-url-domain-only-get-request.json": dict(
        method="GET", script_name="", path="/", args={}, cookie=None, host=FUNCTION_URL_HOST, body=b""),
    "aws-lambda-go/function-url-domain-only-get-request-trailing-slash.json": dict(
        method="GET", script_name="", path="/", args={}, cookie=None, host=FUNCTION_URL_HOST, body=b""),
    "aws-lambda-rust-runtime/lambda_function_url_request.json": dict(
        method="GET", script_name="", path="/my/path", args={"parameter1": ["value1", "value2"],
                                                             "parameter2": ["value"]},
        cookie="test=hi", cookies={"test": "hi"}, host="id.lambda-url.eu-west-2.on.aws", scheme="https",
        remote_addr="65.78.31.245", body=b""),
    # HTTP APIs, payload 2.0.
    "aws-lambda-go/apigw-v2-request-no-authorizer.json": dict(
        method="GET", script_name="", path="/", args={}, cookie=None,
        host="aaaaaaaaaa.execute-api.us-west-2.amazonaws.com", scheme="https", remote_addr="1.2.3.4", body=b""),
    "aws-lambda-rust-runtime/apigw_v2_proxy_request.json": dict(
        method="POST", script_name="", path="/my/path",
        args={"parameter1": ["value1", "value2"], "parameter2": ["value"]}, cookie="cookie1=value1; cookie2=value2",
        cookies={"cookie1": "value1", "cookie2": "value2"}, body=b"Hello from Lambda",
        headers={"header1": "value1", "header2": "value2"}),
    "aws-lambda-rust-runtime/apigw_v2_proxy_request_with_stage_in_path.json": dict(
        method="POST", script_name="/Prod", path="/my/path", cookie="cookie1=value1; cookie2=value2",
        body=b"Hello from Lambda"),
    # REST APIs (payload 1.0): query values come decoded, in (multiValue)queryStringParameters.
    "aws-lambda-go/apigw-request.json": dict(
        method="POST", script_name="", path="/hello/world", args={"name": ["me"]}, cookie=None,
        host="gy415nuibc.execute-api.us-east-1.amazonaws.com", scheme="https", remote_addr="192.168.196.186",
        content_type="application/json", body=b'{\r\n\t"a": 1\r\n}', headers={"headername": "headerValue"}),
    "aws-lambda-rust-runtime/apigw_proxy_request.json": dict(
        method="GET", script_name="", path="/hello", args={"name": ["me"]},
        host="wt6mne2s9k.execute-api.us-west-2.amazonaws.com", scheme="https", remote_addr="192.168.100.1", body=b""),
    "aws-lambda-rust-runtime/apigw_multi_value_proxy_request.json": dict(
        method="POST", path="/hello/world", args={"name": ["me"], "multiValueName": ["you", "me"]},
        body=b'{\r\n\t"a": 1\r\n}'),
    # Application Load Balancers: the client is the first X-Forwarded-For address; query values are
    # as they were in the URL.
    "aws-lambda-go/alb-lambda-target-request-headers-only.json": dict(
        method="GET", script_name="", path="/", args={"key": ["hello"]}, cookie=None,
        host="lambda-test-alb-1334523864.us-east-1.elb.amazonaws.com", scheme="http", remote_addr="25.12.198.67",
        body=b"", headers={"x-myheader": "123"}),
    "aws-lambda-go/alb-lambda-target-request-multivalue-headers.json": dict(
        method="GET", script_name="", path="/", args={"key": ["hello"]}, cookie=None,
        host="lambda-test-alb-1234567.us-east-1.elb.amazonaws.com", scheme="http", remote_addr="72.21.198.67",
        body=b"", headers={"x-myheader": "123"}),
    "aws-lambda-rust-runtime/alb_multi_value_request_encoded_query_parameters.json": dict(
        method="GET", script_name="", path="/", args={"myKey": ["?showAll=true", "?showAll=false"]},
        cookie="name1=value1; name2=value2", cookies={"name1": "value1", "name2": "value2"},
        host="lambda-846800462-us-east-2.elb.amazonaws.com", scheme="https", remote_addr="72.21.198.66",
        content_type="text/plain", body=b"request_body"),
}


def fixture_files() -> List[str]:
    return sorted(os.path.join(folder, name) for folder in os.listdir(EVENTS)
                  if os.path.isdir(os.path.join(EVENTS, folder))
                  for name in os.listdir(os.path.join(EVENTS, folder)) if name.endswith(".json"))


def test_every_fixture_has_expectations() -> None:
    assert fixture_files() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_recorded_event_reaches_the_app_as_the_client_sent_it(name: str) -> None:
    seen = seen_by_the_app(invoke(name))
    expected = EXPECTED[name]
    for field, value in expected.items():
        if field == "headers":
            assert dict((key, seen["headers"].get(key)) for key in value) == value, name
        else:
            assert seen[field] == value, (name, field)
    # Connection-level headers never reach the app; the runtime counts the body itself.
    assert "connection" not in seen["headers"]
    assert seen["headers"].get("content-length", "0") == str(len(seen["body"]))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_answer_takes_the_shape_of_the_service_that_sent_the_event(name: str) -> None:
    result = invoke(name)
    with open(os.path.join(EVENTS, name)) as event_file:
        event = json.load(event_file)
    if event.get("version") == "2.0":
        assert "headers" in result and "multiValueHeaders" not in result
    elif "elb" in event["requestContext"]:
        assert result["statusDescription"] == "200 OK"
        assert ("multiValueHeaders" in result) == ("multiValueHeaders" in event)
    else:
        assert "multiValueHeaders" in result
    assert result["isBase64Encoded"] is False  # JSON text from the app comes back as text


def test_function_url_cookies_reach_the_app_once() -> None:
    # A function URL event carries the cookies in `cookies` and in the `cookie` header (live capture
    # function-url-request-with-headers-and-cookies-and-text-body.json); neither alone is doubled.
    with open(os.path.join(EVENTS, "aws-lambda-go",
                           "function-url-request-with-headers-and-cookies-and-text-body.json")) as event_file:
        event = json.load(event_file)
    assert event["cookies"] == ["foo=bar", "hello=hello"] and event["headers"]["cookie"] == "foo=bar; hello=hello"
    for cookies, header in ((["foo=bar", "hello=hello"], "foo=bar; hello=hello"),
                            (["foo=bar", "hello=hello"], None), (None, "foo=bar; hello=hello")):
        changed = json.loads(json.dumps(event))
        if cookies is None:
            del changed["cookies"]
        if header is None:
            del changed["headers"]["cookie"]
        request = aws_lambda.build_request(changed, aws_lambda.API_GATEWAY_V2, "/")
        assert [value for name, value in request.headers if name.lower() == "cookie"] == ["foo=bar; hello=hello"]
