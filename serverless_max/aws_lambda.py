"""AWS Lambda container images: a custom runtime on the Lambda Runtime API.

The model is loaded during the function's init phase (by ``main``, before ``run``); a load
failure is reported through ``POST /runtime/init/error``. Then the runtime loops: ``GET
/runtime/invocation/next`` brings an event; an HTTP event (API Gateway REST or HTTP API with
payload 1.0 or 2.0, a Lambda function URL, an Application Load Balancer) becomes one request to
the model's app, and its response goes back, shaped for the service that sent the event, with
``POST /runtime/invocation/<id>/response``. Anything else is answered with
``POST /runtime/invocation/<id>/error``.

| event                              | recognised by                         | answer                        |
|------------------------------------|---------------------------------------|-------------------------------|
| API Gateway REST / HTTP API 1.0    | ``httpMethod`` and ``requestContext`` | ``multiValueHeaders``         |
| HTTP API 2.0, function URL         | ``version`` ``"2.0"``                 | ``headers`` and ``cookies``   |
| ALB                                | ``requestContext.elb``                | ``statusDescription`` too     |
"""

import base64
import http.client
import json
import os
import re
import sys
import traceback
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote, unquote_to_bytes

from . import runtime
from .media_types import is_binary
from .runtime import BadRequest, ModelApp, Request, Response, log

RUNTIME_API_VERSION = "2018-06-01"
# Lambda's limit on a synchronous invocation's response: the serialised JSON, in bytes.
DEFAULT_RESULT_LIMIT = 6291556
ENVIRON_CONTEXT = "aws.lambda.context"
ENVIRON_EVENT = "aws.lambda.event"
TRACE_ENV = "_X_AMZN_TRACE_ID"

API_GATEWAY_V1 = "apigateway-v1"
API_GATEWAY_V2 = "apigateway-v2"
ALB = "alb"

UNSUPPORTED_EVENT = ("This function serves HTTP requests: API Gateway REST API or HTTP API (payload format 1.0 "
                     "or 2.0), Lambda function URL and Application Load Balancer events. This event is none of "
                     "those (%s).")

# Request headers that describe the connection to the gateway, not the request; Content-Length is
# recomputed from the body the app is given.
_DROPPED_REQUEST_HEADERS = frozenset(
    "connection keep-alive proxy-connection te trailer transfer-encoding upgrade content-length".split())
# Response headers the gateway sets itself.
_DROPPED_RESPONSE_HEADERS = frozenset("connection content-length keep-alive transfer-encoding".split())
_PATH_PARAMETER = re.compile(r"\{([^{}+]+)\+?\}")
_REASONS = http.client.responses


class UnsupportedEvent(Exception):
    """The event is not an HTTP request this runtime maps."""


class Invocation(object):
    """One event from ``/runtime/invocation/next`` and the headers that came with it."""

    def __init__(self, request_id: str, deadline_ms: Optional[int], function_arn: str, trace_id: Optional[str],
                 body: bytes):
        self.request_id = request_id
        self.deadline_ms = deadline_ms
        self.function_arn = function_arn
        self.trace_id = trace_id
        self.body = body

    def context(self) -> Dict[str, Any]:
        """What the app finds in ``environ["aws.lambda.context"]``."""
        return {"request_id": self.request_id, "deadline_ms": self.deadline_ms,
                "invoked_function_arn": self.function_arn, "trace_id": self.trace_id}


# ----------------------------------------------------------------------------- request side


