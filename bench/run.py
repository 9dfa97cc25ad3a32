"""Measure what the shim adds to a model: latency, peak memory, cold start and concurrency.

The invoker harness uses tests/apps/max-test-echo, whose prediction only counts the uploaded
bytes, so the numbers are the shim's overhead and not a model's work. Side by side, per image
size (10 KB, 100 KB, 1 MB, 5 MB):

  (a) the multipart upload sent straight to the model's own server (maxfw's Werkzeug server);
  (b) the same request as the invoker's /run JSON (raw web action params, body in base64)
      POSTed to openwhisk.py, on a fresh connection each time as the invoker does;
  (c) the same upload through local_endpoint.py, the local Web Action endpoint (in front of a
      shim of its own);
  (d) the floor: json.loads of that /run body and base64-decoding its __ow_body, in this process;
  (e) with --baseline, the same /run to another shim (the 2019 one), served from the model's directory;
  (f) the multipart upload to the runtime serving plain HTTP on $PORT (Knative, Cloud Run, Code Engine);
  (g) the upload as a Lambda function URL event to AWS's Runtime Interface Emulator running the runtime.

The paths take turns request by request, so that load from elsewhere on the machine hits them
alike. Then the peak memory of (a) and (b) above their idle size, the cold start of both
(process start to first answer), and /run throughput with 1, 4 and 16 overlapping activations.
Every answer is checked: the byte count the model reports must be the one sent.

The clients harness (--harness clients; both run by default) measures the /run path as
independent clients do, beside the 2019 shim: (A) examples/max-example-digit-classifier (Pillow
decodes each random-noise PNG) against its own Werkzeug server, the /run JSON as requests' json=
writes it, over a keep-alive requests.Session, rounds alternating the shims; (B) the echo model,
a 1 MB upload, http.client on fresh connections and on one kept connection. Figures are medians
over rounds with the rounds' min-max.

The table goes to stdout and to bench/results.md (--quick: bench/results/quick.md; one harness
alone: bench/results/HARNESS.md) with the machine it ran on.
Exit status: 0 when every target is met, 1 when one is missed (--quick: when an answer was wrong),
2 when a server could not be started.

Runs on the current dependency era only (Python 3.11+, maxfw 1.1.6, Flask 3) on Linux (it reads
/proc); scripts/bench.sh sets that up.
"""

import argparse
import base64
import datetime
import http.client
import importlib.metadata
import io
import json
import math
import os
import platform
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from support import ServerProcess, free_port, lambda_emulator  # noqa: E402  (the tests' process helpers)
import lambda_events  # noqa: E402  (the tests' builders of AWS's event shapes)
SHIM = os.path.join(ROOT, "openwhisk.py")
LOCAL_ENDPOINT = os.path.join(ROOT, "local_endpoint.py")
DIRECT_SERVER = os.path.join(ROOT, "bench", "direct_server.py")
ECHO_APP = os.path.join(ROOT, "tests", "apps", "max-test-echo")
RESULTS = os.path.join(ROOT, "bench", "results.md")
QUICK_RESULTS = os.path.join(ROOT, "bench", "results", "quick.md")
ACTION_NAME = "max-test-echo"
PREDICT_PATH = "/model/predict"
WEB_ACTION_PATH = "/api/v1/web/guest/default/" + ACTION_NAME
MIB = 1024 * 1024

KB = 1024
IMAGE_SIZES = [("10 KB", 10 * KB), ("100 KB", 100 * KB), ("1 MB", 1024 * KB), ("5 MB", 5 * 1024 * KB)]
# Timed requests per image size (after warm-up), full and --quick.
RUNS = {10 * KB: 1000, 100 * KB: 1000, 1024 * KB: 300, 5 * 1024 * KB: 100}
QUICK_RUNS = {10 * KB: 30, 100 * KB: 30, 1024 * KB: 10, 5 * 1024 * KB: 5}
WARMUP = 5
CONCURRENCY_LEVELS = [1, 4, 16]
CONCURRENCY_IMAGE_SIZE = 100 * KB
# The image sizes the latency and memory targets apply to. Below them the latency is fixed
# per-request costs, and twice the /run body is within the noise of a process's resident size.
TARGET_SIZES = (1024 * KB, 5 * 1024 * KB)
COLD_START_TARGET_MS = 100.0
MEMORY_TARGET_FACTOR = 2.0


# ----------------------------------------------------------------------------- requests


def jpeg_like(size: int, seed: int) -> bytes:
    """Bytes of the given size shaped like a JPEG (markers around incompressible data)."""
    noise = random.Random(seed).randbytes(size - 4)
    return b"\xff\xd8" + noise + b"\xff\xd9"


