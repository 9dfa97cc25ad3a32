"""OpenWhisk action proxy for IBM Model Asset eXchange (MAX) model images.

Copied into a MAX model image next to its ``app.py`` and started with ``python openwhisk.py``,
it turns the container into an Apache OpenWhisk Docker action: it answers the invoker's
``POST /init`` and ``POST /run`` on port 8080 and replays every Web Action request through the
model's own Flask app (a direct WSGI call), so the action answers exactly like the model's
``/model/predict``, ``/model/metadata`` and every other route the model registers.

It runs on every Python and Flask/Werkzeug that MAX images ship (Python 3.6 and Flask 1.0.2 /
Werkzeug 0.14.1 onwards) and needs nothing beyond the standard library and the model's app.
"""

import argparse
import base64
import binascii
import gzip
import io
import json
import os
import re
import runpy
import signal
import sys
import threading
import traceback
import zlib
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Any, Callable, Dict, List, Optional, Tuple, Union
from urllib.parse import unquote_to_bytes, urlencode

__version__ = "1.0.0"

ACTIVATION_END = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
DEFAULT_PORT = 8080
DEFAULT_PATH = "/model/predict"
# Apache OpenWhisk's default result limit; the platform reports anything larger as an error.
DEFAULT_RESULT_LIMIT = 1024 * 1024
RESULT_LIMIT_ENV = "SERVERLESS_MAX_RESULT_LIMIT"
DEFAULT_PATH_ENV = "SERVERLESS_MAX_DEFAULT_PATH"
# A /run body above this is refused unread: no platform sends one (their payload limits are
# 1-5 MB before base64), so it can only exhaust the container's memory.
DEFAULT_REQUEST_LIMIT = 64 * 1024 * 1024

WsgiApp = Callable[..., Any]
HeaderValue = Union[str, List[str]]

# The media types OpenWhisk's controller knows, and whether it treats each as binary
# (base64 in __ow_body and in result bodies) or text.
REGISTERED_TEXT_TYPES = frozenset(
    """
    application/atom+xml application/base64 application/javascript application/json
    application/json-patch+json application/merge-patch+json application/problem+json
    application/problem+xml application/rss+xml application/soap+xml application/vnd.api+json
    application/vnd.google-earth.kml+xml application/x-latex application/x-vrml
    application/x-www-form-urlencoded application/xhtml+xml application/xml application/xml-dtd
    text/asp text/cache-manifest text/calendar text/css text/csv text/event-stream text/html
    text/markdown text/mcf text/plain text/richtext text/tab-separated-values text/uri-list
    text/vnd.wap.wml text/vnd.wap.wmlscript text/x-asm text/x-c text/x-component text/x-h
    text/x-java-source text/x-pascal text/x-script text/x-scriptcsh text/x-scriptelisp
    text/x-scriptksh text/x-scriptlisp text/x-scriptperl text/x-scriptperl-module
    text/x-scriptphyton text/x-scriptrexx text/x-scriptscheme text/x-scriptsh text/x-scripttcl
    text/x-scripttcsh text/x-scriptzsh text/x-server-parsed-html text/x-setext text/x-sgml
    text/x-speech text/x-uuencode text/x-vcalendar text/x-vcard text/xml
    """.split()
)
REGISTERED_BINARY_TYPES = frozenset(
    """
    application/cbor application/excel application/font-woff application/gnutar
    application/grpc+proto application/java-archive application/lha application/lzx
    application/mspowerpoint application/msword application/octet-stream application/pdf
    application/postscript application/vnd.google-earth.kmz application/vnd.ms-excel
    application/vnd.ms-excel.addin.macroenabled.12
    application/vnd.ms-excel.sheet.binary.macroenabled.12
    application/vnd.ms-excel.sheet.macroenabled.12
    application/vnd.ms-excel.template.macroenabled.12 application/vnd.ms-fontobject
    application/vnd.ms-powerpoint application/vnd.ms-powerpoint.addin.macroenabled.12
    application/vnd.ms-powerpoint.presentation.macroenabled.12
    application/vnd.ms-powerpoint.slideshow.macroenabled.12
    application/vnd.ms-word.document.macroenabled.12
    application/vnd.ms-word.template.macroenabled.12 application/vnd.oasis.opendocument.chart
    application/vnd.oasis.opendocument.database application/vnd.oasis.opendocument.formula
    application/vnd.oasis.opendocument.graphics application/vnd.oasis.opendocument.image
    application/vnd.oasis.opendocument.presentation
    application/vnd.oasis.opendocument.spreadsheet application/vnd.oasis.opendocument.text
    application/vnd.oasis.opendocument.text-master application/vnd.oasis.opendocument.text-web
    application/vnd.openxmlformats-officedocument.presentationml.presentation
    application/vnd.openxmlformats-officedocument.presentationml.slide
    application/vnd.openxmlformats-officedocument.presentationml.slideshow
    application/vnd.openxmlformats-officedocument.presentationml.template
    application/vnd.openxmlformats-officedocument.spreadsheetml.sheet
    application/vnd.openxmlformats-officedocument.spreadsheetml.template
    application/vnd.openxmlformats-officedocument.wordprocessingml.document
    application/vnd.openxmlformats-officedocument.wordprocessingml.template
    application/x-7z-compressed application/x-ace-compressed application/x-apple-diskimage
    application/x-arc-compressed application/x-bzip application/x-bzip2
    application/x-chrome-extension application/x-compress application/x-compressed
    application/x-debian-package application/x-dvi application/x-font-opentype
    application/x-font-truetype application/x-gtar application/x-gzip
    application/x-rar-compressed application/x-redhat-package-manager
    application/x-shockwave-flash application/x-tar application/x-tex application/x-texinfo
    application/x-x509-ca-cert application/x-xpinstall application/zip audio/aiff audio/basic
    audio/midi audio/mod audio/mpeg audio/ogg audio/voc audio/vorbis audio/voxware audio/wav
    audio/webm audio/x-pn-realaudio audio/x-psid audio/xm font/woff font/woff2 image/gif
    image/jpeg image/pict image/png image/svg+xml image/tiff image/webp image/x-icon
    image/x-ms-bmp image/x-pcx image/x-pict image/x-quicktime image/x-rgb image/x-xbitmap
    image/x-xpixmap message/delivery-status message/http message/rfc822 video/avs-video
    video/divx video/gl video/mp4 video/mpeg video/ogg video/quicktime video/webm video/x-dv
    video/x-flv video/x-motion-jpeg video/x-ms-asf video/x-msvideo video/x-sgi-movie
    """.split()
)

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
_TOKEN_CHARACTERS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