def event_kind(event: Any) -> str:
    """Which HTTP event this is; UnsupportedEvent when it is none."""
    if not isinstance(event, dict):
        raise UnsupportedEvent("it is a JSON %s, not an object" % type(event).__name__)
    context = event.get("requestContext")
    if isinstance(context, dict):
        if isinstance(context.get("elb"), dict) and isinstance(event.get("httpMethod"), str):
            return ALB
        if event.get("version") == "2.0" and isinstance(context.get("http"), dict):
            return API_GATEWAY_V2
        if isinstance(event.get("httpMethod"), str):
            return API_GATEWAY_V1
    if isinstance(event.get("Records"), list):
        sources = sorted(set(str(record.get("eventSource") or record.get("EventSource") or "?")
                             for record in event["Records"] if isinstance(record, dict)))
        raise UnsupportedEvent("it holds Records from %s" % (", ".join(sources) or "an unknown source"))
    keys = ", ".join(sorted(event)[:8]) or "none"
    raise UnsupportedEvent("its keys are: %s" % keys)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BadRequest("%s must be a string" % what)
    return value


def _string_map(value: Any, what: str) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("%s must be an object" % what)
    return value


def _header_values(event: Dict[str, Any]) -> List[Tuple[str, List[str]]]:
    """The request headers as (name, values): from multiValueHeaders when the event has them."""
    multi = event.get("multiValueHeaders")
    if isinstance(multi, dict):
        pairs = []
        for name, values in multi.items():
            if values is None:
                continue
            if not isinstance(values, list):
                values = [values]
            pairs.append((name, [_text(value, "the %s header" % name) for value in values]))
        return pairs
    single = _string_map(event.get("headers"), "headers")
    return [(name, [_text(value, "the %s header" % name)]) for name, value in single.items() if value is not None]


def _wsgi_headers(pairs: List[Tuple[str, List[str]]], cookies: Optional[List[str]] = None) -> runtime.Headers:
    """WSGI header pairs: one per name, repeated values joined as HTTP allows.

    ``cookies`` (payload 2.0) become the one Cookie header, in place of any ``cookie`` header: a
    function URL sends the same cookies in both, so joining them would repeat every cookie.
    """
    merged = {}  # type: Dict[str, Tuple[str, List[str]]]
    for name, values in pairs:
        lower = name.lower()
        if lower in _DROPPED_REQUEST_HEADERS or not runtime.app_may_see_header(lower):
            continue
        merged.setdefault(lower, (name, []))[1].extend(values)
    if cookies:
        merged["cookie"] = (merged.get("cookie", ("cookie", []))[0], list(cookies))
    headers = []
    for lower, (name, values) in merged.items():
        joined = ("; " if lower == "cookie" else ", ").join(values)
        headers.append((name, runtime.wsgi_string(joined, "the %s header" % name)))
    return headers


def _query_from_parameters(event: Dict[str, Any], encoded: bool) -> str:
    """The query string from (multiValue)queryStringParameters.

    API Gateway REST gives the values decoded, so they are encoded again; ALB gives them exactly
    as they were in the URL. The order of different names is the event's, not the URL's.
    """
    multi = event.get("multiValueQueryStringParameters")
    if isinstance(multi, dict):
        items = [(name, values if isinstance(values, list) else [values]) for name, values in multi.items()]
    else:
        single = _string_map(event.get("queryStringParameters"), "queryStringParameters")
        items = [(name, [value]) for name, value in single.items()]
    parts = []
    for name, values in items:
        for value in values:
            if value is None:
                continue
            value = _text(value, "the query parameter %s" % name)
            if encoded:
                parts.append(name + "=" + value)
            else:
                parts.append(quote(name, safe="") + "=" + quote(value, safe=""))
    return "&".join(parts)


def _decoded_path(path: str, what: str) -> str:
    """A percent-encoded URL path as a WSGI string: decoded, one character per byte."""
    return unquote_to_bytes(runtime.wsgi_string(path, what).encode("latin-1")).decode("latin-1")


def _with_override(path: str) -> Optional[Tuple[str, str]]:
    """SERVERLESS_MAX_SCRIPT_NAME, when set: it is the prefix, removed from the path if there."""
    override = runtime.script_name_override()
    if override is None:
        return None
    rest = runtime.strip_prefix(path, override)
    return override, path if rest is None else rest


