"""How many requests may be in flight: additive increase, multiplicative decrease (AIMD), as TCP does.

The limit starts at -j and never goes above it, nor above a limit the platform names (OpenWhisk's
429 says "allowed: M"). A throttle ("not now": 429, 503...) halves it, once
per round of requests: answers to requests that were sent before the last cut say nothing new, so
they do not cut again. Every success adds 1/limit, about one more request per round trip. A
Retry-After pauses every new request until then. The run so settles just under the platform's limit.
"""

import asyncio
import time
from typing import List, Optional, Tuple

DECREASE = 0.5
HISTORY_STEP = 0.25


class Limiter(object):
    def __init__(self, ceiling: int):
        self.ceiling = float(ceiling)
        self.limit = float(ceiling)
        self.in_flight = 0
        self.last_cut = 0.0
        self.paused_until = 0.0
        self.cuts = 0
        self.history: List[Tuple[float, float]] = []  # (time, limit) after each change
        self._changed = asyncio.Condition()

    def allowed(self) -> int:
        return max(1, int(self.limit))

    async def acquire(self) -> float:
        """Wait for a slot; the time the request starts."""
        async with self._changed:
            while True:
                now = time.time()
                if now < self.paused_until:
                    try:
                        await asyncio.wait_for(self._changed.wait(), self.paused_until - now)
                    except asyncio.TimeoutError:
                        pass
                    continue
                if self.in_flight < self.allowed():
                    self.in_flight += 1
                    return now
                await self._changed.wait()

    async def release(self, started: float, throttled: bool, succeeded: bool,
                      retry_after: Optional[float] = None, allowed: Optional[int] = None) -> None:
        async with self._changed:
            self.in_flight -= 1
            now = time.time()
            if allowed is not None and 1 <= allowed < self.ceiling:
                # The platform named its limit: more in flight can never pass, and that many may. This
                # throttle's cut is to that limit, not by half.
                self.ceiling = float(allowed)
                self.limit = min(self.limit, self.ceiling)
                self.last_cut = now
                self._record(now, always=True)
            elif throttled and started >= self.last_cut:
                self.limit = max(1.0, self.limit * DECREASE)
                self.last_cut = now
                self.cuts += 1
                self._record(now, always=True)
            if throttled:
                if retry_after:
                    self.paused_until = max(self.paused_until, now + retry_after)
            elif succeeded and self.limit < self.ceiling:
                self.limit = min(self.ceiling, self.limit + 1.0 / self.limit)
                self._record(now)
            self._changed.notify_all()

    def _record(self, now: float, always: bool = False) -> None:
        # Growth is recorded at most every HISTORY_STEP seconds: the history stays small on a long run.
        if always or not self.history or now - self.history[-1][0] >= HISTORY_STEP:
            self.history.append((now, self.limit))
        else:
            self.history[-1] = (self.history[-1][0], self.limit)

    def settled(self, since: float) -> float:
        """The limit's time-weighted mean from `since` to now: the concurrency the run settled at."""
        now = time.time()
        if now <= since:
            return self.limit
        points = [(t, limit) for t, limit in self.history if t > since]
        before = [limit for t, limit in self.history if t <= since]
        current = before[-1] if before else self.ceiling
        total, last = 0.0, since
        for t, limit in points:
            total += current * (t - last)
            current, last = limit, t
        total += current * (now - last)
        return total / (now - since)
