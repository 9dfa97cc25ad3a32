"""Apache OpenWhisk Docker actions: ``POST /init`` and ``POST /run`` on port 8080.

Each ``/run`` of a web action carries the HTTP request in ``__ow_*`` parameters: it is rebuilt,
answered by the model's app, and projected into the ``{"statusCode", "headers", "body"}`` result
the controller turns back into the HTTP response.
"""

import base64
import binascii
import gzip
import json
import os
import re
import signal
import sys
import threading
import traceback
import zlib
from typing import Any, Dict, List, Optional, Tuple, Union
from urllib.parse import unquote_to_bytes, urlencode

from . import runtime
from .media_types import is_binary, is_json_family, parse_content_type
from .runtime import BadRequest, ModelApp, Request, Response, log
from .server import Exchange, Handler, HttpError, Server, server_limits, standard_headers

ACTIVATION_END = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
DEFAULT_PORT = 8080
# Apache OpenWhisk's default result limit; the platform reports anything larger as an error.
DEFAULT_RESULT_LIMIT = 1024 * 1024
# A /run body above this is refused unread: no platform sends one (their payload limits are
# 1-5 MB before base64), so it can only exhaust the container's memory.
DEFAULT_REQUEST_LIMIT = 64 * 1024 * 1024
# The invoker sends each request whole, at once: a peer that takes longer is stalled.
DEFAULT_READ_SECONDS = 10.0
# The invoker runs one activation per connection, at most as many at once as the action's concurrency
# (SERVERLESS_MAX_THREADS sets it); an action without concurrency gets one at a time, served in the
# main thread (Server's threads=0).
DEFAULT_THREADS = 64

HeaderValue = Union[str, List[str]]

# Request headers never forwarded to the app: hop-by-hop headers belong to the connection
# between the caller and the controller, Content-Length is recomputed from the rebuilt body,
# and Accept-Encoding is dropped because the controller re-encodes text responses as UTF-8,
# which would destroy a gzip or deflate body.
_DROPPED_REQUEST_HEADERS = frozenset(
    """
    connection keep-alive proxy-authenticate proxy-authorization proxy-connection te trailer
    trailers transfer-encoding upgrade content-length accept-encoding
    """.split()
)
# Response headers the controller drops or recomputes itself.
_DROPPED_RESPONSE_HEADERS = frozenset(
    "connection content-length date keep-alive server transfer-encoding".split()
)
_ENVIRONMENT_KEY = re.compile(r"\A[A-Za-z0-9_]+\Z")


# ----------------------------------------------------------------------------- request side


# binascii reads an ASCII str in place, so a large __ow_body is decoded without an encoded copy.
# Python 3.11 validates as it decodes; older versions need the alphabet checked first.
_STRICT_BASE64 = sys.version_info >= (3, 11)
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BASE64_CHECK_SLICE = 64 * 1024


def _is_base64(text: Union[str, memoryview]) -> bool:
    """Only the alphabet, then at most two '='. bytes.translate deletes the alphabet at memory speed
    (a regular expression over a 1 MB upload costs as much as decoding it); a slice at a time, so
    no copy of the whole body is ever held."""
    rest = b""
    for start in range(0, len(text), _BASE64_CHECK_SLICE):
        rest += _ascii(text[start:start + _BASE64_CHECK_SLICE]).translate(None, _BASE64_ALPHABET)
        if len(rest) > 2:
            return False
    return _ascii(text[len(text) - len(rest):]) == rest and rest in (b"", b"=", b"==")


def _ascii(text: Union[str, memoryview]) -> bytes:
    return text.encode("ascii") if isinstance(text, str) else bytes(text)


def _decode_base64(text: Union[str, memoryview], what: str) -> bytes:
    try:
        if _STRICT_BASE64:
            return binascii.a2b_base64(text, strict_mode=True)  # novermin: only on 3.11+
        if not _is_base64(text):
            raise binascii.Error("not base64")
        return binascii.a2b_base64(text)
    except (binascii.Error, ValueError):  # UnicodeEncodeError is a ValueError
        raise BadRequest("%s is not valid base64" % what)


