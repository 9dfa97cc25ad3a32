"""The batch client's picture of a run (client/serverless_max_client/report.py), drawn from a
results file shaped like the client's: a PNG that opens, at the figure's size and not blank, and an
HTML page that headless Chromium renders with its summary and the figure inline.

The results file is made up here: a run with a cold start (slow first answers), a stretch of
throttling (fast 429s, then a retry that is answered) and inputs that failed, with the fields the
client writes. Then the command line, as a child process: `serverless-max report RESULTS --plot
FILE`, its errors (no results file, no matplotlib), and `predict --plot` drawing a real run against
bench/noop_server.py on loopback. matplotlib is the client's [plot] extra: without it the tests skip.
"""

import json
import os
import re
import random
import shutil
import subprocess
import sys
from typing import Any, Dict, List

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "client"))

pytest.importorskip("matplotlib", reason="the picture needs the client's [plot] extra (matplotlib)")
PIL_Image = pytest.importorskip("PIL.Image")

from serverless_max_client import report  # noqa: E402
from support import ServerProcess, free_port  # noqa: E402

RUN_START = 1764748800.0  # 2025-12-03 08:00:00 UTC
INPUTS = 600


def synthetic_run(inputs: int = INPUTS, seed: int = 7) -> List[Dict[str, Any]]:
    """Result lines of a run sent 40 per second: the first answers pay a 2 s cold start, inputs
    sent between 5 s and 9 s are throttled once or twice before their answer, and every 97th input
    fails (a 400 for bad input, or timeouts until the retries run out)."""
    rng = random.Random(seed)
    lines = []
    for index in range(inputs):
        sent = RUN_START + index / 40.0
        attempt_log = []
        at = sent
        if 5.0 <= sent - RUN_START < 9.0:
            for _ in range(rng.randint(1, 2)):
                attempt_log.append([at, at + 0.003, 429])
                at += 0.003 + rng.uniform(0.2, 0.8)
        cold = max(0.0, 2.0 - (sent - RUN_START)) if index < 8 else 0.0
        if index % 97 == 96:
            if index % 2:
                attempt_log.append([at, at + 0.004, 400])
                error = "400: the file is not an image"
            else:
                for _ in range(3):
                    attempt_log.append([at, at + 5.0, "timeout"])
                    at += 5.5
                error = "timeout: no answer within 5 s (3 attempts)"
            status, http_status = "failed", attempt_log[-1][2] if isinstance(attempt_log[-1][2], int) else None
        else:
            took = 0.05 + cold + rng.expovariate(1 / 0.01)
            attempt_log.append([at, at + took, 200])
            status, http_status, error = "ok", 200, None
        lines.append({
            "input": "images/%06d.jpg" % index, "status": status, "http_status": http_status,
            "attempts": len(attempt_log), "latency_ms": round((attempt_log[-1][1] - sent) * 1000, 3),
            "started_at": sent, "finished_at": attempt_log[-1][1], "attempt_log": attempt_log,
            "error": error, "response": {"status": "ok", "predictions": []} if status == "ok" else None,
        })
    return lines


@pytest.fixture
def results_path(tmp_path: Any) -> str:
    path = str(tmp_path / "results.jsonl")
    with open(path, "w", encoding="utf-8") as stream:
        for line in synthetic_run():
            stream.write(json.dumps(line) + "\n")
    return path


def test_png_opens_at_the_figure_size_and_is_not_blank(results_path: str, tmp_path: Any) -> None:
    out = str(tmp_path / "run.png")
    report.write_plot(results_path, out)
    with PIL_Image.open(out) as picture:
        assert picture.format == "PNG"
        assert picture.size == (int(report.FIGURE_INCHES[0] * report.FIGURE_DPI),
                                int(report.FIGURE_INCHES[1] * report.FIGURE_DPI))
        colours = picture.convert("RGB").getcolors(maxcolors=1 << 20)
    # Far from a blank canvas, and each outcome's colour is drawn (answers, throttles, failures).
    assert len(colours) > 100
    drawn = set(colour for _, colour in colours)
    for hex_colour in report.OUTCOME_COLOURS.values():
        assert tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)) in drawn


def test_summary_counts_inputs_attempts_and_throttles(results_path: str) -> None:
    run = report.read_results(results_path)
    lines = synthetic_run()
    assert sum(run.inputs.values()) == INPUTS
    assert run.inputs["failed"] == sum(1 for line in lines if line["status"] == "failed")
    assert run.attempts == sum(len(line["attempt_log"]) for line in lines)
    rows = dict(report.summary_rows(run))
    throttled = sum(1 for line in lines for attempt in line["attempt_log"] if attempt[2] == 429)
    assert rows["throttled attempts"] == "%.1f%%" % (100.0 * throttled / run.attempts)
    assert rows["inputs by status"] == "failed %d, ok %d" % (run.inputs["failed"], run.inputs["ok"])
    assert "429 × %d" % throttled in rows["attempts by result"]
    assert "timeout × " in rows["attempts by result"]