def _resource_path(event: Dict[str, Any]) -> Optional[str]:
    """The path below the API's root: the REST resource with its path parameters filled in."""
    resource = event.get("resource")
    parameters = event.get("pathParameters") or {}
    if not isinstance(resource, str) or not resource.startswith("/") or not isinstance(parameters, dict):
        return None
    missing = []

    def fill(match: Any) -> str:
        value = parameters.get(match.group(1))
        if not isinstance(value, str):
            missing.append(match.group(1))
            return ""
        return value

    filled = _PATH_PARAMETER.sub(fill, resource)
    if missing:
        return None
    return runtime.wsgi_string(filled, "pathParameters")


def _v1_prefix_and_path(event: Dict[str, Any], context: Dict[str, Any], http_api: bool) -> Tuple[str, str]:
    """SCRIPT_NAME and PATH_INFO of a payload 1.0 event.

    REST API, default endpoint: ``path`` lacks the stage, ``requestContext.path`` has it in front.
    REST API on a custom domain: ``path`` starts with the base path mapping; the resource with its
    path parameters is what lies below it. HTTP API (payload 1.0): ``path`` holds the stage when
    it is not ``$default``, already decoded.
    """
    raw = _text(event.get("path") or "", "path")
    path = runtime.wsgi_string(raw, "path") if http_api else _decoded_path(raw, "path")
    overridden = _with_override(path)
    if overridden is not None:
        return overridden
    stage = context.get("stage")
    if http_api:
        rest = runtime.strip_prefix(path, "/" + stage) if isinstance(stage, str) and stage != "$default" else None
        return ("/" + stage, rest) if rest is not None else ("", path)
    context_path = context.get("path")
    if isinstance(context_path, str) and path:
        context_path = _decoded_path(context_path, "requestContext.path")
        if len(context_path) > len(path) and context_path.endswith(path):
            return context_path[:-len(path)].rstrip("/"), path
        if path == "/" and context_path.startswith("/") and len(context_path) > 1:
            return context_path, ""  # the bare stage URL, without a final slash: the default path
    below = _resource_path(event)
    if below == "/" and len(path) > 1:
        # The API's root resource: the whole path is the base path, with or without a final slash
        # (without one, the request is for the bare base URL: the default path).
        return (path[:-1], "/") if path.endswith("/") else (path, "")
    if below is not None and len(path) > len(below) and path.endswith(below) and below.startswith("/"):
        return path[:-len(below)], below
    return "", path


def _v2_prefix_and_path(event: Dict[str, Any], context: Dict[str, Any]) -> Tuple[str, str]:
    """SCRIPT_NAME and PATH_INFO of a payload 2.0 event: a stage other than ``$default`` leads ``rawPath``.

    HTTP APIs give ``rawPath`` decoded; function URLs (``*.lambda-url.*``) percent-encoded.
    """
    raw = _text(event.get("rawPath") or "", "rawPath")
    function_url = ".lambda-url." in str(context.get("domainName", ""))
    path = _decoded_path(raw, "rawPath") if function_url else runtime.wsgi_string(raw, "rawPath")
    overridden = _with_override(path)
    if overridden is not None:
        return overridden
    stage = context.get("stage")
    if isinstance(stage, str) and stage and stage != "$default":
        rest = runtime.strip_prefix(path, "/" + stage)
        if rest is not None:
            return "/" + stage, rest
    return "", path


def _body(event: Dict[str, Any]) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    body = _text(body, "body")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body.encode("ascii"), validate=True)
        except (ValueError, UnicodeError):
            raise BadRequest("the body is marked isBase64Encoded but is not valid base64")
    try:
        return body.encode("utf-8")
    except UnicodeError:
        raise BadRequest("the body is not valid text (it holds a lone surrogate)")


