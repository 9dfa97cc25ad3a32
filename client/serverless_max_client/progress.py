"""What a person sees: a progress bar on a terminal, plain periodic lines otherwise, and the summary."""

import asyncio
import time
from typing import Any, TextIO

from .runner import Runner


class Progress(object):
    """Redraws every `interval` seconds from the runner's counters (the workers never draw)."""

    def __init__(self, runner: Runner, stream: TextIO, bar: bool, interval: float):
        self.runner = runner
        self.stream = stream
        self.interval = interval
        self.bar: Any = None
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
            stats = self.runner.stats
            if stats.total is None and not stats.interrupted:
                stats.total = stats.done  # finished before the count (or stdin, never counted): all are done
            self.show()
            self.bar.close()
