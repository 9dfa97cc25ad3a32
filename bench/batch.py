"""Measure the batch client (`serverless-max predict`, client/): its own ceiling, how close it runs to
a throttled platform's limit, and what the naive ways of doing the same job lose.

  (1) Ceiling. The client against bench/noop_server.py, a model endpoint that does nothing (aiohttp,
      keep-alive, a fixed answer), on loopback, at 1,000 and 100,000 inputs: a JSONL manifest of N
      rows naming one 1 KiB file (no 100,000 files on disk). Predictions per second, CPU time and
      peak resident size of the client process (CPU: getrusage of the child, ru_utime + ru_stime). Beside it the floor: a bare aiohttp loop (bench/batch.py --bare-loop) sending the
      same requests with 64 in flight and nothing else (no inputs read per request, no retries, no
      results file); and the naive ways at 1,000 inputs. Targets: the client sends at least 1,000
      predictions per second, and its peak memory at 100,000 inputs is within 20 MiB of that at 1,000.
      Peak memory is the process's own VmHWM, read by itself as it exits: a child's ru_maxrss on
      Linux starts from the RSS of the process that spawned it (kept across exec), here the benchmark.
  (2) Throttled. local_endpoint.py serving tests/apps/max-test-sleep (every prediction takes 50 ms)
      with --containers 2 --concurrent-limit 4: at most 2 predictions run at once, a 5th request in
      flight gets OpenWhisk's 429. The ceiling is 2 / 50 ms = 40 predictions per second. The client
      (-j 64) over N inputs: completed predictions per second as a share of that ceiling (target at
      least 90%), the share of its requests throttled after the first 10 s, the concurrency it settled
      at (its own summary line, and the mean in flight measured from its results file). Beside it a
      client told the limit: 4 threads on keep-alive connections, never throttled, the practical best.
      Then (not with --quick) the client alone under --concurrent-limit 2 and 8: where it settles.
  (3) Naive. The same inputs with `xargs -P 16 curl -F image=@FILE URL` and with a thread pool of 16
      plain `requests` sessions, against both endpoints: time, and inputs without a prediction (an
      answer other than 200, which such a loop stores as if it were one, or no answer at all).

Each part repeats in rounds, the runners taking turns within a round (the order rotating), so that
load from elsewhere on the machine hits them alike; the table shows the median and the spread. The
picture of the client's last throttled run goes to bench/batch-throttled-run.png (client/'s report
module). Tables go to stdout and to bench/batch-results.md (--quick: bench/results/batch-quick.md).
Exit status: 0 when the targets are met (--quick: when the client answered every input exactly
once), 1 when not, 2 when a server could not be started. Linux only (it reads /proc for the machine).
"""

import argparse
import asyncio
import concurrent.futures
import dataclasses
import datetime
import http.client
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from support import ServerProcess, free_port  # noqa: E402  (the tests' process helpers)
CLIENT_DIR = os.path.join(ROOT, "client")
NOOP_SERVER = os.path.join(ROOT, "bench", "noop_server.py")
LOCAL_ENDPOINT = os.path.join(ROOT, "local_endpoint.py")
SLEEP_APP = os.path.join(ROOT, "tests", "apps", "max-test-sleep")
RESULTS = os.path.join(ROOT, "bench", "batch-results.md")
QUICK_RESULTS = os.path.join(ROOT, "bench", "results", "batch-quick.md")
PLOT = os.path.join(ROOT, "bench", "batch-throttled-run.png")
QUICK_PLOT = os.path.join(ROOT, "bench", "results", "batch-quick-throttled-run.png")
MIB = 1024 * 1024
INPUT_BYTES = 1024
CLIENT_JOBS = 64
NAIVE_PARALLEL = 16
CONTAINERS = 2
CONCURRENT_LIMIT = 4
PREDICT_SECONDS = 0.05
CEILING_PER_SECOND = CONTAINERS / PREDICT_SECONDS
WARM_SECONDS = 10.0
RATE_TARGET = 1000.0
MEMORY_TARGET_MIB = 20.0
SHARE_TARGET = 0.9
SETTLED = re.compile(r"concurrency settled at ([0-9.]+)")