def build_request(event: Dict[str, Any], kind: str, default_path: str) -> Request:
    """The HTTP request an API Gateway, function URL or ALB event stands for."""
    context = _string_map(event.get("requestContext"), "requestContext")
    cookies = None  # type: Optional[List[str]]
    if kind == API_GATEWAY_V2:
        http_context = _string_map(context.get("http"), "requestContext.http")
        method = _text(http_context.get("method"), "requestContext.http.method")
        script_name, path = _v2_prefix_and_path(event, context)
        query = runtime.wsgi_string(_text(event.get("rawQueryString") or "", "rawQueryString"), "rawQueryString")
        pairs = [(name, [_text(value, "the %s header" % name)])
                 for name, value in _string_map(event.get("headers"), "headers").items() if value is not None]
        raw_cookies = event.get("cookies") or []
        if not isinstance(raw_cookies, list):
            raise BadRequest("cookies must be a list")
        cookies = [_text(cookie, "a cookie") for cookie in raw_cookies]
        remote_addr = http_context.get("sourceIp")
    else:
        method = _text(event.get("httpMethod"), "httpMethod")
        if kind == ALB:
            raw = _text(event.get("path") or "", "path")
            path = _decoded_path(raw, "path")
            script_name, path = _with_override(path) or ("", path)
            query = runtime.wsgi_string(_query_from_parameters(event, encoded=True), "the query")
        else:
            script_name, path = _v1_prefix_and_path(event, context, http_api=event.get("version") == "1.0")
            query = runtime.wsgi_string(_query_from_parameters(event, encoded=False), "the query")
        pairs = _header_values(event)
        identity = context.get("identity")
        remote_addr = identity.get("sourceIp") if isinstance(identity, dict) else None
    if not runtime.is_token(method):
        raise BadRequest("the method %r is not an HTTP method name" % method)
    if path == "":
        path = default_path
    if not path.startswith("/"):
        raise BadRequest("the path must begin with /, got %r" % path)
    headers = _wsgi_headers(pairs, cookies)
    forwarded_proto = next((value for name, value in headers if name.lower() == "x-forwarded-proto"), "")
    scheme = forwarded_proto.split(",")[0].strip().lower() or ("http" if kind == ALB else "https")
    if scheme not in ("http", "https"):
        scheme = "https"
    if kind == ALB:
        # ALB puts the client first in X-Forwarded-For and has no other field for it.
        forwarded_for = next((value for name, value in headers if name.lower() == "x-forwarded-for"), "")
        remote_addr = forwarded_for.split(",")[0].strip() or None
    return Request(method.upper(), path, query, headers, _body(event), script_name=script_name, scheme=scheme,
                   remote_addr=remote_addr if isinstance(remote_addr, str) and remote_addr else "127.0.0.1")


# ----------------------------------------------------------------------------- response side


