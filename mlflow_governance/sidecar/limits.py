"""How much explanation traffic one worker takes: a rate per caller and a bounded queue.

An explanation costs a core for up to seconds (SHAP over thousands of masked rows), a score a few
milliseconds. Without bounds, a few callers looping on ``/explain`` kept every worker thread busy:
scoring latency tripled and a legitimate explanation waited 14 s. So each worker admits

* at most ``per_minute`` explanation requests per caller (a token bucket refilled continuously),
* one running explanation and at most ``queue`` waiting behind it;

anything beyond is answered 429 at once with ``Retry-After`` (`Busy`), so a thread is never held
waiting for its turn longer than the queue allows and scoring keeps its threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

BUCKETS = 10_000  # callers remembered per worker; the idlest are forgotten first


class Busy(Exception):
    """An explanation refused for now: ``retry_after`` seconds, and why."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.message = message
        self.retry_after = max(1, int(retry_after))


class ExplainAdmission:
    """Per-caller rate and bounded queue of one worker's explanations (see the module docstring)."""

    def __init__(self, per_minute: int, queue: int):
        self.per_minute = per_minute
        self.queue = queue
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, last refill)
        self._inside = 0  # running + waiting
        self._seconds = 1.0  # moving average of one explanation, for Retry-After

    def _take(self, caller: str, now: float) -> float | None:
        rate = self.per_minute / 60.0
        tokens, last = self._buckets.pop(caller, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * rate)
        if tokens < 1.0:
            self._buckets[caller] = (tokens, now)
            return (1.0 - tokens) / rate
        self._buckets[caller] = (tokens - 1.0, now)  # re-inserted: the dict keeps recent callers last
        while len(self._buckets) > BUCKETS:
            self._buckets.pop(next(iter(self._buckets)))
        return None

    @contextmanager
    def admitted(self, caller: str | None) -> Iterator[None]:
        """Hold one place for an explanation of ``caller``; `Busy` when over its rate or the queue is full."""
        now = time.monotonic()
        with self._lock:
            wait = self._take(caller or "(anonymous)", now)
            if wait is not None:
                raise Busy(f"at most {self.per_minute} explanations a minute per caller on this replica: try again "
                           "later", int(wait + 0.999))
            if self._inside > self.queue:
                raise Busy(f"{self._inside} explanations are running or waiting on this replica (at most "
                           f"{self.queue + 1}): try again later", int(self._inside * self._seconds + 0.999))
            self._inside += 1
        started = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - started
            with self._lock:
                self._inside -= 1
                self._seconds = 0.8 * self._seconds + 0.2 * took

    @property
    def inside(self) -> int:
        return self._inside