class BadWebRequest(Exception):
    """The /run parameters do not describe an HTTP request that can be replayed."""


# ----------------------------------------------------------------------------- media types


def parse_content_type(content_type: str) -> Tuple[str, Dict[str, str]]:
    """Split ``type/subtype; key=value`` into the lowercased media type and its parameters."""
    media_type, _, rest = content_type.partition(";")
    params = {}
    for item in rest.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            params[key.strip().lower()] = value.strip().strip('"')
    return media_type.strip().lower(), params


def is_binary(content_type: str) -> bool:
    """OpenWhisk's rule: is a body of this type carried as base64 (True) or as text?"""
    media_type, params = parse_content_type(content_type)
    if media_type.startswith("multipart/") or media_type in REGISTERED_BINARY_TYPES:
        return True
    if media_type in REGISTERED_TEXT_TYPES:
        return False
    return "charset" not in params


def is_json_family(content_type: str) -> bool:
    media_type, _ = parse_content_type(content_type)
    return media_type == "application/json" or media_type.endswith("+json")


# ----------------------------------------------------------------------------- request side


class WebRequest(object):
    """An HTTP request rebuilt from the __ow_* parameters of a web action activation."""

    def __init__(self, method: str, path: str, query: str, headers: Dict[str, str], body: bytes):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body


# binascii reads an ASCII str in place, so a large __ow_body is decoded without an encoded copy.
# Python 3.11 validates as it decodes; older versions need the alphabet checked first.
_STRICT_BASE64 = sys.version_info >= (3, 11)
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/]*={0,2}\Z")