def _body_field(response: Response) -> Tuple[str, bool]:
    """The body as the result carries it: text when it is UTF-8 of a text type, else base64."""
    body = response.body
    content_type = response.header("Content-Type")
    if content_type is None or not is_binary(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def shape_result(response: Response, kind: str, multi_value: bool) -> Dict[str, Any]:
    """The result the event's service turns back into the HTTP response.

    Repeated headers (several Set-Cookie) survive: payload 2.0 takes cookies in ``cookies``,
    payload 1.0 and ALB with multi-value headers in ``multiValueHeaders``. An ALB target group
    without multi-value headers accepts one value per name: repeated values are joined with
    commas, and of several Set-Cookie headers only the last is kept (logged).
    """
    values = []  # type: List[Tuple[str, List[str]]]
    index = {}  # type: Dict[str, int]
    cookies = []  # type: List[str]
    for name, value in response.headers:
        lower = name.lower()
        if lower in _DROPPED_RESPONSE_HEADERS:
            continue
        if lower == "set-cookie" and kind == API_GATEWAY_V2:
            cookies.append(value)
            continue
        if lower not in index:
            index[lower] = len(values)
            values.append((name, []))
        values[index[lower]][1].append(value)
    body, encoded = _body_field(response)
    result = {"statusCode": response.status}  # type: Dict[str, Any]
    if kind == ALB:
        result["statusDescription"] = "%d %s" % (response.status, _REASONS.get(response.status, "Unknown"))
    if kind == API_GATEWAY_V1 or (kind == ALB and multi_value):
        result["multiValueHeaders"] = dict((name, list(found)) for name, found in values)
    else:
        headers = {}
        for name, found in values:
            if name.lower() == "set-cookie" and len(found) > 1:
                log("warning: an ALB target group without multi-value headers carries one Set-Cookie; "
                    "%d were answered, the last is sent (enable multi-value headers to keep all)" % len(found))
                headers[name] = found[-1]
            else:
                headers[name] = ", ".join(found)
        result["headers"] = headers
    if cookies:
        result["cookies"] = cookies
    result["body"] = body
    result["isBase64Encoded"] = encoded
    return result


def encode_result(response: Response, kind: str, multi_value: bool, limit: int) -> bytes:
    """The serialised result, or a 413 JSON error in its place when it is over Lambda's limit."""
    payload = json.dumps(shape_result(response, kind, multi_value), ensure_ascii=False,
                         separators=(",", ":")).encode("utf-8")
    if len(payload) <= limit:
        return payload
    message = ("the response is %d bytes once encoded for Lambda, over its response limit of %d bytes; "
               "send a smaller input" % (len(payload), limit))
    log(message)
    error = runtime.error_response(413, message)
    return json.dumps(shape_result(error, kind, multi_value), separators=(",", ":")).encode("utf-8")


# ----------------------------------------------------------------------------- the Runtime API


class RuntimeApiError(Exception):
    """The Runtime API is gone or answered what it never should: the environment is going away."""


class RuntimeApi(object):
    """A client of the Lambda Runtime API at ``AWS_LAMBDA_RUNTIME_API`` (host:port), one connection kept."""

    def __init__(self, address: str):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise RuntimeApiError("AWS_LAMBDA_RUNTIME_API=%r is not host:port" % address)
        self.host = host.strip("[]")
        self.port = int(port)
        self.connection = None  # type: Optional[http.client.HTTPConnection]

    def _request(self, method: str, path: str, body: Optional[bytes] = None,
                 headers: Optional[Dict[str, str]] = None) -> Tuple[int, http.client.HTTPResponse, bytes]:
        url = "/%s/runtime/%s" % (RUNTIME_API_VERSION, path)
        for attempt in (1, 2):
            if self.connection is None:
                # No timeout: /invocation/next blocks until there is an event, which may be hours.
                self.connection = http.client.HTTPConnection(self.host, self.port)
            try:
                self.connection.request(method, url, body=body, headers=headers or {})
                response = self.connection.getresponse()
                return response.status, response, response.read()
            except (OSError, http.client.HTTPException) as error:
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise RuntimeApiError("%s %s failed: %s" % (method, url, error))
        raise AssertionError("unreachable")

    def next_invocation(self) -> Invocation:
        status, response, body = self._request("GET", "invocation/next")
        request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
        if status != 200 or not request_id:
            raise RuntimeApiError("invocation/next answered %d without a request id" % status)
        deadline = response.getheader("Lambda-Runtime-Deadline-Ms", "")
        return Invocation(request_id, int(deadline) if deadline.isdigit() else None,
                          response.getheader("Lambda-Runtime-Invoked-Function-Arn", ""),
                          response.getheader("Lambda-Runtime-Trace-Id"), body)

    def respond(self, request_id: str, payload: bytes) -> None:
        status, _, reply = self._request("POST", "invocation/%s/response" % quote(request_id, safe=""), payload,
                                         {"Content-Type": "application/json"})
        if status != 202:
            log("the Runtime API refused the response of %s: %d %s" % (request_id, status, reply[:300]))

    def fail(self, request_id: str, error_type: str, message: str) -> None:
        status, _, reply = self._request("POST", "invocation/%s/error" % quote(request_id, safe=""),
                                         _error_body(error_type, message), _error_headers(error_type))
        if status != 202:
            log("the Runtime API refused the error of %s: %d %s" % (request_id, status, reply[:300]))

    def init_error(self, error_type: str, message: str) -> None:
        self._request("POST", "init/error", _error_body(error_type, message), _error_headers(error_type))


def _error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type, "stackTrace": []}).encode("utf-8")