# The request body's key, and what may follow it up to the string's opening quote: the invoker
# writes compact JSON, other writers (json.dumps' default, requests' json=) a space after the colon.
_OW_BODY_KEY = b'"__ow_body"'
_UP_TO_BODY_STRING = re.compile(rb'[ \t\r\n]*:[ \t\r\n]*"')
# Stands in for the body while the rest of the /run JSON is parsed; it cannot occur in any JSON
# text that holds it already, which is checked.
_BODY_PLACEHOLDER = b"\\u0000serverless-max-body"
_PARSED_PLACEHOLDER = "\x00serverless-max-body"


def parse_run(raw: bytes) -> Any:
    """The /run message, with a large ``__ow_body`` string left in the raw bytes.

    A web action's body is almost the whole /run request, and base64 or plain text holds no JSON
    escapes. It is cut out of the raw bytes before parsing, so it is never copied into a Python
    string, and ``value["__ow_body"]`` becomes a memoryview of its bytes. Anything unusual (escapes
    in the body, the key elsewhere, the placeholder in the request) is parsed the ordinary way.
    Only single-byte searches run over the body itself: they are memchr, several GB/s.
    """
    key = raw.find(_OW_BODY_KEY)
    opening = _UP_TO_BODY_STRING.match(raw, key + len(_OW_BODY_KEY)) if key >= 0 else None
    if opening is not None:
        start = opening.end()
        end = raw.find(b'"', start)
        if end > start and raw.find(b"\\", start, end) < 0:
            # With no backslash in the body, the placeholder (which starts with one) could only be
            # in the text around it.
            head, tail = raw[:start], raw[end:]
            if _BODY_PLACEHOLDER not in head and _BODY_PLACEHOLDER not in tail:
                message = json.loads((head + _BODY_PLACEHOLDER + tail).decode("utf-8"))
                value = message.get("value") if isinstance(message, dict) else None
                if isinstance(value, dict) and value.get("__ow_body") == _PARSED_PLACEHOLDER:
                    value["__ow_body"] = memoryview(raw)[start:end]
                    return message
    return json.loads(raw.decode("utf-8"))


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _request_path(ow_path: Any, default_path: str) -> str:
    """The WSGI PATH_INFO for __ow_path: percent-decoded, dot segments resolved, never above '/'."""
    if not isinstance(ow_path, str):
        raise BadRequest("__ow_path must be a string")
    if ow_path == "":
        ow_path = default_path
    if not ow_path.startswith("/") or ow_path.startswith("//"):
        raise BadRequest("__ow_path must be an absolute path such as /model/predict, got %r" % ow_path)
    decoded = unquote_to_bytes(runtime.wsgi_string(ow_path, "__ow_path").encode("latin-1"))
    if any(byte < 0x20 or byte == 0x7F for byte in decoded):
        raise BadRequest("__ow_path contains control characters")
    segments = []  # type: List[bytes]
    for segment in decoded.split(b"/")[1:]:
        if segment == b"..":
            if segments:
                segments.pop()
        elif segment != b".":
            segments.append(segment)
    # A leading '//host' would read as a network path to some frameworks: keep one slash.
    return "/" + "/".join(segment.decode("latin-1") for segment in segments).lstrip("/")


def _request_headers(ow_headers: Any) -> Dict[str, str]:
    """The forwarded headers, lowercased, values as text (WSGI strings are made later)."""
    if ow_headers is None:
        return {}
    if not isinstance(ow_headers, dict):
        raise BadRequest("__ow_headers must be an object")
    headers = {}
    for name, value in ow_headers.items():
        name = name.lower()
        if name in _DROPPED_REQUEST_HEADERS or not runtime.app_may_see_header(name):
            continue
        headers[name] = _as_text(value)
    return headers


