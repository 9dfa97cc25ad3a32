#!/usr/bin/env python3
"""A local Apache OpenWhisk Web Action endpoint, like `sam local start-api` for OpenWhisk.

    python local_endpoint.py examples/max-example-digit-classifier
    curl -F "image=@examples/max-example-digit-classifier/samples/digit-3.png" -XPOST \\
        http://127.0.0.1:3233/api/v1/web/guest/default/max-example-digit-classifier

It stands in for the two platform parts between a web client and an action container: the
controller, which turns a request to /api/v1/web/<namespace>/<package>/<action> into the action's
parameters and turns the result back into an HTTP response, and the invoker, which sends /init once
and one /run per activation to the container and reads its reply. The rules follow Apache
OpenWhisk's source (the controller's WebActions.scala, the invoker's container clients, akka-http's
media types and URI rendering), quirks included, so curl shows here what it shows in front of the
deployed action.

An ACTION is a model directory, served by the shim (openwhisk.py) started as a local process, or
NAME=http://HOST:PORT, an action container already listening there. Standard library only; runs on
Python 3.6 and later.
"""

import argparse
import base64
import collections
import decimal
import glob
import http.client
import json
import os
import random
import re
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote_to_bytes, urlsplit

from serverless_max import media_types

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL_DIR = os.path.join(HERE, "examples", "max-example-digit-classifier")
DEFAULT_SHIM = os.path.join(HERE, "openwhisk.py")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3233
DEFAULT_NAMESPACE = "guest"
# whisk.activation.payload.max: the controller's request limit, and the invoker's limit on a /run reply.
DEFAULT_LIMIT = 1024 * 1024
# The controller's wait for a web action's result (maxWaitForBlockingActivation), and the default time limit.
DEFAULT_TIMEOUT = 60.0
# How long an action may take to open its port: MAX models load their weights before listening.
START_TIMEOUT = 300.0
STOP_TIMEOUT = 10.0
RECENT_LINES = 20
ACTION_VERSION = "0.0.1"
SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
RESULT_LIMIT_ENV = "SERVERLESS_MAX_RESULT_LIMIT"
WEB_PREFIX = b"/api/v1/web/"
TRANSACTION_HEADER = "X-Request-ID"
ACTIVATION_HEADER = "x-openwhisk-activation-id"
ALLOWED_METHODS = ("GET", "DELETE", "POST", "PUT", "HEAD", "OPTIONS", "PATCH")
CORS_METHODS = "OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH"
CORS_HEADERS = "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"
EXTENSIONS = (".http", ".json", ".html", ".svg", ".text")
RESERVED_PARAMS = frozenset(["__ow_method", "__ow_headers", "__ow_path", "__ow_user", "__ow_query", "__ow_body"])
# Response headers akka-http never renders from a raw header: it sets them itself.
SUPPRESSED_HEADERS = frozenset(["content-type", "content-length", "transfer-encoding", "date", "server", "connection"])

# The controller's messages (object Messages in ErrorResponse.scala) and akka-http's default rejections.
RESOURCE_NOT_FOUND = "The requested resource does not exist."
ROUTE_NOT_FOUND = "The requested resource could not be found."
ERROR_PROCESSING = "There was an error processing your request."
RESPONSE_NOT_READY = "Response not yet ready."
PARAMETERS_NOT_ALLOWED = "Request defines parameters that are not allowed (e.g., reserved properties)."
PROPERTY_NOT_FOUND = "Response does not include requested property."
UNKNOWN_CONTENT_TYPE = "Response did not specify a known content-type."
CONTENT_TYPE_MISMATCH = "Response type in header did not match generated content type."
ABNORMAL_RUN = "The action did not produce a valid response and exited unexpectedly."

# Status codes akka-http knows; the controller refuses any other statusCode in a result.
REGISTERED_STATUS_CODES = frozenset(
    list(range(100, 104)) + list(range(200, 209)) + [226] + list(range(300, 306)) + [307, 308]
    + list(range(400, 419)) + list(range(420, 427)) + [428, 429, 431, 449, 450, 451]
    + list(range(500, 512)) + [598, 599])
NO_BODY_STATUSES = frozenset([204, 205, 304])

# akka-http's registered media types (the shim holds the table). Text types with a fixed charset are
# rendered without one; the other text types carry '; charset=UTF-8' in a response.
TEXT_FIXED_CHARSET = frozenset(
    """
    application/json application/json-patch+json application/merge-patch+json application/problem+json
    application/vnd.api+json application/x-www-form-urlencoded text/event-stream
    """.split())
TEXT_OPEN_CHARSET = media_types.REGISTERED_TEXT_TYPES - TEXT_FIXED_CHARSET
BINARY_TYPES = media_types.REGISTERED_BINARY_TYPES
REGISTERED_TYPES = BINARY_TYPES | TEXT_FIXED_CHARSET | TEXT_OPEN_CHARSET
# akka-http's registered charsets, by the spellings clients use; others are passed on as written.
CHARSET_NAMES = {"utf-8": "UTF-8", "utf8": "UTF-8", "iso-8859-1": "ISO-8859-1", "latin1": "ISO-8859-1",
                 "us-ascii": "US-ASCII", "ascii": "US-ASCII", "utf-16": "UTF-16", "utf-16be": "UTF-16BE",
                 "utf-16le": "UTF-16LE"}

