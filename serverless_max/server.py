"""The HTTP server the OpenWhisk and plain-HTTP platforms listen with.

The standard library's HTTP/1.1 server, with what a long-running container needs on top:
a deadline on reading each whole request (a peer that stalls or trickles bytes cannot hold
the server), a bound on body size that is enforced before anything is buffered, chunked
request bodies, a listen backlog that absorbs bursts, and error replies that keep serving.
"""

import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Any, Dict, Optional

from . import __version__

# Enough for a burst of hundreds of simultaneous connections; the kernel caps it at somaxconn.
LISTEN_BACKLOG = 1024


class BodyError(Exception):
    """The request body cannot be read: answer ``status`` with ``message``."""

    def __init__(self, status: int, message: str):
        Exception.__init__(self, message)
        self.status = status
        self.message = message


class CutOff(Exception):
    """The peer went away, or ran out of time, before the whole request arrived."""


class ReadDeadlines(object):
    """Closes the read side of connections that took too long to send their request.

    One watchdog thread for the whole server: shutting a socket's read side wakes the reader
    blocked on it with end-of-file, so the handler gives up however slowly bytes trickle in.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due = {}  # type: Dict[socket.socket, float]
        self._thread = None  # type: Optional[threading.Thread]

    def watch(self, connection: socket.socket, seconds: float) -> None:
        with self._lock:
            self._due[connection] = time.monotonic() + seconds
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="read-deadlines", daemon=True)
                self._thread.start()

    def release(self, connection: socket.socket) -> None:
        with self._lock:
            self._due.pop(connection, None)

    def _run(self) -> None:
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            with self._lock:
                overdue = [connection for connection, due in self._due.items() if due <= now]
                for connection in overdue:
                    del self._due[connection]
            for connection in overdue:
                try:
                    connection.shutdown(socket.SHUT_RD)
                except OSError:
                    pass


class Handler(BaseHTTPRequestHandler):
    """A request handler whose whole request must arrive within ``read_seconds``."""

    protocol_version = "HTTP/1.1"
    server_version = "serverless-max/" + __version__
    read_seconds = 10.0
    request_limit = 64 * 1024 * 1024

    def setup(self) -> None:
        self.timeout = self.read_seconds + 5  # each read: a backstop, should the deadline's watchdog lag
        BaseHTTPRequestHandler.setup(self)
        self.server.deadlines.watch(self.connection, self.read_seconds)

    def finish(self) -> None:
        self.server.deadlines.release(self.connection)
        BaseHTTPRequestHandler.finish(self)

    def request_is_read(self) -> None:
        """The whole request is in: the rest of the connection's life is the answer's."""
        self.server.deadlines.release(self.connection)

    def read_body(self) -> bytes:
        """The whole body, by Content-Length or chunked; BodyError or CutOff when it cannot be had."""
        try:
            return self._read_body()
        except (OSError, ValueError):  # a reset, a timeout, or a read after the deadline closed the socket
            raise CutOff()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").strip().lower() == "chunked":
            return self._read_chunked()
        if self.headers.get("Content-Length") is None:
            if self.command in ("POST", "PUT", "PATCH"):
                raise BodyError(411, "A Content-Length header is required.")
            return b""
        try:
            length = int(self.headers["Content-Length"])
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise BodyError(400, "The Content-Length header is not a number of bytes.")
        if length > self.request_limit:
            self._discard(length)
            raise BodyError(413, "The request body is %d bytes, over the limit of %d bytes." % (length, self.request_limit))
        body = self.rfile.read(length)
        if len(body) < length:
            raise CutOff()
        return body

    def _read_chunked(self) -> bytes:
        chunks = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise CutOff()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise BodyError(400, "The chunked request body is malformed.")
            if size == 0:
                break
            total += size
            if total > self.request_limit:
                self.close_connection = True
                raise BodyError(413, "The request body is over the limit of %d bytes." % self.request_limit)
            chunk = self.rfile.read(size + 2)
            if len(chunk) < size + 2:
                raise CutOff()
            chunks.append(chunk[:size])
        while True:  # trailer fields, up to the empty line
            line = self.rfile.readline(8192)
            if not line.endswith(b"\n"):
                raise CutOff()
            if line in (b"\r\n", b"\n"):
                return b"".join(chunks)

    def discard_body(self) -> None:
        """Read and drop a body that will not be used, so the peer gets the answer, not a reset."""
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            return
        self._discard(length)

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # each platform writes its own log lines, or none


class Server(HTTPServer):
    """Serves one connection at a time."""

    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, *args: Any, **kwargs: Any):
        HTTPServer.__init__(self, *args, **kwargs)
        self.deadlines = ReadDeadlines()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A peer that resets its connection is no reason for a traceback in the logs.
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, socket.timeout)):
            HTTPServer.handle_error(self, request, client_address)


class ThreadingServer(ThreadingMixIn, Server):
    """A thread per connection."""

    daemon_threads = True