def multipart(image: bytes) -> Tuple[bytes, str]:
    """The body and content type a browser or curl -F sends for one `image` file field."""
    boundary = "----bench" + uuid.uuid4().hex
    head = ('--%s\r\nContent-Disposition: form-data; name="image"; filename="upload.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n" % boundary).encode("ascii")
    tail = ("\r\n--%s--\r\n" % boundary).encode("ascii")
    return head + image + tail, "multipart/form-data; boundary=" + boundary


def run_message(body: bytes, content_type: str, action_name: str = ACTION_NAME) -> Dict[str, Any]:
    """The /run message the invoker sends for a raw web action receiving this upload."""
    params = {
        "__ow_method": "post",
        "__ow_path": "",
        "__ow_query": "",
        "__ow_headers": {
            "accept": "*/*",
            "content-type": content_type,
            "host": "controller",
            "user-agent": "curl/7.88.1",
            "x-forwarded-proto": "https",
        },
        "__ow_body": base64.b64encode(body).decode("ascii"),
    }
    message = {
        "value": params,
        "namespace": "guest",
        "action_name": "/guest/" + action_name,
        "action_version": "0.0.1",
        "activation_id": uuid.uuid4().hex,
        "transaction_id": uuid.uuid4().hex,
        "deadline": str(int(time.time() * 1000) + 60000),
        "api_key": "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:not-a-real-key",
    }
    return message


def invoker_run_body(body: bytes, content_type: str) -> bytes:
    """The /run body the invoker sends, as it writes it: compact JSON."""
    return json.dumps(run_message(body, content_type), separators=(",", ":")).encode("ascii")


class Upload(object):
    """One image upload, in the shapes each path under test sends it."""

    def __init__(self, image_size: int, seed: int):
        self.image_size = image_size
        self.body, self.content_type = multipart(jpeg_like(image_size, seed))
        self.run_body = invoker_run_body(self.body, self.content_type)
        event = lambda_events.function_url("POST", PREDICT_PATH, headers=[("content-type", self.content_type)],
                                           body=self.body)
        self.lambda_event = json.dumps(event, separators=(",", ":")).encode("ascii")


def post(port: int, path: str, body: bytes, content_type: str) -> Tuple[int, bytes]:
    """One POST on a new connection, closed after the answer (no keep-alive, as the invoker).

    A request that gets no answer (connection refused or reset, timeout) is status 0.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as error:
        log("POST %s on port %d got no answer: %s" % (path, port, error))
        return 0, b""
    finally:
        connection.close()


def counted_bytes(status: int, body: bytes) -> Optional[int]:
    """The image size the echo model reports in its HTTP answer, None if the answer is wrong."""
    if status != 200:
        return None
    try:
        return json.loads(body)["files"]["image"]
    except (ValueError, KeyError, TypeError):
        return None


def counted_bytes_in_result(status: int, body: bytes, status_key: str = "statusCode") -> Optional[int]:
    """The image size in a /run result whose JSON body is text, None if wrong. The 2019 shim's
    results name the status "status" instead of "statusCode"."""
    if status != 200:
        return None
    try:
        result = json.loads(body)
        if result[status_key] != 200:
            return None
        return counted_bytes(200, result["body"].encode("utf-8"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


# ----------------------------------------------------------------------------- processes


class Server(ServerProcess):
    """A server under test, with its memory read from /proc."""

    def __init__(self, name: str, command: List[str], port: int, cwd: str, env: Dict[str, str], log_dir: str):
        ServerProcess.__init__(self, command, port, cwd, env, log_dir, name)

    def _status_kib(self, field: str) -> int:
        with open("/proc/%d/status" % self.process.pid) as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError("no %s in /proc/%d/status" % (field, self.process.pid))

    def reset_peak_memory(self) -> None:
        """Make the peak resident size (VmHWM) start again from the current one."""
        with open("/proc/%d/clear_refs" % self.process.pid, "w") as clear_refs:
            clear_refs.write("5")

    def resident_bytes(self) -> int:
        return self._status_kib("VmRSS") * 1024

    def peak_resident_bytes(self) -> int:
        return self._status_kib("VmHWM") * 1024

    def cpu_seconds(self) -> float:
        """The CPU time the process has used, its threads' (also those that ended) included. Load from
        elsewhere on the machine barely changes it, where it can double a wall-clock time."""
        with open("/proc/%d/stat" % self.process.pid) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def direct_command(port: int) -> List[str]:
    return [sys.executable, DIRECT_SERVER, "--port", str(port)]


def direct_server(log_dir: str, app_dir: str = ECHO_APP, name: str = "direct") -> Server:
    """The model's own server (the echo model's unless told)."""
    port = free_port()
    server = Server(name, direct_command(port), port, app_dir, {}, log_dir)
    server.wait_for_port()
    return server


def shim_command(shim: str, port: int) -> List[str]:
    return [sys.executable, shim, "--port", str(port), "--host", "127.0.0.1"]


def shim_server(shim: str, log_dir: str, name: str, env: Optional[Dict[str, str]] = None,
                initialise: bool = True, app_dir: str = ECHO_APP) -> Server:
    """The shim serving a model (the echo model's unless told); initialised by us, or left for the
    local endpoint to initialise."""
    port = free_port()
    server = Server(name, shim_command(shim, port), port, app_dir, env or {}, log_dir)
    server.wait_for_port()
    if initialise:
        init_shim(port, os.path.basename(app_dir))
    return server


def http_server(shim: str, log_dir: str) -> Server:
    """The runtime serving the echo model as Knative, Cloud Run and Code Engine run it: plain HTTP on $PORT."""
    port = free_port()
    env = {"PORT": str(port), "K_SERVICE": ACTION_NAME, "K_REVISION": ACTION_NAME + "-00001"}
    server = Server("http", [sys.executable, shim, "--host", "127.0.0.1"], port, ECHO_APP, env, log_dir)
    server.wait_for_port()
    return server


# Lambda's synchronous request payload limit: a 5 MB upload is 6.7 MB as a base64 event, over it.
LAMBDA_REQUEST_LIMIT = 6 * 1024 * 1024


def lambda_server(shim: str, log_dir: str) -> Optional[Server]:
    """The runtime under AWS's Runtime Interface Emulator, as a Lambda container image runs; None
    (the path left out) when scripts/lambda-rie.sh cannot fetch the emulator."""
    try:
        emulator = lambda_emulator()
    except RuntimeError as error:
        log("warning: no Lambda path: %s" % error)
        return None
    port = free_port()
    command = [emulator, "--runtime-interface-emulator-address", "127.0.0.1:%d" % port,
               "--runtime-api-address", "127.0.0.1:%d" % free_port(), sys.executable, shim]
    server = Server("lambda", command, port, ECHO_APP, {}, log_dir)
    server.wait_for_port()
    return server


def counted_bytes_in_lambda_result(status: int, body: bytes) -> Optional[int]:
    """The image size in a function URL result, as the URL's HTTP response would carry it."""
    if status != 200:
        return None
    try:
        return counted_bytes(*lambda_events.http_response(json.loads(body))[::2])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def baseline_server(baseline: str, log_dir: str, app_dir: str = ECHO_APP, name: str = "baseline",
                    initialise: bool = False) -> Server:
    """The 2019 shim serving a model (the echo model's unless told): run from the model's directory,
    its port from SEED_SHIM_PORT."""
    port = free_port()
    env = {"SEED_SHIM_PORT": str(port), "PYTHONPATH": app_dir}
    server = Server(name, [sys.executable, baseline], port, app_dir, env, log_dir)
    server.wait_for_port()
    if initialise:
        init_shim(port, os.path.basename(app_dir))
    return server


def init_shim(port: int, action_name: str = ACTION_NAME) -> None:
    message = {"value": {"name": action_name, "binary": False, "main": "main",
                         "env": {"__OW_NAMESPACE": "guest", "__OW_ACTION_NAME": "/guest/" + action_name}}}
    status, body = post(port, "/init", json.dumps(message).encode("ascii"), "application/json")
    if status != 200:
        raise RuntimeError("/init answered %d: %r" % (status, body))


def local_endpoint(log_dir: str, shim_port: int, largest_run_body: int) -> Server:
    """local_endpoint.py in front of a shim of its own, with limits raised to fit the largest upload."""
    port = free_port()
    limit = str(2 * largest_run_body)
    command = [sys.executable, LOCAL_ENDPOINT, "%s=http://127.0.0.1:%d" % (ACTION_NAME, shim_port),
               "--port", str(port), "--payload-limit", limit, "--result-limit", limit]
    server = Server("endpoint", command, port, ROOT, {}, log_dir)
    server.wait_until(lambda: "ready" in server.stdout())
    return server


# ----------------------------------------------------------------------------- statistics


def percentile(samples: List[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class Timings(object):
    """The times of the right answers of a series of requests, and how many answers were wrong."""

    def __init__(self, milliseconds: List[float], wrong: int = 0):
        self.samples = milliseconds
        self.wrong = wrong
        self.median = statistics.median(milliseconds) if milliseconds else math.nan
        self.p95 = percentile(milliseconds, 0.95) if milliseconds else math.nan

    def cell(self) -> str:
        text = "%s / %s" % (ms(self.median), ms(self.p95))
        return text + (" (%d wrong)" % self.wrong if self.wrong else "")


def ms(value: float) -> str:
    return "%.2f" % value if value < 10 else "%.1f" % value


def mib(value: float) -> str:
    return "%.2f" % (value / MIB)


def time_interleaved(paths: List[Tuple[str, Callable[[], bool]]], runs: int) -> Dict[str, Timings]:
    """Time each path `runs` times, taking turns so that all see the same machine conditions.

    Each path sends one request (or does the floor's work) and says whether the answer was right;
    a wrong answer (or a failed request) is counted, and its time left out.
    """
    for name, send in paths:
        for _ in range(WARMUP):
            send()
    milliseconds: Dict[str, List[float]] = dict((name, []) for name, _ in paths)
    wrong = dict((name, 0) for name, _ in paths)
    for _ in range(runs):
        for name, send in paths:
            started = time.perf_counter()
            right = send()
            elapsed = (time.perf_counter() - started) * 1000
            if right:
                milliseconds[name].append(elapsed)
            else:
                wrong[name] += 1
                log("%s gave a wrong answer or none" % name)
    return dict((name, Timings(milliseconds[name], wrong[name])) for name, _ in paths)


def floor_work(run_body: bytes) -> bytes:
    """Parse the /run body and decode its __ow_body: the least any /run handler must do."""
    return base64.b64decode(json.loads(run_body)["value"]["__ow_body"])


# ----------------------------------------------------------------------------- measurements


class Memory(object):
    """A server's resident size just before a series of requests, and its peak during them."""

    def __init__(self, idle: int, peak: int):
        self.idle = idle
        self.peak = peak
        self.rise = peak - idle


class PathUnderTest(object):
    """One way of getting an upload answered: its name in the tables, how it sends one upload (saying
    whether the answer was right), and the server process whose memory is its own, if any."""

    def __init__(self, key: str, label: str, send: Callable[["Upload"], bool], server: Optional[Server] = None,
                 takes: Callable[["Upload"], bool] = lambda upload: True):
        self.key = key
        self.label = label
        self.send = send
        self.server = server
        self.takes = takes  # whether the platform accepts a request that large


class SizeResult(object):
    def __init__(self, label: str, upload: Upload, paths: List[PathUnderTest], timings: Dict[str, Timings],
                 memory: Dict[str, Memory]):
        self.label = label
        self.upload = upload
        self.paths = paths
        self.timings = timings
        self.memory = memory

    def overhead(self, key: str) -> float:
        """What a path adds to the model's own server, median ms."""
        return self.timings[key].median - self.timings["direct"].median

    def overhead_by_round(self, key: str) -> List[float]:
        """What a path adds in each of CLIENT_ROUNDS consecutive parts of the series (its spread)."""
        added = []
        for part in range(CLIENT_ROUNDS):
            medians = []
            for samples in (self.timings[key].samples, self.timings["direct"].samples):
                share = samples[part * len(samples) // CLIENT_ROUNDS:(part + 1) * len(samples) // CLIENT_ROUNDS]
                medians.append(statistics.median(share) if share else math.nan)
            added.append(medians[0] - medians[1])
        return added

    def memory_excess(self, key: str) -> int:
        """What a server's peak above idle exceeds the model's own server's by."""
        return self.memory[key].rise - self.memory["direct"].rise

    def targets(self) -> List[Tuple[str, bool]]:
        """(what, met) for every target at this size."""
        found = []
        floor = self.timings["floor"].median
        wrong = sum(timings.wrong for timings in self.timings.values())
        found.append(("no wrong answer", wrong == 0))
        if "baseline" in self.timings:
            found.append(("(b) adds less than the 2019 shim", self.overhead("shim") < self.overhead("baseline")))
        if self.upload.image_size in TARGET_SIZES:
            for key in ("shim", "http"):
                if key in self.timings:
                    label = next(path.label for path in self.paths if path.key == key)
                    found.append(("%s adds at most the floor" % label, self.overhead(key) <= floor))
            found.append(("(b)'s memory rise", self.memory_excess("shim") <= MEMORY_TARGET_FACTOR * len(self.upload.run_body)))
        return found

    def passes(self) -> bool:
        return all(met for _, met in self.targets())


def request_paths(direct: Server, shim: Server, endpoint: Optional[Server], baseline: Optional[Server],
                  http: Server, lambda_rie: Optional[Server]) -> List[PathUnderTest]:
    """The ways of sending an upload that are compared, each saying whether its answer was right."""

    def to_direct(upload: Upload) -> bool:
        return counted_bytes(*post(direct.port, PREDICT_PATH, upload.body, upload.content_type)) == upload.image_size

    def to_shim(upload: Upload) -> bool:
        answer = counted_bytes_in_result(*post(shim.port, "/run", upload.run_body, "application/json"))
        return answer == upload.image_size

    def floor(upload: Upload) -> bool:
        return len(floor_work(upload.run_body)) == len(upload.body)

    paths = [PathUnderTest("direct", "(a) model's own server", to_direct, direct),
             PathUnderTest("shim", "(b) OpenWhisk /run", to_shim, shim),
             PathUnderTest("floor", "(d) the floor", floor)]
    if endpoint is not None:
        def to_endpoint(upload: Upload) -> bool:
            answer = counted_bytes(*post(endpoint.port, WEB_ACTION_PATH, upload.body, upload.content_type))
            return answer == upload.image_size

        paths.append(PathUnderTest("endpoint", "(c) web endpoint", to_endpoint))
    if baseline is not None:
        def to_baseline(upload: Upload) -> bool:
            answer = counted_bytes_in_result(*post(baseline.port, "/run", upload.run_body, "application/json"),
                                             status_key="status")
            return answer == upload.image_size

        paths.append(PathUnderTest("baseline", "(e) 2019 shim /run", to_baseline, baseline))

    def to_http(upload: Upload) -> bool:
        return counted_bytes(*post(http.port, PREDICT_PATH, upload.body, upload.content_type)) == upload.image_size

    paths.append(PathUnderTest("http", "(f) plain HTTP on $PORT", to_http, http))
    if lambda_rie is not None:
        def to_lambda(upload: Upload) -> bool:
            answer = post(lambda_rie.port, lambda_events.INVOCATIONS, upload.lambda_event, "application/json")
            return counted_bytes_in_lambda_result(*answer) == upload.image_size

        # No memory figures: the runtime is the emulator's child, and the emulator's own would mislead.
        paths.append(PathUnderTest("lambda", "(g) Lambda function URL event, through the emulator", to_lambda,
                                   None, lambda upload: len(upload.lambda_event) <= LAMBDA_REQUEST_LIMIT))
    return paths


def measure_sizes(shim_path: str, runs: Dict[int, int], log_dir: str, with_endpoint: bool,
                  baseline_path: Optional[str]) -> List[SizeResult]:
    uploads = [(label, Upload(size, seed=size)) for label, size in IMAGE_SIZES]
    servers = []  # type: List[Server]
    try:
        direct = direct_server(log_dir)
        servers.append(direct)
        shim = shim_server(shim_path, log_dir, "shim")
        servers.append(shim)
        # (c) has a shim of its own, so that the memory figures of the shim are those of (b) alone.
        endpoint = None
        if with_endpoint:
            servers.append(shim_server(shim_path, log_dir, "endpoint-shim", initialise=False))
            endpoint = local_endpoint(log_dir, servers[-1].port, max(len(upload.run_body) for _, upload in uploads))
            servers.append(endpoint)
        baseline = None
        if baseline_path:
            baseline = baseline_server(baseline_path, log_dir)
            servers.append(baseline)
        http = http_server(shim_path, log_dir)
        servers.append(http)
        lambda_rie = lambda_server(shim_path, log_dir)
        if lambda_rie is not None:
            servers.append(lambda_rie)
        paths = request_paths(direct, shim, endpoint, baseline, http, lambda_rie)
        results = []
        for label, upload in uploads:
            count = runs[upload.image_size]
            log("latency and memory at %s (%d timed requests per path)" % (label, count))
            taken = [path for path in paths if path.takes(upload)]
            measured = [path for path in taken if path.server is not None]
            for path in measured:
                path.server.reset_peak_memory()
            idle = dict((path.key, path.server.resident_bytes()) for path in measured)
            timings = time_interleaved([(path.key, lambda send=path.send: send(upload)) for path in taken], count)
            memory = dict((path.key, Memory(idle[path.key], path.server.peak_resident_bytes())) for path in measured)
            results.append(SizeResult(label, upload, taken, timings, memory))
        return results
    finally:
        for running in reversed(servers):
            running.stop()


class ColdStart(object):
    def __init__(self, app_build: List[float], direct: List[float], shim: List[float]):
        self.app_build = app_build
        self.direct = direct
        self.shim = shim

    @property
    def added(self) -> float:
        return statistics.median(self.shim) - statistics.median(self.direct)

    def passes(self) -> bool:
        return self.added < COLD_START_TARGET_MS


def measure_cold_start(shim_path: str, repetitions: int, log_dir: str, model_load_seconds: float) -> ColdStart:
    """Process start to first answer: the model's own server, then the shim (/init, then /run)."""
    env = {"TEST_MODEL_LOAD_SECONDS": str(model_load_seconds)}
    upload = Upload(10 * KB, seed=1)
    app_build: List[float] = []
    direct_ms: List[float] = []
    shim_ms: List[float] = []
    for repetition in range(repetitions):
        log("cold start %d of %d" % (repetition + 1, repetitions))
        port = free_port()
        started = time.perf_counter()
        direct = Server("cold-direct", direct_command(port), port, ECHO_APP, env, log_dir)
        try:
            direct.wait_for_port()
            counted = counted_bytes(*post(port, PREDICT_PATH, upload.body, upload.content_type))
            direct_ms.append((time.perf_counter() - started) * 1000)
        finally:
            direct.stop()
        if counted != upload.image_size:
            raise RuntimeError("the direct server's first answer was wrong")
        app_build.append(float(direct.stderr().split("app built in ", 1)[1].split()[0]) * 1000)

        port = free_port()
        started = time.perf_counter()
        shim = Server("cold-shim", shim_command(shim_path, port), port, ECHO_APP, env, log_dir)
        try:
            shim.wait_for_port()
            init_shim(port)
            counted = counted_bytes_in_result(*post(port, "/run", upload.run_body, "application/json"))
            shim_ms.append((time.perf_counter() - started) * 1000)
        finally:
            shim.stop()
        if counted != upload.image_size:
            raise RuntimeError("the shim's first answer was wrong")
    return ColdStart(app_build, direct_ms, shim_ms)


class ConcurrencyResult(object):
    def __init__(self, overlapping: int, requests: int, seconds: float, timings: Timings, wrong: int):
        self.overlapping = overlapping
        self.requests = requests
        self.throughput = requests / seconds
        self.timings = timings
        self.wrong = wrong


def measure_concurrency(shim_path: str, total_requests: int, log_dir: str) -> List[ConcurrencyResult]:
    """Overlapping /runs, each with an image of its own size so that a mixed-up answer shows."""
    shim = shim_server(shim_path, log_dir, "concurrent-shim", env={"__OW_ALLOW_CONCURRENT": "true"})
    try:
        results = []
        for overlapping in CONCURRENCY_LEVELS:
            per_thread = total_requests // overlapping
            log("concurrency: %d overlapping /runs, %d each" % (overlapping, per_thread))
            uploads = [[Upload(CONCURRENCY_IMAGE_SIZE + thread * per_thread + index, seed=thread * 1000 + index)
                        for index in range(per_thread)] for thread in range(overlapping)]
            for upload in uploads[0][:WARMUP]:
                post(shim.port, "/run", upload.run_body, "application/json")
            milliseconds: List[float] = []
            wrong = [0]
            lock = threading.Lock()
            barrier = threading.Barrier(overlapping + 1)

            def send_all(own: List[Upload]) -> None:
                barrier.wait()
                for upload in own:
                    started = time.perf_counter()
                    counted = counted_bytes_in_result(*post(shim.port, "/run", upload.run_body, "application/json"))
                    elapsed = (time.perf_counter() - started) * 1000
                    with lock:
                        milliseconds.append(elapsed)
                        if counted != upload.image_size:
                            wrong[0] += 1

            threads = [threading.Thread(target=send_all, args=(own,)) for own in uploads]
            for thread in threads:
                thread.start()
            barrier.wait()
            started = time.perf_counter()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - started
            results.append(ConcurrencyResult(overlapping, len(milliseconds), seconds, Timings(milliseconds), wrong[0]))
        return results
    finally:
        shim.stop()


# ----------------------------------------------------------------------------- independent clients
#
# Two harnesses written the way a user measuring on their own would, against the same servers:
# (A) a model that does real work on the upload, keep-alive `requests.Session`, the /run JSON as
# `json=` writes it (a space after each colon and comma); (B) the echo model with `http.client`,
# fresh connections and one kept connection. Their /run bodies are not the invoker's compact JSON.

CLASSIFIER_APP = os.path.join(ROOT, "examples", "max-example-digit-classifier")
PNG_SIZES = [("100 KB", 100 * KB), ("1 MB", 1024 * KB), ("5 MB", 5 * 1024 * KB)]
# (A): timed requests per server, round and size, full and --quick.
SESSION_RUNS = {100 * KB: 40, 1024 * KB: 40, 5 * 1024 * KB: 15}
QUICK_SESSION_RUNS = {100 * KB: 4, 1024 * KB: 4, 5 * 1024 * KB: 2}
# (B): timed /runs per server, connection handling and round, full and --quick.
ECHO_CLIENT_RUNS = 110
QUICK_ECHO_CLIENT_RUNS = 6
ECHO_CLIENT_IMAGE_SIZE = 1024 * KB
CLIENT_ROUNDS = 3


def noise_png(approximate_size: int, seed: int) -> bytes:
    """A PNG of RGB noise about ``approximate_size`` bytes long (noise does not compress)."""
    from PIL import Image  # in the current-era venv: the example models need it

    side = int(math.sqrt(approximate_size / 3))
    pixels = random.Random(seed).randbytes(side * side * 3)
    encoded = io.BytesIO()
    Image.frombytes("RGB", (side, side), pixels).save(encoded, "PNG", compress_level=1)
    return encoded.getvalue()


def predictions(answer: Any) -> Optional[Any]:
    """The classifier's predictions in a JSON answer, None if there are none."""
    try:
        return json.loads(answer)["predictions"]
    except (ValueError, KeyError, TypeError):
        return None


def result_body(status: int, body: bytes, status_key: str) -> Optional[str]:
    """The HTTP body in a /run result when it answers 200, else None."""
    if status != 200:
        return None
    try:
        result = json.loads(body)
        return result["body"] if result[status_key] == 200 else None
    except (ValueError, KeyError, TypeError):
        return None


class Spread(object):
    """A figure measured once per round: the median of the rounds, and their min and max."""

    def __init__(self, per_round: List[float]):
        self.per_round = per_round
        self.median = statistics.median(per_round) if per_round else math.nan

    def cell(self) -> str:
        if not self.per_round:
            return "—"
        return "%s (%s–%s)" % (ms(self.median), ms(min(self.per_round)), ms(max(self.per_round)))


class SessionResult(object):
    """Harness (A) at one image size: each shim's added ms per round, and every server's peak memory
    and CPU time per request."""

    def __init__(self, label: str, png_size: int, run_body_size: int, direct: Spread, added: Dict[str, Spread],
                 peak: Dict[str, int], cpu: Dict[str, float], wrong: Dict[str, int]):
        self.label = label
        self.png_size = png_size
        self.run_body_size = run_body_size
        self.direct = direct
        self.added = added
        self.peak = peak
        self.cpu = cpu  # ms of the server's CPU time per request
        self.wrong = wrong


def measure_session_harness(shim_path: str, baseline_path: Optional[str], runs: Dict[int, int],
                            log_dir: str) -> List[SessionResult]:
    """(A): per size and round, the model's own server and the shims take turns request by request,
    each on a keep-alive session of its own; rounds alternate which shim goes first. Taking turns
    within a round, not a round per shim, keeps bursts of load from elsewhere from favouring one."""
    import requests  # a client of the benchmark only (requirements/test.txt)

    servers = {}  # type: Dict[str, Server]
    try:
        servers["direct"] = direct_server(log_dir, CLASSIFIER_APP, "classifier-direct")
        servers["shim"] = shim_server(shim_path, log_dir, "classifier-shim", app_dir=CLASSIFIER_APP)
        if baseline_path:
            servers["baseline"] = baseline_server(baseline_path, log_dir, CLASSIFIER_APP, "classifier-baseline",
                                                  initialise=True)
        shims = [key for key in ("baseline", "shim") if key in servers]
        sessions = dict((key, requests.Session()) for key in servers)
        results = []
        for label, size in PNG_SIZES:
            png = noise_png(size, seed=size)
            body, content_type = multipart(png)
            # What `json=` would send (json.dumps' defaults), serialised once: the client's own
            # encoding is not timed.
            run_body = json.dumps(run_message(body, content_type, os.path.basename(CLASSIFIER_APP))).encode("ascii")
            count = runs[size]
            log("client harness (A) at %s: %d requests per server and round, %d rounds" % (label, count,
                                                                                              CLIENT_ROUNDS))

            def to_direct() -> Optional[Any]:
                answer = sessions["direct"].post("http://127.0.0.1:%d%s" % (servers["direct"].port, PREDICT_PATH),
                                                 data=body, headers={"Content-Type": content_type})
                return predictions(answer.content) if answer.status_code == 200 else None

            def to_shim(key: str) -> Optional[Any]:
                answer = sessions[key].post("http://127.0.0.1:%d/run" % servers[key].port, data=run_body,
                                            headers={"Content-Type": "application/json"})
                text = result_body(answer.status_code, answer.content, "status" if key == "baseline" else "statusCode")
                return None if text is None else predictions(text)

            expected = to_direct()
            if expected is None:
                raise RuntimeError("the classifier's own server did not classify the %s PNG" % label)
            for key in servers:
                servers[key].reset_peak_memory()
            wrong = dict((key, 0) for key in servers)
            for key in shims:
                for _ in range(WARMUP):
                    to_shim(key)
            direct_rounds = []  # type: List[float]
            added = dict((key, []) for key in shims)  # type: Dict[str, List[float]]
            cpu_before = dict((key, server.cpu_seconds()) for key, server in servers.items())
            for round_number in range(CLIENT_ROUNDS):
                order = ["direct"] + (shims if round_number % 2 == 0 else shims[::-1])
                samples = dict((key, []) for key in order)  # type: Dict[str, List[float]]
                for _ in range(count):
                    for key in order:
                        started = time.perf_counter()
                        answer = to_direct() if key == "direct" else to_shim(key)
                        elapsed = (time.perf_counter() - started) * 1000
                        if answer == expected:
                            samples[key].append(elapsed)
                        else:
                            wrong[key] += 1
                            log("%s answered the %s PNG wrongly" % (servers[key].name, label))
                if all(samples.values()):
                    direct_rounds.append(statistics.median(samples["direct"]))
                    for key in shims:
                        added[key].append(statistics.median(samples[key]) - direct_rounds[-1])
            cpu = dict((key, (server.cpu_seconds() - cpu_before[key]) * 1000 / (count * CLIENT_ROUNDS))
                       for key, server in servers.items())
            peak = dict((key, server.peak_resident_bytes()) for key, server in servers.items())
            results.append(SessionResult(label, len(png), len(run_body), Spread(direct_rounds),
                                         dict((key, Spread(values)) for key, values in added.items()), peak, cpu,
                                         wrong))
        return results
    finally:
        for server in servers.values():
            server.stop()


class ConnectionResult(object):
    """Harness (B) with one way of handling connections: each server's median ms per round."""

    def __init__(self, label: str, per_server: Dict[str, Spread], cpu: Dict[str, float], wrong: Dict[str, int]):
        self.label = label
        self.per_server = per_server
        self.cpu = cpu  # ms of the server's CPU time per request
        self.wrong = wrong


def measure_connection_harness(shim_path: str, baseline_path: Optional[str], runs: int,
                               log_dir: str) -> Tuple[int, List[ConnectionResult]]:
    """(B): the echo model, a 1 MB upload in /run JSON as json.dumps writes it by default, sent with
    http.client on a fresh connection each time, then on one connection per server (http.client
    opens it again when the server closes it); the servers take turns request by request."""
    upload = Upload(ECHO_CLIENT_IMAGE_SIZE, seed=7)
    run_body = json.dumps(run_message(upload.body, upload.content_type)).encode("ascii")
    servers = {}  # type: Dict[str, Server]
    try:
        servers["shim"] = shim_server(shim_path, log_dir, "echo-client-shim")
        if baseline_path:
            servers["baseline"] = baseline_server(baseline_path, log_dir, name="echo-client-baseline",
                                                  initialise=True)
        order = [key for key in ("baseline", "shim") if key in servers]
        results = []
        for label, keep in (("a fresh connection per request", False), ("one connection per server", True)):
            log("client harness (B), %s: %d /runs per server and round, %d rounds" % (label, runs, CLIENT_ROUNDS))
            kept = {}  # type: Dict[str, http.client.HTTPConnection]

            def send(key: str) -> bool:
                connection = kept.get(key) or http.client.HTTPConnection("127.0.0.1", servers[key].port, timeout=120)
                try:
                    connection.request("POST", "/run", body=run_body, headers={"Content-Type": "application/json"})
                    response = connection.getresponse()
                    answer = counted_bytes_in_result(response.status, response.read(),
                                                     "status" if key == "baseline" else "statusCode")
                except (OSError, http.client.HTTPException) as error:
                    log("%s: %s" % (servers[key].name, error))
                    connection.close()
                    kept.pop(key, None)
                    return False
                if keep:
                    kept[key] = connection
                else:
                    connection.close()
                return answer == upload.image_size

            for key in order:
                for _ in range(WARMUP):
                    send(key)
            medians = dict((key, []) for key in order)  # type: Dict[str, List[float]]
            wrong = dict((key, 0) for key in order)
            cpu_before = dict((key, servers[key].cpu_seconds()) for key in order)
            for round_number in range(CLIENT_ROUNDS):
                samples = dict((key, []) for key in order)  # type: Dict[str, List[float]]
                for _ in range(runs):
                    for key in (order if round_number % 2 == 0 else order[::-1]):
                        started = time.perf_counter()
                        right = send(key)
                        elapsed = (time.perf_counter() - started) * 1000
                        if right:
                            samples[key].append(elapsed)
                        else:
                            wrong[key] += 1
                for key in order:
                    if samples[key]:
                        medians[key].append(statistics.median(samples[key]))
            cpu = dict((key, (servers[key].cpu_seconds() - cpu_before[key]) * 1000 / (runs * CLIENT_ROUNDS))
                       for key in order)
            for connection in kept.values():
                connection.close()
            results.append(ConnectionResult(label, dict((key, Spread(values)) for key, values in medians.items()),
                                            cpu, wrong))
        return len(run_body), results
    finally:
        for server in servers.values():
            server.stop()


class ClientHarnesses(object):
    def __init__(self, session: List[SessionResult], connection_body_size: int, connection: List[ConnectionResult]):
        self.session = session
        self.connection_body_size = connection_body_size
        self.connection = connection

    def wrong(self) -> int:
        return (sum(sum(result.wrong.values()) for result in self.session)
                + sum(sum(result.wrong.values()) for result in self.connection))

    def targets(self) -> List[Tuple[str, str, bool]]:
        """(where, what, met): the runtime adds less than the 2019 shim in every mode, when it ran."""
        found = []
        for result in self.session:
            if "baseline" in result.added:
                found.append(("(A) %s" % result.label, "the runtime adds less than the 2019 shim",
                              result.added["shim"].median < result.added["baseline"].median))
        for result in self.connection:
            if "baseline" in result.per_server:
                found.append(("(B) %s" % result.label, "the runtime answers sooner than the 2019 shim",
                              result.per_server["shim"].median < result.per_server["baseline"].median))
        return found


def measure_client_harnesses(shim_path: str, baseline_path: Optional[str], quick: bool,
                             log_dir: str) -> ClientHarnesses:
    session = measure_session_harness(shim_path, baseline_path, QUICK_SESSION_RUNS if quick else SESSION_RUNS,
                                      log_dir)
    body_size, connection = measure_connection_harness(shim_path, baseline_path,
                                                       QUICK_ECHO_CLIENT_RUNS if quick else ECHO_CLIENT_RUNS, log_dir)
    return ClientHarnesses(session, body_size, connection)


def client_report(clients: ClientHarnesses) -> List[str]:
    lines = ["## Independent clients (ms; median over %d rounds, min–max of the rounds)" % CLIENT_ROUNDS, "",
             "(A) A model that decodes the upload: `examples/max-example-digit-classifier` (Pillow decodes the PNG, "
             "numpy classifies it). Random-noise PNGs. The model's own server (Werkzeug, threaded) is the baseline. "
             "The /run JSON (raw web action, body in base64) is posted with a keep-alive `requests.Session`, "
             "written as `json=` writes it (json.dumps' defaults: a space after each colon) but serialised once, "
             "before timing; one /init first; the model's own server, the runtime "
             "and the 2019 shim take turns request by request; rounds alternate which shim goes first. \"added\" is each round's median "
             "over the model's own server's median; every answer must hold the classification the model's own "
             "server gives. Server CPU: each process's own CPU time (user + system, /proc) per request, which "
             "load from elsewhere on the machine barely changes (10 ms clock ticks: coarse at 100 KB). Peak "
             "memory: VmHWM while that size was served.", "",
             "| image | PNG | /run body | model's own server | runtime adds | 2019 shim adds "
             "| server CPU ms per request: own server / runtime / 2019 shim "
             "| peak MiB: own server / runtime / 2019 shim |", "|---|---|---|---|---|---|---|---|"]
    for result in clients.session:
        peaks = " / ".join(mib(result.peak[key]) if key in result.peak else "—"
                           for key in ("direct", "shim", "baseline"))
        cpu = " / ".join(ms(result.cpu[key]) if key in result.cpu else "—" for key in ("direct", "shim", "baseline"))
        wrong = sum(result.wrong.values())
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            result.label + (" (%d wrong)" % wrong if wrong else ""), size_of(b"x" * result.png_size),
            size_of(b"x" * result.run_body_size), result.direct.cell(), result.added["shim"].cell(),
            result.added["baseline"].cell() if "baseline" in result.added else "—", cpu, peaks))
    lines += ["", "(B) The echo model, a 1 MB random upload as multipart in /run JSON written by `json.dumps` "
                  "(%s), `http.client`; the servers take turns request by request. Time per /run, client side; "
                  "server CPU as in (A)."
              % size_of(b"x" * clients.connection_body_size), "",
              "| connections | runtime | 2019 shim | runtime − 2019 shim | server CPU ms per /run: runtime / 2019 shim |",
              "|---|---|---|---|---|"]
    for result in clients.connection:
        shim = result.per_server["shim"]
        baseline = result.per_server.get("baseline")
        difference = "—" if baseline is None else "%+.2f" % (shim.median - baseline.median)
        wrong = sum(result.wrong.values())
        cpu = " / ".join(ms(result.cpu[key]) if key in result.cpu else "—" for key in ("shim", "baseline"))
        lines.append("| %s | %s | %s | %s | %s |" % (result.label + (" (%d wrong)" % wrong if wrong else ""),
                                                     shim.cell(), baseline.cell() if baseline else "—", difference, cpu))
    return lines + [""]


# ----------------------------------------------------------------------------- report


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return ("%s, %d cores (%d usable), Linux %s; Python %s, Flask %s, Werkzeug %s, maxfw %s, flask-restx %s; %s"
            % (cpu, os.cpu_count() or 0, len(os.sched_getaffinity(0)), platform.release(), platform.python_version(),
               package_version("flask"), package_version("werkzeug"), package_version("maxfw"),
               package_version("flask-restx"), datetime.datetime.now().strftime("%Y-%m-%d %H:%M")))


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def size_of(body: bytes) -> str:
    return "%.2f MiB" % (len(body) / MIB) if len(body) >= MIB else "%.0f KiB" % (len(body) / KB)


def report(shim_path: str, invoker: Optional["InvokerHarness"], clients: Optional[ClientHarnesses]) -> Tuple[str, bool]:
    lines = ["# Shim benchmark", "", "Machine: " + machine(), "",
             "Shim: `%s`. Command: `%s`." % (os.path.relpath(shim_path, ROOT),
                                             shlex.join(["scripts/bench.sh"] + sys.argv[1:])), ""]
    passed = True
    if invoker is not None:
        invoker_lines, passed = invoker_report(invoker)
        lines += invoker_lines
    if clients is not None:
        lines += client_report(clients)
        targets = clients.targets()
        if targets:
            lines += ["## Targets with independent clients", "", "| where | target | |", "|---|---|---|"]
            for where, what, met in targets:
                passed = passed and met
                lines.append("| %s | %s | %s |" % (where, what, verdict(met)))
            lines.append("")
        if clients.wrong():
            passed = False
    lines += ["All targets: **%s**" % verdict(passed), ""]
    return "\n".join(lines), passed


class InvokerHarness(object):
    """What the invoker-style measurements found: latency and memory per size, cold start, concurrency."""

    def __init__(self, sizes: List[SizeResult], cold: ColdStart, concurrency: List[ConcurrencyResult],
                 model_load_seconds: float):
        self.sizes = sizes
        self.cold = cold
        self.concurrency = concurrency
        self.model_load_seconds = model_load_seconds

    def wrong(self) -> int:
        return sum(level.wrong for level in self.concurrency) + sum(
            timings.wrong for size in self.sizes for timings in size.timings.values())


def invoker_report(invoker: InvokerHarness) -> Tuple[List[str], bool]:
    sizes, cold, concurrency = invoker.sizes, invoker.cold, invoker.concurrency
    model_load_seconds = invoker.model_load_seconds
    lines = ["## Latency per image upload (ms, median / p95)", "",
             "Model: `tests/apps/max-test-echo` (its prediction only counts the uploaded bytes).", "",
              ("(a) multipart POST to the model's own server; (b) the invoker's /run JSON to this runtime as an "
              "OpenWhisk action, one connection per request; (c) the multipart POST through `local_endpoint.py` to "
              "the runtime; (d) the floor: `json.loads` of the /run body plus `base64.b64decode` of its `__ow_body`, "
              "in one process; (e) the same /run to the 2019 shim (`--baseline`); (f) the multipart POST to the runtime "
              "serving plain HTTP (Knative, Cloud Run, Code Engine); (g) the upload as a Lambda function URL event "
              "(base64 body) to AWS's Runtime Interface Emulator running the runtime: the emulator relays the event "
              "and the result over two more HTTP hops, so (g) is the runtime plus the emulator. "
              "\"added\" is the median over (a)'s, and in brackets its min–max over the series cut in %d "
              "consecutive parts. "
              "Targets: (b) adds less than (e) at every size, and (b) and (f) at most (d) at 1 MB and 5 MB.")
              % CLIENT_ROUNDS, "",
              "| image | request body | path | runs | median / p95 | added | added / floor |",
              "|---|---|---|---|---|---|---|"]
    passed = True
    for result in sizes:
        floor = result.timings["floor"].median
        for path in result.paths:
            timings = result.timings[path.key]
            if path.key in ("direct", "floor"):
                added = "—"
            else:
                by_round = result.overhead_by_round(path.key)
                added = "%s (%s–%s)" % (ms(result.overhead(path.key)), ms(min(by_round)), ms(max(by_round)))
            ratio = "—" if path.key in ("direct", "floor") else "%.2f" % (result.overhead(path.key) / floor)
            lines.append("| %s | %s | %s | %d | %s | %s | %s |" % (
                result.label, size_of(result.upload.body if path.key == "direct" else result.upload.run_body),
                path.label, len(timings.samples), timings.cell(), added, ratio))

    lines += ["", "## Peak memory per image size (MiB, VmHWM)", "",
              "Each server's peak resident size while serving that size's requests, and its rise above the "
              "resident size just before them. Target, at 1 MB and 5 MB: (b)'s rise exceeds (a)'s by at most "
              "%.0f× the /run body." % MEMORY_TARGET_FACTOR, "",
              "| image | server | idle | peak | rise | rise over (a)'s |", "|---|---|---|---|---|---|"]
    for result in sizes:
        for path in result.paths:
            if path.key not in result.memory:
                continue
            memory = result.memory[path.key]
            excess = "—" if path.key == "direct" else mib(result.memory_excess(path.key))
            lines.append("| %s | %s | %s | %s | %s | %s |" % (
                result.label, path.label, mib(memory.idle), mib(memory.peak), mib(memory.rise), excess))

    lines += ["", "## Targets", "", "| image | target | |", "|---|---|---|"]
    for result in sizes:
        for what, met in result.targets():
            passed = passed and met
            lines.append("| %s | %s | %s |" % (result.label, what, verdict(met)))

    passed = passed and cold.passes()
    lines += ["", "## Cold start (ms, median of %d; min–max)" % len(cold.shim), "",
              "Process start to the first correct answer to a 10 KB upload; for the shim that includes /init. "
              "Simulated model load (`TEST_MODEL_LOAD_SECONDS`): %.2f s. Target: the shim adds under %.0f ms."
              % (model_load_seconds, COLD_START_TARGET_MS), "",
              "| | median | min–max |", "|---|---|---|"]
    for name, samples in (("model's own load: building the app (`app.py`: Flask, maxfw, the model)", cold.app_build),
                          ("(a) model's own server: start → first answer", cold.direct),
                          ("(b) shim: start → /init → first /run answered", cold.shim)):
        lines.append("| %s | %s | %s–%s |" % (name, ms(statistics.median(samples)), ms(min(samples)),
                                              ms(max(samples))))
    lines.append("| added by the shim: (b)−(a) | %s | target %s |" % (ms(cold.added), verdict(cold.passes())))

    lines += ["", "## Concurrency (`__OW_ALLOW_CONCURRENT=true`, ~100 KB images of distinct sizes)", "",
              "Each client thread sends its /runs back to back, each on a new connection; an answer is wrong "
              "unless it is a 200 reporting that request's own byte count. Target: no wrong answer. The client "
              "runs on the same cores as the shim.", "",
              "| overlapping /runs | requests | throughput (req/s) | median (ms) | p95 (ms) | wrong answers "
              "| target |", "|---|---|---|---|---|---|---|"]
    for level in concurrency:
        passed = passed and level.wrong == 0
        lines.append("| %d | %d | %.0f | %s | %s | %d | %s |" % (
            level.overlapping, level.requests, level.throughput, ms(level.timings.median),
            ms(level.timings.p95), level.wrong, verdict(level.wrong == 0)))

    return lines + [""], passed


def log(message: str) -> None:
    sys.stderr.write("bench: %s\n" % message)
    sys.stderr.flush()


HARNESSES = ("invoker", "clients", "all")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Measure the shim's overhead, memory, cold start and concurrency.")
    parser.add_argument("--quick", action="store_true", help="few runs: a smoke test of the benchmark, not a result")
    parser.add_argument("--harness", choices=HARNESSES, default="all",
                        help="invoker: the invoker's way (compact /run JSON, a connection per request) for every "
                             "platform path, plus memory, cold start and concurrency; clients: the /run path as "
                             "independent clients measure it ((A) a Pillow model with a keep-alive requests.Session, "
                             "(B) the echo model with http.client); all: both (default)")
    parser.add_argument("--shim", default=SHIM, type=os.path.abspath,
                        help="the shim to measure, e.g. a modified copy (default: openwhisk.py of this tree)")
    parser.add_argument("--baseline", type=os.path.abspath,
                        help="another /run shim to measure side by side, e.g. the 2019 shim "
                             "(../shared/reference/seed_openwhisk.py); it gets its port in SEED_SHIM_PORT")
    parser.add_argument("--output",
                        help="where to write the table (default bench/results.md; with --quick, or with "
                             "--harness other than all, bench/results/HARNESS.md)")
    parser.add_argument("--cold-starts", type=int, help="cold start repetitions (default 11, quick 2)")
    parser.add_argument("--model-load-seconds", type=float, default=0.0,
                        help="simulated model load time for the cold start (default %(default)s)")
    return parser.parse_args()


def output_path(args: argparse.Namespace) -> str:
    """bench/results.md for a full run of everything; a file of its own for anything less."""
    if args.output:
        return args.output
    if args.quick:
        return QUICK_RESULTS
    if args.harness != "all":
        return os.path.join(os.path.dirname(QUICK_RESULTS), args.harness + ".md")
    return RESULTS


def main() -> int:
    args = parse_args()
    runs = QUICK_RUNS if args.quick else RUNS
    with_endpoint = os.path.exists(LOCAL_ENDPOINT)
    if not with_endpoint and args.harness != "clients":
        log("warning: %s is missing; (c) is not measured" % LOCAL_ENDPOINT)
    log_dir = tempfile.mkdtemp(prefix="shim-bench-")
    invoker = None  # type: Optional[InvokerHarness]
    clients = None  # type: Optional[ClientHarnesses]
    try:
        if args.harness in ("invoker", "all"):
            sizes = measure_sizes(args.shim, runs, log_dir, with_endpoint, args.baseline)
            cold = measure_cold_start(args.shim, args.cold_starts or (2 if args.quick else 11), log_dir,
                                      args.model_load_seconds)
            concurrency = measure_concurrency(args.shim, 48 if args.quick else 480, log_dir)
            invoker = InvokerHarness(sizes, cold, concurrency, args.model_load_seconds)
        if args.harness in ("clients", "all"):
            clients = measure_client_harnesses(args.shim, args.baseline, args.quick, log_dir)
    except RuntimeError as error:
        log("failed: %s (server logs kept in %s)" % (error, log_dir))
        return 2
    wrong = (invoker.wrong() if invoker else 0) + (clients.wrong() if clients else 0)
    if wrong:
        log("%d wrong answers; the servers' logs are kept in %s" % (wrong, log_dir))
    else:
        shutil.rmtree(log_dir)
    table, passed = report(args.shim, invoker, clients)
    print(table)
    path = output_path(args)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as output:
        output.write(table)
    log("table written to %s" % path)
    if args.quick:
        return 1 if wrong else 0  # too few runs to judge latency targets: only wrong answers fail it
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
