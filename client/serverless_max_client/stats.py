"""What a run did, in numbers: the counters the runner keeps, the same read back from results files
(`serverless-max report`, e.g. over the shards of one job), and the closing summary."""

import array
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, TextIO

THROTTLE_STATUSES = (202, 429, 503)  # as attempt_log records them (see platforms.classify)


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


def from_results(paths: Iterable[str]) -> Stats:
    """The numbers of finished runs, from their results files (a torn last line is skipped)."""
    stats = Stats(started=float("inf"), finished=0.0)
    seen = set()  # attempts shared by a batch's lines count once (only batches: memory stays flat)
    for path in paths:
        with open(path, encoding="utf-8") as stream:
            for line in stream:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("status") == "ok":
                    stats.ok += 1
                    if record.get("latency_ms") is not None:
                        stats.latencies.append(record["latency_ms"] / 1000.0)
                else:
                    stats.failed += 1
                    stats.failure_kinds[record.get("error_kind") or "failed"] += 1
                for number, (start, end, outcome) in enumerate(record.get("attempt_log") or []):
                    if record.get("batch"):
                        key = (start, end, str(outcome))
                        if key in seen:
                            continue
                        seen.add(key)
                    stats.attempts += 1
                    stats.retries += number > 0
                    stats.busy_seconds += end - start
                    if outcome in THROTTLE_STATUSES:
                        stats.throttled += 1
                    if outcome != 200:
                        stats.signals["HTTP %s" % outcome if isinstance(outcome, int) else outcome] += 1
                    stats.started, stats.finished = min(stats.started, start), max(stats.finished, end)
    if stats.started == float("inf"):
        stats.started = stats.finished = time.time()
    return stats


def percentile(sorted_values: List[float], share: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(share * (len(sorted_values) - 1)))))
    return sorted_values[index]


def summary(stats: Stats, settled: Optional[float], results_path: str, stream: Optional[TextIO] = None) -> None:
    """The closing summary (also `serverless-max report`, where the limit the run settled at is unknown)."""
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
