"""gunicorn's gthread worker, with new connections going to the worker that has fewest.

Why: a keep-alive client stays on the worker that accepted its connection, and gunicorn lets
whichever worker wakes first accept. A burst of new connections (clients starting together)
often lands on one worker: measured with 8 wrk clients of 100-row requests on 2 workers, one
worker used 0.87 of a core and the other 0.04, so the sidecar scored on one core (one GIL) while
the other idled, and throughput was set by that one process.

Each worker publishes its open connections in a small table shared by the workers (created by
the gunicorn master before it forks them, `create_table`). A worker about to accept while another
live worker has fewer connections steps back for `ACCEPT_DEFER_SECONDS`, so that the other one
takes the connection; if it does not (busy, stopping), this worker accepts it after all (a lost
race is gunicorn's own EAGAIN). Balancing only delays an accept by a few milliseconds: it never
refuses or drops a connection, and without the table (not started by ``mlgov serve``) the worker
is gunicorn's gthread worker unchanged.
"""

from __future__ import annotations

import time
from multiprocessing.sharedctypes import RawArray
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

SLOTS = 64  # worker slots (by gunicorn's worker age); mlgov serve runs at most 64 workers
FIELDS = 3  # per slot: pid, open connections, last heartbeat (time.monotonic, system-wide)
STALE_SECONDS = 3.0  # a slot not refreshed for this long is a stopped worker (the loop wakes every second)
ACCEPT_DEFER_SECONDS = 0.02  # time for an idle worker to wake and take the connection, on a loaded machine too
_table: Any = None


def create_table() -> None:
    """The shared table; call in the gunicorn master before the workers are forked."""
    global _table
    _table = RawArray("d", SLOTS * FIELDS)


def fewer_elsewhere(table: Any, slot: int, mine: int, now: float) -> bool:
    """Whether a live worker other than ``slot`` has fewer than ``mine`` open connections."""
    for k in range(SLOTS):
        if k == slot:
            continue
        i = k * FIELDS
        if table[i] and now - table[i + 2] < STALE_SECONDS and table[i + 1] < mine:
            return True
    return False


class BalancedThreadWorker(ThreadWorker):
    """`ThreadWorker` that leaves a new connection to a less loaded worker (see the module docstring)."""

    _slot: int | None = None

    def init_process(self) -> None:
        self._slot = self.age % SLOTS if _table is not None else None
        super().init_process()

    def _publish(self) -> None:
        if self._slot is not None:
            i = self._slot * FIELDS
            _table[i + 1] = self.nr_conns
            _table[i + 2] = time.monotonic()
            _table[i] = self.pid

    def notify(self) -> None:
        super().notify()
        self._publish()

    def accept(self, listener: Any) -> None:
        if self._slot is not None and fewer_elsewhere(_table, self._slot, self.nr_conns, time.monotonic()):
            time.sleep(ACCEPT_DEFER_SECONDS)
        super().accept(listener)
        self._publish()


def forget(pid: int) -> None:
    """Clear the slot of a worker that exited (the master's ``child_exit``)."""
    if _table is None:
        return
    for k in range(SLOTS):
        if _table[k * FIELDS] == pid:
            _table[k * FIELDS] = 0
