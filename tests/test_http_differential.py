"""The runtime's HTTP/1.1 request parsing, compared with independent, widely used parsers.

Every request of the corpus (tests/http_framing_corpus.py, committed as
tests/data/http-framing-corpus.json) is sent as raw bytes to the runtime serving plain HTTP
(tests/apps/wire-echo answers each request with what it was given), and parsed by:

  h11      the pure-Python HTTP/1.1 library (PyPI h11), as a server;
  llhttp   Node's parser, through PyPI httptools;
  node     Node's own http server (llhttp plus Node's checks: Host required, 16 KiB head; a parse
           error is answered at once, before the answers to earlier requests on the connection,
           so it reports fewer messages than it parsed there: it only ever looks stricter).

Each yields the messages it parsed, in order (method, path, query, headers and body as a WSGI
app sees them), and how the input ended (end of stream, rejected, cut off). The rule: the
runtime's messages are always a prefix of the messages of at least one reference parser. It
may stop earlier (reject, which is stricter), never accept a message that no reference
accepted in that place: that is the disagreement request smuggling lives on. And so that
strictness costs no valid request, on the corpus's valid inputs the runtime takes the messages
the most accepting reference takes.

The test prints the counts. Rewrite the committed disagreement table with

    python tests/test_http_differential.py [--table tests/data/http-framing-differential.md]

It needs h11 and httptools (requirements/test.txt); httptools has no Python 3.6 wheel, so the
test runs on the current era and is skipped on the max-era. The script's --runtime-python starts
the runtime under another interpreter (the max-era's) against the same references. Node's server
is left out when there is no node on PATH.
"""

import argparse
import base64
import concurrent.futures
import hashlib
import json
import os
import random
import selectors
import shutil
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import unquote_to_bytes

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from http_framing_corpus import Case, corpus_json, load_corpus  # noqa: E402
from support import ROOT, SHIM, TEST_APPS, ServerProcess, free_port  # noqa: E402

try:
    import h11
    import httptools
except ImportError:  # Python 3.6: httptools has no wheel for it (requirements/test.txt)
    h11 = httptools = None

WIRE_ECHO_APP = os.path.join(TEST_APPS, "wire-echo")
NODE_ECHO_SERVER = os.path.join(ROOT, "tests", "node_echo_server.js")
TABLE_PATH = os.path.join(ROOT, "tests", "data", "http-framing-differential.md")
# Over the largest body in the corpus, under the Content-Lengths that test the limit.
REQUEST_LIMIT = 1000000
EXCHANGE_SECONDS = 10.0
# Long enough for the server to read one piece before the next arrives, most of the time.
PIECE_PAUSE_SECONDS = 0.003
PARALLEL_CONNECTIONS = 8

_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_FRAMING_HEADERS = (b"content-length", b"transfer-encoding")

# A message as the app sees it: (method, path, query, ((environ key, value), ...), body).
Message = Tuple[str, str, str, Tuple[Tuple[str, str], ...], bytes]


class Verdict(object):
    """What one parser made of one input: the messages it parsed, in order, then how it ended."""

    def __init__(self, messages: List[Message], ending: str):
        self.messages = messages
        self.ending = ending

    def summary(self) -> str:
        return "%d, then %s" % (len(self.messages), self.ending)