def test_in_flight_counts_requests_sent_and_not_yet_answered() -> None:
    numpy = pytest.importorskip("numpy")
    starts = numpy.array([0.0, 0.0, 1.0, 2.5])
    ends = numpy.array([1.0, 3.0, 2.0, 3.0])
    # At 1.0 one request ends and another starts: counted once, not twice.
    assert list(report.in_flight_at(starts, ends, numpy.array([0.0, 0.5, 1.0, 2.0, 2.7, 3.0]))) == [2, 2, 2, 1, 2, 0]


def test_mean_in_flight_per_bucket_is_the_time_spent_in_flight_over_its_length() -> None:
    numpy = pytest.importorskip("numpy")
    starts = numpy.array([0.0, 0.5, 3.0])
    ends = numpy.array([1.0, 1.5, 3.001])
    means = report.mean_in_flight(starts, ends, numpy.array([0.0, 1.0, 2.0, 4.0]))
    # A request of 1 ms in a 2 s bucket is a mean of 0.0005, not 0 or 1 as a sample would say.
    assert list(numpy.round(means, 6)) == [1.5, 0.5, 0.0005]


def test_outcomes_of_statuses_and_error_kinds() -> None:
    assert [report.outcome_of(result) for result in (200, 204, 302, 429, 503, 202, 400, 413, 500, 502, "timeout", "connect")] == [
        report.ANSWERED, report.ANSWERED, report.ANSWERED, report.THROTTLED, report.THROTTLED,
        report.FAILED, report.FAILED, report.FAILED, report.FAILED, report.FAILED, report.FAILED, report.FAILED]


def test_lines_without_an_attempt_log_and_broken_lines(tmp_path: Any) -> None:
    path = str(tmp_path / "results.jsonl")
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(json.dumps({"input": "a", "status": "ok", "http_status": 200, "attempts": 1, "latency_ms": 50,
                                 "started_at": RUN_START, "finished_at": RUN_START + 0.05}) + "\n")
        stream.write(json.dumps({"input": "b", "status": "failed", "attempts": 0, "error": "unreadable: permission denied"}) + "\n")
        stream.write('{"input": "c", "status": "o\n')  # the tail of a run killed mid-line
        stream.write("\n[1, 2]\n")
    run = report.read_results(path)
    assert run.attempts == 1
    assert dict(run.inputs) == {"ok": 1, "failed": 1}
    assert run.unreadable_lines == 2
    out = str(tmp_path / "run.png")
    report.write_plot(path, out)
    assert os.path.getsize(out) > 0


def test_a_file_with_nothing_to_draw_says_so(tmp_path: Any) -> None:
    path = str(tmp_path / "results.jsonl")
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(json.dumps({"input": "b", "status": "failed", "attempts": 0, "error": "unreadable"}) + "\n")
    with pytest.raises(report.ReportError, match="no request with times to draw"):
        report.write_plot(path, str(tmp_path / "run.png"))
    with pytest.raises(report.ReportError, match="cannot read the results file"):
        report.write_plot(str(tmp_path / "missing.jsonl"), str(tmp_path / "run.png"))
    assert not os.path.exists(str(tmp_path / "run.png"))


def test_unknown_picture_format_and_unwritable_path(results_path: str, tmp_path: Any) -> None:
    with pytest.raises(report.ReportError, match=r"use \.png, \.svg, \.pdf or \.html"):
        report.write_plot(results_path, str(tmp_path / "run.docx"))
    with pytest.raises(report.ReportError, match="cannot write"):
        report.write_plot(results_path, str(tmp_path / "no-such-dir" / "run.png"))


def test_many_attempts_are_sampled_for_the_marks(tmp_path: Any) -> None:
    path = str(tmp_path / "results.jsonl")
    count = report.SCATTER_LIMIT + 5000
    with open(path, "w", encoding="utf-8") as stream:
        for index in range(count):
            sent = RUN_START + index / 1000.0
            stream.write(json.dumps({"input": str(index), "status": "ok", "http_status": 200, "attempts": 1,
                                     "latency_ms": 2.0, "started_at": sent, "finished_at": sent + 0.002,
                                     "attempt_log": [[sent, sent + 0.002, 200]]}) + "\n")
    run = report.read_results(path)
    figure = report.draw_figure(run, "many")
    latency_axes = figure.axes[0]
    marks = latency_axes.collections[0]
    assert len(marks.get_offsets()) == report.SCATTER_LIMIT
    assert "(%s drawn)" % "{:,}".format(report.SCATTER_LIMIT) in latency_axes.get_legend_handles_labels()[1][0]


# ----------------------------------------------------------------------------- the HTML page in a browser