def _raw_body(ow_body: Any, content_type: str) -> bytes:
    """__ow_body of a raw web action: base64 for binary types and exactly application/json.

    It is a string, or a memoryview of the string's UTF-8 bytes when ``parse_run`` left it there.
    """
    if not isinstance(ow_body, (str, memoryview)):
        raise BadRequest("__ow_body must be a string for a raw web action")
    if len(ow_body) == 0:
        return b""
    # The controller compares the whole media type: "application/json; foo=bar" arrives as text.
    media_type, params = parse_content_type(content_type)
    if is_binary(content_type) or (media_type == "application/json" and not set(params) - {"charset"}):
        return _decode_base64(ow_body, "__ow_body")
    if isinstance(ow_body, memoryview):
        text = bytes(ow_body)
        _utf8_text(text)
        return text
    return ow_body.encode("utf-8")


def _utf8_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeError:
        raise BadRequest("__ow_body is not valid UTF-8 text")


def _merged_body(ow_body: Any, content_type: str) -> bytes:
    """__ow_body of a non-raw web action: parsed JSON for JSON types, else as in raw mode."""
    if is_json_family(content_type):
        if isinstance(ow_body, memoryview):  # a JSON string parse_run left in the raw bytes
            ow_body = _utf8_text(bytes(ow_body))
        return json.dumps(ow_body).encode("utf-8")
    return _raw_body(ow_body, content_type)


def web_script_name(activation: Dict[str, str]) -> str:
    """The URL prefix the controller serves this web action under, from the activation's name.

    ``action_name`` is ``/namespace/action`` or ``/namespace/package/action``; the web URL is
    ``/api/v1/web/namespace/package/action``, with the package ``default`` when there is none.
    SERVERLESS_MAX_SCRIPT_NAME overrides it (an API gateway that remounts the action).
    """
    override = runtime.script_name_override()
    if override is not None:
        return override
    parts = activation.get("__OW_ACTION_NAME", "").strip("/").split("/")
    if len(parts) == 2:
        parts.insert(1, "default")
    if len(parts) != 3 or not all(parts):
        return ""
    return "/api/v1/web/" + "/".join(parts)


def build_request(params: Dict[str, Any], default_path: str, script_name: str = "") -> Request:
    """Rebuild the HTTP request a web action activation stands for.

    Raw web actions (``--web raw``) carry the query and body untouched in ``__ow_query`` and
    ``__ow_body``. Other web actions have query parameters and JSON-object or form bodies
    merged into the top-level parameters: they are turned back into a JSON or form body (by
    the request's content type) or into the query string. Parameters without ``__ow_method``
    (a plain ``wsk action invoke``) become a JSON POST to the default path.
    """
    ow_method = params.get("__ow_method", "post")
    if not isinstance(ow_method, str) or not runtime.is_token(ow_method):
        raise BadRequest("__ow_method must be an HTTP method name")
    method = ow_method.upper()
    path = _request_path(params.get("__ow_path", ""), default_path)
    headers = _request_headers(params.get("__ow_headers"))
    content_type = headers.get("content-type", "")

    if "__ow_query" in params:
        query = params["__ow_query"]
        if not isinstance(query, str):
            raise BadRequest("__ow_query must be a string")
        body = _raw_body(params.get("__ow_body", ""), content_type or "application/octet-stream")
    else:
        merged = dict((k, v) for k, v in params.items() if not k.startswith("__ow_"))
        if "__ow_body" in params:
            body = _merged_body(params["__ow_body"], content_type or "application/octet-stream")
        elif merged and method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            if not is_json_family(content_type) and not content_type.startswith("application/x-www-form-urlencoded"):
                content_type = headers["content-type"] = "application/json"
            if is_json_family(content_type):
                body = json.dumps(merged).encode("utf-8")
            else:
                body = urlencode([(k, _as_text(v)) for k, v in merged.items()]).encode("ascii")
            merged = {}
        else:
            body = b""
        query = urlencode([(k, _as_text(v)) for k, v in merged.items()])
    wsgi_headers = [(name, runtime.wsgi_string(value, "the %s header" % name)) for name, value in headers.items()]
    scheme = "https" if headers.get("x-forwarded-proto") == "https" else "http"
    return Request(method, path, runtime.wsgi_string(query, "__ow_query"), wsgi_headers, body,
                   script_name=script_name, scheme=scheme)


