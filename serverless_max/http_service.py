"""Knative Serving, Google Cloud Run, IBM Code Engine and any container platform: plain HTTP/1.1.

The model's own routes are served on ``$PORT``, each request handed to the app as it arrived.
The port opens only once the model has loaded, because these platforms take an open port (or an
answering HTTP probe) to mean "ready": a model that fails to load makes the process exit with
status 1, so the platform reports the revision as failed instead of routing requests to it.

Requests are served concurrently, a thread per connection, with at most
SERVERLESS_MAX_CONCURRENCY of them in the app at once; the others wait for a slot. SIGTERM stops
accepting connections, lets the requests in flight finish, and exits with status 0. Every request
gets one JSON access-log line on stdout in the shape Cloud Logging reads (``severity``,
``httpRequest``, ``message``, trace fields); the app's own output is left as it is.
"""

import json
import os
import re
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple
from urllib.parse import unquote_to_bytes

from . import runtime
from .runtime import BadRequest, ModelApp, Request, Response, log
from .server import BodyError, CutOff, Handler, ThreadingServer

DEFAULT_PORT = 8080
# Cloud Run refuses HTTP/1 requests over 32 MiB itself and fails responses over 32 MiB that are
# not streamed (every response here has a Content-Length); Knative has no limit of its own.
DEFAULT_REQUEST_LIMIT = 32 * 1024 * 1024
DEFAULT_RESULT_LIMIT = 32 * 1024 * 1024
# Cloud Run sends up to 80 requests at once to an instance by default.
DEFAULT_CONCURRENCY = 80
# The default request timeout of Knative and Cloud Run: a request still waiting for a slot
# after it has been answered with a 504 by the platform is waiting for no one.
DEFAULT_QUEUE_SECONDS = 300.0
# Long enough for a large image uploaded over a slow connection.
DEFAULT_READ_SECONDS = 60.0
# Cloud Run kills an instance 10 s after SIGTERM; exit before, having logged what was cut off.
DEFAULT_SHUTDOWN_SECONDS = 9.0
# Idle keep-alive connections are kept longer than proxies keep theirs (Google Cloud's load
# balancers 600 s), so that the proxy, not this server, closes them: no request is sent on a connection
# this server is closing.
IDLE_SECONDS = 620.0
# A client reading the answer slower than this may be cut off (a 32 MiB answer gets 8.5 minutes
# on top of the read deadline); a client that stops reading cannot hold a thread forever.
SLOWEST_READER_BYTES_PER_SECOND = 64 * 1024

CONCURRENCY_ENV = "SERVERLESS_MAX_CONCURRENCY"
QUEUE_SECONDS_ENV = "SERVERLESS_MAX_QUEUE_SECONDS"
SHUTDOWN_SECONDS_ENV = "SERVERLESS_MAX_SHUTDOWN_SECONDS"
ACCESS_LOG_ENV = "SERVERLESS_MAX_ACCESS_LOG"

