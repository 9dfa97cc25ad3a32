"""The HTTP/1.1 server the OpenWhisk and plain-HTTP platforms listen with.

Requests are parsed strictly, as RFC 9112 describes them and as the proxies in front of the
runtime do, so that no two parsers on the way can disagree about where a request ends:

* the request line is ``method SP target SP HTTP/1.x``; CRLF ends every line (a bare LF is refused:
  RFC 9112 2.2 lets a recipient accept one, but a proxy that does not would see other requests
  than this server does); empty lines before the request line are skipped;
* field names are tokens right before the colon; values hold no control character but HTAB (no
  NUL, no bare CR); folded lines (obs-fold) are refused; the whole head is bounded (431);
* HTTP/1.1 needs exactly one Host; Content-Length is digits only, once; Transfer-Encoding is
  exactly ``chunked``, once, in HTTP/1.1 only, never with a Content-Length (RFC 9112 6.3 allows
  either refusing that or ignoring the Content-Length: it is refused, as smuggling is the only
  reason to send both); other codings get 501;
* a chunk size is 1 to 16 hex digits, extensions are well formed and bounded, chunk data is
  followed by CRLF, and the body limit holds over the running total.

Anything else is a JSON 400 and the connection is closed, so no byte after a malformed request
is ever read as another one. A request must arrive whole within the read deadline, from its
first byte; one still arriving then is answered 408 and never reaches the app.

Connections that are idle, or have not begun a request, hold no thread: they are parked in a
selector, and a worker thread takes a connection only once bytes arrive on it. Worker threads
and open connections are both bounded; over the connection bound the longest-idle connection is
closed to admit a new one. With no worker threads (``threads=0``) requests are served one at a
time in the selector's own thread, for a peer that sends one request at a time anyway: its memory
then stays in the main thread's allocator arena instead of growing a worker's as well.
"""

import collections
import re
import selectors
import socket
import sys
import threading
import time
import traceback
from email.utils import formatdate
from typing import Any, Dict, List, Optional, Tuple

from . import __version__
from . import runtime
from .runtime import log, reason_phrase

