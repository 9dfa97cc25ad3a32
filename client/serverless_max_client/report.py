"""A picture of a batch run, drawn from its results file alone.

    write_plot("results.jsonl", "run.png")    # or run.svg, or run.html

Three panels share one time axis (seconds since the run's first request): every attempt's latency
at the moment it was sent, coloured by what came back (an answer, a throttle, a failure) with the
median and p90 of the answers over time; how many requests were in flight; and attempts per second
by outcome. A cold start shows as a cluster of slow answers while in flight is low; throttling as
a band of fast orange marks and an orange share of the rate panel. An `.html` path gives one
self-contained page: a summary table and the same figure inline as SVG, no scripts or external
files, so it can be mailed or attached to a ticket.

The results file is read as a stream (one JSON object per line), so a run of a million inputs is
drawn in bounded memory: a few numbers per attempt, and at most SCATTER_LIMIT marks per outcome.
matplotlib (the client's `[plot]` extra) is imported only when a picture is asked for.
"""

import array
import datetime
import html
import io
import json
import os
from collections import Counter
from typing import Any, Dict, Iterable, List, Optional, Tuple

# The outcome of one attempt, in drawing order: answers under throttles under failures.
ANSWERED, THROTTLED, FAILED = 0, 1, 2
OUTCOME_NAMES = {ANSWERED: "answered", THROTTLED: "throttled (429, 503)", FAILED: "failed (other status, network error)"}
OUTCOME_COLOURS = {ANSWERED: "#1f77b4", THROTTLED: "#ff7f0e", FAILED: "#d62728"}
THROTTLE_STATUSES = frozenset([429, 503])
# Marks drawn per outcome; beyond it an even sample is drawn and the legend says so. The lines and
# the rate panel always use every attempt.
SCATTER_LIMIT = 20000
# Time buckets for the percentile lines and the rate panel, and for the in-flight curve (finer: a
# burst of a tenth of a second shows on a run of minutes).
BUCKETS = 120
IN_FLIGHT_BUCKETS = 1000
FIGURE_INCHES = (12.0, 9.0)
FIGURE_DPI = 100
PLOT_EXTRA_HINT = "the picture needs matplotlib: pip install 'serverless-max-client[plot]' (or pip install matplotlib)"


class ReportError(Exception):
    """The picture cannot be made; the message says why and what to do."""


class RunRecord(object):
    """What the picture needs of a results file: per attempt its start, end and outcome; per input its status."""

    def __init__(self) -> None:
        self.starts = array.array("d")
        self.ends = array.array("d")
        self.outcomes = array.array("b")
        self.inputs = Counter()  # type: Counter
        self.attempt_results = Counter()  # type: Counter
        self.ok_latencies_ms = array.array("d")
        self.unreadable_lines = 0

    @property
    def attempts(self) -> int:
        return len(self.starts)

    def add_line(self, record: Dict[str, Any]) -> None:
        self.inputs[str(record.get("status", "unknown"))] += 1
        for start, end, result in attempts_of(record):
            self.starts.append(start)
            self.ends.append(end)
            self.outcomes.append(outcome_of(result))
            self.attempt_results[str(result)] += 1
        if record.get("status") == "ok" and isinstance(record.get("latency_ms"), (int, float)):
            self.ok_latencies_ms.append(float(record["latency_ms"]))


def attempts_of(record: Dict[str, Any]) -> List[Tuple[float, float, Any]]:
    """A line's attempts as (start, end, HTTP status or error kind); a line without an attempt log
    counts as one attempt from started_at to finished_at, and an input never sent as none."""
    log = record.get("attempt_log")
    if isinstance(log, list):
        return [(float(entry[0]), float(entry[1]), entry[2]) for entry in log
                if isinstance(entry, (list, tuple)) and len(entry) == 3
                and isinstance(entry[0], (int, float)) and isinstance(entry[1], (int, float))]
    started, finished = record.get("started_at"), record.get("finished_at")
    if isinstance(started, (int, float)) and isinstance(finished, (int, float)) and record.get("attempts", 1):
        return [(float(started), float(finished), record.get("http_status") or record.get("error") or "error")]
    return []