def app_view(method: bytes, target: bytes, headers: Sequence[Tuple[bytes, bytes]], body: bytes) -> Message:
    """A parsed request as a WSGI app behind the runtime would see it, so that the runtime's
    answer compares with a reference's parse: the path percent-decoded, the query as sent,
    headers as environ keys (repeated ones joined with commas; framing headers and names that
    are not tokens or hold '_' left out, as the runtime leaves them out), the body de-chunked."""
    text = target.decode("latin-1")
    if not text.startswith("/") and "://" in text:
        text = "/" + text.partition("://")[2].partition("/")[2]  # absolute-form
    path, _, query = text.partition("?")
    joined = {}  # type: Dict[str, str]
    for name, value in headers:
        if name.lower() in _FRAMING_HEADERS or b"_" in name or not name or not set(name) <= _TOKEN:
            continue
        key = name.decode("latin-1").upper().replace("-", "_")
        key = key if key == "CONTENT_TYPE" else "HTTP_" + key
        value_text = value.decode("latin-1").strip(" \t")
        joined[key] = joined[key] + "," + value_text if key in joined else value_text
    return (method.decode("latin-1"), unquote_to_bytes(path).decode("latin-1"), query,
            tuple(sorted(joined.items())), bytes(body))


# ----------------------------------------------------------------------------- the reference libraries


def h11_verdict(data: bytes) -> Verdict:
    """h11 as a server: each request answered (404, declining any protocol switch) so the next is read."""
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(data)
    messages = []  # type: List[Message]
    request = None  # type: Any
    body = bytearray()
    at_eof = False
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as error:
            return Verdict(messages, "cut off" if at_eof else "rejected (%s)" % error)
        if event is h11.NEED_DATA:
            if at_eof:
                return Verdict(messages, "cut off")
            connection.receive_data(b"")
            at_eof = True
        elif isinstance(event, h11.Request):
            request, body = event, bytearray()
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            messages.append(app_view(request.method, request.target, list(request.headers), bytes(body)))
            connection.send(h11.Response(status_code=404, headers=[("Content-Length", "0")]))
            connection.send(h11.EndOfMessage())
            if connection.their_state is h11.MUST_CLOSE or connection.our_state is h11.MUST_CLOSE:
                return Verdict(messages, "closes")
            connection.start_next_cycle()
        elif isinstance(event, h11.ConnectionClosed):
            return Verdict(messages, "end")
        else:
            return Verdict(messages, "stopped at %r" % event)


class _LlhttpMessages(object):
    """httptools' callbacks, collecting whole messages."""

    def __init__(self) -> None:
        self.parser = None  # type: Any
        self.messages = []  # type: List[Message]
        self.open = False

    def on_message_begin(self) -> None:
        self.open = True
        self.target, self.headers, self.body = b"", [], b""  # type: bytes, List[Tuple[bytes, bytes]], bytes

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.open = False
        self.messages.append(app_view(self.parser.get_method(), self.target, self.headers, self.body))


def llhttp_verdict(data: bytes) -> Verdict:
    collector = _LlhttpMessages()
    collector.parser = httptools.HttpRequestParser(collector)
    try:
        collector.parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        return Verdict(collector.messages, "switches protocol")
    except httptools.HttpParserError as error:
        return Verdict(collector.messages, "rejected (%s)" % error)
    return Verdict(collector.messages, "cut off" if collector.open else "end")


# ----------------------------------------------------------------------------- servers on loopback


def exchange(port: int, pieces: Sequence[bytes], seconds: float = EXCHANGE_SECONDS) -> Tuple[bytes, str]:
    """Send the pieces on a new connection, PIECE_PAUSE_SECONDS apart, then end the sending side;
    everything the server answers until it closes, and how the exchange ended. Sending and
    reading interleave, so a server that answers early (and closes) is heard."""
    received = []
    deadline = time.monotonic() + seconds
    queue = [memoryview(piece) for piece in pieces if piece]
    send_at = 0.0
    shut = False
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each piece its own segment
        connection.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(connection, selectors.EVENT_READ)
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    return b"".join(received), "timeout"
                if not queue and not shut:
                    try:
                        connection.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    shut = True
                writing = bool(queue) and now >= send_at
                selector.modify(connection, selectors.EVENT_READ | (selectors.EVENT_WRITE if writing else 0))
                wait = deadline - now if writing or not queue else min(deadline, send_at) - now
                for _, events in selector.select(wait):
                    if events & selectors.EVENT_WRITE:
                        try:
                            queue[0] = queue[0][connection.send(queue[0][:65536]):]
                        except OSError:
                            queue = []  # the server stopped reading: its answer says why
                        if queue and not queue[0]:
                            queue.pop(0)
                            send_at = time.monotonic() + PIECE_PAUSE_SECONDS
                    if events & selectors.EVENT_READ:
                        try:
                            chunk = connection.recv(65536)
                        except OSError:
                            return b"".join(received), "reset"
                        if not chunk:
                            return b"".join(received), "closed"
                        received.append(chunk)
        finally:
            selector.close()