def _decode_base64(text: str, what: str) -> bytes:
    try:
        if _STRICT_BASE64:
            return binascii.a2b_base64(text, strict_mode=True)  # novermin: only on 3.11+
        if not _BASE64_TEXT.match(text):
            raise binascii.Error("not base64")
        return binascii.a2b_base64(text)
    except (binascii.Error, ValueError):
        raise BadWebRequest("%s is not valid base64" % what)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _request_path(ow_path: Any, default_path: str) -> str:
    """The WSGI PATH_INFO for __ow_path: percent-decoded, dot segments resolved, never above '/'."""
    if not isinstance(ow_path, str):
        raise BadWebRequest("__ow_path must be a string")
    if ow_path == "":
        ow_path = default_path
    if not ow_path.startswith("/") or ow_path.startswith("//"):
        raise BadWebRequest("__ow_path must be an absolute path such as /model/predict, got %r" % ow_path)
    decoded = unquote_to_bytes(ow_path)
    if any(byte < 0x20 or byte == 0x7F for byte in decoded):
        raise BadWebRequest("__ow_path contains control characters")
    segments = []  # type: List[bytes]
    for segment in decoded.split(b"/")[1:]:
        if segment == b"..":
            if segments:
                segments.pop()
        elif segment != b".":
            segments.append(segment)
    # WSGI carries the path as bytes decoded as latin-1 (the app decodes it as UTF-8 again).
    # A leading '//host' would read as a network path to some frameworks: keep one slash.
    return "/" + "/".join(segment.decode("latin-1") for segment in segments).lstrip("/")


def _request_headers(ow_headers: Any) -> Dict[str, str]:
    if ow_headers is None:
        return {}
    if not isinstance(ow_headers, dict):
        raise BadWebRequest("__ow_headers must be an object")
    headers = {}
    for name, value in ow_headers.items():
        name = name.lower()
        # Names with '_' are dropped, as most servers do: in the WSGI environ they would be
        # indistinguishable from the '-' spelling and could shadow a header the app trusts.
        if name in _DROPPED_REQUEST_HEADERS or "_" in name or not set(name) <= _TOKEN_CHARACTERS:
            continue
        headers[name] = _as_text(value)
    return headers


def _raw_body(ow_body: Any, content_type: str) -> bytes:
    """__ow_body of a raw web action: base64 for binary types and exactly application/json."""
    if not isinstance(ow_body, str):
        raise BadWebRequest("__ow_body must be a string for a raw web action")
    if ow_body == "":
        return b""
    media_type, _ = parse_content_type(content_type)
    if is_binary(content_type) or media_type == "application/json":
        return _decode_base64(ow_body, "__ow_body")
    return ow_body.encode("utf-8")


def _merged_body(ow_body: Any, content_type: str) -> bytes:
    """__ow_body of a non-raw web action: parsed JSON for JSON types, else as in raw mode."""
    if is_json_family(content_type):
        return json.dumps(ow_body).encode("utf-8")
    return _raw_body(ow_body, content_type)


def build_request(params: Dict[str, Any], default_path: str) -> WebRequest:
    """Rebuild the HTTP request a web action activation stands for.

    Raw web actions (``--web raw``) carry the query and body untouched in ``__ow_query`` and
    ``__ow_body``. Other web actions have query parameters and JSON-object or form bodies
    merged into the top-level parameters: they are turned back into a JSON or form body (by
    the request's content type) or into the query string. Parameters without ``__ow_method``
    (a plain ``wsk action invoke``) become a JSON POST to the default path.
    """
    ow_method = params.get("__ow_method", "post")
    if not isinstance(ow_method, str) or not ow_method or not set(ow_method.lower()) <= _TOKEN_CHARACTERS:
        raise BadWebRequest("__ow_method must be an HTTP method name")
    method = ow_method.upper()
    path = _request_path(params.get("__ow_path", ""), default_path)
    headers = _request_headers(params.get("__ow_headers"))
    content_type = headers.get("content-type", "")

    if "__ow_query" in params:
        query = params["__ow_query"]
        if not isinstance(query, str):
            raise BadWebRequest("__ow_query must be a string")
        body = _raw_body(params.get("__ow_body", ""), content_type or "application/octet-stream")
        return WebRequest(method, path, query, headers, body)

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
    return WebRequest(method, path, query, headers, body)


