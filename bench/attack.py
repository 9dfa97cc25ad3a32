"""Memory and threads of the runtime's HTTP server under attack, on loopback.

For each runtime checkout given (default: this one) and each port (the plain-HTTP platform on
$PORT, and the OpenWhisk action port with concurrent activations on), serving
tests/apps/max-test-echo:

  1. idle RSS, after the model has loaded (and, on the OpenWhisk port, after /init);
  2. the largest header section the server takes (a binary search with GETs, capped at --head-cap);
  3. RSS while --connections connections each send that header section, then a chunked body
     whose first chunk size is negative (-3) and, in a second round, huge (2**64-1), followed by
     --body-mib MiB of bytes as fast as the server reads them (target: peak within 64 MiB of idle);
  4. how long a stalled connection (half a request head, then silence), a trickled one (a request
     head at one byte per 40 ms) and an idle one (no byte at all) each hold a server thread,
     counted in /proc/PID/task, watched for at most --watch-seconds;
  5. what the trickled requests were answered when the read deadline (--read-seconds) passed:
     a 408, or the app's answer to a request that had not arrived whole (a DELETE on the HTTP port).

Everything is bounded: connection counts, bytes, and every wait; the servers are stopped at the
end. The table goes to stdout (and to --output). Exit status 0 when every checkout met the memory
target, 1 when one did not, 2 when a server could not be started. Linux only (reads /proc).

Example, before and after a change: python bench/attack.py --runtime /path/to/old --runtime .
"""

import argparse
import collections
import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ECHO_APP = os.path.join(ROOT, "tests", "apps", "max-test-echo")
MEMORY_TARGET_BYTES = 64 * 1024 * 1024
TRICKLE_SECONDS_PER_BYTE = 0.04
HEAD_LINE_BYTES = 63 * 1024  # under the 64 KiB line limit of Python's header reader
MIB = 1024 * 1024