def chromium_paths() -> Dict[str, str]:
    from test_swagger_ui import CHROMIUM_PATHS
    chromium = next((path for path in CHROMIUM_PATHS if os.path.exists(path)), None)
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        if os.environ.get("SMX_BROWSER") == "1":
            pytest.fail("chromium or chromedriver is missing: install them with scripts/install-browser.sh")
        pytest.skip("chromium or chromedriver is missing: install them with scripts/install-browser.sh")
    return {"chromium": chromium, "chromedriver": chromedriver}


def test_html_page_renders_in_chromium(results_path: str, tmp_path: Any) -> None:
    from test_swagger_ui import Browser
    paths = chromium_paths()
    out = str(tmp_path / "run.html")
    report.write_plot(results_path, out)
    with open(out, encoding="utf-8") as stream:
        page = stream.read()
    # Self-contained: nothing run, nothing fetched (references are to the page itself or data: URLs).
    assert "<script" not in page
    assert re.findall(r'(?:href|src)="(?!#|data:)[^"]*"', page) == []
    browser = Browser(paths["chromedriver"], paths["chromium"], str(tmp_path))
    try:
        browser.open("file://" + out)
        shown = browser.command("POST", "/execute/sync", {"script": """
            const svg = document.querySelector('figure#run svg');
            const box = svg.getBoundingClientRect();
            const rows = Array.from(document.querySelectorAll('#summary tr')).map(
                row => [row.querySelector('th').textContent, row.querySelector('td').textContent]);
            return {width: box.width, height: box.height, rows: rows, title: document.title,
                    images: svg.querySelectorAll('image').length, paths: svg.querySelectorAll('path').length};
            """, "args": []})
        screenshot = browser.command("GET", "/screenshot")
    finally:
        browser.close()
    assert shown["title"].startswith("results.jsonl: %d inputs" % INPUTS)
    assert shown["width"] > 800 and shown["height"] > 500
    # The marks are rasterized into the SVG as one image; axes, lines and bars are vector paths.
    assert shown["images"] >= 1 and shown["paths"] > 50
    rows = dict(shown["rows"])
    assert rows["inputs"] == "{:,}".format(INPUTS)
    assert rows["throttled attempts"].endswith("%")
    assert len(screenshot) > 10000


# ----------------------------------------------------------------------------- the command line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT_DIR = os.path.join(ROOT, "client")
NOOP_SERVER = os.path.join(ROOT, "bench", "noop_server.py")


def client(*arguments: str, blocked_module: str = "") -> "subprocess.CompletedProcess[str]":
    """The real command line, `serverless-max ...`, in a child process (optionally unable to import a module)."""
    code = "import sys; from serverless_max_client.cli import main; sys.exit(main())"
    if blocked_module:
        code = "import sys; sys.modules[%r] = None; " % blocked_module + code
    env = dict(os.environ, PYTHONPATH=CLIENT_DIR)
    return subprocess.run([sys.executable, "-c", code] + list(arguments), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, env=env, timeout=120)


def test_report_command_draws_a_results_file(results_path: str, tmp_path: Any) -> None:
    out = str(tmp_path / "run.png")
    finished = client("report", results_path, "--plot", out)
    assert finished.returncode == 0, finished.stderr
    assert "plot: " + out in finished.stderr
    with PIL_Image.open(out) as picture:
        assert picture.format == "PNG"


def test_report_command_says_why_it_cannot_draw(results_path: str, tmp_path: Any) -> None:
    missing = client("report", str(tmp_path / "missing.jsonl"), "--plot", str(tmp_path / "run.png"))
    assert missing.returncode == 2
    assert "cannot read the results file" in missing.stderr and "Traceback" not in missing.stderr
    without_matplotlib = client("report", results_path, "--plot", str(tmp_path / "run.png"), blocked_module="matplotlib")
    assert without_matplotlib.returncode == 2
    assert "[plot]" in without_matplotlib.stderr and "Traceback" not in without_matplotlib.stderr
    assert not os.path.exists(str(tmp_path / "run.png"))


def test_predict_draws_its_run_at_the_end(tmp_path: Any) -> None:
    """`predict --plot run.html` against a real (no-op) model endpoint: the results, then the page."""
    port = free_port()
    server = ServerProcess([sys.executable, NOOP_SERVER, str(port)], port, ROOT, name="noop",
                           log_dir=str(tmp_path))
    try:
        server.wait_for_port()
        for index in range(20):
            (tmp_path / ("input-%02d.jpg" % index)).write_bytes(b"\xff\xd8 not really a JPEG \xff\xd9")
        results, page = str(tmp_path / "results.jsonl"), str(tmp_path / "run.html")
        finished = client("predict", "http://127.0.0.1:%d" % port, str(tmp_path / "input-*.jpg"), "-o", results,
                          "--plot", page, "-q")
    finally:
        server.stop()
    assert finished.returncode == 0, finished.stderr
    with open(results, encoding="utf-8") as stream:
        assert sum(1 for line in stream if json.loads(line)["status"] == "ok") == 20
    with open(page, encoding="utf-8") as stream:
        assert "<td>20</td>" in stream.read()