_TOKEN = re.compile(r"\A[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_ENTITY_NAME = re.compile(r"\A([\w]|[\w][\w@ .-]*[\w@.-]+)\Z", re.ASCII)
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_BASE64_ALPHABET = frozenset(string.ascii_letters + string.digits + "+/")
_JAVA_WHITESPACE = "".join(chr(code) for code in range(33))  # what java.lang.String.trim strips
# Characters akka-http leaves unencoded when it renders a query (strict-query-char-np) or a path segment.
_QUERY_SAFE = frozenset(string.ascii_letters + string.digits + "-._~!$'()*,@:/?")
_PATH_SAFE = frozenset(string.ascii_letters + string.digits + "-._~!$&'()*+,;=@:")
_TID_CHARACTERS = string.ascii_letters + string.digits

SUCCESS, APPLICATION_ERROR, DEVELOPER_ERROR, NOT_READY = "success", "application error", "developer error", "not ready"

_output_lock = threading.Lock()


def say(line: str) -> None:
    """One line on stdout: logs from several threads and actions never interleave mid-line."""
    with _output_lock:
        # Bytes, so that any log text prints whatever the locale's encoding is.
        sys.stdout.buffer.write(line.encode("utf-8", "replace") + b"\n")
        sys.stdout.flush()


class UsageError(Exception):
    """The command line asks for something that cannot be served."""


class ActionStartError(Exception):
    """An action did not start or did not accept /init."""


# ----------------------------------------------------------------------------- JSON as spray-json does it


def parse_json(text: str) -> Any:
    """Parse JSON keeping numbers as written (Decimal), as spray-json's BigDecimal does; no NaN."""
    return json.loads(text, parse_float=decimal.Decimal, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError("%s is not JSON" % name)


def render_json(value: Any, pretty: bool = False, indent: int = 0) -> str:
    """spray-json's CompactPrinter, or its PrettyPrinter (objects indented by 2, arrays on one line)."""
    if isinstance(value, dict):
        if not pretty:
            return "{" + ",".join(_json_string(k) + ":" + render_json(v) for k, v in value.items()) + "}"
        inner = " " * (indent + 2)
        members = ",\n".join(inner + _json_string(k) + ": " + render_json(v, True, indent + 2)
                             for k, v in value.items())
        return "{\n" + members + "\n" + " " * indent + "}"
    if isinstance(value, list):
        return "[" + (", " if pretty else ",").join(render_json(v, pretty, indent) for v in value) + "]"
    if isinstance(value, str):
        return _json_string(value)
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)  # int or Decimal, printed like java.math.BigDecimal.toString


def _json_string(text: str) -> str:
    # Escapes exactly what spray-json escapes: quote, backslash and control characters.
    return json.dumps(text, ensure_ascii=False)


# ----------------------------------------------------------------------------- media types as akka-http models them


class MediaType(object):
    """A Content-Type value: binary, or text whose charset is fixed (never rendered) or open."""

    def __init__(self, main: str, sub: str, params: List[Tuple[str, str]], charset: Optional[str]):
        self.main = main.lower()
        self.essence = self.main + "/" + sub.lower()
        self.params = params
        self.charset = charset
        # A registered type renders with its registered (lowercase) name; another keeps its subtype's case.
        registered = self.essence in REGISTERED_TYPES or self.main == "multipart"
        self.name = self.essence if registered else self.main + "/" + sub
        if self.main == "multipart" or self.essence in BINARY_TYPES:
            self.kind = "binary"
        elif self.essence in TEXT_FIXED_CHARSET:
            self.kind = "fixed"
        elif self.essence in TEXT_OPEN_CHARSET or charset is not None:
            self.kind = "open"
        else:
            self.kind = "binary"  # an unregistered type without a charset

    @property
    def is_json_family(self) -> bool:
        return self.essence == "application/json" or self.essence.endswith("+json")

    def render(self, charset: Optional[str]) -> str:
        rendered = self.name + "".join("; %s=%s" % (key, _quote_parameter(value)) for key, value in self.params)
        if self.kind == "open" and charset is not None:
            rendered += "; charset=" + charset
        return rendered


def parse_media_type(value: str) -> Optional[MediaType]:
    """akka-http's parse of a Content-Type value, or None when it is not one."""
    media, *parameters = value.split(";")
    main, slash, sub = media.strip().partition("/")
    if not slash or not _TOKEN.match(main) or not _TOKEN.match(sub):
        return None
    params = []  # type: List[Tuple[str, str]]
    charset = None
    for parameter in parameters:
        if not parameter.strip():
            continue
        key, equals, raw = parameter.strip().partition("=")
        key, raw = key.strip().lower(), raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif not _TOKEN.match(raw):
            return None
        if not equals or not _TOKEN.match(key):
            return None
        if key == "charset":
            charset = CHARSET_NAMES.get(raw.lower(), raw)
        else:
            params.append((key, raw))
    return MediaType(main, sub, params, charset)


def _quote_parameter(value: str) -> str:
    if _TOKEN.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


OCTET_STREAM = MediaType("application", "octet-stream", [], None)
TEXT_HTML = MediaType("text", "html", [], None)
APPLICATION_JSON = MediaType("application", "json", [], None)


# ----------------------------------------------------------------------------- base64 as the JVM does it


def looks_like_base64(text: str) -> bool:
    """Exec.isBinaryCode: the trimmed text is non-empty, a multiple of 4 long, and padded base64."""
    trimmed = text.strip(_JAVA_WHITESPACE)
    data = trimmed.rstrip("=")
    return (len(trimmed) > 0 and len(trimmed) % 4 == 0 and len(trimmed) - len(data) <= 2
            and set(data) <= _BASE64_ALPHABET)


def decode_base64(text: str) -> Optional[bytes]:
    """java.util.Base64's basic decoder: no whitespace, padding optional but exact; None when invalid."""
    data = text.rstrip("=")
    padding = len(text) - len(data)
    remainder = len(data) % 4
    if not set(data) <= _BASE64_ALPHABET or remainder == 1 or (padding and remainder + padding != 4):
        return None
    return base64.b64decode(data + "=" * (-len(data) % 4))


# ----------------------------------------------------------------------------- the URL as akka-http reads it


class WebRoute(object):
    """/api/v1/web/<namespace>/<package>/<action>[.<ext>][<path>], decoded."""

    def __init__(self, namespace: str, package: str, action: str, extension: str, path: str):
        self.namespace = namespace
        self.package = package
        self.action = action
        self.extension = extension
        self.path = path


def match_route(raw_path: bytes) -> Optional[WebRoute]:
    if not raw_path.startswith(WEB_PREFIX):
        return None
    segments = raw_path[len(WEB_PREFIX):].split(b"/")
    if len(segments) < 3:
        return None
    names = [_decode(segment, plus_is_space=False) for segment in segments[:3]]
    if not all(_ENTITY_NAME.match(name) for name in names):
        return None
    namespace, package, action = names
    extension = next((ext for ext in EXTENSIONS if action.endswith(ext)), ".http")
    if action.endswith(extension):
        action = action[:-len(extension)]
    # The unmatched path, re-rendered: decoded, then encoded again by akka's rules (%7e -> ~, " -> %22).
    path = "".join("/" + _encode(_decode(segment, plus_is_space=False), _PATH_SAFE, False) for segment in segments[3:])
    return WebRoute(namespace, package, action, extension, path)


def parse_query(raw: bytes) -> List[Tuple[str, Optional[str]]]:
    """The query's pairs, decoded ('+' is a space); None marks a key written without '='."""
    if not raw:
        return []
    pairs = []  # type: List[Tuple[str, Optional[str]]]
    for piece in raw.split(b"&"):
        key, equals, value = piece.partition(b"=")
        pairs.append((_decode(key, True), _decode(value, True) if equals else None))
    return pairs


def render_query(pairs: List[Tuple[str, Optional[str]]]) -> str:
    """Uri.Query.toString: every pair re-encoded, spaces as '+'."""
    return "&".join(_encode(key, _QUERY_SAFE, True) + ("" if value is None else "=" + _encode(value, _QUERY_SAFE, True))
                    for key, value in pairs)


def _decode(raw: bytes, plus_is_space: bool) -> str:
    if plus_is_space:
        raw = raw.replace(b"+", b" ")
    return unquote_to_bytes(raw).decode("utf-8", "replace")


def _encode(text: str, safe: frozenset, space_as_plus: bool) -> str:
    out = []
    for character in text:
        if character in safe:
            out.append(character)
        elif character == " " and space_as_plus:
            out.append("+")
        else:
            out.append("".join("%%%02X" % byte for byte in character.encode("utf-8", "replace")))
    return "".join(out)


# ----------------------------------------------------------------------------- request -> action parameters


class Reply(object):
    """An HTTP response the endpoint sends: status, headers, body and its Content-Type."""

    def __init__(self, status: int, headers: Optional[List[Tuple[str, str]]] = None, body: bytes = b"",
                 content_type: Optional[str] = None):
        self.status = status
        self.headers = headers or []
        self.body = body
        self.content_type = content_type


def error_reply(status: int, message: str, transaction_id: str) -> Reply:
    """The controller's terminate(): {"error", "code"} pretty-printed."""
    body = render_json({"error": message.strip(), "code": transaction_id}, pretty=True)
    return Reply(status, body=body.encode("utf-8"), content_type="application/json")


def rejection_reply(status: int, message: str, transaction_id: str) -> Reply:
    """akka-http's default rejection, wrapped by the controller's rejection handler (compact JSON)."""
    body = render_json({"error": message, "code": transaction_id})
    return Reply(status, body=body.encode("utf-8"), content_type="application/json")


class RequestRejected(Exception):
    """The controller refuses the request before any activation.

    `in_route` tells a refusal made inside the web route (it gets the CORS headers) from an akka
    rejection (it does not).
    """

    def __init__(self, reply: Reply, in_route: bool):
        Exception.__init__(self, reply.status)
        self.reply = reply
        self.in_route = in_route


def build_params(method: str, route: WebRoute, header_items: List[Tuple[str, str]], raw_query: bytes, body: bytes,
                 raw: bool, transaction_id: str) -> Dict[str, Any]:
    """Context.toActionArgument: the __ow_* parameters (and, without --web raw, the merged ones)."""
    ow_headers = {}  # type: Dict[str, str]
    declared = None  # type: Optional[MediaType]
    for name, value in header_items:
        lower = name.lower()
        if lower in ("content-length", "transfer-encoding"):
            continue  # akka models these in the entity, not as headers
        if lower == "content-type":
            parsed = parse_media_type(value)
            if parsed is not None:
                declared = declared or parsed
                continue
        ow_headers[lower] = value  # a repeated header keeps its last value
    entity_type = declared or (OCTET_STREAM if body else None)
    if entity_type is not None:
        ow_headers["content-type"] = entity_type.render(entity_type.charset)

    pairs = parse_query(raw_query)
    params = {"__ow_method": method.lower(), "__ow_headers": ow_headers,
              "__ow_path": route.path}  # type: Dict[str, Any]
    has_body, body_value = _body_value(entity_type, body, raw, transaction_id)
    if raw:
        params["__ow_query"] = render_query(pairs)
        params["__ow_body"] = body_value if has_body else ""
        return params
    # A JSON object or a form is merged into the parameters (after the query: the body wins); any
    # other body is __ow_body.
    query = dict((key, value or "") for key, value in pairs)
    fields = body_value if isinstance(body_value, dict) else {}
    if RESERVED_PARAMS & (set(query) | set(fields)):
        raise RequestRejected(error_reply(400, PARAMETERS_NOT_ALLOWED, transaction_id), in_route=True)
    params.update(query)
    params.update(fields)
    if has_body and not isinstance(body_value, dict):
        params["__ow_body"] = body_value
    return params


def _body_value(entity_type: Optional[MediaType], body: bytes, raw: bool, transaction_id: str) -> Tuple[bool, Any]:
    """extractEntityAndProcessRequest: whether there is a body parameter, and its value."""
    if entity_type is None:
        return False, None
    if not raw and entity_type.is_json_family:
        if not body:
            return False, None
        try:
            return True, parse_json(body.decode("utf-8", "replace"))
        except ValueError as error:
            message = "The request content was malformed:\n%s" % error
            raise RequestRejected(rejection_reply(400, message, transaction_id), in_route=False)
    if not raw and entity_type.essence == "application/x-www-form-urlencoded":
        return True, dict((key, value or "") for key, value in parse_query(body))
    if entity_type.kind == "binary" or entity_type.essence == "application/json":
        return True, base64.b64encode(body).decode("ascii")
    return True, body.decode("utf-8", "replace")


# ----------------------------------------------------------------------------- result -> HTTP response


class NotHttp(Exception):
    """The result cannot be read as {"statusCode", "headers", "body"}."""


def http_reply(result: Any, transaction_id: str) -> Reply:
    """resultAsHttp: the .http transcoder, the default for a URL without an extension."""
    try:
        status, headers, body = _http_fields(result)
    except NotHttp:
        return error_reply(400, "Response is not valid 'message/http'.", transaction_id)
    if body is None or body == "":
        return Reply(204 if status is None else status, _plain_headers(headers))
    status = 200 if status is None else status
    content_type = next((value for name, value in headers if name.lower() == "content-type"), None)
    default = TEXT_HTML if isinstance(body, str) else APPLICATION_JSON
    media_type = default if content_type is None else parse_media_type(content_type)
    if media_type is None:
        return error_reply(400, UNKNOWN_CONTENT_TYPE, transaction_id)
    if not isinstance(body, str):
        if not media_type.is_json_family:
            return error_reply(400, CONTENT_TYPE_MISMATCH, transaction_id)
        # The controller re-serialises the JSON value; a JSON-family type loses its parameters.
        rendered = "application/json" if media_type.essence == "application/json" else media_type.name
        return Reply(status, _plain_headers(headers), render_json(body, pretty=True).encode("utf-8"), rendered)
    if media_type.kind == "binary" or (media_type.is_json_family and looks_like_base64(body)):
        data = decode_base64(body)
        if data is None:
            return error_reply(400, CONTENT_TYPE_MISMATCH, transaction_id)
    else:
        data = body.encode("utf-8", "replace")
    # Text goes out as UTF-8 whatever charset the action declared.
    return Reply(status, _plain_headers(headers), data, media_type.render("UTF-8"))


def _http_fields(result: Any) -> Tuple[Optional[int], List[Tuple[str, str]], Any]:
    if not isinstance(result, dict):
        raise NotHttp()
    headers = []  # type: List[Tuple[str, str]]
    if "headers" in result:
        if not isinstance(result["headers"], dict):
            raise NotHttp()
        for name, value in result["headers"].items():
            headers.extend((name, text) for text in _header_values(value))
    status = _status_code(result["statusCode"]) if "statusCode" in result else None
    return status, headers, result.get("body")


def _header_values(value: Any) -> List[str]:
    """headersFromJson: strings, booleans and numbers, or arrays of them (one header line each)."""
    if isinstance(value, list):
        return [text for item in value for text in _header_values(item)]
    if isinstance(value, (str, bool, int, decimal.Decimal)):
        return [render_json(value) if not isinstance(value, str) else value]
    raise NotHttp()


def _status_code(value: Any) -> int:
    if isinstance(value, bool):
        raise NotHttp()
    if isinstance(value, decimal.Decimal) and value == value.to_integral_value():
        code = int(value)
    elif isinstance(value, int):
        code = value
    elif isinstance(value, str) and re.match(r"\A[+-]?[0-9]+\Z", value):
        code = int(value)
    else:
        raise NotHttp()
    if code not in REGISTERED_STATUS_CODES:
        raise NotHttp()
    return code


def _plain_headers(headers: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """The action's headers as akka renders them: Content-Type and the ones it sets itself are dropped.

    A header that would break the response framing (a bad name, a line break) is dropped too.
    """
    kept = []
    for name, value in headers:
        if name.lower() in SUPPRESSED_HEADERS:
            continue
        if not _TOKEN.match(name) or "\r" in value or "\n" in value:
            say("warning: dropped the response header %r: it cannot be sent in HTTP/1.1" % name)
            continue
        kept.append((name, value))
    return kept


def json_reply(result: Any, transaction_id: str) -> Reply:
    """resultAsJson: the .json extension."""
    if isinstance(result, (dict, list)):
        return Reply(200, body=render_json(result, pretty=True).encode("utf-8"), content_type="application/json")
    return error_reply(400, "Response is not valid 'application/json'.", transaction_id)


def html_reply(result: Any, transaction_id: str) -> Reply:
    """resultAsHtml: the .html extension (the body or html field)."""
    html = _field(result, "body", "html") if isinstance(result, dict) else result
    if isinstance(html, str):
        return Reply(200, body=html.encode("utf-8", "replace"), content_type="text/html; charset=UTF-8")
    return error_reply(400, "Response is not valid 'text/html'.", transaction_id)


def svg_reply(result: Any, transaction_id: str) -> Reply:
    """resultAsSvg: the .svg extension (the body or svg field, sent as is, not base64-decoded)."""
    svg = _field(result, "body", "svg") if isinstance(result, dict) else result
    if isinstance(svg, str):
        return Reply(200, body=svg.encode("utf-8", "replace"), content_type="image/svg+xml")
    return error_reply(400, "Response is not valid 'image/svg+xml'.", transaction_id)


def text_reply(result: Any, transaction_id: str) -> Reply:
    """resultAsText: the .text extension (the body or text field; JSON values printed)."""
    if isinstance(result, dict):
        if "body" not in result and "text" not in result:
            return error_reply(404, PROPERTY_NOT_FOUND, transaction_id)
        result = result["body"] if "body" in result else result["text"]
    text = result if isinstance(result, str) else render_json(result, pretty=True)
    return Reply(200, body=text.encode("utf-8", "replace"), content_type="text/plain; charset=UTF-8")


def _field(result: Dict[str, Any], first: str, second: str) -> Any:
    return result[first] if first in result else result.get(second)


TRANSCODERS = {".http": http_reply, ".json": json_reply, ".html": html_reply, ".svg": svg_reply, ".text": text_reply}


# ----------------------------------------------------------------------------- activations


class Outcome(object):
    """How an activation ended, as the controller sees it: SUCCESS, APPLICATION_ERROR (the
    result has an error field), DEVELOPER_ERROR (the action failed) or NOT_READY (no answer in time)."""

    def __init__(self, kind: str, result: Any = None, message: str = ""):
        self.kind = kind
        self.result = result
        self.message = message


def read_run_reply(status: int, length: Optional[int], data: bytes, limit: int) -> Outcome:
    """ActivationResponse.processRunResponseContent, after the invoker's container client."""
    if status == 204 or length is None:
        return Outcome(DEVELOPER_ERROR, message=ABNORMAL_RUN)  # NoResponseReceived
    if length > limit:
        message = ("The action produced a response that exceeded the allowed length: %d > %d bytes. "
                   "The truncated response was: %s" % (length, limit, data[:limit].decode("utf-8", "replace")))
        return Outcome(APPLICATION_ERROR, {"error": message})
    text = data.decode("utf-8", "replace")
    invalid = "The action did not produce a valid JSON response" + (": " + text if text else ".")
    try:
        result = parse_json(text)
    except ValueError:
        return Outcome(DEVELOPER_ERROR, message=invalid)
    if not isinstance(result, dict):
        return Outcome(DEVELOPER_ERROR, message=invalid)
    if status != 200:
        return Outcome(DEVELOPER_ERROR, message=render_json(result["error"]) if "error" in result else invalid)
    return Outcome(APPLICATION_ERROR if "error" in result else SUCCESS, result)


def outcome_reply(outcome: Outcome, extension: str, transaction_id: str) -> Reply:
    """completeRequest: a success or an application error goes through the transcoder (an application
    error as its error field), a failed action is a 400, no answer in time a 202."""
    if outcome.kind == NOT_READY:
        return error_reply(202, RESPONSE_NOT_READY, transaction_id)
    if outcome.kind == DEVELOPER_ERROR:
        return error_reply(400, ERROR_PROCESSING, transaction_id)
    projection = outcome.result["error"] if outcome.kind == APPLICATION_ERROR else outcome.result
    return TRANSCODERS[extension](projection, transaction_id)


class Action(object):
    """One action: its container (a local shim process, or an address) and the invoker's side of it."""

    def __init__(self, name: str, args: argparse.Namespace, model_dir: Optional[str] = None,
                 address: Optional[Tuple[str, int]] = None):
        self.name = name
        self.args = args
        self.model_dir = model_dir
        self.host, self.port = address or (DEFAULT_HOST, 0)
        self.process = None  # type: Optional[subprocess.Popen]
        self.pumps = []  # type: List[threading.Thread]
        self.run_ids = []  # type: List[str]
        self.recent_output = collections.deque(maxlen=RECENT_LINES)  # type: collections.deque
        self.needs_restart = False
        # Concurrency is off, as the platform's default: one activation at a time per action.
        self.busy = threading.Lock()

    @property
    def qualified_name(self) -> str:
        return "/%s/%s" % (self.args.namespace, self.name)

    def launch(self) -> None:
        """Start the shim for a model directory as a local process (an address needs nothing)."""
        if self.model_dir is None:
            return
        self.port = free_port()
        environment = dict(os.environ, PYTHONUNBUFFERED="1")
        environment[RESULT_LIMIT_ENV] = str(self.args.result_limit)  # the shim answers 413 past the same limit
        # Loopback only: the endpoint is the one way in, as the controller is on the platform.
        command = [self.args.python, self.args.shim, "--port", str(self.port), "--host", "127.0.0.1"]
        try:
            self.process = subprocess.Popen(command, cwd=self.model_dir, env=environment, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as error:
            raise ActionStartError("action %s: cannot run %s: %s" % (self.name, " ".join(command), error))
        self.run_ids = []
        self.pumps = [threading.Thread(target=self._pump, args=(stream, label, self.run_ids), daemon=True)
                      for stream, label in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr"))]
        for pump in self.pumps:
            pump.start()

    def initialize(self) -> None:
        """Wait until the action accepts connections (never probing with /init), then send /init once."""
        deadline = time.monotonic() + START_TIMEOUT
        while not _accepts_connections(self.host, self.port):
            if self.process is not None and self.process.poll() is not None:
                raise ActionStartError(self._with_output("action %s exited with status %d before listening"
                                                         % (self.name, self.process.returncode)))
            if time.monotonic() > deadline:
                raise ActionStartError(self._with_output("action %s did not listen on %s:%d within %d s"
                                                         % (self.name, self.host, self.port, START_TIMEOUT)))
            time.sleep(0.05)
        environment = {
            "__OW_NAMESPACE": self.args.namespace,
            "__OW_ACTION_NAME": self.qualified_name,
            "__OW_ACTION_VERSION": ACTION_VERSION,
            "__OW_ACTIVATION_ID": new_activation_id(),
            "__OW_TRANSACTION_ID": new_transaction_id(),
            "__OW_DEADLINE": self._deadline(),
        }
        message = {"value": {"name": self.name, "binary": False, "main": "main", "env": environment}}
        try:
            status, _, data = self._post("/init", message, self.args.timeout)
        except (OSError, http.client.HTTPException) as error:
            raise ActionStartError(self._with_output("action %s: /init failed: %s" % (self.name, error)))
        if status == 403 and self.model_dir is None:
            say("%s: the container at %s:%d was initialized before; using it as it is"
                % (self.name, self.host, self.port))
        elif status != 200:
            raise ActionStartError(self._with_output("action %s answered /init with %d: %s"
                                                     % (self.name, status, data.decode("utf-8", "replace"))))

    def invoke(self, params: Dict[str, Any], activation_id: str, transaction_id: str, give_up_at: float) -> Outcome:
        """One activation: a /run with the invoker's payload, read as the invoker reads it."""
        if not self.busy.acquire(timeout=max(0.0, give_up_at - time.monotonic())):
            return Outcome(NOT_READY)
        try:
            if self.needs_restart or (self.process is not None and self.process.poll() is not None):
                self._restart()
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                return Outcome(NOT_READY)
            if self.process is not None:
                self.run_ids.append(activation_id)  # where its log lines go
            message = {"value": params, "namespace": self.args.namespace, "action_name": self.qualified_name,
                       "action_version": ACTION_VERSION, "activation_id": activation_id,
                       "transaction_id": transaction_id, "deadline": self._deadline()}
            try:
                status, length, data = self._post("/run", message, remaining)
            except socket.timeout:
                self._discard()
                return Outcome(NOT_READY)
            except (OSError, http.client.HTTPException):
                self._discard()
                return Outcome(DEVELOPER_ERROR, message=ABNORMAL_RUN)
            return read_run_reply(status, length, data, self.args.result_limit)
        except ActionStartError as error:
            return Outcome(DEVELOPER_ERROR, message=str(error))
        finally:
            self.busy.release()

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)  # its own session: the shim and anything it started
            process.wait(STOP_TIMEOUT)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def _discard(self) -> None:
        """The invoker destroys a container that timed out or failed; the next activation starts a new one."""
        if self.model_dir is not None:
            self.stop()
            self.needs_restart = True

    def _restart(self) -> None:
        say("%s: starting a new action process (the previous one timed out or failed)" % self.name)
        self.stop()
        self.launch()
        self.initialize()
        self.needs_restart = False

    def _deadline(self) -> str:
        return str(int(time.time() * 1000 + self.args.timeout * 1000))

    def _post(self, path: str, message: Dict[str, Any], timeout: float) -> Tuple[int, Optional[int], bytes]:
        """POST JSON on a new connection (the invoker never reuses one). Returns the status, the
        Content-Length (None when there is none) and the body, cut at the result limit."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request("POST", path, body=render_json(message).encode("utf-8"),
                               headers={"Content-Type": "application/json", "Accept": "application/json"})
            response = connection.getresponse()
            header = response.getheader("Content-Length", "")
            length = int(header) if header.isdigit() else None
            data = response.read(min(length, self.args.result_limit)) if length else b""
            return response.status, length, data
        finally:
            connection.close()

    def _pump(self, stream: Any, label: str, run_ids: List[str]) -> None:
        """Show the action's output, each line under the activation it belongs to: the one whose
        sentinel line has not been seen yet on this stream."""
        segment = 0
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            ended = text.endswith(SENTINEL)
            if ended:
                text = text[:-len(SENTINEL)]
            if text or not ended:
                activation = run_ids[segment] if segment < len(run_ids) else None
                line = " ".join(part for part in (self.name, activation, label + ":", text) if part)
                self.recent_output.append(line)
                say(line)
            if ended:
                segment += 1
        stream.close()

    def _with_output(self, message: str) -> str:
        if self.process is not None and self.process.poll() is not None:
            for pump in self.pumps:
                pump.join(2)  # what it wrote before exiting
        if not self.recent_output:
            return message
        return message + "; its last output:\n" + "\n".join("  " + line for line in self.recent_output)


def new_activation_id() -> str:
    return uuid.uuid4().hex


def new_transaction_id() -> str:
    return "".join(random.choice(_TID_CHARACTERS) for _ in range(32))


def _discard(stream: Any, size: int) -> None:
    while size > 0:
        piece = stream.read(min(size, 1 << 20))
        if not piece:
            return
        size -= len(piece)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((DEFAULT_HOST, 0))
        return probe.getsockname()[1]


def _accepts_connections(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


# ----------------------------------------------------------------------------- the HTTP side


class EndpointServer(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.actions = {}  # type: Dict[str, Action]
        HTTPServer.__init__(self, (args.host, args.port), WebActionHandler)


class WebActionHandler(BaseHTTPRequestHandler):
    """The controller's web route, /api/v1/web/..., for every action the endpoint serves."""

    protocol_version = "HTTP/1.1"
    server = None  # type: EndpointServer

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def __getattr__(self, name: str) -> Any:
        # Any other method reaches the route too (and is refused there with 405, as akka does).
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _serve(self) -> None:
        started = time.monotonic()
        transaction_id = self.headers.get(TRANSACTION_HEADER) or ""
        if not transaction_id or transaction_id.startswith("sid_"):
            transaction_id = new_transaction_id()
        reply, headers, label = self._answer(transaction_id, started)
        self._send(reply, [(TRANSACTION_HEADER, transaction_id)] + headers)
        say("%s: %s %s -> %d (%.0f ms)" % (label, self.command, self.path, reply.status,
                                           1000 * (time.monotonic() - started)))

    def _answer(self, transaction_id: str, started: float) -> Tuple[Reply, List[Tuple[str, str]], str]:
        args = self.server.args
        try:
            length, body = self._read_body(args.payload_limit)
        except ValueError as error:
            self.close_connection = True
            return Reply(400, body=str(error).encode("utf-8"), content_type="text/plain; charset=UTF-8"), [], "-"
        if self.command not in ALLOWED_METHODS:
            message = "HTTP method not allowed, supported methods: " + ", ".join(ALLOWED_METHODS)
            return rejection_reply(405, message, transaction_id), [("Allow", ", ".join(ALLOWED_METHODS))], "-"
        raw_path, _, raw_query = self.path.encode("latin-1").partition(b"?")
        if _BAD_PERCENT.search(raw_path) or _BAD_PERCENT.search(raw_query):
            return Reply(400, body=b"Illegal request-target: invalid percent-encoding",
                         content_type="text/plain; charset=UTF-8"), [], "-"
        route = match_route(raw_path)
        if route is None:
            return rejection_reply(404, ROUTE_NOT_FOUND, transaction_id), [], "-"
        if body is None:
            message = "Request larger than allowed: %d > %d bytes." % (length, args.payload_limit)
            return error_reply(413, message, transaction_id), [], "-"
        action = self.server.actions.get(route.action)
        if action is None or route.namespace != args.namespace or route.package != "default":
            return error_reply(404, RESOURCE_NOT_FOUND, transaction_id), [], "-"
        cors = [("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Methods", CORS_METHODS),
                ("Access-Control-Allow-Headers", self.headers.get("Access-Control-Request-Headers", CORS_HEADERS))]
        if self.command == "OPTIONS":
            return Reply(200), cors, action.name
        try:
            params = build_params(self.command, route, self.headers.items(), raw_query, body, args.web == "raw",
                                  transaction_id)
        except RequestRejected as rejected:
            return rejected.reply, cors if rejected.in_route else [], action.name
        activation_id = new_activation_id()
        outcome = action.invoke(params, activation_id, transaction_id, started + args.timeout)
        if outcome.kind == DEVELOPER_ERROR:
            say("%s %s: the action failed: %s" % (action.name, activation_id, outcome.message))
        elif outcome.kind == NOT_READY:
            say("%s %s: no result within %g s" % (action.name, activation_id, args.timeout))
        reply = outcome_reply(outcome, route.extension, transaction_id)
        return reply, cors + [(ACTIVATION_HEADER, activation_id)], action.name + " " + activation_id

    def _read_body(self, limit: int) -> Tuple[int, Optional[bytes]]:
        """The body's length, and the body unless it is over the limit (then it is read and dropped).

        Chunked bodies are accepted: the controller reads the whole entity before it looks at it.
        """
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size_line = self.rfile.readline(65537).split(b";")[0].strip()
                if not re.match(rb"\A[0-9A-Fa-f]+\Z", size_line):
                    raise ValueError("Illegal request: malformed chunk size")
                size = int(size_line, 16)
                if size == 0:
                    break
                total += size
                if total <= limit:
                    chunks.append(self.rfile.read(size))
                else:  # counted, not kept: a chunk's declared size must not decide what is buffered
                    _discard(self.rfile, size)
                self.rfile.readline()
            while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return total, b"".join(chunks) if total <= limit else None
        header = self.headers.get("Content-Length", "0").strip()
        if not header.isdigit():
            raise ValueError("Illegal request: invalid Content-Length")
        length = int(header)
        if length <= limit:
            return length, self.rfile.read(length)
        left = length
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)
        return length, None

    def _send(self, reply: Reply, headers: List[Tuple[str, str]]) -> None:
        self.send_response(reply.status)
        for name, value in headers + reply.headers:
            self.send_header(name, value)
        has_entity = reply.status >= 200 and reply.status not in NO_BODY_STATUSES
        body = reply.body if has_entity else b""
        if has_entity and reply.content_type is not None:
            self.send_header("Content-Type", reply.content_type)
        if reply.status >= 200 and reply.status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def version_string(self) -> str:
        return "local-openwhisk"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one access line per request is printed by _serve


# ----------------------------------------------------------------------------- command line


def parse_action(spec: str) -> Tuple[str, Optional[str], Optional[Tuple[str, int]]]:
    """[NAME=]MODEL_DIR or NAME=http://HOST:PORT -> (name, model directory, address)."""
    name, equals, target = spec.partition("=")
    if equals and "://" in target:
        return _named(name), None, _address(target)
    if "://" in spec:
        raise UsageError("%s: an action given by URL needs a name, as NAME=http://HOST:PORT" % spec)
    if not equals or not _ENTITY_NAME.match(name):
        name, target = "", spec  # a directory whose path holds '='
    model_dir = os.path.abspath(target)
    if not os.path.isfile(os.path.join(model_dir, "app.py")):
        raise UsageError("%s is not a MAX model directory: it has no app.py" % target)
    return _named(name or os.path.basename(model_dir)), model_dir, None


def _named(name: str) -> str:
    if len(name) > 256 or not _ENTITY_NAME.match(name):
        raise UsageError("%r is not a valid OpenWhisk action name (letters, digits, _ @ . - and inner spaces)" % name)
    return name


def _address(url: str) -> Tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None or parts.path not in ("", "/") or parts.query:
        raise UsageError("%s is not an action address: expected http://HOST:PORT" % url)
    return parts.hostname, port


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="local_endpoint.py",
        description="Serve OpenWhisk Web Actions locally, as the controller does: "
                    "http://HOST:PORT/api/v1/web/NAMESPACE/default/ACTION[.EXT][/PATH].",
        epilog="ACTION is [NAME=]MODEL_DIR (the shim is started for it as a local process; NAME defaults to "
               "the directory's name) or NAME=http://HOST:PORT (an action container already listening, e.g. "
               "docker run -p 127.0.0.1:PORT:8080 IMAGE). Without ACTION: examples/max-example-digit-classifier.")
    parser.add_argument("actions", nargs="*", metavar="ACTION", help="an action to serve (several allowed)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default %(default)s)")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="the namespace in the URL (default %(default)s)")
    parser.add_argument("--web", choices=("raw", "true"), default="raw",
                        help="the actions' web mode, as wsk action create --web (default %(default)s)")
    parser.add_argument("--payload-limit", type=int, default=DEFAULT_LIMIT, metavar="BYTES",
                        help="largest request body; larger ones get 413 (default %(default)s)")
    parser.add_argument("--result-limit", type=int, default=DEFAULT_LIMIT, metavar="BYTES",
                        help="largest /run reply the invoker accepts (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help="how long the controller waits for a result before answering 202 (default %(default)g)")
    parser.add_argument("--python", default=sys.executable, metavar="PATH",
                        help="the Python that runs the shim for model directories (default: this one)")
    parser.add_argument("--shim", default=DEFAULT_SHIM, metavar="PATH",
                        help="the action proxy started for model directories (default: openwhisk.py beside this file)")
    return parser.parse_args(argv)


class Shutdown(Exception):
    """SIGTERM: stop serving and stop the actions, like Ctrl-C."""


def _raise_shutdown(signum: int, frame: Any) -> None:
    raise Shutdown()


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        specs = [parse_action(spec) for spec in args.actions or [DEFAULT_MODEL_DIR]]
        names = [name for name, _, _ in specs]
        duplicates = sorted(set(name for name in names if names.count(name) > 1))
        if duplicates:
            raise UsageError("two actions are named %s; name them apart with NAME=..." % duplicates[0])
        if any(model_dir for _, model_dir, _ in specs) and not os.path.isfile(args.shim):
            raise UsageError("the shim %s does not exist" % args.shim)
        server = _listen(args)
    except UsageError as error:
        sys.stderr.write("local_endpoint.py: error: %s\n" % error)
        return 2
    signal.signal(signal.SIGTERM, _raise_shutdown)
    actions = [Action(name, args, model_dir, address) for name, model_dir, address in specs]
    try:
        for action in actions:
            server.actions[action.name] = action
            action.launch()
        for action in actions:
            action.initialize()
        _announce(args, actions)
        server.serve_forever()
    except ActionStartError as error:
        sys.stderr.write("local_endpoint.py: error: %s\n" % error)
        return 2
    except (KeyboardInterrupt, Shutdown):
        pass
    finally:
        # A second signal (a supervisor repeating it, Ctrl-C twice) must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        server.server_close()
        for action in actions:
            action.stop()
    return 0


def _listen(args: argparse.Namespace) -> EndpointServer:
    try:
        return EndpointServer(args)
    except OSError as error:
        raise UsageError("cannot listen on %s:%d: %s" % (args.host, args.port, error.strerror or error))


def _announce(args: argparse.Namespace, actions: List[Action]) -> None:
    base = "http://%s:%d/api/v1/web/%s/default/" % (args.host, args.port, args.namespace)
    for action in actions:
        say("%s: %s%s" % (action.name, base, action.name))
    say("ready")
    first = actions[0]
    say("try:  curl %s%s/model/metadata" % (base, first.name))
    if first.model_dir is not None:
        images = sorted(glob.glob(os.path.join(first.model_dir, "samples", "*.png")))
        if images:
            say('      curl -F "image=@%s" -XPOST %s%s' % (os.path.relpath(images[0]), base, first.name))


if __name__ == "__main__":
    sys.exit(main())