# Enough for a burst of hundreds of simultaneous connections; the kernel caps it at somaxconn.
LISTEN_BACKLOG = 1024
# Envoy, in front of Knative and Cloud Run services, refuses heads over 60 KiB by default; any
# head it forwards fits.
DEFAULT_HEADER_LIMIT = 64 * 1024
DEFAULT_CONNECTIONS = 1000
HEADER_LIMIT_ENV = "SERVERLESS_MAX_HEADER_LIMIT"
THREADS_ENV = "SERVERLESS_MAX_THREADS"
CONNECTIONS_ENV = "SERVERLESS_MAX_CONNECTIONS"
# A chunk-size line, its extensions included.
CHUNK_LINE_LIMIT = 4096
# A worker thread with nothing to do for this long ends; a burst's threads do not outlive it.
WORKER_IDLE_SECONDS = 2.0
# After an error answer the connection is closed; what the peer still sends meanwhile is read and
# dropped for this long first, so that its unread bytes do not reset the connection before it
# has read the answer.
LINGER_SECONDS = 1.0
LINGER_BYTES = 4 * 1024 * 1024
# A peer reading an answer slower than this may be cut off (a 32 MiB answer gets 8.5 minutes on
# top of the read deadline); one that stops reading, or reads a byte now and then, cannot hold a
# worker thread for ever.
SLOWEST_READER_BYTES_PER_SECOND = 64 * 1024
# Out of file descriptors with no parked connection to close for room, accepting pauses this long:
# descriptors held elsewhere in the process may be freed without any connection closing.
ACCEPT_RETRY_SECONDS = 0.5
SERVER_NAME = "serverless-max/" + __version__

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])\Z")
_FIELD_NAME = re.compile(_TOKEN + rb"\Z")
_INVALID_VALUE_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# No whitespace before a chunk extension's ';': RFC 9112 7.1.1 lets a recipient accept it, but h11,
# llhttp and Node's server all refuse it, and a server must never read a framing its peers do not.
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})((?:;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|"
                         + _QUOTED + rb"))?)*)\r\n\Z")
_DIGITS = frozenset("0123456789")


class HttpError(Exception):
    """The request cannot be served: answer ``status`` with ``message`` and close the connection."""

    def __init__(self, status: int, message: str):
        Exception.__init__(self, message)
        self.status = status
        self.message = message


class CutOff(Exception):
    """The peer went away before its whole request arrived."""


class TimedOut(Exception):
    """The read deadline passed before the whole request arrived."""


def server_limits(default_threads: int) -> Tuple[int, int, int]:
    """SERVERLESS_MAX_THREADS, SERVERLESS_MAX_CONNECTIONS and SERVERLESS_MAX_HEADER_LIMIT, or their defaults."""
    threads = int(runtime.positive_setting(THREADS_ENV, default_threads, int, "a number of threads"))
    connections = int(runtime.positive_setting(CONNECTIONS_ENV, DEFAULT_CONNECTIONS, int, "a number of connections"))
    return threads, connections, runtime.byte_limit(HEADER_LIMIT_ENV, DEFAULT_HEADER_LIMIT)


# ----------------------------------------------------------------------------- the request head


class Head(object):
    """A request line and header fields, as received: names and values are latin-1 strings."""

    def __init__(self, method: str, target: str, version: str, fields: List[Tuple[str, str]]):
        self.method = method
        self.target = target
        self.version = version
        self.fields = fields

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        lower = name.lower()
        for field, value in self.fields:
            if field.lower() == lower:
                return value
        return default

    def get_all(self, name: str) -> List[str]:
        lower = name.lower()
        return [value for field, value in self.fields if field.lower() == lower]

    def connection_tokens(self) -> List[str]:
        return [token.strip(" \t").lower() for value in self.get_all("Connection") for token in value.split(",")]


def parse_head(raw: bytes) -> Head:
    """The request line and fields of a head that ends with CRLF CRLF and holds no bare LF."""
    lines = raw[:-4].split(b"\r\n")
    match = _REQUEST_LINE.match(lines[0])
    if match is None:
        raise HttpError(400, "The request line %r is not an HTTP/1.x request line (method SP target SP HTTP/1.x)."
                        % lines[0][:200].decode("latin-1"))
    if match.group(3) != b"1":
        raise HttpError(505, "HTTP/%s.%s is not served here; send HTTP/1.1."
                        % (match.group(3).decode(), match.group(4).decode()))
    version = "HTTP/1.0" if match.group(4) == b"0" else "HTTP/1.1"
    fields = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise HttpError(400, "A folded header line (obs-fold) is not accepted; send each header on one line.")
        name, colon, value = line.partition(b":")
        if not colon or not _FIELD_NAME.match(name):
            raise HttpError(400, "The header line %r is malformed: a header is a name (a token, with no space "
                                 "before the colon), a colon and a value." % line[:100].decode("latin-1"))
        value = value.strip(b" \t")
        if _INVALID_VALUE_BYTE.search(value):
            raise HttpError(400, "The %s header holds a control character." % name.decode("latin-1"))
        fields.append((name.decode("latin-1"), value.decode("latin-1")))
    return Head(match.group(1).decode("latin-1"), match.group(2).decode("latin-1"), version, fields)


class Framing(object):
    """How the body is delimited: by ``length``, chunked, or absent (length 0)."""

    def __init__(self, length: int, chunked: bool):
        self.length = length
        self.chunked = chunked


def framing(head: Head, request_limit: int) -> Framing:
    """The body's framing by RFC 9112 6: HttpError for anything ambiguous, unsupported or over the limit."""
    hosts = head.get_all("Host")
    if len(hosts) > 1 or (head.version == "HTTP/1.1" and not hosts):
        raise HttpError(400, "An HTTP/1.1 request needs exactly one Host header; this one has %d." % len(hosts))
    lengths = head.get_all("Content-Length")
    codings = head.get_all("Transfer-Encoding")
    if codings:
        if lengths:
            raise HttpError(400, "The request has both Transfer-Encoding and Content-Length; send one of them.")
        if len(codings) > 1:
            raise HttpError(400, "The request has more than one Transfer-Encoding header.")
        if head.version == "HTTP/1.0":
            raise HttpError(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request.")
        listed = [coding.strip(" \t").lower() for coding in codings[0].split(",")]
        if listed == ["chunked"]:
            return Framing(0, True)
        if listed.count("chunked") > 1 or not all(_FIELD_NAME.match(coding.encode("latin-1")) for coding in listed):
            raise HttpError(400, "The Transfer-Encoding header %r is malformed." % codings[0][:100])
        raise HttpError(501, "Transfer-Encoding %s is not supported; send the body with a Content-Length or chunked."
                        % codings[0][:100])
    if not lengths:
        return Framing(0, False)
    if len(lengths) > 1:
        raise HttpError(400, "The request has more than one Content-Length header.")
    if not lengths[0] or not set(lengths[0]) <= _DIGITS:
        raise HttpError(400, "The Content-Length header %r is not a number of bytes." % lengths[0][:100])
    digits = lengths[0].lstrip("0") or "0"  # leading zeros are still 1*DIGIT: 0005 is five bytes
    length = int(digits) if len(digits) <= 18 else sys.maxsize
    if length > request_limit:
        raise HttpError(413, "The request body is %s bytes, over the limit of %d bytes."
                        % (digits if len(digits) <= 30 else "over 10^29", request_limit))
    return Framing(length, False)


# ----------------------------------------------------------------------------- reading a request


class ReadDeadlines(object):
    """Closes the read side of connections whose body is still arriving at their deadline.

    One watchdog thread for the whole server: shutting a socket's read side wakes the reader
    blocked on it with end-of-file, so a body read in one call ends however slowly bytes trickle
    in. The request's framing tells the short body from a whole one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due = {}  # type: Dict[socket.socket, float]
        self._thread = threading.Thread(target=self._run, name="read-deadlines", daemon=True)
        self._thread.start()

    def watch(self, connection: socket.socket, due: float) -> None:
        with self._lock:
            self._due[connection] = due

    def release(self, connection: socket.socket) -> None:
        with self._lock:
            self._due.pop(connection, None)

    def _run(self) -> None:
        while True:
            time.sleep(0.05)
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


class Connection(object):
    """An accepted connection: its socket, a buffered reader over it, and where it came from."""

    def __init__(self, sock: socket.socket, address: Any):
        self.sock = sock
        self.address = address
        self.client_address = address if isinstance(address, tuple) else ("", 0)
        self.rfile = sock.makefile("rb", 65536)
        self.parked_at = 0.0
        self.closed = False

    def has_buffered_input(self) -> bool:
        """Whether a next request's bytes are here already (pipelined), without waiting for any."""
        try:
            self.sock.settimeout(0)
            return bool(self.rfile.peek(1))
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        for closeable in (self.rfile, self.sock):
            try:
                closeable.close()
            except OSError:
                pass


class Exchange(object):
    """One request on a connection, from its first byte to its answer."""

    def __init__(self, server: "Server", connection: Connection):
        self.server = server
        self.connection = connection
        self.started = time.monotonic()
        self.deadline = self.started + server.read_seconds
        self.head = None  # type: Optional[Head]
        self.request_line = ""
        self.close = True
        self.refused = False  # answered by the server itself: input may be left unread
        self.body = b""
        self.request_size = None  # type: Optional[int]

    @property
    def read_seconds(self) -> float:
        return self.server.read_seconds

    def _remaining(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimedOut()
        return remaining

    def read_head(self) -> Head:
        """The head, parsed; HttpError, TimedOut, or CutOff (nothing, or part of a head, then the end)."""
        rfile = self.connection.rfile
        limit = self.server.header_limit
        head = bytearray()
        checked = 0  # bytes of ``head`` already searched for a bare LF
        while True:
            self.connection.sock.settimeout(self._remaining())
            try:
                data = rfile.peek(1)
            except socket.timeout:
                raise TimedOut()
            except OSError:
                raise CutOff()
            if not data:
                raise CutOff()
            head += data
            while head.startswith(b"\r\n"):  # empty lines before the request line (RFC 9112 2.2)
                del head[:2]
                checked = max(0, checked - 2)
            found = head.find(b"\r\n\r\n", max(0, checked - 3))
            end = found + 4 if found >= 0 else len(head)
            bare = head.find(b"\n", max(0, checked - 1), end)
            while bare >= 0:
                if bare == 0 or head[bare - 1] != 0x0D:
                    rfile.read(len(data))
                    self._note_request_line(head)
                    raise HttpError(400, "A line of the request head ends with a bare LF; end every line with CRLF.")
                bare = head.find(b"\n", bare + 1, end)
            checked = end
            if found >= 0:
                rfile.read(len(data) - (len(head) - end))
                del head[end:]
                self._note_request_line(head)
                if end > limit:
                    raise self._head_too_large(head)
                return parse_head(bytes(head))
            rfile.read(len(data))
            if len(head) > limit:
                self._note_request_line(head)
                raise self._head_too_large(head)

    def _note_request_line(self, head: bytearray) -> None:
        self.request_line = bytes(head[:head.find(b"\r\n") if b"\r\n" in head else 200][:200]).decode("latin-1")

    def _head_too_large(self, head: bytearray) -> HttpError:
        if b"\r\n" not in head[:self.server.header_limit]:
            return HttpError(414, "The request line is over the limit of %d bytes." % self.server.header_limit)
        return HttpError(431, "The request's header section is over the limit of %d bytes; send fewer or smaller "
                              "headers, or raise %s." % (self.server.header_limit, HEADER_LIMIT_ENV))

    def take_body(self) -> bytes:
        """The request body, which the exchange then no longer holds: once the caller lets it go, it
        is freed at once, even while a failing app's frames stay alive until the cyclic collector runs."""
        body, self.body = self.body, b""
        return body

    def send_continue(self) -> None:
        self.connection.sock.settimeout(self._remaining())
        self.connection.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def read_body(self, body_framing: Framing, limit: int) -> bytes:
        """The whole body: HttpError for malformed chunks or over the limit, TimedOut, or CutOff."""
        sock = self.connection.sock
        self.server.deadlines.watch(sock, self.deadline)
        try:
            sock.settimeout(self._remaining() + 1)  # a backstop, should the watchdog lag
            if body_framing.chunked:
                return self._read_chunked(limit)
            if body_framing.length == 0:
                return b""
            body = self.connection.rfile.read(body_framing.length)
            if len(body) < body_framing.length:
                raise CutOff()
            return body
        except (CutOff, OSError, ValueError):  # ValueError: a read after the watchdog's shutdown
            if time.monotonic() >= self.deadline:
                raise TimedOut()
            raise CutOff()
        finally:
            self.server.deadlines.release(sock)

    def _read_chunked(self, limit: int) -> bytes:
        rfile = self.connection.rfile
        chunks = []
        total = 0
        while True:
            line = rfile.readline(CHUNK_LINE_LIMIT + 1)
            if not line.endswith(b"\n") and len(line) <= CHUNK_LINE_LIMIT:
                raise CutOff()
            match = _CHUNK_LINE.match(line)
            if match is None:
                raise HttpError(400, "The chunked request body is malformed: a chunk size line is 1 to 16 hex "
                                     "digits, then optional well-formed extensions (%d bytes at most), then CRLF."
                                % CHUNK_LINE_LIMIT)
            size = int(match.group(1), 16)
            if size == 0:
                break
            total += size
            if total > limit:
                raise HttpError(413, "The request body is over the limit of %d bytes." % limit)
            chunk = rfile.read(size)
            ending = rfile.read(2)
            if len(chunk) < size or len(ending) < 2 and b"\r\n".startswith(ending):
                raise CutOff()
            if ending != b"\r\n":
                raise HttpError(400, "The chunked request body is malformed: chunk data is not followed by CRLF.")
            chunks.append(chunk)
        self._read_trailers()
        return b"".join(chunks)

    def _read_trailers(self) -> None:
        """Trailer fields up to the empty line: checked as header fields are, bounded as the head is, dropped."""
        rfile = self.connection.rfile
        size = 0
        while True:
            line = rfile.readline(self.server.header_limit + 1)
            size += len(line)
            if size > self.server.header_limit:
                raise HttpError(431, "The chunked body's trailer section is over the limit of %d bytes."
                                % self.server.header_limit)
            if not line.endswith(b"\n"):
                raise CutOff()
            if not line.endswith(b"\r\n"):
                raise HttpError(400, "The chunked request body is malformed: a trailer line ends with a bare LF.")
            if line == b"\r\n":
                return
            parse_head(b"GET / HTTP/1.1\r\n" + line + b"\r\n")  # the field's syntax, or HttpError

    def send(self, status: int, headers: List[Tuple[str, str]], body: bytes = b"", reason: Optional[str] = None,
             send_body: bool = True) -> int:
        """Write a response: the status line, ``headers`` as given plus Connection, then the body.
        The number of body bytes written (0 when the peer stopped reading)."""
        version = self.head.version if self.head is not None else "HTTP/1.1"
        lines = ["%s %d %s\r\n" % ("HTTP/1.1", status, reason_phrase(status, reason))]
        for name, value in headers:
            lines.append("%s: %s\r\n" % (name, value))
        if self.close:
            lines.append("Connection: close\r\n")
        elif version == "HTTP/1.0":
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        parts = [("".join(lines)).encode("latin-1")]
        if send_body and body:
            parts.append(body)
        seconds = self.server.read_seconds + sum(len(part) for part in parts) / SLOWEST_READER_BYTES_PER_SECOND
        try:
            send_all(self.connection.sock, parts, time.monotonic() + seconds)
        except OSError:
            self.close = True
            return 0
        return len(body) if send_body else 0


def standard_headers(length: Optional[int]) -> List[Tuple[str, str]]:
    headers = [("Date", formatdate(usegmt=True)), ("Server", SERVER_NAME)]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    return headers


def send_all(sock: socket.socket, parts: List[bytes], deadline: float) -> None:
    """Write the parts in order with as few system calls as the socket takes, copying none of them;
    socket.timeout at the deadline. One deadline for the whole write, not one per call: a peer that
    takes a byte now and then must not hold a worker thread for ever (a slow-read attack)."""
    views = [memoryview(part) for part in parts if part]
    while views:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("the peer did not take the response in time")
        sock.settimeout(remaining)
        sent = sock.sendmsg(views)
        while sent and views:
            if sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0


# ----------------------------------------------------------------------------- what a platform does


class Handler(object):
    """What a platform does with a request whose head and body have arrived whole and well framed."""

    request_limit = 64 * 1024 * 1024
    # Whether a POST, PUT or PATCH without a body's framing is refused (411), rather than taken as
    # one without a body (RFC 9112 6.3).
    length_required = False

    def respond(self, exchange: Exchange) -> None:
        """Answer the request (``exchange.send``), its body taken with ``exchange.take_body``."""
        raise NotImplementedError

    def refuse(self, exchange: Exchange, error: HttpError) -> None:
        """Answer a request the server refuses (malformed, over a limit, too slow); the connection is closed after."""
        raise NotImplementedError

    def cut_off(self, exchange: Exchange) -> None:
        """The peer went away before its whole request arrived."""

    def keep_alive(self, exchange: Exchange) -> bool:
        """Whether the connection may serve another request after this one's answer."""
        head = exchange.head
        tokens = head.connection_tokens()
        return "close" not in tokens and (head.version == "HTTP/1.1" or "keep-alive" in tokens)

    def serve(self, exchange: Exchange) -> None:
        """One request, from its head to its answer."""
        try:
            exchange.head = head = exchange.read_head()
            body_framing = framing(head, self.request_limit)
            if (self.length_required and head.method in ("POST", "PUT", "PATCH") and not body_framing.chunked
                    and head.get("Content-Length") is None):
                raise HttpError(411, "A Content-Length header is required.")
            exchange.close = not self.keep_alive(exchange)
            has_body = body_framing.length > 0 or body_framing.chunked
            if head.get("Expect", "").lower() == "100-continue" and head.version == "HTTP/1.1" and has_body:
                exchange.send_continue()
            exchange.body = exchange.read_body(body_framing, self.request_limit)
        except HttpError as error:
            exchange.close = exchange.refused = True
            self.refuse(exchange, error)
            return
        except TimedOut:
            exchange.close = exchange.refused = True
            self.refuse(exchange, HttpError(408, "The whole request did not arrive within %g s."
                                            % exchange.read_seconds))
            return
        except CutOff:
            exchange.close = True
            if exchange.head is not None:
                self.cut_off(exchange)
            return
        except OSError:
            exchange.close = True
            return
        exchange.request_size = len(exchange.body)
        self.respond(exchange)


# ----------------------------------------------------------------------------- the server


class Server(object):
    """Accepts connections, parks idle ones in a selector, and serves requests on a bounded pool of threads."""

    def __init__(self, address: Tuple[str, int], handler: Handler, read_seconds: float, idle_seconds: float,
                 threads: int, connections: int, header_limit: int = DEFAULT_HEADER_LIMIT):
        self.handler = handler
        self.read_seconds = read_seconds
        self.idle_seconds = idle_seconds
        self.max_threads = max(0, threads)
        self.max_connections = max(1, connections)
        self.header_limit = header_limit
        self.listener = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(address)
            self.listener.listen(LISTEN_BACKLOG)
        except OSError:
            self.listener.close()
            raise
        self.listener.setblocking(False)
        self.server_address = self.listener.getsockname()
        self.deadlines = ReadDeadlines()
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._lock = threading.Condition()
        self._parked = collections.OrderedDict()  # type: collections.OrderedDict
        self._returned = collections.deque()  # type: collections.deque  # of Connection: by workers, to be parked
        self._ready = collections.deque()  # type: collections.deque  # of Connection: for a worker
        self._open = 0
        self._busy = 0  # connections queued for, or served by, a worker
        self._threads = 0
        self._idle_threads = 0
        self._stopping = False
        self._accepting = False
        self._accept_retry_at = None  # type: Optional[float]

    # -------------------------------------------------------------- the selector's thread

    def serve_forever(self) -> None:
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._set_accepting(True)
        try:
            while not self._stopping:
                events = self._selector.select(self._next_timeout())
                for key, _ in events:
                    if key.fileobj is self.listener:
                        self._accept()
                    elif key.fileobj is self._wake_reader:
                        self._take_returned()
                    else:
                        self._dispatch(key.data)
                self._expire_idle()
                self._retry_accepting()
        finally:
            self._set_accepting(False)

    def shutdown(self) -> None:
        """Stop accepting and serving from another thread, or a signal handler; serve_forever returns."""
        self._stopping = True
        self._wake()

    def server_close(self) -> None:
        """Close the listening socket and every parked connection (workers finish what they serve)."""
        self.listener.close()
        with self._lock:
            parked = list(self._parked.values()) + list(self._returned)
            self._parked.clear()
            self._returned.clear()
        for connection in parked:
            self._close(connection)

    def wait_until_done(self, deadline: float) -> int:
        """Wait until no connection is being served or queued, or the deadline; how many still are."""
        with self._lock:
            while self._busy and time.monotonic() < deadline:
                self._lock.wait(max(0.01, deadline - time.monotonic()))
            return self._busy

    def _next_timeout(self) -> float:
        now = time.monotonic()
        timeout = 60.0 if self._accept_retry_at is None else self._accept_retry_at - now
        with self._lock:
            if self._parked:
                oldest = next(iter(self._parked.values()))
                timeout = min(timeout, oldest.parked_at + self.idle_seconds - now)
        return max(0.0, timeout)

    def _set_accepting(self, accepting: bool) -> None:
        if accepting == self._accepting or self.listener.fileno() < 0:
            return
        self._accepting = accepting
        if accepting:
            self._selector.register(self.listener, selectors.EVENT_READ)
        else:
            self._selector.unregister(self.listener)

    def _accept(self) -> None:
        while True:
            with self._lock:
                if self._open >= self.max_connections and not self._evict_oldest():
                    self._set_accepting(False)  # taken up again when a connection closes
                    return
            try:
                sock, address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # out of file descriptors: make room, or wait for some
                log("cannot accept a connection: %s" % error)
                with self._lock:
                    if not self._evict_oldest():
                        self._set_accepting(False)
                        self._accept_retry_at = time.monotonic() + ACCEPT_RETRY_SECONDS
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # an answer's body must not wait for an ACK
            with self._lock:
                self._open += 1
            self._park(Connection(sock, address))

    def _retry_accepting(self) -> None:
        if self._accept_retry_at is None or time.monotonic() < self._accept_retry_at:
            return
        self._accept_retry_at = None
        with self._lock:
            below_bound = self._open < self.max_connections
        if below_bound and not self._stopping:
            self._set_accepting(True)

    def _evict_oldest(self) -> bool:
        """Close the longest-idle parked connection to make room; whether there was one (lock held)."""
        if not self._parked:
            return False
        _, connection = self._parked.popitem(last=False)
        self._selector.unregister(connection.sock)
        self._close_locked(connection)
        return True

    def _park(self, connection: Connection) -> None:
        connection.parked_at = time.monotonic()
        try:
            self._selector.register(connection.sock, selectors.EVENT_READ, connection)
        except (ValueError, OSError):  # closed meanwhile
            self._close(connection)
            return
        with self._lock:
            self._parked[connection.sock.fileno()] = connection

    def _take_returned(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except (BlockingIOError, InterruptedError, OSError):
            pass
        with self._lock:
            returned = list(self._returned)
            self._returned.clear()
            below_bound = self._open < self.max_connections
        for connection in returned:
            self._park(connection)
        if below_bound and not self._stopping:
            self._set_accepting(True)

    def _expire_idle(self) -> None:
        now = time.monotonic()
        with self._lock:
            while self._parked:
                key, oldest = next(iter(self._parked.items()))
                if oldest.parked_at + self.idle_seconds > now:
                    break
                del self._parked[key]
                self._selector.unregister(oldest.sock)
                self._close_locked(oldest)

    def _dispatch(self, connection: Connection) -> None:
        if connection.closed:  # evicted for a new connection earlier in the same round of events
            return
        self._selector.unregister(connection.sock)
        with self._lock:
            self._parked.pop(connection.sock.fileno(), None)
            if not self.max_threads:
                self._busy += 1
        if not self.max_threads:
            self._serve(connection)
            with self._lock:
                self._busy -= 1
            return
        with self._lock:
            self._ready.append(connection)
            self._busy += 1
            if len(self._ready) <= self._idle_threads:
                self._lock.notify()
            elif self._threads < self.max_threads:
                self._threads += 1
                threading.Thread(target=self._work, name="http-worker", daemon=True).start()

    def _wake(self) -> None:
        try:
            self._wake_writer.send(b"x")
        except OSError:
            pass

    # -------------------------------------------------------------- the workers' threads

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle_threads += 1
                # A wait can end early (another worker's notify_all, for wait_until_done): only
                # the whole idle time with nothing to do ends the thread.
                idle_until = time.monotonic() + WORKER_IDLE_SECONDS
                while not self._ready:
                    remaining = idle_until - time.monotonic()
                    if remaining <= 0:
                        break
                    self._lock.wait(remaining)
                self._idle_threads -= 1
                if not self._ready:
                    self._threads -= 1
                    return
                connection = self._ready.popleft()
            try:
                self._serve(connection)
            except BaseException:  # noqa: B902 - nor a bug, nor a model's sys.exit() may end the worker
                traceback.print_exc()
                self._close(connection)
            with self._lock:
                self._busy -= 1
                self._lock.notify_all()

    def _serve(self, connection: Connection) -> None:
        """Requests on the connection while they come at once; then it is parked, or closed."""
        while True:
            exchange = Exchange(self, connection)
            self.handler.serve(exchange)
            if exchange.close or self._stopping:
                self._linger_and_close(connection, LINGER_SECONDS if exchange.refused else 0.0)
                return
            if not connection.has_buffered_input():
                break
        with self._lock:
            if self._stopping:
                self._close_locked(connection)
                return
            self._returned.append(connection)
        self._wake()

    def _linger_and_close(self, connection: Connection, seconds: float) -> None:
        """Stop sending, drop what the peer still sends for ``seconds`` (see LINGER_SECONDS), then close."""
        sock = connection.sock
        try:
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + seconds
            dropped = 0
            while dropped < LINGER_BYTES:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                sock.settimeout(remaining)
                data = sock.recv(65536)
                if not data:
                    break
                dropped += len(data)
        except (OSError, ValueError):
            pass
        self._close(connection)

    def _close(self, connection: Connection) -> None:
        with self._lock:
            self._close_locked(connection)

    def _close_locked(self, connection: Connection) -> None:
        if connection.closed:
            return
        connection.closed = True
        connection.close()
        self._open -= 1
        if not self._accepting:
            self._wake()  # the selector takes up accepting again