# ----------------------------------------------------------------------------- response side


def _decompress(body: bytes, encoding: str) -> Optional[bytes]:
    if encoding == "identity":
        return body
    if encoding in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some servers send
    return None


def web_result(response: Response) -> Dict[str, Any]:
    """Project an HTTP response into the result OpenWhisk's controller turns back into it.

    The controller base64-decodes string bodies of binary types, which are sent base64-encoded.
    JSON types are sent as text unless the controller would take the text for base64 (see
    ``_json_family_body``). Other text is sent as a string, which the controller sends as UTF-8.
    """
    result_headers = {}  # type: Dict[str, HeaderValue]
    names = {}  # type: Dict[str, str]
    for name, value in response.headers:
        lower = name.lower()
        if lower in _DROPPED_RESPONSE_HEADERS:
            continue
        name = names.setdefault(lower, name)
        previous = result_headers.get(name)
        if previous is None:
            result_headers[name] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            result_headers[name] = [previous, value]

    result = {"statusCode": response.status, "headers": result_headers}  # type: Dict[str, Any]
    body = response.body
    if not body:
        return result
    content_type = result_headers.get(names.get("content-type", ""))
    if isinstance(content_type, list):
        content_type = content_type[-1]
    if content_type is None:
        # The controller would label the body text/html; keep bytes that are not text intact.
        try:
            result["body"] = body.decode("utf-8")
            return result
        except UnicodeDecodeError:
            content_type = result_headers["Content-Type"] = "application/octet-stream"
    if is_binary(content_type):
        result["body"] = base64.b64encode(body).decode("ascii")
        return result
    if is_json_family(content_type):
        result["body"] = _json_family_body(body)
        return result
    encoding_name = names.get("content-encoding")
    if encoding_name is not None:
        # A compressed text body would be re-encoded as UTF-8 by the controller and destroyed.
        plain = _decompress(body, str(result_headers[encoding_name]).strip().lower())
        if plain is None:
            return error_result(502, "the model answered a text body with Content-Encoding %s, "
                                     "which OpenWhisk cannot carry" % result_headers[encoding_name])
        del result_headers[encoding_name]
        body = plain
    charset = parse_content_type(content_type)[1].get("charset", "utf-8")
    try:
        text = body.decode(charset)
        text.encode("utf-8")  # some charsets (UTF-7) decode to lone surrogates UTF-8 cannot carry
        result["body"] = text
    except (LookupError, UnicodeError):
        log("warning: the %s response is not valid %s; undecodable bytes were replaced" % (content_type, charset))
        result["body"] = body.decode("utf-8", "replace")
    return result


# Exec.isBinaryCode: the controller base64-decodes a JSON-family string body that matches this
# whole, once trimmed of whitespace and control characters (Java's String.trim), with a length
# that is a multiple of 4.
_CONTROLLER_BASE64 = re.compile(r"([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)\Z")
_JAVA_TRIMMED = "".join(chr(code) for code in range(0x21))


def controller_takes_for_base64(text: str) -> bool:
    trimmed = text.strip(_JAVA_TRIMMED)
    return len(trimmed) > 0 and len(trimmed) % 4 == 0 and _CONTROLLER_BASE64.match(trimmed) is not None


