"""What a person sees: a progress bar on a terminal, plain periodic lines otherwise, and the summary."""

import asyncio
import sys
import time
from typing import Any, List, Optional, TextIO

from .runner import Runner, Stats


def percentile(sorted_values: List[float], share: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(share * (len(sorted_values) - 1)))))
    return sorted_values[index]


class Progress(object):
    """Redraws every `interval` seconds from the runner's counters (the workers never draw)."""

    def __init__(self, runner: Runner, stream: TextIO, bar: bool, interval: float):
        self.runner = runner
        self.stream = stream
        self.interval = interval
        self.bar = None  # type: Any
        if bar:
            from tqdm import tqdm
            self.bar = tqdm(total=None, unit="input", file=stream, dynamic_ncols=True, smoothing=0.1,
                            mininterval=interval)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.show()

    def show(self) -> None:
        stats, limiter = self.runner.stats, self.runner.limiter
        if self.bar is not None:
            if stats.total is not None and self.bar.total != stats.total:
                self.bar.total = stats.total
            self.bar.n = stats.done
            self.bar.set_postfix(in_flight=limiter.in_flight, limit=limiter.allowed(), retries=stats.retries,
                                 failed=stats.failed, refresh=False)
            self.bar.refresh()
            return
        elapsed = max(1e-9, time.time() - stats.started)
        total = "/%d" % stats.total if stats.total is not None else ""
        self.stream.write("%s done %d%s (ok %d, failed %d) %.1f/s in flight %d (limit %d) retries %d throttled %d\n"
                          % (time.strftime("%H:%M:%S"), stats.done, total, stats.ok, stats.failed,
                             stats.done / elapsed, limiter.in_flight, limiter.allowed(), stats.retries,
                             stats.throttled))
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.show()
            self.bar.close()


def summary(stats: Stats, settled: float, results_path: str, stream: Optional[TextIO] = None) -> None:
    stream = stream or sys.stderr
    elapsed = max(1e-9, (stats.finished or time.time()) - stats.started)
    latencies = sorted(stats.latencies)
    lines = ["%s: %d inputs in %.1f s: %d ok, %d failed; %.1f predictions/s"
             % ("interrupted" if stats.interrupted else "done", stats.done, elapsed, stats.ok, stats.failed,
                stats.done / elapsed)]
    if latencies:
        lines.append("latency (ms): p50 %.0f  p90 %.0f  p99 %.0f" % tuple(
            percentile(latencies, share) * 1000 for share in (0.5, 0.9, 0.99)))
    share = stats.throttled / stats.attempts if stats.attempts else 0.0
    lines.append("requests: %d sent, %d retried, %d throttled (%.1f%%); concurrency settled at %.1f "
                 "(mean in flight %.1f)" % (stats.attempts, stats.retries, stats.throttled, 100 * share, settled,
                                            stats.busy_seconds / elapsed))
    for signal, count in stats.signals.most_common():
        lines.append("  met %dx: %s" % (count, signal))
    for kind, count in stats.failure_kinds.most_common():
        lines.append("  failed %dx: %s" % (count, kind))
    if stats.failed:
        lines.append("the failed inputs' lines in %s say why (jq 'select(.status==\"failed\")'); "
                     "--resume retries them" % results_path)
    if stats.interrupted:
        lines.append("inputs not finished have no line; run again with --resume to finish them")
    stream.write("\n".join(lines) + "\n")
    stream.flush()