def _error_headers(error_type: str) -> Dict[str, str]:
    return {"Content-Type": "application/json", "Lambda-Runtime-Function-Error-Type": "Runtime." + error_type}


# ----------------------------------------------------------------------------- the loop


class InvocationError(Exception):
    """An invocation answered with ``/invocation/<id>/error`` rather than an HTTP response."""

    def __init__(self, error_type: str, message: str):
        Exception.__init__(self, message)
        self.error_type = error_type
        self.message = message


class Function(object):
    """What an invocation needs: the model's app and the settings."""

    def __init__(self, model: ModelApp, default_path: str, result_limit: int):
        self.model = model
        self.default_path = default_path
        self.result_limit = result_limit

    def invoke(self, invocation: Invocation) -> bytes:
        """The serialised result for an HTTP event; InvocationError for any other event."""
        try:
            event = json.loads(invocation.body.decode("utf-8"))
            kind = event_kind(event)
        except (ValueError, UnicodeError, RecursionError):
            raise InvocationError("UnsupportedEvent", UNSUPPORTED_EVENT % "it is not JSON")
        except UnsupportedEvent as error:
            log(UNSUPPORTED_EVENT % error)
            raise InvocationError("UnsupportedEvent", UNSUPPORTED_EVENT % error)
        invocation.body = b""  # parsed: free the text before the model runs
        multi_value = isinstance(event.get("multiValueHeaders"), dict)
        default_path = os.environ.get(runtime.DEFAULT_PATH_ENV) or self.default_path
        try:
            request = build_request(event, kind, default_path)
        except (BadRequest, UnicodeError, RecursionError) as error:
            log("bad request: %s" % error)
            response = runtime.error_response(400, "the %s event cannot be served: %s" % (kind, error))
        else:
            event.pop("body", None)  # the request holds it now; the app sees the rest of the event
            request.extra_environ[ENVIRON_CONTEXT] = invocation.context()
            request.extra_environ[ENVIRON_EVENT] = event
            response = self.model.respond(request)
        limit = runtime.byte_limit(runtime.RESULT_LIMIT_ENV, self.result_limit)
        return encode_result(response, kind, multi_value, limit)


def serve(api: RuntimeApi, function: Function) -> None:
    """Answer invocations until the Runtime API goes away (RuntimeApiError)."""
    while True:
        invocation = api.next_invocation()
        if invocation.trace_id:
            os.environ[TRACE_ENV] = invocation.trace_id
        else:
            os.environ.pop(TRACE_ENV, None)
        try:
            payload = function.invoke(invocation)
        except InvocationError as error:
            api.fail(invocation.request_id, error.error_type, error.message)
            continue
        except Exception:  # a bug here must still answer the invocation, and the loop goes on
            traceback.print_exc()
            api.fail(invocation.request_id, "InternalError", "the serverless-max runtime failed on this "
                                                             "invocation; see the function's logs")
            continue
        api.respond(invocation.request_id, payload)


def run(model: Optional[ModelApp], load_error: Optional[str], options: Any) -> None:
    """Serve invocations from the Runtime API named by AWS_LAMBDA_RUNTIME_API until it goes away."""
    try:
        api = RuntimeApi(os.environ.get("AWS_LAMBDA_RUNTIME_API", ""))
        if model is None:
            # The details are in the logs already; the message names the exception's type only.
            api.init_error("ModelLoadError", load_error or "the model app failed to load; see the logs")
            sys.exit(1)
        result_limit = options.result_limit or DEFAULT_RESULT_LIMIT
        log("serving Lambda invocations from the Runtime API at %s:%d" % (api.host, api.port))
        serve(api, Function(model, options.default_path, result_limit))
    except RuntimeApiError as error:
        log("stopping: %s" % error)
        sys.exit(1)
