"""Knative Serving, Google Cloud Run, IBM Code Engine and any container platform: plain HTTP/1.1.

The model's own routes are served on ``$PORT``, each request handed to the app as it arrived.
The port opens only once the model has loaded, because these platforms take an open port (or an
answering HTTP probe) to mean "ready": a model that fails to load makes the process exit with
status 1, so the platform reports the revision as failed instead of routing requests to it.

Requests are served concurrently by a bounded pool of threads (a connection holds one only while
a request on it is arriving or being answered), with at most SERVERLESS_MAX_CONCURRENCY of them
in the app at once; the others wait for a slot. SIGTERM or SIGINT stops accepting connections,
lets the requests in flight finish, and exits with status 0. Every request
gets one JSON access-log line on stdout in the shape Cloud Logging reads (``severity``,
``httpRequest``, ``message``, trace fields); the app's own output is left as it is.
"""

import json
import os
import re
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

from . import runtime
from .runtime import BadRequest, ModelApp, Request, Response, log
from .server import Exchange, Handler, Head, HttpError, Server, server_limits, standard_headers

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
# this server is closing. An idle connection costs no thread, only a socket (see SERVERLESS_MAX_CONNECTIONS).
IDLE_SECONDS = 620.0
# Threads beyond the app's concurrency: for requests still arriving, or answers still being sent.
EXTRA_THREADS = 64

CONCURRENCY_ENV = "SERVERLESS_MAX_CONCURRENCY"
QUEUE_SECONDS_ENV = "SERVERLESS_MAX_QUEUE_SECONDS"
SHUTDOWN_SECONDS_ENV = "SERVERLESS_MAX_SHUTDOWN_SECONDS"
ACCESS_LOG_ENV = "SERVERLESS_MAX_ACCESS_LOG"

# Request headers not given to the app: the body it gets is already de-chunked and counted.
_FRAMING_HEADERS = frozenset(["content-length", "transfer-encoding"])
# Response headers this server writes itself.
_HOP_BY_HOP = frozenset("connection keep-alive transfer-encoding te trailer upgrade proxy-connection".split())
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
        self.threads, self.connections, self.header_limit = server_limits(self.concurrency + EXTRA_THREADS)
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


def request_headers(head: Head) -> List[Tuple[str, str]]:
    """The headers as received, one entry per name (repeated ones joined with commas, as WSGI
    servers do), without those the server consumed: the app gets a de-chunked body, and without
    names the app may not see (runtime.app_may_see_header)."""
    joined = {}  # type: Dict[str, Tuple[str, str]]
    for name, value in head.fields:
        lower = name.lower()
        if lower in _FRAMING_HEADERS or not runtime.app_may_see_header(name):
            continue
        if lower in joined:
            value = joined[lower][1] + "," + value
            name = joined[lower][0]
        joined[lower] = (name, value)
    return list(joined.values())