def outcome_of(result: Any) -> int:
    """An HTTP status (int) or an error kind (str) as ANSWERED, THROTTLED or FAILED. A 202 is
    OpenWhisk's "not ready yet": the input was not answered, so it counts as failed."""
    if isinstance(result, int) and not isinstance(result, bool):
        if result in THROTTLE_STATUSES:
            return THROTTLED
        if 200 <= result < 400 and result != 202:
            return ANSWERED
    return FAILED


def read_results(results_path: str) -> RunRecord:
    """Streams the results file. A line that is not a JSON object (a run killed mid-write by an
    older writer, a stray edit) is counted and skipped rather than spoiling the picture."""
    record = RunRecord()
    try:
        stream = open(results_path, encoding="utf-8", errors="replace")
    except OSError as error:
        raise ReportError("cannot read the results file %s: %s" % (results_path, error.strerror or error))
    with stream:
        for line in stream:
            if not line.strip():
                continue
            try:
                parsed = json.loads(line)
            except ValueError:
                record.unreadable_lines += 1
                continue
            if isinstance(parsed, dict):
                record.add_line(parsed)
            else:
                record.unreadable_lines += 1
    if record.attempts == 0:
        raise ReportError("%s holds no request with times to draw (%d lines read)"
                          % (results_path, sum(record.inputs.values()) + record.unreadable_lines))
    return record


# ----------------------------------------------------------------------------- numbers


def percentile(sorted_values: Any, share: float) -> float:
    """The nearest-rank percentile of an ascending numpy array (share in [0, 1])."""
    import numpy
    rank = int(numpy.ceil(share * len(sorted_values))) - 1
    return float(sorted_values[max(rank, 0)])


def summary_rows(run: RunRecord) -> List[Tuple[str, str]]:
    """The run in numbers, as (what, value) rows: inputs by status, attempts by outcome, rate, latency."""
    import numpy
    starts = numpy.frombuffer(run.starts, dtype=numpy.float64)
    ends = numpy.frombuffer(run.ends, dtype=numpy.float64)
    outcomes = numpy.frombuffer(run.outcomes, dtype=numpy.int8)
    duration = float(ends.max() - starts.min())
    total_inputs = sum(run.inputs.values())
    answered = int(run.inputs.get("ok", 0))
    rows = [
        ("inputs", "{:,}".format(total_inputs)),
        ("inputs by status", ", ".join("%s %s" % (status, "{:,}".format(count))
                                       for status, count in sorted(run.inputs.items()))),
        ("attempts", "{:,}".format(run.attempts)),
        ("attempts by result", ", ".join("%s × %s" % (result, "{:,}".format(count))
                                         for result, count in run.attempt_results.most_common(12))),
        ("throttled attempts", "%.1f%%" % (100.0 * float(numpy.count_nonzero(outcomes == THROTTLED)) / run.attempts)),
        ("duration", "%.1f s (first request sent to last answer)" % duration),
        ("answered inputs per second", "%.1f" % (answered / duration if duration > 0 else 0.0)),
        ("peak in flight", str(int(in_flight_at(starts, ends, numpy.sort(numpy.concatenate([starts, ends]))).max()))),
    ]
    if len(run.ok_latencies_ms):
        latencies = numpy.sort(numpy.frombuffer(run.ok_latencies_ms, dtype=numpy.float64))
        rows.append(("latency of answered inputs, p50 / p90 / p99 / max",
                     " / ".join("%.0f ms" % percentile(latencies, share) for share in (0.5, 0.9, 0.99, 1.0))))
    if run.unreadable_lines:
        rows.append(("lines skipped (not JSON objects)", "{:,}".format(run.unreadable_lines)))
    return rows


