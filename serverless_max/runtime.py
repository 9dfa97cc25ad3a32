"""What every platform shares: the model's app, one HTTP request through it, limits, errors, logs.

A platform module turns its own protocol into a ``Request``, hands it to ``ModelApp.respond``
and turns the ``Response`` back into its protocol. Nothing here knows which platform it serves.
"""

import http.client
import io
import json
import os
import re
import runpy
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

WsgiApp = Callable[..., Any]
Headers = List[Tuple[str, str]]

DEFAULT_PATH = "/model/predict"
DEFAULT_PATH_ENV = "SERVERLESS_MAX_DEFAULT_PATH"
RESULT_LIMIT_ENV = "SERVERLESS_MAX_RESULT_LIMIT"
REQUEST_LIMIT_ENV = "SERVERLESS_MAX_REQUEST_LIMIT"
SCRIPT_NAME_ENV = "SERVERLESS_MAX_SCRIPT_NAME"
READ_SECONDS_ENV = "SERVERLESS_MAX_READ_SECONDS"

_REASON_PHRASE = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z")
_STATUS_CODE = re.compile(r"[0-9]{3}\Z")
_TOKEN_CHARACTERS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class Terminated(BaseException):
    """SIGTERM or SIGINT arrived (its name is the text): stop at once (raised by the signal handler,
    so the model's load ends too)."""


class BadRequest(Exception):
    """The platform's request cannot be turned into an HTTP request for the app (a 400)."""


class UnsendableStatus(Exception):
    """The app answered a status that cannot be sent as a final HTTP status."""


def log(message: str) -> None:
    sys.stderr.write("serverless-max: %s\n" % message)
    sys.stderr.flush()


def is_token(name: str) -> bool:
    """An HTTP token: a valid method or header name."""
    return bool(name) and set(name) <= _TOKEN_CHARACTERS


def app_may_see_header(name: str) -> bool:
    """A request header name that is passed to the app: a token without '_'. Names with '_' are
    dropped, as most servers do: in the WSGI environ they would be indistinguishable from the '-'
    spelling and could shadow a header the app trusts."""
    return "_" not in name and is_token(name)


def strip_prefix(path: str, prefix: str) -> Optional[str]:
    """The rest of ``path`` after ``prefix`` when the path begins with it as whole segments, else None."""
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        return path[len(prefix):]
    return None


def wsgi_string(text: str, what: str) -> str:
    """Text as WSGI carries it: its UTF-8 bytes, one character per byte (PEP 3333 'native strings')."""
    try:
        return text.encode("utf-8").decode("latin-1")
    except UnicodeError:
        raise BadRequest("%s is not valid text (it holds a lone surrogate)" % what)


class Request(object):
    """One HTTP request for the app. ``path``, ``query``, header values and ``script_name`` are
    WSGI strings (bytes decoded as latin-1); ``path`` is percent-decoded, ``query`` is not."""

    def __init__(self, method: str, path: str, query: str, headers: Headers, body: bytes,
                 script_name: str = "", scheme: str = "http", remote_addr: str = "127.0.0.1",
                 extra_environ: Optional[Dict[str, Any]] = None):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.script_name = script_name
        self.scheme = scheme
        self.remote_addr = remote_addr
        self.extra_environ = extra_environ or {}

    def header(self, name: str, default: str = "") -> str:
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return default


class Response(object):
    """The app's whole response: status code, headers as the app set them, body bytes, and the
    reason phrase the app gave (None for the standard one)."""

    def __init__(self, status: int, headers: Headers, body: bytes, reason: Optional[str] = None):
        self.status = status
        self.headers = headers
        self.body = body
        self.reason = reason

    def header(self, name: str) -> Optional[str]:
        lower = name.lower()
        found = None
        for key, value in self.headers:
            if key.lower() == lower:
                found = value
        return found


def reason_phrase(status: int, reason: Optional[str]) -> str:
    """The app's reason phrase when a status line can carry it (HTAB, SP, visible ASCII, obs-text),
    else the standard one."""
    if reason and _REASON_PHRASE.match(reason):
        return reason
    return http.client.responses.get(status, "Unknown")


def error_response(status: int, message: str) -> Response:
    """A JSON error for failures the runtime detects itself: ``{"error": message}``."""
    body = json.dumps({"error": message}).encode("utf-8")
    return Response(status, [("Content-Type", "application/json")], body)


def script_name_override() -> Optional[str]:
    """SERVERLESS_MAX_SCRIPT_NAME: the prefix the app is mounted under, when a gateway remounts it."""
    value = os.environ.get(SCRIPT_NAME_ENV)
    if value is None:
        return None
    return "/" + value.strip("/") if value.strip("/") else ""