class HttpHandler(Handler):
    """Each request, as it arrived, straight to the model's routes."""

    def __init__(self, service: Service):
        self.service = service
        self.request_limit = service.settings.request_limit

    def keep_alive(self, exchange: Exchange) -> bool:
        return not self.service.draining and Handler.keep_alive(self, exchange)

    def respond(self, exchange: Exchange) -> None:
        settings = self.service.settings
        head = exchange.head
        try:
            path = request_path(head.target, settings.script_name)
        except BadRequest as error:
            self.refuse(exchange, HttpError(400, str(error)))
            return
        forwarded_proto = (head.get("X-Forwarded-Proto") or "").split(",")[0].strip().lower()
        request = Request(head.method, path, head.target.partition("?")[2], request_headers(head),
                          exchange.take_body(), script_name=settings.script_name,
                          scheme="https" if forwarded_proto == "https" else "http",
                          remote_addr=exchange.connection.client_address[0])
        self.write_response(exchange, self.service.respond(request))

    def refuse(self, exchange: Exchange, error: HttpError) -> None:
        """Errors the server finds itself, the request line's included, as JSON like the app's own errors."""
        exchange.close = True
        message = error.message
        if error.status == 413:
            message += (" Raise the limit with %s (Cloud Run itself takes at most 32 MiB over HTTP/1)."
                        % runtime.REQUEST_LIMIT_ENV)
        self.write_response(exchange, runtime.error_response(error.status, message))

    def cut_off(self, exchange: Exchange) -> None:
        self._log_line("WARNING", "%s %s: the client went away before its whole request arrived"
                       % (exchange.head.method, exchange.head.target[:200]))

    def write_response(self, exchange: Exchange, response: Response) -> None:
        """The app's status, reason and headers, a Content-Length, then the body (none for HEAD)."""
        status = response.status
        head_only = exchange.head is not None and exchange.head.method == "HEAD"
        has_body = not (100 <= status < 200 or status in (204, 304))
        headers = []
        app_length = None
        for name, value in response.headers:
            lower = name.lower()
            if lower == "content-length":
                app_length = value
            elif lower not in _HOP_BY_HOP:
                headers.append((name, value))
        standard = standard_headers(None)
        headers += [(name, value) for name, value in standard if response.header(name) is None]
        if has_body and not head_only:
            headers.append(("Content-Length", str(len(response.body))))
        elif app_length is not None and (head_only or status == 304):
            headers.append(("Content-Length", app_length))  # the size a GET would have had
        if self.service.draining:
            exchange.close = True
        written = exchange.send(status, headers, response.body, reason=response.reason,
                                send_body=has_body and not head_only)
        self._access_log(exchange, status, written)

    # ------------------------------------------------------------------------- access log

    def _access_log(self, exchange: Exchange, status: int, response_size: int) -> None:
        settings = self.service.settings
        if not settings.access_log:
            return
        latency = time.monotonic() - exchange.started
        head = exchange.head
        method = head.method if head is not None else "-"

        def header(name: str, default: str = "") -> str:
            return (head.get(name) if head is not None else None) or default

        # The peer the nearest proxy saw: proxies append it, the client can only write what comes before.
        forwarded_for = header("X-Forwarded-For", "").split(",")[-1].strip()
        target = head.target if head is not None else ""
        proto = header("X-Forwarded-Proto", "").split(",")[0].strip().lower() or "http"
        url = ("%s://%s%s" % (proto, header("Host", ""), target)) if header("Host", "") else target
        http_request = {
            "requestMethod": method,
            "requestUrl": url[:4096],
            "status": status,
            "responseSize": str(response_size),
            "latency": "%.6fs" % latency,
            "remoteIp": forwarded_for or exchange.connection.client_address[0],
            "protocol": head.version if head is not None else "HTTP/1.1",
        }  # type: Dict[str, Any]
        if exchange.request_size is not None:
            http_request["requestSize"] = str(exchange.request_size)
        for field, name in (("userAgent", "User-Agent"), ("referer", "Referer")):
            if header(name, ""):
                http_request[field] = header(name, "")[:1024]
        entry = {
            "severity": "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO",
            "message": ("%s %s %d %.0f ms" % (method, target[:1024], status, latency * 1000) if head is not None
                        else "%r %d %.0f ms" % (exchange.request_line[:200], status, latency * 1000)),
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
    service = Service(model, settings)
    try:
        server = Server((settings.host, settings.port), HttpHandler(service), read_seconds=settings.read_seconds,
                        idle_seconds=IDLE_SECONDS, threads=settings.threads, connections=settings.connections,
                        header_limit=settings.header_limit)
    except OSError as error:
        log("cannot listen on %s:%d: %s" % (settings.host, settings.port, error))
        sys.exit(2)

    def stop(signum: int, frame: Any) -> None:
        if not service.draining:
            service.draining = True
            server.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log("listening on %s:%d (HTTP/1.1; %s; up to %d requests in the app at once, %d threads, %d connections; "
        "request limit %d bytes, header limit %d bytes, result limit %d bytes)"
        % (settings.host, settings.port, _platform_name(), settings.concurrency, settings.threads,
           settings.connections, settings.request_limit, settings.header_limit, settings.result_limit))
    try:
        server.serve_forever()
    finally:
        server.server_close()  # new connections are refused, idle ones closed, from here on
    log("stopping: no longer accepting connections; waiting up to %g s for the requests in flight"
        % settings.shutdown_seconds)
    still_running = server.wait_until_done(time.monotonic() + settings.shutdown_seconds)
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