@dataclasses.dataclass
class Plan:
    ceiling_sizes: List[int]
    ceiling_rounds: int
    naive_noop_inputs: int
    throttled_inputs: int
    throttled_rounds: int
    other_limits: List[int]
    other_limit_inputs: int


FULL = Plan(ceiling_sizes=[1000, 100000], ceiling_rounds=2, naive_noop_inputs=1000, throttled_inputs=2400,
            throttled_rounds=2, other_limits=[2, 8], other_limit_inputs=1200)
QUICK = Plan(ceiling_sizes=[1000, 3000], ceiling_rounds=1, naive_noop_inputs=300, throttled_inputs=160,
             throttled_rounds=1, other_limits=[], other_limit_inputs=0)


def log(message: str) -> None:
    sys.stderr.write("bench: %s\n" % message)
    sys.stderr.flush()


# ----------------------------------------------------------------------------- inputs


class Inputs(object):
    """One small file and, per size, a JSONL manifest whose rows name it under distinct ids."""

    def __init__(self, work_dir: str):
        self.dir = work_dir
        self.file = os.path.join(work_dir, "input.jpg")
        with open(self.file, "wb") as stream:
            stream.write(b"\xff\xd8" + random.Random(1).randbytes(INPUT_BYTES - 4) + b"\xff\xd9")
        self.manifests = {}  # type: Dict[int, str]

    @staticmethod
    def ids(count: int) -> List[str]:
        return ["input-%07d" % index for index in range(count)]

    def manifest(self, count: int) -> str:
        if count not in self.manifests:
            path = os.path.join(self.dir, "manifest-%d.jsonl" % count)
            with open(path, "w", encoding="utf-8") as stream:
                for input_id in self.ids(count):
                    stream.write('{"id": "%s", "path": "input.jpg"}\n' % input_id)
            self.manifests[count] = path
        return self.manifests[count]


# ----------------------------------------------------------------------------- one run of each runner


@dataclasses.dataclass
class Run:
    """One runner over N inputs: what came back, and what it cost."""
    runner: str
    inputs: int
    wall: float
    ok: int = 0
    without_prediction: int = 0  # failed (an answer other than a prediction) + lost (no answer, no line)
    duplicates: int = 0
    sending_seconds: Optional[float] = None  # first request sent to last answer, from the results file
    cpu_seconds: Optional[float] = None
    peak_rss_mib: Optional[float] = None
    late_attempts: int = 0
    late_throttled: int = 0
    mean_in_flight_late: Optional[float] = None
    settled: Optional[float] = None
    exit_status: Optional[int] = None
    results_path: Optional[str] = None  # the client's results file, for the picture

    @property
    def rate(self) -> float:
        """Predictions per second over the sending time when known, else over the wall time."""
        return self.ok / (self.sending_seconds or self.wall)

    @property
    def wall_rate(self) -> float:
        return self.ok / self.wall