def wsgi_environ(request: WebRequest, activation: Dict[str, str]) -> Dict[str, Any]:
    host = request.headers.get("host", "localhost")
    scheme = "https" if request.headers.get("x-forwarded-proto") == "https" else "http"
    server_name, separator, server_port = host.rpartition(":")
    if not separator or "]" in server_port:  # no port, or the tail of an IPv6 literal
        server_name, server_port = host, ""
    environ = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": request.path,
        "QUERY_STRING": request.query.encode("utf-8").decode("latin-1"),
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port or ("443" if scheme == "https" else "80"),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_LENGTH": str(len(request.body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "openwhisk.activation": activation,
    }  # type: Dict[str, Any]
    for name, value in request.headers.items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ[key] = value
        else:
            environ["HTTP_" + key] = value.encode("utf-8").decode("latin-1")
    return environ


def call_app(app: WsgiApp, environ: Dict[str, Any]) -> Tuple[int, List[Tuple[str, str]], bytes]:
    """Call a WSGI app and collect its whole response."""
    started = {}  # type: Dict[str, Any]
    chunks = []  # type: List[bytes]

    def start_response(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        started["status"] = status
        started["headers"] = headers
        return chunks.append

    iterable = app(environ, start_response)
    try:
        for chunk in iterable:
            chunks.append(chunk)
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    return int(started["status"].split(None, 1)[0]), list(started["headers"]), b"".join(chunks)


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


def web_result(status: int, headers: List[Tuple[str, str]], body: bytes) -> Dict[str, Any]:
    """Project an HTTP response into the result OpenWhisk's controller turns back into it.

    The controller base64-decodes string bodies of binary types, and also of JSON types when
    they look like base64 (so a JSON body of ``true`` or ``1234`` would be corrupted if sent
    as text): both are sent base64-encoded. Other text is sent as a string, which the
    controller sends as UTF-8.
    """
    result_headers = {}  # type: Dict[str, HeaderValue]
    names = {}  # type: Dict[str, str]
    for name, value in headers:
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

    result = {"statusCode": status, "headers": result_headers}  # type: Dict[str, Any]
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
    if is_binary(content_type) or is_json_family(content_type):
        result["body"] = base64.b64encode(body).decode("ascii")
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


def error_result(status: int, message: str) -> Dict[str, Any]:
    """A web response carrying a JSON error, for failures the shim detects itself."""
    body = json.dumps({"error": message}).encode("utf-8")
    return web_result(status, [("Content-Type", "application/json")], body)


def encode_result(result: Dict[str, Any], limit: int) -> bytes:
    """Serialise a result, replacing it by a 413 web response when over the platform's limit."""
    payload = json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(payload) <= limit:
        return payload
    message = ("the response is %d bytes once encoded for OpenWhisk, over the result limit of %d bytes; "
               "send a smaller input, or raise the limit with %s (and the platform's own limit)"
               % (len(payload), limit, RESULT_LIMIT_ENV))
    log(message)
    return json.dumps(error_result(413, message)).encode("utf-8")


# ----------------------------------------------------------------------------- the model app


def log(message: str) -> None:
    sys.stderr.write("serverless-max: %s\n" % message)
    sys.stderr.flush()


def load_app(app_dir: str) -> WsgiApp:
    """Build the Flask app the image's own ``app.py`` builds, without starting its server.

    Every MAX ``app.py`` calls ``max_app.run()`` when imported. It is run as ``__main__`` with
    ``run`` replaced by a function that records the app instead of serving it, so every route
    the model registers is kept, and the model is loaded by its own code.
    """
    os.chdir(app_dir)
    sys.path.insert(0, os.getcwd())
    import flask  # imported here: the model's directory may bring its own sys.path entries

    started = []  # type: List[Any]

    def record_instead_of_serving(instance: Any, *args: Any, **kwargs: Any) -> None:
        started.append(instance)

    patched = [(flask.Flask, flask.Flask.run)]
    try:
        from maxfw.core.app import MAXApp

        patched.append((MAXApp, MAXApp.run))
    except ImportError:
        MAXApp = None
    for cls, _ in patched:
        cls.run = record_instead_of_serving
    try:
        namespace = runpy.run_path("app.py", run_name="__main__")
    finally:
        for cls, original in patched:
            cls.run = original
    candidates = started + list(namespace.values())
    for candidate in candidates:
        if MAXApp is not None and isinstance(candidate, MAXApp):
            return candidate.app
        if isinstance(candidate, flask.Flask):
            return candidate
    raise RuntimeError("app.py in %s built no MAXApp or Flask app" % os.getcwd())


# ----------------------------------------------------------------------------- the action


class Action(object):
    """The state of this action container: its model app, /init status and settings."""

    def __init__(self, app: Optional[WsgiApp], load_error: Optional[str], default_path: str, result_limit: int,
                 concurrent: bool):
        self.app = app
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
            for name, setting in env.items():
                os.environ[str(name)] = _as_text(setting)
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
        exported = activation_environment(message)
        activation = dict((k, v) for k, v in exported.items() if k != "__OW_API_KEY")
        if self.concurrent:
            # Overlapping activations cannot share os.environ: each one's metadata is in
            # its own WSGI environ only.
            return 200, self._handle(params, activation)
        with self._run_lock:
            saved = dict((name, os.environ.get(name)) for name in exported)
            os.environ.update(exported)
            try:
                return 200, self._handle(params, activation)
            finally:
                for name, previous in saved.items():
                    if previous is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = previous

    def _handle(self, params: Dict[str, Any], activation: Dict[str, str]) -> Dict[str, Any]:
        try:
            request = build_request(params, os.environ.get(DEFAULT_PATH_ENV) or self.default_path)
        except BadWebRequest as error:
            log("bad request: %s" % error)
            return error_result(400, str(error))
        except (UnicodeError, RecursionError) as error:  # lone surrogates, absurdly deep params
            log("bad request: %s" % type(error).__name__)
            return error_result(400, "the request could not be rebuilt: %s" % type(error).__name__)
        # The base64 text is no longer needed: free it before the model runs.
        params.pop("__ow_body", None)
        try:
            status, headers, body = call_app(self.app, wsgi_environ(request, activation))
            return web_result(status, headers, body)
        except Exception:
            traceback.print_exc()
            return error_result(500, "the model app failed while answering; see the activation logs")

    def result_limit_now(self) -> int:
        """The result limit: SERVERLESS_MAX_RESULT_LIMIT (container or /init env), else the flag."""
        try:
            return int(os.environ.get(RESULT_LIMIT_ENV) or self.result_limit)
        except ValueError:
            log("warning: %s is not a number of bytes; using %d" % (RESULT_LIMIT_ENV, self.result_limit))
            return self.result_limit


def activation_environment(message: Dict[str, Any]) -> Dict[str, str]:
    """The __OW_* variables of a /run: every key but value, as the reference runtimes export them.

    Keys or values the process environment cannot hold (odd characters, NUL bytes) are skipped.
    """
    exported = {}
    for key, value in message.items():
        if key == "value" or not _ENVIRONMENT_KEY.match(key):
            continue  # never serialise the params: they hold the whole request body
        text = _as_text(value)
        if "\x00" not in text:
            exported["__OW_" + key.upper()] = text
    return exported


def end_activation_logs() -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.write(ACTIVATION_END + "\n")
        stream.flush()


class ProxyHandler(BaseHTTPRequestHandler):
    """The invoker's side of the protocol: POST /init and POST /run, JSON in and out."""

    protocol_version = "HTTP/1.1"
    server_version = "serverless-max/" + __version__
    # Without concurrency one connection is served at a time: a peer that connects and then
    # stalls must not hold the action forever.
    timeout = 60
    action = None  # type: Action
    request_limit = DEFAULT_REQUEST_LIMIT

    def do_POST(self) -> None:
        if self.path not in ("/init", "/run"):
            self._discard_body()
            self._reply(404, {"error": "Unknown path %s: this action answers POST /init and POST /run." % self.path})
            return
        body = self._read_body()
        if body is None:
            status, reply = self._oversized_or_unsized()
        else:
            try:
                # Decoded and parsed as separate steps so that each large copy is freed as soon
                # as the next one exists: the bytes before parsing, the text after.
                text = body.decode("utf-8")
                del body
                message = json.loads(text)
                del text
            except (ValueError, RecursionError) as error:
                status, reply = 400, {"error": "The %s body is not valid JSON: %s" % (self.path, error)}
            else:
                status, reply = self._dispatch(message)
        if self.path == "/run":
            payload = encode_result(reply, self.action.result_limit_now()) if status == 200 else _json_bytes(reply)
            end_activation_logs()
            self._send(status, payload)
        else:
            if status not in (200, 403):
                end_activation_logs()
            self._reply(status, reply)

    def _dispatch(self, message: Any) -> Tuple[int, Dict[str, Any]]:
        try:
            return (self.action.init if self.path == "/init" else self.action.run)(message)
        except Exception:  # a bug here must still get an answer, and the server keeps serving
            traceback.print_exc()
            return 500, {"error": "The action proxy failed on this %s; see the logs." % self.path}

    def do_GET(self) -> None:
        self._reply(405, {"error": "Use POST /init and POST /run."})

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def _oversized_or_unsized(self) -> Tuple[int, Dict[str, Any]]:
        if self.headers.get("Content-Length") is None:
            return 411, {"error": "A Content-Length header is required."}
        if self._content_length() is None:
            return 400, {"error": "The Content-Length header is not a number of bytes."}
        if self.path == "/run":
            return 200, error_result(413, "the request is over the action's limit of %d bytes" % self.request_limit)
        return 413, {"error": "The /init body is over the limit of %d bytes." % self.request_limit}

    def _content_length(self) -> Optional[int]:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return None
        return length if length >= 0 else None

    def _read_body(self) -> Optional[bytes]:
        """The request body, or None when it has no usable length or is over the limit."""
        length = self._content_length()
        if length is None:
            return None
        if length > self.request_limit:
            self._discard(length)
            return None
        return self.rfile.read(length)

    def _discard_body(self) -> None:
        length = self._content_length()
        if length is None:
            self.close_connection = True
        else:
            self._discard(length)

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)

    def _reply(self, status: int, reply: Dict[str, Any]) -> None:
        self._send(status, _json_bytes(reply))

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        # The invoker never reuses a connection; closing it frees a one-at-a-time server at once.
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # Access lines would land in the next activation's logs, after this one's sentinels.
        pass


