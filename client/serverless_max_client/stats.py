"""What a run did, in numbers: the counters the runner keeps, and the closing summary."""

import array
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import List, Optional, TextIO

@dataclass
class Stats:
    started: float = field(default_factory=time.time)
    finished: Optional[float] = None
    ok: int = 0
    failed: int = 0
    attempts: int = 0
    retries: int = 0
    throttled: int = 0
    busy_seconds: float = 0.0     # the attempts' durations summed: over the run's time, the mean in flight
    failure_kinds: Counter = field(default_factory=Counter)
    signals: Counter = field(default_factory=Counter)
    latencies: array.array = field(default_factory=lambda: array.array("d"))
    total: Optional[int] = None   # inputs to do, once counted (progress bar)
    interrupted: bool = False

    @property
    def done(self) -> int:
        return self.ok + self.failed


def percentile(sorted_values: List[float], share: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(share * (len(sorted_values) - 1)))))
    return sorted_values[index]


def summary(stats: Stats, settled: Optional[float], results_path: str, stream: Optional[TextIO] = None) -> None:
    """The closing summary; `settled` is the limit the run settled at."""
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
    concurrency = "concurrency settled at %.1f " % settled if settled is not None else ""
    lines.append("requests: %d sent, %d retried, %d throttled (%.1f%%); %s(mean in flight %.1f)"
                 % (stats.attempts, stats.retries, stats.throttled, 100 * share, concurrency,
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
