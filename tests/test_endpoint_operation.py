"""local_endpoint.py as a process people run: signals, stalled and many connections, huge log
lines, a Python without the model's dependencies, and what it prints."""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any, Iterator, Tuple

import pytest

from samples import EXAMPLES_DIR
from support import ROOT, free_port
from test_local_endpoint import (LOCAL_ENDPOINT, LocalEndpoint, TinyAction, assert_usage_error, child_pids,
                                 process_exists, web)
from test_local_endpoint import fake_model  # noqa: F401

DIGIT_CLASSIFIER = os.path.join(EXAMPLES_DIR, "max-example-digit-classifier")

# An action proxy that prints one line of --line-mib MiB in every activation, then the sentinels.
LOUD_SHIM = r'''
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
SIZE = int(sys.argv[sys.argv.index("--line-mib") + 1]) * 1024 * 1024 if "--line-mib" in sys.argv else 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/run":
            sys.stdout.write("x" * SIZE + "\n")
            sys.stdout.write("after the long line\n" + SENTINEL + "\n")
            sys.stdout.flush()
            print(SENTINEL, file=sys.stderr, flush=True)
        body = json.dumps({"statusCode": 200, "body": "done"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), Handler).serve_forever()
'''


@pytest.fixture(scope="module")
def action() -> Iterator[TinyAction]:
    tiny = TinyAction()
    yield tiny
    tiny.close()


def read_until_closed(connection: socket.socket, seconds: float) -> bytes:
    """What the endpoint sends until it closes the connection (bounded generously: not a timing check)."""
    connection.settimeout(seconds)
    received = b""
    while True:
        piece = connection.recv(65536)
        if not piece:
            return received
        received += piece


# ----------------------------------------------------------------------------- 13: what it prints


def test_a_request_refused_with_413_names_the_action_in_its_access_line(action: TinyAction) -> None:
    with LocalEndpoint("small=" + action.address, "--payload-limit", "10") as endpoint:
        assert endpoint.request("POST", web("small"), b"x" * 11).status == 413
        line = endpoint.wait_for_output("-> 413")
    assert re.search(r"^small: POST /api/v1/web/guest/default/small -> 413 ", line, re.MULTILINE), line


def test_every_action_gets_its_try_hint(action: TinyAction) -> None:
    with LocalEndpoint("first=" + action.address, DIGIT_CLASSIFIER) as endpoint:
        output = endpoint.wait_for_output('curl -F "image=@')  # the hints follow the 'ready' line
        hints = [line for line in output.splitlines() if line.startswith(("try:", "      curl"))]
    assert hints[0] == "try:  curl %s/model/metadata" % endpoint.url("first")
    classifier = endpoint.url("max-example-digit-classifier")
    assert "      curl %s/model/metadata" % classifier in hints
    assert any(hint.startswith('      curl -F "image=@') and hint.endswith(classifier) for hint in hints), hints


# ----------------------------------------------------------------------------- 12: a Python without the model's dependencies