def wsgi_environ(request: Request) -> Dict[str, Any]:
    host = request.header("host", "localhost")
    server_name, separator, server_port = host.rpartition(":")
    if not separator or "]" in server_port:  # no port, or the tail of an IPv6 literal
        server_name, server_port = host, ""
    environ = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": request.script_name,
        "PATH_INFO": request.path,
        "QUERY_STRING": request.query,
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port or ("443" if request.scheme == "https" else "80"),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": request.remote_addr,
        "CONTENT_LENGTH": str(len(request.body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": request.scheme,
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }  # type: Dict[str, Any]
    environ.update(request.extra_environ)
    for name, value in request.headers:
        key = name.upper().replace("-", "_")
        if key == "CONTENT_LENGTH":
            continue  # set from the body the app is given
        environ[key if key == "CONTENT_TYPE" else "HTTP_" + key] = value
    return environ


def _valid_header(name: Any, value: Any) -> bool:
    """What an HTTP response can carry: a token name, a latin-1 value on one line."""
    if not isinstance(name, str) or not isinstance(value, str) or not is_token(name):
        return False
    if "\r" in value or "\n" in value:
        return False
    try:
        value.encode("latin-1")
    except UnicodeError:
        return False
    return True


class ModelApp(object):
    """The model's WSGI app, called once per request, its answer collected whole."""

    def __init__(self, app: WsgiApp):
        self.app = app

    def respond(self, request: Request) -> Response:
        """The app's response, or a JSON error: 500 when the app raises, 502 when it answers
        something HTTP cannot carry. Never raises for anything the app does.

        It takes the request's body (``request.body`` is empty afterwards); the caller must keep
        no other reference to it.
        """
        environ = wsgi_environ(request)
        # The body now lives in wsgi.input alone. An exception inside the app keeps every frame
        # below it, ours and the platform's included, alive through reference cycles until the
        # cyclic collector runs: nothing there may hold the body, and wsgi.input is closed after
        # the call, so a failing request frees its body at once, as a succeeding one does.
        request.body = b""
        try:
            response = self._call(environ)
        except UnsendableStatus as error:
            log("the model app answered the status %r, which is not a final HTTP status (200-599)" % error.args[0])
            return error_response(502, "the model app answered the status %r, which HTTP cannot send as a final "
                                       "status (200-599)" % error.args[0])
        except (Exception, SystemExit):  # the model may even call sys.exit
            traceback.print_exc()
            return error_response(500, "the model app failed while answering; see the logs")
        finally:
            environ["wsgi.input"].close()
        for name, value in response.headers:
            if not _valid_header(name, value):
                log("the model app answered a header HTTP cannot carry: %r: %r" % (name, value))
                return error_response(502, "the model app answered a response header that HTTP cannot carry "
                                           "(%s); see the logs" % (name if isinstance(name, str) else "?"))
        return response

    def _call(self, environ: Dict[str, Any]) -> Response:
        started = {}  # type: Dict[str, Any]
        chunks = []  # type: List[bytes]

        def start_response(status: str, headers: Headers, exc_info: Any = None) -> Callable[[bytes], None]:
            started["status"] = status
            started["headers"] = headers
            return chunks.append

        iterable = self.app(environ, start_response)
        try:
            for chunk in iterable:
                chunks.append(chunk)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        status = str(started["status"])
        code, _, reason = status.partition(" ")
        # 1xx are interim answers: one as the final answer would leave the client waiting for another.
        if not _STATUS_CODE.match(code) or not 200 <= int(code) <= 599:
            raise UnsendableStatus(status[:100])
        return Response(int(code), list(started["headers"]), b"".join(chunks), reason=reason or None)


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


def load_model(app_dir: str) -> Tuple[Optional[ModelApp], Optional[str]]:
    """The model's app, or None and the error to answer with.

    The error names the exception's type only: exception texts can carry secrets (a database
    URL with its password), so the full text and traceback go to the logs alone.
    """
    where = os.path.abspath(app_dir)
    try:
        return ModelApp(load_app(app_dir)), None
    except BaseException as error:  # noqa: B902 - the model may even call sys.exit
        if isinstance(error, (KeyboardInterrupt, Terminated)):
            raise
        traceback.print_exc()
        log("the model app in %s failed to load: %s: %s" % (where, type(error).__name__, error))
        return None, ("The model app in %s failed to load (%s); the logs have the details."
                      % (where, type(error).__name__))


def byte_limit(env_name: str, default: int) -> int:
    """A limit in bytes: the environment variable when it holds a positive number, else the default."""
    return int(positive_setting(env_name, default, int, "a number of bytes"))


def seconds_setting(env_name: str, default: float) -> float:
    """A duration: the environment variable when it holds a positive number of seconds, else the default."""
    return positive_setting(env_name, default, float, "a number of seconds")


def positive_setting(env_name: str, default: Any, kind: Callable[[str], Any], what: str) -> Any:
    """A positive, finite number of ``kind`` from the environment; the default, with a warning, otherwise."""
    value = os.environ.get(env_name)
    if not value:
        return default
    try:
        number = kind(value)
    except ValueError:
        number = 0
    if not 0 < number < float("inf"):
        log("warning: %s=%r is not %s; using %s" % (env_name, value, what, default))
        return default
    return number