def in_pieces(case_id: str, data: bytes) -> List[bytes]:
    """The input cut in up to four pieces, at places chosen from the case's id: mostly right
    after a CR, LF, colon or semicolon, where a parser that reads line by line may be caught
    between two reads."""
    if len(data) < 2:
        return [data]
    rng = random.Random(case_id)
    places = [at + 1 for at, byte in enumerate(data[:-1]) if byte in b"\r\n:;"]
    cuts = set(rng.sample(places, min(2, len(places))))
    cuts.add(1 + rng.randrange(len(data) - 1))
    bounds = [0] + sorted(cuts) + [len(data)]
    return [data[start:end] for start, end in zip(bounds, bounds[1:])]


def responses(stream: bytes) -> List[Tuple[int, Dict[str, str], bytes]]:
    """The final responses in what a server sent (1xx interim ones skipped); the bodies of
    answers to HEAD (named in their echo) are empty."""
    found = []
    at = 0
    while True:
        end = stream.find(b"\r\n\r\n", at)
        if end < 0:
            return found
        lines = stream[at:end].decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[1].isdigit():
            return found + [(0, {}, stream[at:])]  # not a response: taken as a refusal
        status = int(status_line[1])
        headers = dict((name.strip().lower(), value.strip())
                       for name, _, value in (line.partition(":") for line in lines[1:]))
        at = end + 4
        if 100 <= status < 200:
            continue
        echo = decoded_echo(headers)
        if echo is not None and echo["method"] == "HEAD":
            body = b""
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body, at = _chunked_body(stream, at)
        else:
            length = int(headers.get("content-length", "0"))
            body = stream[at:at + length]
            at += length
        found.append((status, headers, body))


def _chunked_body(stream: bytes, at: int) -> Tuple[bytes, int]:
    """A chunked response body (Node sends its errors so), and where the next response begins."""
    chunks = []
    while True:
        end = stream.find(b"\r\n", at)
        if end < 0:
            return b"".join(chunks), len(stream)
        size = int(stream[at:end].split(b";")[0], 16)
        at = end + 2
        if size == 0:
            return b"".join(chunks), stream.find(b"\r\n\r\n", at - 2) + 4
        chunks.append(stream[at:at + size])
        at += size + 2


def decoded_echo(headers: Dict[str, str]) -> Optional[Dict[str, Any]]:
    if "x-wire-echo" not in headers:
        return None
    return json.loads(base64.b64decode(headers["x-wire-echo"]).decode("utf-8"))


def served_verdict(port: int, pieces: Sequence[bytes], message: Callable[[Dict[str, Any]], Message]) -> Verdict:
    """A server's parse: the requests its app echoed, then its first answer that is not an echo."""
    stream, how = exchange(port, pieces)
    messages = []
    for status, headers, body in responses(stream):
        echo = decoded_echo(headers)
        if echo is None:
            return Verdict(messages, "rejected (%d %s)" % (status, _error_text(body)))
        messages.append(message(echo))
    return Verdict(messages, how)


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body.decode("utf-8"))["error"])[:120]
    except (ValueError, KeyError, TypeError):
        return body[:60].decode("latin-1")


def runtime_message(echo: Dict[str, Any]) -> Message:
    return (echo["method"], echo["path"], echo["query"], tuple(sorted(echo["headers"].items())),
            base64.b64decode(echo["body_base64"]))


