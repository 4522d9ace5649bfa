"""Micro-batching (`MicroBatcher`): concurrent requests of one worker's threads scored in one
``predict``, at most `BATCH_MAX_ROWS` rows.

With ``batch_window_ms`` > 0 and a threaded worker, the app scores through a `MicroBatcher`: the
first request waits at most the window, and only while other requests are on their way, so a
lone request is never delayed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from mlflow_governance.scoring.decision import score
from mlflow_governance.sidecar import bodies
from mlflow_governance.sidecar.models import ServedModel

# Rows one micro-batch scores at most: predict's cost per row stays flat up to a few hundred rows
# (a gradient boosting pipeline: 5.9 ms for 100, 8.5 ms for 400, 19 ms for 800), beyond that a big
# batch only lengthens the wait of every request in it.
BATCH_MAX_ROWS = 500


class _Slot:
    __slots__ = ("served", "rows", "result", "error", "done")

    def __init__(self, served: ServedModel, rows: bodies.Rows):
        self.served, self.rows = served, rows
        self.result: tuple[np.ndarray, np.ndarray] | None = None
        self.error: BaseException | None = None
        self.done = False

    def outcome(self) -> tuple[np.ndarray, np.ndarray]:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class MicroBatcher:
    """Scores concurrent requests of one worker in one ``predict`` (adaptive, leader-follower).

    A request that reaches scoring joins the queue; if no request is leading, it leads: it waits
    up to ``window`` seconds, but only while other requests have arrived and not yet reached
    scoring (so a lone request is never delayed), then scores every queued request of its model
    version at once and hands each its share. Requests that queue while a batch is scored form
    the next batch. A failing batch is scored request by request, so one bad request cannot fail
    the others.
    """

    def __init__(self, window_seconds: float, max_rows: int = BATCH_MAX_ROWS,
                 on_batch: Callable[[int], None] | None = None):
        self.window = window_seconds
        self.max_rows = max_rows
        self.on_batch = on_batch or (lambda n: None)
        self._cond = threading.Condition()
        self._queue: list[_Slot] = []
        self._leading = False
        self._coming = 0  # requests in the handler that have not reached scoring yet
        self._local = threading.local()

    def enter(self) -> None:
        with self._cond:
            self._coming += 1
        self._local.coming = True

    def leave(self) -> None:
        if getattr(self._local, "coming", False):
            self._arrived()

    def _arrived(self) -> None:
        self._local.coming = False
        with self._cond:
            self._coming -= 1
            self._cond.notify_all()

    def score(self, served: ServedModel, rows: bodies.Rows) -> tuple[np.ndarray, np.ndarray]:
        slot = _Slot(served, rows)
        if getattr(self._local, "coming", False):
            self._arrived()
        with self._cond:
            self._queue.append(slot)
            self._cond.notify_all()
            while self._leading and not slot.done:
                self._cond.wait()
            if slot.done:
                return slot.outcome()
            self._leading = True
            deadline = time.monotonic() + self.window
            while self._coming > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, rest, total = [slot], [], slot.rows.count
            for other in self._queue:
                if other is slot:
                    continue
                if other.served is served and total + other.rows.count <= self.max_rows:
                    batch.append(other)
                    total += other.rows.count
                else:
                    rest.append(other)
            self._queue = rest
        try:
            self.on_batch(len(batch))
            self._score_batch(served, batch)
        finally:
            with self._cond:
                for done in batch:
                    done.done = True
                self._leading = False
                self._cond.notify_all()
        return slot.outcome()

    @staticmethod
    def _score_batch(served: ServedModel, batch: list[_Slot]) -> None:
        if len(batch) == 1:
            one = batch[0]
            try:
                one.result = score(served.estimator, one.rows.frame())
            except Exception as exc:  # noqa: BLE001 - handed to the request that owns it
                one.error = exc
            return
        names = list(batch[0].rows.columns)
        merged = bodies.Rows({n: np.concatenate([s.rows.columns[n] for s in batch]) for n in names},
                             sum(s.rows.count for s in batch))
        try:
            prediction, probability = score(served.estimator, merged.frame())
        except Exception:  # noqa: BLE001 - find the request at fault: score each alone
            for one in batch:
                MicroBatcher._score_batch(served, [one])
            return
        start = 0
        for one in batch:
            end = start + one.rows.count
            one.result = (prediction[start:end], probability[start:end])
            start = end