def child_python_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = CLIENT_DIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_measured(command: List[str], stderr_path: str, stdin: Optional[str] = None,
                 stdout_path: Optional[str] = None) -> Dict[str, float]:
    """Runs a child to its end: its wall time, exit status, CPU time and peak resident size."""
    with open(stderr_path, "wb") as err, open(stdout_path or os.devnull, "wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                   stdout=out, stderr=err, env=child_python_env())
        if stdin is not None:
            feeder = threading.Thread(target=feed, args=(process, stdin), daemon=True)
            feeder.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # interrupted: no child left running
            process.kill()
            process.wait()
            raise
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    return {"wall": wall, "status": process.returncode, "cpu": usage.ru_utime + usage.ru_stime}


def feed(process: "subprocess.Popen[bytes]", text: str) -> None:
    try:
        process.stdin.write(text.encode("ascii"))  # type: ignore
        process.stdin.close()  # type: ignore
    except BrokenPipeError:
        pass


# Runs the client's command line as `python -m serverless_max_client`, then writes the process's own peak
# resident size (VmHWM, KiB) to the file named by the first argument.
CLIENT_WITH_PEAK_MEMORY = """
import atexit, runpy, sys
peak_path = sys.argv.pop(1)
atexit.register(lambda: open(peak_path, "w").write(str(peak_memory_kib())))
def peak_memory_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
sys.argv[0] = "serverless-max"
runpy.run_module("serverless_max_client", run_name="__main__", alter_sys=True)
"""


def peak_memory_kib() -> int:
    """This process's peak resident size so far (VmHWM), in KiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def run_client(url: str, inputs: Inputs, count: int, work_dir: str, label: str) -> Run:
    results = os.path.join(work_dir, "%s-%d.jsonl" % (label, count))
    if os.path.exists(results):
        os.unlink(results)
    stderr_path = results + ".stderr"
    peak_path = results + ".peak"
    command = [sys.executable, "-c", CLIENT_WITH_PEAK_MEMORY, peak_path, "predict", url, "--manifest", inputs.manifest(count),
               "-o", results, "-j", str(CLIENT_JOBS), "--progress-interval", "30"]
    measured = run_measured(command, stderr_path)
    with open(stderr_path, encoding="utf-8", errors="replace") as stream:
        stderr = stream.read()
    if measured["status"] not in (0, 1) or not os.path.exists(results):
        raise RuntimeError("the client exited with %d:\n%s" % (measured["status"], stderr[-3000:]))
    with open(peak_path) as stream:
        peak_mib = int(stream.read()) / 1024.0
    run = Run("client -j %d" % CLIENT_JOBS, count, measured["wall"], cpu_seconds=measured["cpu"],
              peak_rss_mib=peak_mib, exit_status=int(measured["status"]))
    settled = SETTLED.findall(stderr)
    run.settled = float(settled[-1]) if settled else None
    run.results_path = results
    read_client_results(run, results, set(inputs.ids(count)))
    return run


def read_client_results(run: Run, path: str, expected: set) -> None:
    """Counts the results file's lines against the inputs: ok, failed or missing, and duplicates;
    the sending time; and, from the attempt logs, the throttled share and mean in flight after
    the first WARM_SECONDS."""
    seen = set()
    attempts = []
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            record = json.loads(line)
            if record["input"] in seen:
                run.duplicates += 1
                continue
            seen.add(record["input"])
            if record["status"] == "ok":
                run.ok += 1
            attempts.extend(record.get("attempt_log") or [])
    run.without_prediction = len(expected) - run.ok
    if not attempts:
        return
    first = min(attempt[0] for attempt in attempts)
    last = max(attempt[1] for attempt in attempts)
    run.sending_seconds = last - first
    warm_from = first + WARM_SECONDS
    if last - warm_from > 1.0:
        late = [attempt for attempt in attempts if attempt[0] >= warm_from]
        run.late_attempts = len(late)
        run.late_throttled = sum(1 for attempt in late if attempt[2] == 429)
        busy = sum(max(0.0, min(attempt[1], last) - max(attempt[0], warm_from)) for attempt in attempts)
        run.mean_in_flight_late = busy / (last - warm_from)


def run_bare_loop(url: str, inputs: Inputs, count: int, work_dir: str) -> Run:
    measured = run_measured([sys.executable, os.path.abspath(__file__), "--bare-loop", url, inputs.file, str(count)],
                            os.path.join(work_dir, "bare-loop.stderr"),
                            stdout_path=os.path.join(work_dir, "bare-loop.stdout"))
    with open(os.path.join(work_dir, "bare-loop.stdout")) as stream:
        outcome = json.load(stream)
    return Run("floor: bare aiohttp loop, 64 in flight", count, measured["wall"], ok=outcome["ok"],
               without_prediction=count - outcome["ok"], sending_seconds=outcome["seconds"],
               cpu_seconds=measured["cpu"], peak_rss_mib=outcome["peak_kib"] / 1024.0)


def bare_loop(url: str, file_path: str, count: int) -> None:
    """The floor of (1): aiohttp alone posting one multipart body, built once, `count` times, 64 in flight."""
    import aiohttp

    body, content_type = multipart_body(file_path)

    async def send_all() -> Dict[str, Any]:
        ok = 0
        connector = aiohttp.TCPConnector(limit=CLIENT_JOBS)
        async with aiohttp.ClientSession(connector=connector) as session:
            next_index = iter(range(count))

            async def worker() -> None:
                nonlocal ok
                for _ in next_index:
                    async with session.post(url, data=body, headers={"Content-Type": content_type}) as response:
                        await response.read()
                        ok += response.status == 200

            started = time.time()
            await asyncio.gather(*(worker() for _ in range(CLIENT_JOBS)))
            return {"ok": ok, "seconds": time.time() - started, "peak_kib": peak_memory_kib()}

    json.dump(asyncio.run(send_all()), sys.stdout)


def multipart_body(file_path: str) -> "tuple[bytes, str]":
    """One `image` file upload as multipart/form-data: the body and its content type."""
    with open(file_path, "rb") as stream:
        data = stream.read()
    boundary = "batch-bench-boundary"
    body = (("--%s\r\nContent-Disposition: form-data; name=\"image\"; filename=\"input.jpg\"\r\n"
             "Content-Type: image/jpeg\r\n\r\n" % boundary).encode("ascii") + data
            + ("\r\n--%s--\r\n" % boundary).encode("ascii"))
    return body, "multipart/form-data; boundary=" + boundary


def run_xargs_curl(url: str, inputs: Inputs, count: int, work_dir: str) -> Run:
    """`xargs -P 16 curl` over the ids: one curl per input, the status it got printed per id."""
    stdout_path = os.path.join(work_dir, "xargs-curl.out")
    command = ["xargs", "-P", str(NAIVE_PARALLEL), "-I{}", "curl", "-s", "-o", "/dev/null", "-w", "{} %{http_code}\\n",
               "-F", "image=@" + inputs.file, url]
    measured = run_measured(command, os.path.join(work_dir, "xargs-curl.stderr"),
                            stdin="".join(input_id + "\n" for input_id in inputs.ids(count)), stdout_path=stdout_path)
    codes = {}  # type: Dict[str, str]
    with open(stdout_path) as stream:
        for line in stream:
            input_id, _, code = line.strip().partition(" ")
            codes[input_id] = code
    ok = sum(1 for code in codes.values() if code == "200")
    return Run("xargs -P %d curl" % NAIVE_PARALLEL, count, measured["wall"], ok=ok, without_prediction=count - ok)


def run_requests_pool(url: str, inputs: Inputs, count: int, work_dir: str) -> Run:
    """A thread pool of 16 plain `requests` sessions, one POST per input, no retries: the usual script."""
    import requests

    local = threading.local()

    def post(input_id: str) -> int:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        try:
            with open(inputs.file, "rb") as stream:
                response = session.post(url, files={"image": ("input.jpg", stream, "image/jpeg")}, timeout=120)
            return response.status_code
        except requests.RequestException:
            return 0

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(NAIVE_PARALLEL) as pool:
        codes = list(pool.map(post, inputs.ids(count)))
    wall = time.perf_counter() - started
    ok = codes.count(200)
    return Run("thread pool of %d requests" % NAIVE_PARALLEL, count, wall, ok=ok, without_prediction=count - ok)


def run_told_the_limit(url: str, inputs: Inputs, count: int, work_dir: str) -> Run:
    """A client that knows the namespace's limit: exactly CONCURRENT_LIMIT requests in flight, each
    thread on its own keep-alive connection, so the endpoint never throttles."""
    body, content_type = multipart_body(inputs.file)
    headers = {"Content-Type": content_type}
    target = urllib.parse.urlsplit(url)
    remaining = iter(range(count))
    lock = threading.Lock()
    statuses = []  # type: List[int]

    def worker() -> None:
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
        while True:
            with lock:
                if next(remaining, None) is None:
                    break
            connection.request("POST", target.path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            with lock:
                statuses.append(response.status)
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(CONCURRENT_LIMIT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ok = statuses.count(200)
    return Run("told the limit: %d threads, keep-alive" % CONCURRENT_LIMIT, count, wall, ok=ok,
               without_prediction=count - ok)


# ----------------------------------------------------------------------------- the two endpoints


def start_noop_server(log_dir: str) -> ServerProcess:
    port = free_port()
    server = ServerProcess([sys.executable, NOOP_SERVER, str(port)], port, ROOT, log_dir=log_dir, name="noop")
    server.wait_for_port()
    return server


def start_throttled_endpoint(log_dir: str, limit: int = CONCURRENT_LIMIT) -> ServerProcess:
    port = free_port()
    command = [sys.executable, LOCAL_ENDPOINT, SLEEP_APP, "--port", str(port), "--containers", str(CONTAINERS),
               "--concurrent-limit", str(limit)]
    endpoint = ServerProcess(command, port, ROOT, env={"TEST_PREDICT_SECONDS": str(PREDICT_SECONDS)},
                             log_dir=log_dir, name="local-endpoint")
    endpoint.wait_for_port()
    return endpoint


def warm_up(url: str, inputs: Inputs, work_dir: str) -> None:
    """Both containers started and warm before anything is timed (the pool starts the second on demand)."""
    for _ in range(3):
        run_told_the_limit(url, inputs, 4 * CONCURRENT_LIMIT, work_dir)


# ----------------------------------------------------------------------------- rounds


def in_rounds(rounds: int, runners: List[Callable[[], Run]]) -> List[List[Run]]:
    """Every runner once per round, the order rotating; the runs grouped per runner."""
    grouped = [[] for _ in runners]  # type: List[List[Run]]
    for round_index in range(rounds):
        order = list(range(len(runners)))
        order = order[round_index % len(order):] + order[:round_index % len(order)]
        for index in order:
            run = runners[index]()
            log("round %d: %s, %d inputs: %.1f s, %d ok" % (round_index + 1, run.runner, run.inputs, run.wall, run.ok))
            grouped[index].append(run)
    return grouped


def measure_ceiling(plan: Plan, inputs: Inputs, work_dir: str, log_dir: str) -> List[List[Run]]:
    server = start_noop_server(log_dir)
    try:
        base = "http://127.0.0.1:%d" % server.port
        predict = base + "/model/predict"
        runners = []  # type: List[Callable[[], Run]]
        for count in plan.ceiling_sizes:
            runners.append(lambda count=count: run_client(base, inputs, count, work_dir, "noop"))
            runners.append(lambda count=count: run_bare_loop(predict, inputs, count, work_dir))
        runners.append(lambda: run_xargs_curl(predict, inputs, plan.naive_noop_inputs, work_dir))
        runners.append(lambda: run_requests_pool(predict, inputs, plan.naive_noop_inputs, work_dir))
        return in_rounds(plan.ceiling_rounds, runners)
    finally:
        server.stop()


def measure_throttled(plan: Plan, inputs: Inputs, work_dir: str, log_dir: str) -> List[List[Run]]:
    endpoint = start_throttled_endpoint(log_dir)
    try:
        url = "http://127.0.0.1:%d/api/v1/web/guest/default/max-test-sleep" % endpoint.port
        warm_up(url, inputs, work_dir)
        count = plan.throttled_inputs
        return in_rounds(plan.throttled_rounds, [
            lambda: run_client(url, inputs, count, work_dir, "throttled"),
            lambda: run_told_the_limit(url, inputs, count, work_dir),
            lambda: run_xargs_curl(url, inputs, count, work_dir),
            lambda: run_requests_pool(url, inputs, count, work_dir),
        ])
    finally:
        endpoint.stop()


def measure_other_limits(plan: Plan, inputs: Inputs, work_dir: str, log_dir: str) -> Dict[int, Run]:
    """The client alone under other --concurrent-limit values (same two containers): where it settles."""
    runs = {}  # type: Dict[int, Run]
    for limit in plan.other_limits:
        endpoint = start_throttled_endpoint(log_dir, limit)
        try:
            url = "http://127.0.0.1:%d/api/v1/web/guest/default/max-test-sleep" % endpoint.port
            warm_up(url, inputs, work_dir)
            runs[limit] = run_client(url, inputs, plan.other_limit_inputs, work_dir, "limit-%d" % limit)
            log("--concurrent-limit %d: client, %d inputs: %.1f s, %d ok"
                % (limit, plan.other_limit_inputs, runs[limit].wall, runs[limit].ok))
        finally:
            endpoint.stop()
    return runs


# ----------------------------------------------------------------------------- tables


def spread(values: List[float], form: str) -> str:
    """The median, and min–max when there are several runs."""
    if len(values) == 1:
        return form % values[0]
    return (form + " (" + form + "–" + form + ")") % (statistics.median(values), min(values), max(values))


def optional(values: List[Optional[float]], form: str) -> str:
    present = [value for value in values if value is not None]
    return spread(present, form) if present else "—"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join("%.1f" % value for value in os.getloadavg())
    return ("%s, %d cores (%d usable), load average %s at the start; Linux %s; Python %s; %s"
            % (cpu, os.cpu_count() or 0, len(os.sched_getaffinity(0)), load, platform.release(),
               platform.python_version(), datetime.datetime.now().strftime("%Y-%m-%d %H:%M")))


def ceiling_table(groups: List[List[Run]]) -> List[str]:
    lines = ["| runner | inputs | runs | predictions/s (sending) | predictions/s (process start to exit) "
             "| CPU s | CPU µs / prediction | peak RSS MiB | without a prediction |",
             "|---|---|---|---|---|---|---|---|---|"]
    for runs in groups:
        first = runs[0]
        lines.append("| %s | %s | %d | %s | %s | %s | %s | %s | %d |" % (
            first.runner, "{:,}".format(first.inputs), len(runs),
            spread([run.rate for run in runs], "%.0f"), spread([run.wall_rate for run in runs], "%.0f"),
            optional([run.cpu_seconds for run in runs], "%.1f"),
            optional([run.cpu_seconds * 1e6 / run.inputs if run.cpu_seconds else None for run in runs], "%.0f"),
            optional([run.peak_rss_mib for run in runs], "%.1f"), max(run.without_prediction for run in runs)))
    return lines


def throttled_table(groups: List[List[Run]], practical: float) -> List[str]:
    lines = ["| runner | inputs | runs | time s | predictions/s | share of the 40/s ceiling | share of told-the-limit "
             "| throttled after 10 s | concurrency settled (summary / mean in flight) | without a prediction "
             "| duplicates |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for runs in groups:
        first = runs[0]
        settled = "—"
        if first.runner.startswith("client"):
            settled = "%s / %s" % (optional([run.settled for run in runs], "%.1f"),
                                   optional([run.mean_in_flight_late for run in runs], "%.1f"))
        throttled = "—"
        if any(run.late_attempts for run in runs):
            throttled = spread([100.0 * run.late_throttled / run.late_attempts for run in runs if run.late_attempts],
                               "%.1f%%")
        finished = all(run.without_prediction == 0 for run in runs)
        lines.append("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %d |" % (
            first.runner, "{:,}".format(first.inputs), len(runs), spread([run.wall for run in runs], "%.1f"),
            spread([run.rate for run in runs], "%.1f"),
            spread([100.0 * run.rate / CEILING_PER_SECOND for run in runs], "%.0f%%") if finished else "—",
            spread([100.0 * run.rate / practical for run in runs], "%.0f%%") if finished else "—", throttled, settled,
            "%d of %d" % (max(run.without_prediction for run in runs), first.inputs),
            max(run.duplicates for run in runs)))
    return lines


def limits_table(runs: Dict[int, List[Run]]) -> List[str]:
    lines = ["| --concurrent-limit | inputs | runs | predictions/s | share of the 40/s ceiling | throttled after 10 s "
             "| concurrency settled (summary / mean in flight) | without a prediction |", "|---|---|---|---|---|---|---|---|"]
    for limit in sorted(runs):
        group = runs[limit]
        late = [100.0 * run.late_throttled / run.late_attempts for run in group if run.late_attempts]
        lines.append("| %d | %s | %d | %s | %s | %s | %s / %s | %d |" % (
            limit, "{:,}".format(group[0].inputs), len(group), spread([run.rate for run in group], "%.1f"),
            spread([100.0 * run.rate / CEILING_PER_SECOND for run in group], "%.0f%%"),
            spread(late, "%.1f%%") if late else "—", optional([run.settled for run in group], "%.1f"),
            optional([run.mean_in_flight_late for run in group], "%.1f"), max(run.without_prediction for run in group)))
    return lines


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def report(plan: Plan, ceiling: List[List[Run]], throttled: List[List[Run]], other_limits: Dict[int, Run],
           plot: Optional[str]) -> "tuple[str, bool, bool]":
    """The Markdown page; whether the targets are met; whether the client answered every input once."""
    client_ceiling = [runs for runs in ceiling if runs[0].runner.startswith("client")]
    client_throttled = [runs for runs in throttled if runs[0].runner.startswith("client")][0]
    told = [runs for runs in throttled if runs[0].runner.startswith("told")][0]
    practical = statistics.median(run.rate for run in told)
    exact = all(run.without_prediction == 0 and run.duplicates == 0
                for runs in client_ceiling + [client_throttled, list(other_limits.values())] for run in runs)

    small, large = client_ceiling[0], client_ceiling[-1]
    memory_rise = statistics.median(run.peak_rss_mib for run in large) - statistics.median(
        run.peak_rss_mib for run in small)
    targets = [
        ("client sends >= %d predictions/s at %s inputs" % (RATE_TARGET, "{:,}".format(runs[0].inputs)),
         "%.0f/s" % statistics.median(run.rate for run in runs), statistics.median(run.rate for run in runs) >= RATE_TARGET)
        for runs in client_ceiling]
    targets.append(("client's peak memory at %s inputs within %.0f MiB of that at %s" % (
        "{:,}".format(large[0].inputs), MEMORY_TARGET_MIB, "{:,}".format(small[0].inputs)),
        "%+.1f MiB" % memory_rise, memory_rise <= MEMORY_TARGET_MIB))
    share = statistics.median(run.rate for run in client_throttled) / CEILING_PER_SECOND
    targets.append(("client completes >= %.0f%% of the 40/s ceiling under --concurrent-limit %d"
                    % (SHARE_TARGET * 100, CONCURRENT_LIMIT), "%.0f%%" % (share * 100), share >= SHARE_TARGET))
    targets.append(("the client answers every input exactly once", "yes" if exact else "no", exact))
    passed = all(met for _, _, met in targets)

    lines = ["# Batch client benchmark", "", "Machine: " + machine() + ". The machine is shared with other jobs and "
             "noisy: the runners take turns, and each cell shows the median (min–max) over the rounds.", "",
             "Command: `%s`." % shlex.join([".venv/current/bin/python", "bench/batch.py"] + sys.argv[1:]), "",
             "## (1) The client's own ceiling: a no-op endpoint on loopback", "",
             "`bench/noop_server.py` (aiohttp, keep-alive, a fixed JSON answer, its Swagger document naming an "
             "`image` file field) stands in for the model, so the time is the client's. Inputs: a JSONL manifest of N "
             "rows naming one %d-byte file. \"sending\" is the first request sent to the last answer (from the "
             "results file; the bare loop times itself); \"process start to exit\" adds the interpreter's start, "
             "the imports and reading swagger.json. CPU: the child process's (getrusage); peak RSS: its VmHWM, read by "
             "itself at exit (a child's ru_maxrss would start from the benchmark's own size). The floor "
             "sends the same upload with aiohttp alone: one multipart body built once, 64 in flight, no inputs "
             "read, no retries, no results file."
             % INPUT_BYTES, ""]
    lines += ceiling_table(ceiling)
    lines += ["", "## (2) A throttled endpoint: `local_endpoint.py --containers %d --concurrent-limit %d`, a 50 ms model"
              % (CONTAINERS, CONCURRENT_LIMIT), "",
              "`tests/apps/max-test-sleep` answers every prediction after %.0f ms; the endpoint runs at most %d at once "
              "(two containers, one activation each) and answers OpenWhisk's 429 \"Too many concurrent requests in "
              "flight\" to a 5th request in flight. Ceiling: %d / %.2f s = %.0f predictions/s. \"told the limit\" keeps "
              "exactly %d requests in flight and is never throttled: the practical best (%.1f/s this run). "
              "Predictions/s: the client's over its sending time, the others' over their wall time; the shares "
              "only for runners that got every prediction (a runner that drops inputs is fast). "
              "Throttled after 10 s: 429s among the client's attempts sent after its first 10 s. Concurrency "
              "settled: the client's own summary line (its limit's mean over the second half of the run) and the mean "
              "number of its requests in flight after the first 10 s, from its results file. Without a prediction: "
              "inputs whose answer was not a 200 prediction (the naive runners store the 429 body as if it were "
              "one) or that got no answer."
              % (PREDICT_SECONDS * 1000, CONTAINERS, CONTAINERS, PREDICT_SECONDS, CEILING_PER_SECOND,
                 CONCURRENT_LIMIT, practical), ""]
    lines += throttled_table(throttled, practical)
    if other_limits:
        by_limit = dict((limit, [run]) for limit, run in other_limits.items())
        by_limit[CONCURRENT_LIMIT] = client_throttled
        lines += ["", "Where the client settles under each limit: the same endpoint and model (two containers, ceiling "
                  "40/s), the client alone with -j %d; the row for %d is the client's runs above." % (
                      CLIENT_JOBS, CONCURRENT_LIMIT), ""]
        lines += limits_table(by_limit)
    if plot:
        lines += ["", "The client's last throttled run, drawn from its results file by its report module "
                  "(`serverless-max predict ... --plot`):", "", "![the client's throttled run](%s)" % os.path.basename(plot)]
    lines += ["", "## Targets", "", "| target | measured | |", "|---|---|---|"]
    lines += ["| %s | %s | %s |" % (what, measured, verdict(met)) for what, measured, met in targets]
    lines.append("")
    return "\n".join(lines), passed, exact


# ----------------------------------------------------------------------------- main


def draw(results_path: str, plot: str) -> Optional[str]:
    """The picture of a client run, with the client's own report module; None when it cannot be drawn."""
    sys.path.insert(0, CLIENT_DIR)
    try:
        from serverless_max_client import report as client_report
    except ImportError as error:
        log("no picture of the run: %s" % error)
        return None
    try:
        client_report.write_plot(results_path, plot)
    except client_report.ReportError as error:
        log("no picture of the run: %s" % error)
        return None
    return plot


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Measure the batch client: its own ceiling against a no-op endpoint, "
                                     "its share of a throttled endpoint's limit, and the naive ways (xargs curl, a "
                                     "thread pool of requests) on the same inputs. Takes about 10 minutes; --quick "
                                     "under one.", epilog="Exit status: 0 targets met (--quick: every input answered "
                                     "exactly once by the client), 1 not, 2 a server could not be started.")
    parser.add_argument("--quick", action="store_true",
                        help="small runs, one round: checks that the benchmark works, not a result")
    parser.add_argument("--output", help="where to write the tables (default bench/batch-results.md, with --quick "
                        "bench/results/batch-quick.md); the picture goes beside it")
    parser.add_argument("--bare-loop", nargs=3, metavar=("URL", "FILE", "COUNT"), help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    # A SIGTERM unwinds like Ctrl-C, so that the servers and the client started here are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.bare_loop:
        bare_loop(args.bare_loop[0], args.bare_loop[1], int(args.bare_loop[2]))
        return 0
    plan = QUICK if args.quick else FULL
    output = args.output or (QUICK_RESULTS if args.quick else RESULTS)
    plot = os.path.join(os.path.dirname(os.path.abspath(output)),
                        os.path.basename(QUICK_PLOT if args.quick else PLOT))
    work_dir = tempfile.mkdtemp(prefix="batch-bench-")
    log_dir = os.path.join(work_dir, "logs")
    os.makedirs(log_dir)
    try:
        inputs = Inputs(work_dir)
        ceiling = measure_ceiling(plan, inputs, work_dir, log_dir)
        throttled = measure_throttled(plan, inputs, work_dir, log_dir)
        other_limits = measure_other_limits(plan, inputs, work_dir, log_dir)
    except RuntimeError as error:
        log("failed: %s (logs kept in %s)" % (error, work_dir))
        return 2
    client_runs = [runs for runs in throttled if runs[0].runner.startswith("client")][0]
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    plot = draw(client_runs[-1].results_path, plot)
    table, passed, exact = report(plan, ceiling, throttled, other_limits, plot)
    print(table)
    with open(output, "w", encoding="utf-8") as stream:
        stream.write(table)
    log("tables written to %s" % output)
    shutil.rmtree(work_dir)
    if args.quick:
        return 0 if exact else 1
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