def _json_family_body(body: bytes) -> str:
    """A JSON answer as text when the controller passes the text through unchanged (any object or
    array does), so it costs no base64 third against the result limit; base64 otherwise: bytes
    that are not UTF-8, and text the controller would take for base64 (``true``, ``1234``)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or controller_takes_for_base64(text):
        return base64.b64encode(body).decode("ascii")
    return text


# A script the controller cannot carry as text within the result limit may still fit gzipped and
# in base64, typed text/javascript without a charset: the controller does not register that type,
# so it base64-decodes the body and passes Content-Encoding on. MAX models' landing page, the
# Swagger UI, loads a 1.0-1.4 MB bundle that is 0.3-0.4 MB gzipped.
_SCRIPT_TYPES = frozenset(("text/javascript", "application/javascript", "application/x-javascript"))


def accepts_gzip(ow_headers: Any) -> bool:
    """Whether the caller's Accept-Encoding (never forwarded to the app) allows gzip."""
    if not isinstance(ow_headers, dict):
        return False
    for name, value in ow_headers.items():
        if str(name).lower() != "accept-encoding":
            continue
        for coding in _as_text(value).split(","):
            coding_name, _, parameters = coding.partition(";")
            refused = re.match(r"\s*q\s*=\s*0(\.0*)?\s*\Z", parameters) is not None
            if coding_name.strip().lower() in ("gzip", "x-gzip", "*") and not refused:
                return True
    return False