# Request headers not given to the app: the body it gets is already de-chunked and counted.
_FRAMING_HEADERS = frozenset(["content-length", "transfer-encoding"])
# Response headers this server writes itself.
_HOP_BY_HOP = frozenset("connection keep-alive transfer-encoding te trailer upgrade proxy-connection".split())
_FOLDED_LINE = re.compile(r"\r?\n[ \t]*")
_CLOUD_TRACE = re.compile(r"\A([0-9a-fA-F]{32})(?:/([0-9]+))?(?:;o=([01]))?")
_TRACEPARENT = re.compile(r"\A[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


# ----------------------------------------------------------------------------- settings


class Settings(object):
    """What the service is configured with, from the command line and the environment."""

    def __init__(self, options: Any):
        env_port = os.environ.get("PORT", "")
        if env_port and not env_port.isdigit():
            log("warning: PORT=%r is not a port number; using %d" % (env_port, DEFAULT_PORT))
        self.host = options.host
        self.port = options.port or (int(env_port) if env_port.isdigit() else DEFAULT_PORT)
        self.request_limit = runtime.byte_limit(runtime.REQUEST_LIMIT_ENV, options.request_limit or DEFAULT_REQUEST_LIMIT)
        self.result_limit = runtime.byte_limit(runtime.RESULT_LIMIT_ENV, options.result_limit or DEFAULT_RESULT_LIMIT)
        self.concurrency = max(1, int(runtime.positive_setting(CONCURRENCY_ENV, DEFAULT_CONCURRENCY, float,
                                                               "a number of requests")))
        self.queue_seconds = runtime.seconds_setting(QUEUE_SECONDS_ENV, DEFAULT_QUEUE_SECONDS)
        self.read_seconds = runtime.seconds_setting(runtime.READ_SECONDS_ENV, DEFAULT_READ_SECONDS)
        self.shutdown_seconds = runtime.seconds_setting(SHUTDOWN_SECONDS_ENV, DEFAULT_SHUTDOWN_SECONDS)
        self.script_name = runtime.script_name_override() or ""
        self.access_log = os.environ.get(ACCESS_LOG_ENV, "on").strip().lower() not in ("off", "0", "false", "no")
        self.project = os.environ.get("GOOGLE_CLOUD_PROJECT", "")


# ----------------------------------------------------------------------------- the service


class Service(object):
    """The model app behind a bound on concurrent calls, and the requests in flight."""

    def __init__(self, model: ModelApp, settings: Settings):
        self.model = model
        self.settings = settings
        self.draining = False
        self._slots = threading.BoundedSemaphore(settings.concurrency)
        self._in_flight = 0
        self._state = threading.Condition()
        self._idle = set()  # type: Set[socket.socket]

    def respond(self, request: Request) -> Response:
        if not self._slots.acquire(timeout=self.settings.queue_seconds):
            message = ("all %d request slots stayed busy for %g s; retry later, or raise %s"
                       % (self.settings.concurrency, self.settings.queue_seconds, CONCURRENCY_ENV))
            log(message)
            response = runtime.error_response(503, message)
            response.headers.append(("Retry-After", "1"))
            return response
        try:
            response = self.model.respond(request)
        finally:
            self._slots.release()
        if len(response.body) > self.settings.result_limit:
            message = ("the response is %d bytes, over the result limit of %d bytes; send a smaller input, "
                       "or raise the limit with %s (and the platform's own)"
                       % (len(response.body), self.settings.result_limit, runtime.RESULT_LIMIT_ENV))
            log(message)
            return runtime.error_response(413, message)
        return response

    @contextmanager
    def request_in_flight(self) -> Iterator[None]:
        with self._state:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._state:
                self._in_flight -= 1
                self._state.notify_all()

    @contextmanager
    def idle(self, connection: socket.socket) -> Iterator[None]:
        """A keep-alive connection waiting for its next request: closed at once when draining."""
        with self._state:
            if self.draining:
                _shut_reading(connection)
            self._idle.add(connection)
        try:
            yield
        finally:
            with self._state:
                self._idle.discard(connection)

    def drain(self, seconds: float) -> int:
        """Stop reading idle connections and wait for the requests in flight; those still running."""
        deadline = time.monotonic() + seconds
        with self._state:
            self.draining = True
            for connection in self._idle:
                _shut_reading(connection)
            while self._in_flight and time.monotonic() < deadline:
                self._state.wait(max(0.0, deadline - time.monotonic()))
            return self._in_flight


def _shut_reading(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RD)
    except OSError:
        pass


# ----------------------------------------------------------------------------- the request


def request_path(target: str, script_name: str) -> str:
    """PATH_INFO for a request target: percent-decoded, as a WSGI string, the mount prefix removed."""
    if not target.startswith("/"):
        scheme, separator, rest = target.partition("://")
        if not separator or scheme.lower() not in ("http", "https"):
            raise BadRequest("The request target %r is not a path such as /model/predict." % target[:100])
        target = "/" + rest.partition("/")[2]  # absolute-form, as sent to proxies
    path = unquote_to_bytes(target.partition("?")[0].encode("latin-1")).decode("latin-1")
    rest = runtime.strip_prefix(path, script_name)
    return path if rest is None else rest


def request_headers(message: Any) -> List[Tuple[str, str]]:
    """The headers as received, one entry per name (repeated ones joined with commas, as WSGI
    servers do), without those the server consumed: the app gets a de-chunked body, and without
    names the app may not see (runtime.app_may_see_header)."""
    joined = {}  # type: Dict[str, Tuple[str, str]]
    for name, value in message.items():
        lower = name.lower()
        if lower in _FRAMING_HEADERS or not runtime.app_may_see_header(name):
            continue
        value = _FOLDED_LINE.sub(" ", value).strip()
        if lower in joined:
            value = joined[lower][1] + "," + value
            name = joined[lower][0]
        joined[lower] = (name, value)
    return list(joined.values())


class HttpHandler(Handler):
    """One connection: its requests, one after another, straight to the model's routes."""

    service = None  # type: Service
    disable_nagle_algorithm = True  # a small body written after its headers must not wait for an ACK

    def handle_one_request(self) -> None:
        # The read deadline of each request starts at its first byte, not when the connection
        # went idle: a keep-alive connection may wait long for its next request.
        self.server.deadlines.release(self.connection)
        try:
            with self.service.idle(self.connection):
                self.connection.settimeout(IDLE_SECONDS)
                arrived = self.rfile.peek(1)
        except (OSError, ValueError):  # a timeout, a reset, or a file closed after a timeout
            arrived = b""
        if not arrived:
            self.close_connection = True
            return
        self.connection.settimeout(self.read_seconds)
        self.server.deadlines.watch(self.connection, self.read_seconds)
        self.started = time.monotonic()
        self.logged = False
        # Nothing of the previous request on this connection may answer for this one.
        self.command = self.path = self.headers = None
        self.requestline = ""
        self.request_size = None  # type: Optional[int]
        with self.service.request_in_flight():
            Handler.handle_one_request(self)

    def __getattr__(self, name: str) -> Any:
        # Every method goes to the app, as the model's own server would take it (it answers 405
        # for the methods a route does not accept).
        if name.startswith("do_"):
            return self.serve
        raise AttributeError(name)

    def serve(self) -> None:
        settings = self.service.settings
        if self.request_version == "HTTP/0.9" or not runtime.is_token(self.command):
            self.send_error(400, "The request line is not an HTTP/1.x request.")
            return
        try:
            path = request_path(self.path, settings.script_name)
        except BadRequest as error:
            self._drop_body()
            self.send_error(400, str(error))
            return
        try:
            body = self.read_request_body()
        except (CutOff, OSError):  # the deadline's shutdown, a socket timeout, or a reset
            self.close_connection = True
            if time.monotonic() - self.started >= self.read_seconds:
                self.send_error(408, "The whole request did not arrive within %g s." % self.read_seconds)
            else:
                self._log_line("WARNING", "%s %s: the client went away before its whole request arrived"
                               % (self.command, self.path[:200]))
            return
        except BodyError as error:
            self.close_connection = True
            message = error.message
            if error.status == 413:
                message += self._raise_request_limit()
            self.send_error(error.status, message)
            return
        self.request_is_read()
        self.request_size = len(body)
        forwarded_proto = self.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        request = Request(self.command, path, self.path.partition("?")[2], request_headers(self.headers), body,
                          script_name=settings.script_name, scheme="https" if forwarded_proto == "https" else "http",
                          remote_addr=self.client_address[0])
        del body
        self.write_response(self.service.respond(request))

    def read_request_body(self) -> bytes:
        """The body by its framing: none without Content-Length or Transfer-Encoding (RFC 9112 6.3)."""
        transfer_encoding = self.headers.get("Transfer-Encoding")
        if transfer_encoding is not None:
            if self.headers.get("Content-Length") is not None:
                self.close_connection = True  # a message framed twice: never trust what follows it
            if transfer_encoding.strip().lower() != "chunked":
                raise BodyError(501, "Transfer-Encoding %s is not supported; send the body with a Content-Length "
                                     "or chunked." % transfer_encoding[:100])
            return self.read_body()
        if self.headers.get("Content-Length") is None:
            return b""
        return self.read_body()

    def handle_expect_100(self) -> bool:
        """Refuse a body over the limit before the client sends it (curl asks first for large uploads)."""
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.request_limit:
            self.send_error(413, "The request body is %s bytes, over the limit of %d bytes.%s"
                            % (length, self.request_limit, self._raise_request_limit()))
            return False
        return Handler.handle_expect_100(self)

    def _raise_request_limit(self) -> str:
        return (" Raise the limit with %s (Cloud Run itself takes at most 32 MiB over HTTP/1)."
                % runtime.REQUEST_LIMIT_ENV)

    def write_response(self, response: Response) -> None:
        """The app's status and headers, a Content-Length, then the body (none for HEAD)."""
        status = response.status
        head_only = self.command == "HEAD"
        has_body = not (100 <= status < 200 or status in (204, 304))
        self.send_response_only(status)
        app_length = None
        for name, value in response.headers:
            lower = name.lower()
            if lower == "content-length":
                app_length = value
            elif lower not in _HOP_BY_HOP:
                self.send_header(name, value)
        if response.header("Date") is None:
            self.send_header("Date", self.date_time_string())
        if response.header("Server") is None:
            self.send_header("Server", self.version_string())
        if has_body and not head_only:
            self.send_header("Content-Length", str(len(response.body)))
        elif app_length is not None and (head_only or status == 304):
            self.send_header("Content-Length", app_length)  # the size a GET would have had
        if self.service.draining:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        elif self.request_version == "HTTP/1.0":
            self.send_header("Connection", "keep-alive")
        written = 0
        self.connection.settimeout(self.read_seconds + len(response.body) / SLOWEST_READER_BYTES_PER_SECOND)
        try:
            self.end_headers()
            if has_body and not head_only and response.body:
                self.wfile.write(response.body)
                written = len(response.body)
        except OSError:
            self.close_connection = True
        self._access_log(status, written)

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """Errors the server finds itself, the request line's included, as JSON like the action's."""
        if self.request_version in ("HTTP/0.9", ""):
            self.request_version = "HTTP/1.1"  # never answer without a status line
        default_message = self.responses.get(code, ("Error",))[0]
        self.close_connection = True
        self.write_response(runtime.error_response(code, message or default_message))

    def _drop_body(self) -> None:
        """Drain a body within the limit that will not be used, so the client reads the error, not a reset."""
        length = self.headers.get("Content-Length", "")
        if self.headers.get("Transfer-Encoding") is None and length.isdigit() and int(length) <= self.request_limit:
            self._discard(int(length))

    # ------------------------------------------------------------------------- access log

    def _access_log(self, status: int, response_size: int) -> None:
        settings = self.service.settings
        if not settings.access_log or self.logged:
            return
        self.logged = True
        latency = time.monotonic() - self.started
        method = self.command or "-"
        header = self.headers.get if self.headers is not None else (lambda name, default="": default)
        forwarded_for = header("X-Forwarded-For", "").split(",")[0].strip()
        target = self.path if isinstance(self.path, str) else ""
        proto = header("X-Forwarded-Proto", "").split(",")[0].strip().lower() or "http"
        url = ("%s://%s%s" % (proto, header("Host", ""), target)) if header("Host", "") else target
        http_request = {
            "requestMethod": method,
            "requestUrl": url[:4096],
            "status": status,
            "responseSize": str(response_size),
            "latency": "%.6fs" % latency,
            "remoteIp": forwarded_for or self.client_address[0],
            "protocol": self.request_version,
        }  # type: Dict[str, Any]
        if self.request_size is not None:
            http_request["requestSize"] = str(self.request_size)
        for field, name in (("userAgent", "User-Agent"), ("referer", "Referer")):
            if header(name, ""):
                http_request[field] = header(name, "")[:1024]
        entry = {
            "severity": "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO",
            "message": ("%s %s %d %.0f ms" % (method, target[:1024], status, latency * 1000) if self.command
                        else "%r %d %.0f ms" % (self.requestline[:200], status, latency * 1000)),
            "httpRequest": http_request,
        }  # type: Dict[str, Any]
        entry.update(trace_fields(header("traceparent", ""), header("X-Cloud-Trace-Context", ""), settings.project))
        write_log_entry(entry)

    def _log_line(self, severity: str, message: str) -> None:
        if self.service.settings.access_log:
            write_log_entry({"severity": severity, "message": message})


def trace_fields(traceparent: str, cloud_trace: str, project: str) -> Dict[str, Any]:
    """Cloud Logging's trace fields, from the W3C traceparent or Google's X-Cloud-Trace-Context
    header; the trace is a resource name of the project, so nothing without GOOGLE_CLOUD_PROJECT."""
    if not project:
        return {}
    match = _TRACEPARENT.match(traceparent.strip())
    if match:
        trace, span, sampled = match.group(1), match.group(2), int(match.group(3), 16) & 1 == 1
    else:
        match = _CLOUD_TRACE.match(cloud_trace.strip())
        if not match:
            return {}
        trace = match.group(1).lower()
        span = "%016x" % (int(match.group(2)) & 0xFFFFFFFFFFFFFFFF) if match.group(2) else None
        sampled = match.group(3) == "1"
    fields = {"logging.googleapis.com/trace": "projects/%s/traces/%s" % (project, trace),
              "logging.googleapis.com/trace_sampled": sampled}  # type: Dict[str, Any]
    if span:
        fields["logging.googleapis.com/spanId"] = span
    return fields


_STDOUT_LOCK = threading.Lock()


def write_log_entry(entry: Dict[str, Any]) -> None:
    """One JSON line on stdout, written whole (ASCII, so any locale's stdout can take it)."""
    line = json.dumps(entry, sort_keys=False) + "\n"
    with _STDOUT_LOCK:
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except (OSError, ValueError):
            pass


# ----------------------------------------------------------------------------- the service's life


def run(model: Optional[ModelApp], load_error: Optional[str], options: Any) -> None:
    """Serve the model on $PORT until SIGTERM or SIGINT; exit 1 if it failed to load."""
    if model is None:
        log("not serving: %s The port stays closed and the process exits with status 1, so that the "
            "platform reports the revision as failed rather than routing requests to it." % load_error)
        sys.exit(1)
    settings = Settings(options)
    HttpHandler.service = service = Service(model, settings)
    HttpHandler.read_seconds = settings.read_seconds
    HttpHandler.request_limit = settings.request_limit
    try:
        server = ThreadingServer((settings.host, settings.port), HttpHandler)
    except OSError as error:
        log("cannot listen on %s:%d: %s" % (settings.host, settings.port, error))
        sys.exit(2)

    def stop(signum: int, frame: Any) -> None:
        if not service.draining:
            service.draining = True
            # serve_forever runs in this (the main) thread: it is stopped from another one.
            threading.Thread(target=server.shutdown, name="shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log("listening on %s:%d (HTTP/1.1; %s; up to %d requests in the app at once, request limit %d bytes, "
        "result limit %d bytes)" % (settings.host, settings.port, _platform_name(), settings.concurrency,
                                    settings.request_limit, settings.result_limit))
    try:
        server.serve_forever()
    finally:
        server.server_close()  # new connections are refused from here on
    log("stopping: no longer accepting connections; waiting up to %g s for the requests in flight"
        % settings.shutdown_seconds)
    still_running = service.drain(settings.shutdown_seconds)
    if still_running:
        log("exiting with %d request(s) still running after %g s (%s)"
            % (still_running, settings.shutdown_seconds, SHUTDOWN_SECONDS_ENV))
    else:
        log("stopped: every request in flight was answered")
    sys.stdout.flush()
    sys.stderr.flush()


def _platform_name() -> str:
    service = os.environ.get("K_SERVICE")
    if not service:
        return "a plain container platform"
    return "Knative service %s, revision %s" % (service, os.environ.get("K_REVISION", "?"))