def mean_in_flight(starts: Any, ends: Any, edges: Any) -> Any:
    """The time-weighted mean of requests in flight within each bucket between `edges`: the time all
    requests spent in flight in the bucket over its length. Exact, so a short dip or spike is
    averaged, not sampled. Times are relative (small), so the sums keep their precision."""
    import numpy

    def time_in_flight_until(sorted_times: Any, cumulative: Any) -> Any:
        count = numpy.searchsorted(sorted_times, edges, side="right")
        return count * edges - cumulative[count]

    sorted_starts, sorted_ends = numpy.sort(starts), numpy.sort(ends)
    area = (time_in_flight_until(sorted_starts, numpy.concatenate([[0.0], numpy.cumsum(sorted_starts)]))
            - time_in_flight_until(sorted_ends, numpy.concatenate([[0.0], numpy.cumsum(sorted_ends)])))
    return numpy.diff(area) / numpy.diff(edges)


def in_flight_at(starts: Any, ends: Any, times: Any) -> Any:
    """Requests in flight at each of `times`: sent at or before it, not yet answered."""
    import numpy
    sent = numpy.searchsorted(numpy.sort(starts), times, side="right")
    done = numpy.searchsorted(numpy.sort(ends), times, side="right")
    return sent - done


# ----------------------------------------------------------------------------- the figure


def draw_figure(run: RunRecord, title: str) -> Any:
    """The three-panel matplotlib Figure (not attached to pyplot: no global state, no display)."""
    try:
        import numpy
        from matplotlib.figure import Figure
    except ImportError:
        raise ReportError(PLOT_EXTRA_HINT)

    starts = numpy.frombuffer(run.starts, dtype=numpy.float64)
    ends = numpy.frombuffer(run.ends, dtype=numpy.float64)
    outcomes = numpy.frombuffer(run.outcomes, dtype=numpy.int8)
    origin = float(starts.min())
    sent = starts - origin
    latency_ms = numpy.maximum((ends - starts) * 1000.0, 0.01)
    span = max(float(ends.max()) - origin, 1e-3)
    edges = numpy.linspace(0.0, span, BUCKETS + 1)

    figure = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI, layout="constrained")
    latency_axes, flight_axes, rate_axes = figure.subplots(3, 1, sharex=True, height_ratios=[3, 1.4, 1.4])
    figure.suptitle(title, fontsize=11)

    for outcome in (ANSWERED, THROTTLED, FAILED):
        chosen = numpy.flatnonzero(outcomes == outcome)
        if not len(chosen):
            continue
        label = "%s: %s" % (OUTCOME_NAMES[outcome], "{:,}".format(len(chosen)))
        if len(chosen) > SCATTER_LIMIT:
            chosen = chosen[numpy.linspace(0, len(chosen) - 1, SCATTER_LIMIT).astype(numpy.int64)]
            label += " (%s drawn)" % "{:,}".format(SCATTER_LIMIT)
        latency_axes.scatter(sent[chosen], latency_ms[chosen], s=6 if outcome == ANSWERED else 14,
                             marker="o" if outcome == ANSWERED else "x", linewidths=0.8, alpha=0.6,
                             color=OUTCOME_COLOURS[outcome], label=label, rasterized=True, zorder=2 + outcome)

    answered = outcomes == ANSWERED
    if answered.any():
        bucket = numpy.clip(numpy.searchsorted(edges, sent[answered], side="right") - 1, 0, BUCKETS - 1)
        order = numpy.lexsort((latency_ms[answered], bucket))
        grouped_latency, grouped_bucket = latency_ms[answered][order], bucket[order]
        bounds = numpy.searchsorted(grouped_bucket, numpy.arange(BUCKETS + 1))
        middles = (edges[:-1] + edges[1:]) / 2
        for share, style in ((0.5, "-"), (0.9, "--")):
            points = [(middles[index], percentile(grouped_latency[bounds[index]:bounds[index + 1]], share))
                      for index in range(BUCKETS) if bounds[index + 1] > bounds[index]]
            latency_axes.plot([p[0] for p in points], [p[1] for p in points], style, color="black",
                              linewidth=1.0, label="p%d of answers" % int(share * 100), zorder=6)
    if latency_ms.max() / latency_ms.min() > 50:
        latency_axes.set_yscale("log")
    latency_axes.set_ylabel("latency per attempt (ms)")
    # Above the panel, in one row: inside it the legend would hide marks.
    latency_axes.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=5, fontsize=8, markerscale=1.5,
                        frameon=False, borderaxespad=0.2)
    latency_axes.grid(True, which="major", alpha=0.3)

    flight_edges = numpy.linspace(0.0, span, IN_FLIGHT_BUCKETS + 1)
    flight_axes.stairs(mean_in_flight(sent, ends - origin, flight_edges), flight_edges, color="#2ca02c",
                       linewidth=1.0)
    flight_axes.set_ylabel("in flight (mean per %s)" % duration_text(span / IN_FLIGHT_BUCKETS))
    flight_axes.set_ylim(bottom=0)
    flight_axes.grid(True, alpha=0.3)

    width = edges[1] - edges[0]
    bottom = numpy.zeros(BUCKETS)
    for outcome in (ANSWERED, THROTTLED, FAILED):
        counts, _ = numpy.histogram(ends[outcomes == outcome] - origin, bins=edges)
        if counts.any():
            rate_axes.bar(edges[:-1], counts / width, width=width, bottom=bottom, align="edge",
                          color=OUTCOME_COLOURS[outcome], label=OUTCOME_NAMES[outcome].split(" (")[0], linewidth=0)
            bottom = bottom + counts / width
    rate_axes.set_ylabel("attempts / s")
    rate_axes.set_xlabel("seconds since the first request")
    rate_axes.legend(loc="upper right", fontsize=8)
    rate_axes.grid(True, alpha=0.3)
    # A little room at both ends, so that marks on the first and last instants are not cut in half.
    rate_axes.set_xlim(-0.01 * span, 1.01 * span)
    return figure