def gzipped_script_result(response: Response) -> Optional[Dict[str, Any]]:
    """The result of an uncompressed script response with its body gzipped; None for anything else."""
    content_type = response.header("Content-Type") or ""
    if (parse_content_type(content_type)[0] not in _SCRIPT_TYPES or response.header("Content-Encoding") is not None
            or not response.body):
        return None
    headers = []
    for name, value in response.headers:
        lower = name.lower()
        if lower == "etag" and value.endswith('"'):
            value = value[:-1] + '-gzip"'  # another representation of the resource
        if lower not in ("content-type", "accept-ranges", "vary"):
            headers.append((name, value))
    headers += [("Content-Type", "text/javascript"), ("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
    return web_result(Response(response.status, headers, gzip.compress(response.body)))


def error_result(status: int, message: str) -> Dict[str, Any]:
    """A web response carrying a JSON error, for failures the runtime detects itself."""
    return web_result(runtime.error_response(status, message))


def encode_result(result: Dict[str, Any], limit: int) -> bytes:
    """Serialise a result, replacing it by a 413 web response when over the platform's limit."""
    payload = json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(payload) <= limit:
        return payload
    message = ("the response is %d bytes once encoded for OpenWhisk, over the result limit of %d bytes; "
               "send a smaller input, or raise the limit with %s (and the platform's own limit)"
               % (len(payload), limit, runtime.RESULT_LIMIT_ENV))
    log(message)
    return json.dumps(error_result(413, message)).encode("utf-8")


# ----------------------------------------------------------------------------- the action


def activation_environment(message: Dict[str, Any]) -> Dict[str, str]:
    """The __OW_* variables of a /run: every key but value, as the reference runtimes export them.

    Keys the process environment cannot name are skipped. A value it cannot hold (a NUL, a lone
    surrogate) raises BadRequest before anything is exported, so no variable is left half-set.
    """
    exported = {}
    for key, value in message.items():
        if key == "value" or not _ENVIRONMENT_KEY.match(key):
            continue  # never serialise the params: they hold the whole request body
        text = _as_text(value)
        if not environment_can_hold(text):
            raise BadRequest("The /run key %s has a value the environment cannot hold "
                             "(a NUL character or a lone surrogate)." % key)
        exported["__OW_" + key.upper()] = text
    return exported


def environment_can_hold(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeError:
        return False
    return "\x00" not in text


class Action(object):
    """The state of this action container: its model app, /init status and settings."""

    def __init__(self, model: Optional[ModelApp], load_error: Optional[str], default_path: str, result_limit: int,
                 concurrent: bool):
        self.model = model
        self.concurrent = concurrent
        self.load_error = load_error
        self.default_path = default_path
        self.result_limit = result_limit
        self.initialized = False
        self._init_lock = threading.Lock()
        self._run_lock = threading.Lock()

    def init(self, message: Any) -> Tuple[int, Dict[str, Any]]:
        with self._init_lock:
            if self.initialized:
                return 403, {"error": "Cannot initialize the action more than once."}
            if self.load_error is not None:
                return 502, {"error": self.load_error}
            if not isinstance(message, dict) or not isinstance(message.get("value"), dict):
                return 400, {"error": 'The /init body must be a JSON object {"value": {...}}.'}
            value = message["value"]
            if value.get("code"):
                log("warning: this action runs the model image; the code sent with /init is ignored")
            env = value.get("env", {})
            if not isinstance(env, dict):
                return 400, {"error": "The /init value.env must be an object."}
            settings = dict((str(name), _as_text(setting)) for name, setting in env.items())
            for name, setting in settings.items():
                if not name or "=" in name or not environment_can_hold(name) or not environment_can_hold(setting):
                    return 400, {"error": "The /init env variable %r cannot be set: names must not be empty or "
                                          "hold '=', and neither may hold a NUL or a lone surrogate." % name}
            os.environ.update(settings)
            self.initialized = True
            return 200, {"ok": True}

    def run(self, message: Any) -> Tuple[int, Dict[str, Any]]:
        if self.load_error is not None:
            return 502, {"error": self.load_error}
        if not isinstance(message, dict) or "value" not in message:
            return 400, {"error": 'The /run body must be a JSON object {"value": {...}, ...}.'}
        params = message["value"]
        if not isinstance(params, dict):
            return 400, {"error": "The /run value must be a JSON object."}
        try:
            exported = activation_environment(message)
        except BadRequest as error:
            return 400, {"error": str(error)}
        activation = dict((k, v) for k, v in exported.items() if k != "__OW_API_KEY")
        if self.concurrent:
            # Overlapping activations cannot share os.environ: each one's metadata is in
            # its own WSGI environ only.
            return 200, self._handle(params, activation)
        with self._run_lock:
            saved = dict((name, os.environ.get(name)) for name in exported)
            try:
                os.environ.update(exported)
                return 200, self._handle(params, activation)
            finally:
                for name, previous in saved.items():
                    if previous is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = previous

    def _handle(self, params: Dict[str, Any], activation: Dict[str, str]) -> Dict[str, Any]:
        default_path = os.environ.get(runtime.DEFAULT_PATH_ENV) or self.default_path
        try:
            request = build_request(params, default_path, web_script_name(activation))
        except BadRequest as error:
            log("bad request: %s" % error)
            return error_result(400, str(error))
        except (UnicodeError, RecursionError) as error:  # absurdly deep params
            log("bad request: %s" % type(error).__name__)
            return error_result(400, "the request could not be rebuilt: %s" % type(error).__name__)
        # The base64 text is no longer needed: free it before the model runs.
        params.pop("__ow_body", None)
        request.extra_environ["openwhisk.activation"] = activation
        response = self.model.respond(request)
        result = web_result(response)
        if accepts_gzip(params.get("__ow_headers")):
            gzipped = gzipped_script_result(response)
            if gzipped is not None and len(encode_result(result, sys.maxsize)) > self.result_limit_now():
                return gzipped
        return result

    def result_limit_now(self) -> int:
        """The result limit: SERVERLESS_MAX_RESULT_LIMIT (container or /init env), else the flag."""
        return runtime.byte_limit(runtime.RESULT_LIMIT_ENV, self.result_limit)


def end_activation_logs() -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.write(ACTIVATION_END + "\n")
        stream.flush()


class ProxyHandler(Handler):
    """The invoker's side of the protocol: POST /init and POST /run, JSON in and out."""

    length_required = True

    def __init__(self, action: Action, request_limit: int):
        self.action = action
        self.request_limit = request_limit

    def keep_alive(self, exchange: Exchange) -> bool:
        return False  # the invoker never reuses a connection

    def respond(self, exchange: Exchange) -> None:
        path = exchange.head.target
        body = exchange.take_body()
        if exchange.head.method != "POST":
            self._reply(exchange, 405, {"error": "Use POST /init and POST /run."})
            return
        if path not in ("/init", "/run"):
            self._reply(exchange, 404, {"error": "Unknown path %s: this action answers POST /init and POST /run."
                                                 % path[:200]})
            return
        try:
            message = parse_run(body) if path == "/run" else json.loads(body.decode("utf-8"))
            del body  # the request body, if any, is still held by the message
        except (ValueError, RecursionError) as error:
            status, reply = 400, {"error": "The %s body is not valid JSON: %s" % (path, error)}
        else:
            status, reply = self._dispatch(path, message)
        if path == "/run":
            payload = encode_result(reply, self.action.result_limit_now()) if status == 200 else _json_bytes(reply)
            end_activation_logs()
            self._send(exchange, status, payload)
        else:
            if status not in (200, 403):
                end_activation_logs()
            self._reply(exchange, status, reply)

    def refuse(self, exchange: Exchange, error: HttpError) -> None:
        status, reply = error.status, {"error": error.message}  # type: Tuple[int, Dict[str, Any]]
        if error.status == 408 and exchange.head is not None:
            log("the %s request was cut off at the read deadline: %s" % (exchange.head.target[:200], error.message))
        if exchange.head is not None and exchange.head.target == "/run":
            if error.status == 413:
                status, reply = 200, error_result(413, "the request is over the action's limit of %d bytes"
                                                  % self.request_limit)
            end_activation_logs()
        self._reply(exchange, status, reply)

    def cut_off(self, exchange: Exchange) -> None:
        log("the %s request was cut off before its body arrived" % exchange.head.target[:200])
        if exchange.head.target == "/run":
            end_activation_logs()

    def _dispatch(self, path: str, message: Any) -> Tuple[int, Dict[str, Any]]:
        try:
            return (self.action.init if path == "/init" else self.action.run)(message)
        except Exception:  # a bug here must still get an answer, and the server keeps serving
            traceback.print_exc()
            return 500, {"error": "The action proxy failed on this %s; see the logs." % path}

    def _reply(self, exchange: Exchange, status: int, reply: Dict[str, Any]) -> None:
        self._send(exchange, status, _json_bytes(reply))

    def _send(self, exchange: Exchange, status: int, payload: bytes) -> None:
        # The invoker never reuses a connection; closing it frees its thread at once.
        exchange.close = True
        headers = [("Content-Type", "application/json")] + standard_headers(len(payload))
        exchange.send(status, headers, payload, send_body=exchange.head is None or exchange.head.method != "HEAD")


def _json_bytes(value: Dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _exit_now(signum: int, frame: Any) -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def run(model: Optional[ModelApp], load_error: Optional[str], options: Any) -> None:
    """Serve the action on ``options.host``:``options.port`` until SIGTERM or SIGINT."""
    # __OW_ALLOW_CONCURRENT=true: the invoker may overlap activations (those created with -c N, N > 1).
    concurrent = os.environ.get("__OW_ALLOW_CONCURRENT", "").lower() == "true"
    action = Action(model, load_error, options.default_path, options.result_limit or DEFAULT_RESULT_LIMIT, concurrent)
    request_limit = options.request_limit or runtime.byte_limit(runtime.REQUEST_LIMIT_ENV, DEFAULT_REQUEST_LIMIT)
    read_seconds = runtime.seconds_setting(runtime.READ_SECONDS_ENV, DEFAULT_READ_SECONDS)
    threads, connections, header_limit = server_limits(DEFAULT_THREADS)
    if not concurrent:
        threads = 0
    port = options.port or DEFAULT_PORT
    try:
        # Nothing keeps a connection to an action open: one silent for the read deadline is let go.
        server = Server((options.host, port), ProxyHandler(action, request_limit), read_seconds=read_seconds,
                        idle_seconds=read_seconds, threads=threads, connections=connections,
                        header_limit=header_limit)
    except OSError as error:
        log("cannot listen on %s:%d: %s" % (options.host, port, error))
        sys.exit(2)
    # As PID 1 in a container the process gets no default SIGTERM handling. The invoker sends it when
    # it removes the container, so there is nothing to finish: flush the logs and go, without
    # unwinding through whatever the app was doing.
    signal.signal(signal.SIGTERM, _exit_now)
    log("listening on %s:%d" % (options.host, port))
    try:
        server.serve_forever()  # SIGINT ends it with runtime.Terminated (main.py handles it)
    finally:
        server.server_close()