def _json_bytes(value: Dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


class ProxyServer(HTTPServer):
    """Serves one connection at a time, as the invoker sends one activation at a time."""

    allow_reuse_address = True
    request_queue_size = 128


class ConcurrentProxyServer(ThreadingMixIn, ProxyServer):
    """A thread per connection, for actions that allow overlapping activations."""

    daemon_threads = True


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Serve a MAX model app as an OpenWhisk Docker action (POST /init, POST /run).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default %(default)s)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default %(default)s)")
    parser.add_argument("--app-dir", default=".", help="the model's directory, holding app.py (default: current)")
    parser.add_argument("--default-path", default=DEFAULT_PATH,
                        help="app path for a web request with an empty __ow_path (default %(default)s; "
                             "the environment variable " + DEFAULT_PATH_ENV + " overrides it)")
    parser.add_argument("--result-limit", type=int, default=DEFAULT_RESULT_LIMIT,
                        help="largest result in bytes, as the platform's (default %(default)s; "
                             "the environment variable " + RESULT_LIMIT_ENV + " overrides it)")
    parser.add_argument("--request-limit", type=int, default=DEFAULT_REQUEST_LIMIT,
                        help="largest /run body in bytes (default %(default)s)")
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    app, load_error = None, None
    try:
        app = load_app(args.app_dir)
    except BaseException as error:  # noqa: B902 - the model may even call sys.exit
        if isinstance(error, KeyboardInterrupt):
            raise
        traceback.print_exc()
        load_error = "The model app in %s failed to load: %s: %s" % (
            os.path.abspath(args.app_dir), type(error).__name__, error)
        log(load_error)
    # __OW_ALLOW_CONCURRENT=true: the invoker may overlap activations (those created with -c N, N > 1).
    concurrent = os.environ.get("__OW_ALLOW_CONCURRENT", "").lower() == "true"
    ProxyHandler.action = Action(app, load_error, args.default_path, args.result_limit, concurrent)
    ProxyHandler.request_limit = args.request_limit
    try:
        server_class = ConcurrentProxyServer if concurrent else ProxyServer
        server = server_class((args.host, args.port), ProxyHandler)
    except OSError as error:
        log("cannot listen on %s:%d: %s" % (args.host, args.port, error))
        sys.exit(2)
    # As PID 1 in a container the process gets no default SIGTERM handling: stop cleanly.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    log("listening on %s:%d" % (args.host, args.port))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