def duration_text(seconds: float) -> str:
    return "%.0f ms" % (seconds * 1000) if seconds < 1 else "%.1f s" % seconds


def run_title(results_path: str, run: RunRecord) -> str:
    started = datetime.datetime.fromtimestamp(min(run.starts), datetime.timezone.utc)
    total = sum(run.inputs.values())
    return "%s: %s inputs, %s ok, started %s UTC" % (
        os.path.basename(results_path), "{:,}".format(total), "{:,}".format(run.inputs.get("ok", 0)),
        started.strftime("%Y-%m-%d %H:%M:%S"))


def html_page(title: str, rows: Iterable[Tuple[str, str]], svg: str) -> str:
    table = "\n".join("<tr><th>%s</th><td>%s</td></tr>" % (html.escape(name), html.escape(value))
                      for name, value in rows)
    return """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ text-align: left; padding: 0.2em 1em 0.2em 0; border-bottom: 1px solid #ddd; font-weight: normal; }}
th {{ color: #555; }}
figure {{ margin: 0; }}
figure svg {{ max-width: 100%; height: auto; }}
</style>
</head>
<body>
<h1>{title}</h1>
<table id="summary">
{table}
</table>
<figure id="run">
{svg}
</figure>
</body>
</html>
""".format(title=html.escape(title), table=table, svg=svg)


def write_plot(results_path: str, out_path: str) -> None:
    """Draws the run in `results_path` (the client's JSONL) to `out_path`: an HTML page for .html or
    .htm, else an image in the format matplotlib gives the extension (.png, .svg, .pdf).
    Raises ReportError with a message for the user when it cannot."""
    extension = os.path.splitext(out_path)[1].lower()
    run = read_results(results_path)
    title = run_title(results_path, run)
    figure = draw_figure(run, title)
    try:
        if extension in (".html", ".htm"):
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg")
            svg = buffer.getvalue()
            svg = svg[svg.index("<svg"):]  # the page is the document: drop the SVG's XML prolog
            page = html_page(title, summary_rows(run), svg)
            with open(out_path, "w", encoding="utf-8") as stream:
                stream.write(page)
        else:
            figure.savefig(out_path)
    except ValueError as error:  # an extension matplotlib has no writer for
        raise ReportError("cannot draw %s: %s (use .png, .svg, .pdf or .html)" % (out_path, error))
    except OSError as error:
        raise ReportError("cannot write %s: %s" % (out_path, error.strerror or error))