_SERVER_NUMBERS = itertools.count(1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ----------------------------------------------------------------------------- the server under attack


class Target(object):
    """One runtime checkout serving the echo app on one port, in a subprocess on loopback."""

    def __init__(self, checkout: str, platform: str, read_seconds: float, log_dir: str):
        self.checkout = checkout
        self.platform = platform
        self.port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1", SERVERLESS_MAX_READ_SECONDS=str(read_seconds))
        for name in ("PORT", "K_SERVICE", "__OW_API_HOST", "AWS_LAMBDA_RUNTIME_API", "SERVERLESS_MAX_PLATFORM"):
            env.pop(name, None)
        command = [sys.executable, os.path.join(checkout, "openwhisk.py"), "--host", "127.0.0.1"]
        if platform == "http":
            env.update(PORT=str(self.port), K_SERVICE="attack", K_REVISION="attack-00001", SERVERLESS_MAX_ACCESS_LOG="off")
        else:
            env.update(__OW_ALLOW_CONCURRENT="true")
            command += ["--port", str(self.port)]
        name = "%s-%s-%d" % (os.path.basename(os.path.abspath(checkout)), platform, next(_SERVER_NUMBERS))
        self.stderr_path = os.path.join(log_dir, name + ".stderr")
        with open(os.path.join(log_dir, name + ".stdout"), "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(command, cwd=ECHO_APP, env=env, stdout=out, stderr=err)
        deadline = time.monotonic() + 60
        while not self._accepts():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("%s did not start; its stderr:\n%s" % (name, open(self.stderr_path).read()))
            time.sleep(0.05)
        if platform == "openwhisk":
            self._init()

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def _init(self) -> None:
        payload = {"value": {"name": "attack", "main": "main", "binary": False, "env": {}}}
        request = urllib.request.Request("http://127.0.0.1:%d/init" % self.port, json.dumps(payload).encode(),
                                         {"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).read()

    def rss(self) -> int:
        return _status_field(self.process.pid, "VmRSS")

    def peak_rss(self) -> int:
        return _status_field(self.process.pid, "VmHWM")

    def threads(self) -> int:
        return len(os.listdir("/proc/%d/task" % self.process.pid))

    def request_path(self) -> bytes:
        return b"/echo" if self.platform == "http" else b"/run"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _status_field(pid: int, field: str) -> int:
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler(object):
    """The highest RSS of a process, sampled every 20 ms while in a ``with`` block."""

    def __init__(self, target: Target):
        self.target = target
        self.highest = 0
        self._stop = threading.Event()

    def __enter__(self) -> "RssSampler":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.highest = max(self.highest, self.target.rss())
            except OSError:
                return
            self._stop.wait(0.02)


# ----------------------------------------------------------------------------- what the attacker sends


def header_section(target: Target, method: bytes, size: int) -> bytes:
    """A request head of about ``size`` bytes: filler fields of up to 63 KiB each."""
    head = method + b" " + target.request_path() + b" HTTP/1.1\r\nHost: attack.test\r\n"
    fields = []
    remaining = max(0, size - len(head) - 2)
    number = 0
    while remaining > 0:
        prefix = b"X-Fill-%d: " % number
        value = max(1, min(HEAD_LINE_BYTES, remaining) - len(prefix) - 2)
        fields.append(prefix + b"f" * value + b"\r\n")
        remaining -= len(fields[-1])
        number += 1
    return head + b"".join(fields)


def first_status(connection: socket.socket, seconds: float) -> str:
    """The status code of the first answer on a connection, or what happened instead."""
    connection.settimeout(seconds)
    received = b""
    try:
        while b"\r\n" not in received:
            chunk = connection.recv(4096)
            if not chunk:
                return received.split(b" ")[1].decode() if received.startswith(b"HTTP/") else "closed, no answer"
            received += chunk
    except socket.timeout:
        return "no answer"
    except OSError:
        return "reset"
    line = received.split(b"\r\n", 1)[0].split(b" ")
    return line[1].decode("latin-1") if len(line) > 1 else "garbled"


def largest_accepted_head(target: Target, cap: int) -> int:
    """The largest header section (bytes) a GET may have without a 4xx, by binary search up to ``cap``."""
    def accepted(size: int) -> bool:
        with socket.create_connection(("127.0.0.1", target.port), timeout=30) as connection:
            try:
                connection.sendall(header_section(target, b"GET", size) + b"\r\n")
            except OSError:
                return False
            status = first_status(connection, 30)
        return status.isdigit() and status not in ("400", "413", "414", "431")
    low, high = 1024, cap
    if accepted(high):
        return high
    while high - low > 1024:
        middle = (low + high) // 2
        if accepted(middle):
            low = middle
        else:
            high = middle
    return low


def chunked_attack(target: Target, head: bytes, chunk_size: bytes, body_bytes: int, seconds: float) -> str:
    """One attacker: the head, a chunked body announcing ``chunk_size``, then ``body_bytes`` of data."""
    deadline = time.monotonic() + seconds
    piece = b"A" * 65536
    try:
        with socket.create_connection(("127.0.0.1", target.port), timeout=seconds) as connection:
            try:
                connection.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n" + chunk_size + b"\r\n")
                sent = 0
                while sent < body_bytes and time.monotonic() < deadline:
                    connection.sendall(piece)
                    sent += len(piece)
                connection.sendall(b"\r\n0\r\n\r\n")
                connection.shutdown(socket.SHUT_WR)
            except (socket.timeout, OSError):
                pass  # the server stopped reading, or answered and closed: its answer tells which
            return first_status(connection, max(1.0, deadline - time.monotonic()))
    except OSError as error:
        return "connect failed: %s" % error.strerror


def run_attackers(count: int, attack: Callable[[], str]) -> collections.Counter:
    results = []  # type: List[str]
    lock = threading.Lock()

    def one() -> None:
        status = attack()
        with lock:
            results.append(status)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return collections.Counter(results)


# ----------------------------------------------------------------------------- threads held


class SlowClient(object):
    """A connection that is idle, stalled after half a head, or trickling a head a byte at a time."""

    def __init__(self, target: Target, kind: str, seconds: float):
        self.connection = socket.create_connection(("127.0.0.1", target.port), timeout=seconds)
        self.kind = kind
        self.answer = None  # type: Optional[str]
        method = b"DELETE" if target.platform == "http" else b"POST"
        head = method + b" " + target.request_path() + b" HTTP/1.1\r\nHost: attack.test\r\n"
        if kind == "stalled":
            self.connection.sendall(head)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(head + b"X-Trickle: " + b"t" * 100000,), daemon=True)
        self._thread.start()

    def _run(self, trickle: bytes) -> None:
        if self.kind == "trickled":
            for byte in trickle:
                if self._stop.wait(TRICKLE_SECONDS_PER_BYTE):
                    return
                self.connection.settimeout(1.0)
                try:
                    self.connection.send(bytes([byte]))
                except OSError:  # the server closed the connection (or stopped reading it)
                    break
                if self._answered():
                    return
        else:
            while not self._stop.wait(0.05):
                if self._answered():
                    return
        self._answered(wait=True)

    def _answered(self, wait: bool = False) -> bool:
        self.connection.settimeout(1.0 if wait else 0.0)
        try:
            data = self.connection.recv(4096)
        except (BlockingIOError, socket.timeout):
            return False
        except OSError:
            data = b""
        line = data.split(b"\r\n", 1)[0].split(b" ")
        self.answer = line[1].decode("latin-1") if data.startswith(b"HTTP/") and len(line) > 1 else "closed, no answer"
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.connection.close()


def warm_up(target: Target) -> None:
    """One whole request first, so that threads a server starts once (a deadline watchdog) are
    in the baseline, not counted against the first slow connection."""
    with socket.create_connection(("127.0.0.1", target.port), timeout=30) as connection:
        connection.sendall(b"GET /echo HTTP/1.1\r\nHost: attack.test\r\nConnection: close\r\n\r\n")
        first_status(connection, 30)
    time.sleep(0.5)


def threads_held(target: Target, kind: str, count: int, watch_seconds: float) -> Dict[str, Any]:
    """Open ``count`` connections of one kind; how many threads they added, for how long, and
    what the server answered them."""
    baseline = target.threads()
    clients = [SlowClient(target, kind, watch_seconds) for _ in range(count)]
    started = time.monotonic()
    most = 0
    released_after = None  # type: Optional[float]
    while time.monotonic() - started < watch_seconds:
        extra = target.threads() - baseline
        most = max(most, extra)
        if most > 0 and extra <= 0:
            released_after = time.monotonic() - started
            break
        time.sleep(0.05)
    settle = time.monotonic() + 2  # an answer written as the thread ends may still be on its way
    while any(client.answer is None for client in clients) and released_after and time.monotonic() < settle:
        time.sleep(0.05)
    answers = collections.Counter(client.answer or "none yet" for client in clients)
    for client in clients:
        client.close()
    settle = time.monotonic() + 10
    while target.threads() > baseline and time.monotonic() < settle:
        time.sleep(0.05)
    return {"most": most, "released_after": released_after, "answers": answers, "watched": watch_seconds}


# ----------------------------------------------------------------------------- the run


def measure(checkout: str, platform: str, options: Any, log_dir: str) -> Dict[str, Any]:
    """Every measurement of one checkout on one port, each attack on a server of its own, so that
    memory one attack leaves behind is not counted against the next."""
    result = {"held": {}}  # type: Dict[str, Any]
    for name, chunk_size in (("negative", b"-3"), ("huge", b"ffffffffffffffff")):
        with running(checkout, platform, options, log_dir) as target:
            time.sleep(1.0)
            idle = target.rss()
            if "head" not in result:
                result["idle_rss"] = idle
                result["head"] = largest_accepted_head(target, options.head_cap)
            head = header_section(target, b"POST", result["head"])
            with RssSampler(target) as sampler:
                answers = run_attackers(options.connections, lambda: chunked_attack(
                    target, head, chunk_size, options.body_mib * MIB, options.phase_seconds))
            result[name] = {"idle": idle, "peak": sampler.highest, "answers": answers, "hwm": target.peak_rss()}
    with running(checkout, platform, options, log_dir) as target:
        warm_up(target)
        for kind in ("stalled", "trickled", "idle"):
            watch = options.watch_seconds if kind == "idle" else options.read_seconds * 2 + 5
            result["held"][kind] = threads_held(target, kind, options.slow_connections, watch)
    return result


@contextlib.contextmanager
def running(checkout: str, platform: str, options: Any, log_dir: str) -> Iterator[Target]:
    target = Target(checkout, platform, options.read_seconds, log_dir)
    try:
        yield target
    finally:
        target.stop()


def mib(value: int) -> str:
    return "%.0f MiB" % (value / MIB)


def counted(answers: collections.Counter) -> str:
    return ", ".join("%d x %s" % (number, status) for status, number in sorted(answers.items(), key=lambda item: -item[1]))


def held(entry: Dict[str, Any]) -> str:
    if entry["most"] == 0:
        return "no thread"
    if entry["released_after"] is None:
        return "%d threads, still held after %.0f s" % (entry["most"], entry["watched"])
    return "%d threads, %.1f s" % (entry["most"], entry["released_after"])


def table(columns: List[Tuple[str, str, List[Dict[str, Any]]]], options: Any) -> str:
    """One column per checkout and port; a cell shows each round's figure when the rounds differ."""
    header = [""] + ["%s (%s)" % (label, platform) for label, platform, _ in columns]
    lines = [
        "Runtime HTTP server under attack on loopback: %d connections, %d MiB of body each; read deadline %g s; "
        "%d slow connections of each kind; %d round(s), figures per round when they differ."
        % (options.connections, options.body_mib, options.read_seconds, options.slow_connections, options.rounds),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]

    def row(name: str, cell: Callable[[Dict[str, Any]], str]) -> None:
        shown = []
        for _, _, results in columns:
            figures = [cell(result) for result in results]
            shown.append(figures[0] if len(set(figures)) == 1 else " / ".join(figures))
        lines.append("| " + " | ".join([name] + shown) + " |")

    row("idle RSS", lambda r: mib(r["idle_rss"]))
    row("largest header section taken",
        lambda r: "%.1f KiB" % (r["head"] / 1024.0) + (" (the cap)" if r["head"] >= options.head_cap else ""))
    for name, label in (("negative", "chunk size -3"), ("huge", "chunk size 2**64-1")):
        row("peak RSS, %s" % label,
            lambda r, name=name: "%s (+%s)" % (mib(r[name]["peak"]), mib(r[name]["peak"] - r[name]["idle"])))
        row("answers, %s" % label, lambda r, name=name: counted(r[name]["answers"]))
    for kind, label in (("stalled", "stalled connection holds"), ("trickled", "trickled connection holds"),
                        ("idle", "idle connection holds")):
        row(label, lambda r, kind=kind: held(r["held"][kind]))
    row("trickled request, answer at the deadline", lambda r: counted(r["held"]["trickled"]["answers"]))
    row("within 64 MiB of idle", lambda r: "yes" if within_target(r) else "NO")
    return "\n".join(lines) + "\n"


def within_target(result: Dict[str, Any]) -> bool:
    return all(result[name]["peak"] - result[name]["idle"] <= MEMORY_TARGET_BYTES for name in ("negative", "huge"))


def parse_options(argv: List[str]) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", action="append", metavar="CHECKOUT",
                        help="a checkout holding openwhisk.py and serverless_max/ (repeat to compare; default: this one)")
    parser.add_argument("--platform", choices=("http", "openwhisk", "both"), default="both")
    parser.add_argument("--connections", type=int, default=48, help="attacking connections (default %(default)s)")
    parser.add_argument("--body-mib", type=int, default=8, help="body bytes each attacker sends, MiB (default %(default)s)")
    parser.add_argument("--head-cap", type=int, default=96 * HEAD_LINE_BYTES,
                        help="largest header section tried, bytes (default %(default)s: 96 fields of 63 KiB)")
    parser.add_argument("--read-seconds", type=float, default=5.0,
                        help="SERVERLESS_MAX_READ_SECONDS for the servers (default %(default)s)")
    parser.add_argument("--phase-seconds", type=float, default=30.0,
                        help="bound on each attack round (default %(default)s)")
    parser.add_argument("--slow-connections", type=int, default=4,
                        help="connections of each slow kind (default %(default)s)")
    parser.add_argument("--watch-seconds", type=float, default=30.0,
                        help="how long to watch the idle connections' threads (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every measurement, checkouts taking turns (default %(default)s)")
    parser.add_argument("--output", help="also write the table to this file")
    options = parser.parse_args(argv)
    for name in ("rounds", "connections", "body_mib", "read_seconds", "phase_seconds", "slow_connections", "watch_seconds"):
        if not 0 < getattr(options, name) <= 10000:
            parser.error("--%s must be positive and at most 10000" % name.replace("_", "-"))
    if options.connections > 256:
        parser.error("--connections: at most 256")
    return options


def main(argv: List[str]) -> int:
    options = parse_options(argv)
    if not os.path.isdir("/proc/self/task"):
        print("attack.py reads /proc: it runs on Linux only", file=sys.stderr)
        return 2
    checkouts = options.runtime or [ROOT]
    platforms = ("http", "openwhisk") if options.platform == "both" else (options.platform,)
    columns = [(os.path.basename(os.path.abspath(checkout)), platform, [])
               for checkout in checkouts for platform in platforms]  # type: List[Tuple[str, str, List[Dict[str, Any]]]]
    log_dir = tempfile.mkdtemp(prefix="attack-logs-")
    for round_number in range(1, options.rounds + 1):
        for checkout, (label, platform, results) in zip([c for c in checkouts for _ in platforms], columns):
            print("round %d: attacking %s on the %s port ..." % (round_number, label, platform), file=sys.stderr)
            try:
                results.append(measure(checkout, platform, options, log_dir))
            except (RuntimeError, OSError) as error:
                print(error, file=sys.stderr)
                return 2
    text = table(columns, options)
    print(text)
    if options.output:
        with open(options.output, "w") as stream:
            stream.write(text)
    print("server logs: " + log_dir, file=sys.stderr)
    return 0 if all(within_target(result) for _, _, results in columns for result in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