def node_message(echo: Dict[str, Any]) -> Message:
    raw = [base64.b64decode(text) for text in echo["headers"]]
    return app_view(echo["method"].encode("latin-1"), base64.b64decode(echo["target"]),
                    list(zip(raw[0::2], raw[1::2])), base64.b64decode(echo["body_base64"]))


class RuntimeServer(ServerProcess):
    """openwhisk.py serving tests/apps/wire-echo on the plain-HTTP platform, on loopback."""

    def __init__(self, python: str = sys.executable):
        port = free_port()
        env = {"PORT": str(port), "K_SERVICE": "wire-echo", "K_REVISION": "wire-echo-00001",
               "SERVERLESS_MAX_REQUEST_LIMIT": str(REQUEST_LIMIT), "SERVERLESS_MAX_READ_SECONDS": "5",
               "SERVERLESS_MAX_ACCESS_LOG": "off"}
        ServerProcess.__init__(self, [python, SHIM, "--host", "127.0.0.1"], port, WIRE_ECHO_APP, env,
                               name="runtime")
        self.wait_for_port()


class NodeServer(object):
    """tests/node_echo_server.js: Node's http server on loopback, until its stdin closes."""

    def __init__(self, node: str):
        self.process = subprocess.Popen([node, NODE_ECHO_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.port = int(self.process.stdout.readline())

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)
        self.process.stdout.close()


# ----------------------------------------------------------------------------- the comparison


class Outcome(object):
    """One input's verdicts and how the runtime's compares with the references'."""

    def __init__(self, case: Case, runtime: Verdict, runtime_in_pieces: Verdict, references: Dict[str, Verdict]):
        self.case = case
        self.runtime = runtime
        self.runtime_in_pieces = runtime_in_pieces
        self.pieces_matter = runtime_in_pieces.messages != runtime.messages
        self.references = references
        lists = [verdict.messages for verdict in references.values()]
        self.references_disagree = any(messages != lists[0] for messages in lists)
        if any(runtime.messages == messages for messages in lists):
            self.relation = "agree"
        elif any(runtime.messages == messages[:len(runtime.messages)] for messages in lists):
            self.relation = "stricter"
        else:
            self.relation = "more lenient"

    def all_same(self) -> bool:
        return self.relation == "agree" and not self.references_disagree and not self.pieces_matter


def run_differential(cases: List[Case], runtime_python: str = sys.executable) -> Tuple[List[Outcome], List[str]]:
    """Every case through every parser; the outcomes, and the reference names."""
    node = shutil.which("node")
    runtime = RuntimeServer(os.path.abspath(runtime_python) if os.sep in runtime_python else runtime_python)
    node_server = NodeServer(node) if node else None
    try:
        pool = concurrent.futures.ThreadPoolExecutor(PARALLEL_CONNECTIONS)
        runtime_verdicts = list(pool.map(lambda case: served_verdict(runtime.port, [case[3]], runtime_message), cases))
        runtime_verdicts_in_pieces = list(pool.map(
            lambda case: served_verdict(runtime.port, in_pieces(case[0], case[3]), runtime_message), cases))
        node_verdicts = (list(pool.map(lambda case: served_verdict(node_server.port, [case[3]], node_message), cases))
                         if node_server else None)
        pool.shutdown()
    finally:
        runtime.stop()
        if node_server:
            node_server.stop()
    names = []
    outcomes = []
    for index, case in enumerate(cases):
        references = {"h11": h11_verdict(case[3]), "llhttp": llhttp_verdict(case[3])}
        if node_verdicts is not None:
            references["node"] = node_verdicts[index]
        names = list(references)
        outcomes.append(Outcome(case, runtime_verdicts[index], runtime_verdicts_in_pieces[index], references))
    return outcomes, names


def counts(outcomes: List[Outcome]) -> Dict[str, int]:
    result = dict((relation, 0) for relation in ("agree", "stricter", "more lenient"))
    for outcome in outcomes:
        result[outcome.relation] += 1
    result["references disagree"] = sum(1 for outcome in outcomes if outcome.references_disagree)
    result["runtime differs in pieces"] = sum(1 for outcome in outcomes if outcome.pieces_matter)
    return result


def counts_line(outcomes: List[Outcome], names: List[str]) -> str:
    return "%d inputs against %s: %s" % (len(outcomes), ", ".join(names),
                                          ", ".join("%s %d" % item for item in counts(outcomes).items()))


def _escaped(data: bytes, limit: int = 90) -> str:
    text = "".join(chr(byte) if 0x20 <= byte < 0x7f and byte not in b"|\\`" else "\\x%02x" % byte for byte in data[:limit])
    text = text.replace("\\x0d\\x0a", "\\r\\n")
    return text + ("... (%d bytes)" % len(data) if len(data) > limit else "")


def table(outcomes: List[Outcome], names: List[str], runtime_python: str) -> str:
    """Markdown: every input on which the parsers do not all say the same, each parser's
    messages named by a letter (the same letter: the same messages)."""
    with open(os.path.join(ROOT, "serverless_max", "server.py"), "rb") as stream:
        server_digest = hashlib.sha1(stream.read()).hexdigest()[:12]
    versions = {"h11": getattr(h11, "__version__", "?"), "llhttp": getattr(httptools, "__version__", "?"),
                "node": _version_of(shutil.which("node") or "node")}
    lines = [
        "# HTTP/1.1 framing: where the runtime and the reference parsers differ",
        "",
        "Written by `python tests/test_http_differential.py` (corpus: tests/data/http-framing-corpus.json).",
        "Runtime: serverless_max/server.py sha1 %s, %s. References: %s."
        % (server_digest, _version_of(runtime_python), ", ".join("%s %s" % (name, versions[name]) for name in names)),
        "",
        "**%s.**" % counts_line(outcomes, names),
        "",
        "Each cell: the messages a parser took from the input (a letter per distinct list of messages,"
        " `-` for none), their number, and how it ended. `more lenient`: the runtime took a message no"
        " reference took there. `runtime in pieces`: the same input sent in up to four pieces, 3 ms apart."
        " Inputs on which every parser says the same are left out.",
        "",
        "| input | bytes | runtime | runtime in pieces | %s | runtime is |" % " | ".join(names),
        "|---|---|---|---|%s---|" % ("---|" * len(names)),
    ]
    for outcome in outcomes:
        if outcome.all_same():
            continue
        letters = {}  # type: Dict[Tuple[Message, ...], str]
        cells = []
        for verdict in [outcome.runtime, outcome.runtime_in_pieces] + [outcome.references[name] for name in names]:
            key = tuple(verdict.messages)
            if key and key not in letters:
                letters[key] = "ABCDEFGH"[len(letters)]
            cells.append("%s %s" % (letters.get(key, "-"), verdict.summary().replace("|", "/")))
        lines.append("| %s | `%s` | %s | %s |" % (outcome.case[0], _escaped(outcome.case[3]), " | ".join(cells),
                                                 outcome.relation))
    return "\n".join(lines) + "\n"


def _version_of(program: str) -> str:
    try:
        return subprocess.run([program, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True).stdout.strip()
    except OSError:
        return "?"


# ----------------------------------------------------------------------------- the tests


def test_the_committed_corpus_is_what_the_generator_makes() -> None:
    with open(os.path.join(ROOT, "tests", "data", "http-framing-corpus.json"), encoding="ascii") as stream:
        assert stream.read() == corpus_json(), "run python tests/http_framing_corpus.py"


needs_references = pytest.mark.skipif(httptools is None,
                                      reason="needs h11 and httptools (llhttp), and httptools has no Python 3.6 "
                                             "wheel: the differential runs on the current era")


@pytest.fixture(scope="module")
def differential() -> Tuple[List[Outcome], List[str]]:
    return run_differential(load_corpus())


@needs_references
def test_the_runtime_is_never_more_lenient_than_every_reference_parser(
        differential: Tuple[List[Outcome], List[str]], capsys: Any) -> None:
    outcomes, names = differential
    with capsys.disabled():
        print("\n" + counts_line(outcomes, names))
    lenient = [outcome for outcome in outcomes if outcome.relation == "more lenient"]
    _show(lenient, "more lenient")
    assert not lenient, "the runtime took messages no reference parser took: %s" % ", ".join(
        outcome.case[0] for outcome in lenient)


@needs_references
def test_the_runtime_parses_the_same_whatever_pieces_the_input_arrives_in(
        differential: Tuple[List[Outcome], List[str]]) -> None:
    """A parse that depends on how the bytes were split into TCP segments is one more way for
    two parsers of the same bytes to disagree."""
    differs = [outcome for outcome in differential[0] if outcome.pieces_matter]
    for outcome in differs:
        print("%s: one piece: %s\n  in pieces %s: %s" % (
            outcome.case[0], _described(outcome.runtime),
            [len(piece) for piece in in_pieces(outcome.case[0], outcome.case[3])], _described(outcome.runtime_in_pieces)))
    assert not differs, "the runtime's parse depends on how the input is cut: %s" % ", ".join(
        outcome.case[0] for outcome in differs)


@needs_references
def test_the_runtime_takes_every_valid_framing_as_a_reference_does(
        differential: Tuple[List[Outcome], List[str]]) -> None:
    """Strictness must not cost valid requests (rejecting everything would pass the test above): on
    each valid input the runtime takes the messages of the reference that took the most."""
    refused = [outcome for outcome in differential[0] if outcome.case[1] == "valid" and not _takes_the_most(outcome)]
    _show(refused, "not taken as any reference takes it")
    assert not refused, "valid framings the runtime did not take as a reference does: %s" % ", ".join(
        outcome.case[0] for outcome in refused)


def _takes_the_most(outcome: Outcome) -> bool:
    most = max(len(verdict.messages) for verdict in outcome.references.values())
    return any(outcome.runtime.messages == verdict.messages
               for verdict in outcome.references.values() if len(verdict.messages) == most)


def _show(outcomes: List[Outcome], what: str) -> None:
    for outcome in outcomes:
        print("%s: %s (%s) %s\n  runtime: %s\n%s" % (
            what, outcome.case[0], outcome.case[2], _escaped(outcome.case[3], 200), _described(outcome.runtime),
            "\n".join("  %s: %s" % (name, _described(verdict)) for name, verdict in outcome.references.items())))


def _described(verdict: Verdict) -> str:
    shown = "; ".join("%s %s?%s headers=%s body=%r" % (method, path[:60], query[:40], dict(headers), body[:60])
                      for method, path, query, headers, body in verdict.messages)
    return "%s [%s]" % (verdict.summary(), shown)


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description="Run the differential and write its disagreement table. "
                                     "Exit status 1 when the runtime was more lenient than every reference "
                                     "on some input, 2 when a reference library is missing.")
    parser.add_argument("--table", default=TABLE_PATH, help="where to write the table (default: %(default)s)")
    parser.add_argument("--runtime-python", default=sys.executable,
                        help="the interpreter to run the runtime with (default: this one)")
    options = parser.parse_args(argv)
    if httptools is None:
        print("h11 or httptools is missing: pip install -r requirements/test.txt (Python 3.8+)", file=sys.stderr)
        return 2
    outcomes, names = run_differential(load_corpus(), options.runtime_python)
    with open(options.table, "w", encoding="utf-8") as stream:
        stream.write(table(outcomes, names, options.runtime_python))
    print(counts_line(outcomes, names))
    print("wrote " + options.table)
    return 1 if any(outcome.relation == "more lenient" for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