def test_a_python_without_the_models_dependencies_is_one_line_and_exit_2(tmp_path: Any) -> None:
    # A Python that has the standard library only: the one the endpoint itself needs.
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    bare_python = str(bare / "bin" / "python")
    result = subprocess.run([bare_python, LOCAL_ENDPOINT, DIGIT_CLASSIFIER, "--port", str(free_port())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60,
                            cwd=ROOT)
    assert_usage_error(result, "cannot import maxfw")
    assert "scripts/serve-example.sh" in result.stderr and "--python" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stdout + result.stderr


# ----------------------------------------------------------------------------- 3: signals


def started_ignoring_sigint() -> None:
    """As a shell without job control starts a background command: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("signum, inherited_sigint", [
    (signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True),
], ids=["SIGTERM", "SIGINT", "SIGINT-inherited-ignored"])
def test_a_signal_stops_the_endpoint_and_its_action_process(fake_model: Tuple[str, str], signum: int,  # noqa: F811
                                                            inherited_sigint: bool) -> None:
    model_dir, shim = fake_model
    endpoint = LocalEndpoint("fake=" + model_dir, "--shim", shim,
                             preexec_fn=started_ignoring_sigint if inherited_sigint else None)
    with endpoint:
        with open(os.path.join(model_dir, "proxy.pid")) as pid_file:
            pid = int(pid_file.read())
        endpoint.children = child_pids(endpoint.process.pid)  # for teardown, whatever happens
        endpoint.process.send_signal(signum)
        assert endpoint.process.wait(60) == 0
    assert not process_exists(pid)
    assert "Traceback" not in endpoint.output()


def test_a_signal_while_connections_arrive_still_stops_the_endpoint(fake_model: Tuple[str, str]) -> None:  # noqa: F811
    # The signal lands while the server accepts and starts connection threads: it must not be taken
    # for a failed request (the server loop catches Exception) and leave the endpoint serving.
    model_dir, shim = fake_model
    endpoint = LocalEndpoint("fake=" + model_dir, "--shim", shim)
    with endpoint:
        with open(os.path.join(model_dir, "proxy.pid")) as pid_file:
            pid = int(pid_file.read())
        endpoint.children = child_pids(endpoint.process.pid)
        connections = []  # type: List[socket.socket]
        for number in range(200):
            try:
                connections.append(socket.create_connection(("127.0.0.1", endpoint.port), timeout=5))
            except OSError:
                break  # the endpoint stopped listening: the signal was taken
            if number == 20:
                endpoint.process.send_signal(signal.SIGTERM)
        assert endpoint.process.wait(60) == 0
        for connection in connections:
            connection.close()
    assert not process_exists(pid)


# ----------------------------------------------------------------------------- 9: deadlines, backlog, log lines


def test_a_stalled_request_is_closed_at_the_read_deadline(action: TinyAction) -> None:
    with LocalEndpoint("slow=" + action.address, "--read-timeout", "1") as endpoint:
        # Slowloris: a header line every 0.3 s, never the blank line. The deadline is for the whole
        # request, so the trickle does not keep the connection open.
        slowloris = socket.create_connection(("127.0.0.1", endpoint.port), timeout=30)
        slowloris.sendall(b"GET " + web("slow").encode() + b" HTTP/1.1\r\n")
        closed = False
        for number in range(100):
            try:
                slowloris.sendall(b"X-Trickle-%d: 1\r\n" % number)
            except OSError:
                closed = True
                break
            slowloris.settimeout(0.3)
            try:
                if slowloris.recv(1) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
        slowloris.close()
        assert closed
        # A stalled upload: the headers announce 60 MB, a little arrives, then nothing.
        upload = socket.create_connection(("127.0.0.1", endpoint.port), timeout=30)
        upload.sendall(b"POST " + web("slow").encode() + b" HTTP/1.1\r\nContent-Length: 60000000\r\n\r\n" + b"x" * 1000)
        answer = read_until_closed(upload, 30)
        upload.close()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert endpoint.request("GET", web("slow")).status == 200  # still serving
    assert not action.runs or all(run["value"]["__ow_method"] == "get" for run in action.runs)


def test_300_connections_opened_at_once_are_all_answered(action: TinyAction) -> None:
    with LocalEndpoint("many=" + action.address) as endpoint:
        if shutil.which("ss"):  # iproute2; without it only the connections below are checked
            listing = subprocess.run(["ss", "-ltnH", "sport = :%d" % endpoint.port], stdout=subprocess.PIPE,
                                     universal_newlines=True, check=True).stdout.split()
            assert int(listing[2]) >= 1024  # Send-Q of a listening socket: its backlog
        connections = [socket.create_connection(("127.0.0.1", endpoint.port), timeout=60) for _ in range(300)]
        for connection in connections:
            connection.sendall(b"GET /nowhere HTTP/1.1\r\nConnection: close\r\n\r\n")
        answers = [read_until_closed(connection, 60) for connection in connections]
        for connection in connections:
            connection.close()
    assert all(answer.startswith(b"HTTP/1.1 404 ") for answer in answers)


def peak_rss_kib(pid: int) -> int:
    with open("/proc/%d/status" % pid) as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def test_a_50_mib_log_line_is_cut_and_memory_stays_bounded(tmp_path: Any) -> None:
    model_dir = tmp_path / "loud"
    model_dir.mkdir()
    (model_dir / "app.py").write_text("# started by the proxy given with --shim\n")
    shim = tmp_path / "loud_shim.py"
    shim.write_text(LOUD_SHIM + "\n")
    wrapper = tmp_path / "python-with-args"
    wrapper.write_text('#!/bin/sh\nexec "%s" "$@" --line-mib 50\n' % sys.executable)
    wrapper.chmod(0o755)
    with LocalEndpoint("loud=" + str(model_dir), "--shim", str(shim), "--python", str(wrapper)) as endpoint:
        before = peak_rss_kib(endpoint.process.pid)
        response = endpoint.request("GET", web("loud"))
        assert response.status == 200
        activation = response.header("x-openwhisk-activation-id")
        output = endpoint.wait_for_output("after the long line", 60)
        after = peak_rss_kib(endpoint.process.pid)
    cut = [line for line in output.splitlines() if line.startswith("loud %s stdout: xxx" % activation)]
    assert len(cut) == 1
    assert cut[0].endswith("... [%d more bytes of this line not shown]" % (50 * 1024 * 1024 - 65536))
    assert "loud %s stdout: after the long line" % activation in output
    print("endpoint peak RSS: %d KiB before, %d KiB after a 50 MiB log line" % (before, after))
    assert after - before < 20 * 1024, (before, after)


def test_a_client_that_hangs_up_before_its_answer_is_no_traceback(action: TinyAction) -> None:
    def slow_answer(message: Any) -> Any:
        time.sleep(0.5)
        return 200, [("Content-Type", "application/json"), ("Content-Length", "2")], b"{}"

    action.reset(slow_answer)
    with LocalEndpoint("slow=" + action.address) as endpoint:
        for _ in range(3):
            connection = socket.create_connection(("127.0.0.1", endpoint.port), timeout=30)
            connection.sendall(b"GET " + web("slow").encode() + b" HTTP/1.1\r\n\r\n")
            # Close with a reset, before the answer: writing it then fails.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()
        endpoint.request("GET", web("slow"))
        output = endpoint.output()
    action.reset()
    assert "Traceback" not in output and "Broken pipe" not in output
