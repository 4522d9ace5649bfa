"""Payload logging: every scored row into ``mlgov_payload``, off the request path, none lost.

A request hands its scored rows to the worker's `PayloadWriter` (a deque append: the request
never waits for the database). The writer's background thread turns them into table rows (the
features as scored, as one JSON object per row) and inserts them in batches through SQLAlchemy:
SQLite by default, PostgreSQL when several replicas share the table.

Nothing is lost:

* while the database cannot be written, batches go to a spool file of this worker process
  (JSON lines, ``payload-<pid>.jsonl`` in the spool directory, fsynced), and the database is
  tried again every ``retry_seconds``; once it answers, the spool is replayed and removed;
* spool files left by a worker that died are adopted (renamed, atomically, so one live worker
  gets each) and replayed the same way;
* the queue is flushed on shutdown (gunicorn's ``worker_exit`` hook and ``atexit``), to the
  database or to the spool;
* every insert skips rows whose ``request_id`` is already stored (``INSERT ... ON CONFLICT DO
  NOTHING`` on PostgreSQL and SQLite, ``INSERT IGNORE`` on MySQL), so a batch whose commit was
  lost with the connection, or a spool replayed twice, still leaves each row exactly once.

Feedback (true labels for earlier request ids) is written directly by `record_feedback`, after a
read that reports ids the payload table does not know.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from mlflow_governance.sidecar import schema

log = logging.getLogger(__name__)
SPOOL_NAME = re.compile(r"^payload-(\d+)(?:-[0-9a-f]+)?\.jsonl$")
READ_CHUNK = 500
ADOPT_SECONDS = 30.0  # how often a writer looks for spool files of stopped workers
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
_WRITERS: weakref.WeakSet[PayloadWriter] = weakref.WeakSet()
_ATEXIT = threading.Lock()
_atexit_registered = False


class PayloadDatabaseDown(Exception):
    """The payload database cannot be read or written right now."""


@dataclass
class Scored:
    """One request's scored rows, as the request path hands them over (converted by the writer)."""

    request_ids: list[str]
    ts: int
    model: str
    version: int
    staging: bool
    columns: dict[str, np.ndarray]
    prediction: np.ndarray
    probability: np.ndarray


def _plain(values: np.ndarray) -> list[Any]:
    """Array values as JSON-ready Python values, NaN as None."""
    out = values.tolist()
    if values.dtype.kind == "f" or values.dtype == object:
        return [None if isinstance(v, float) and v != v else v for v in out]
    return out


def default_replica() -> str:
    """This process as a payload row names it: host and process id."""
    return f"{socket.gethostname()} pid {os.getpid()}"[:128]


def rows_of(scored: Scored, replica: str | None = None) -> list[dict[str, Any]]:
    """The ``mlgov_payload`` rows of one request (answered by ``replica``)."""
    names = list(scored.columns)
    columns = [_plain(scored.columns[n]) for n in names]
    predictions = scored.prediction.tolist()
    probabilities = scored.probability.tolist()
    dumps = _ENCODER.encode
    return [
        {"request_id": rid, "ts": scored.ts, "model": scored.model, "version": scored.version,
         "staging": scored.staging, "features": dumps(dict(zip(names, (c[i] for c in columns), strict=True))),
         "prediction": int(predictions[i]), "probability": float(probabilities[i]), "replica": replica}
        for i, rid in enumerate(scored.request_ids)
    ]


def make_engine(url: str) -> sa.Engine:
    """An engine for the payload database: WAL and a busy timeout on SQLite, short connect timeouts."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 15, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # pragma: no cover - exercised through every test
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=15000")
            cursor.close()

        return engine
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        connect_args = {"connect_timeout": 3}
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4, pool_recycle=600,
                            connect_args=connect_args)


def insert_new(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], key: str = "request_id") -> None:
    """Insert ``rows``, skipping those whose ``key`` is already stored (one statement per batch)."""
    if not rows:
        return
    backend = conn.dialect.name
    if backend == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        conn.execute(insert(table).on_conflict_do_nothing(index_elements=[key]), rows)
    elif backend == "sqlite":
        from sqlalchemy.dialects.sqlite import insert

        conn.execute(insert(table).on_conflict_do_nothing(index_elements=[key]), rows)
    elif backend in ("mysql", "mariadb"):
        conn.execute(table.insert().prefix_with("IGNORE"), rows)
    else:
        column = table.c[key]
        present = set()
        for start in range(0, len(rows), READ_CHUNK):
            chunk = [r[key] for r in rows[start:start + READ_CHUNK]]
            present.update(conn.execute(sa.select(column).where(column.in_(chunk))).scalars())
        conn.execute(table.insert(), [r for r in rows if r[key] not in present])


def known_ids(engine: sa.Engine, request_ids: Iterable[str]) -> set[str]:
    """Which of ``request_ids`` the payload table holds."""
    ids = list(dict.fromkeys(request_ids))
    found: set[str] = set()
    column = schema.payload.c.request_id
    with engine.connect() as conn:
        for start in range(0, len(ids), READ_CHUNK):
            found.update(conn.execute(sa.select(column).where(column.in_(ids[start:start + READ_CHUNK]))).scalars())
    return found


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _short(exc: BaseException) -> str:
    """What went wrong, without a database error's text (SQL, parameters) in it."""
    from mlflow_governance.errors import leaks_database_text

    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return f"{type(exc).__name__} (details in the sidecar log)" if leaks_database_text(text) else text[:200]


class PayloadWriter:
    """Batches scored rows into the payload table from one background thread per worker process."""

    def __init__(
        self,
        url: str,
        spool_dir: str | Path,
        *,
        batch_rows: int = 1000,
        flush_seconds: float = 0.2,
        retry_seconds: float = 1.0,
        on_logged: Callable[[int], None] | None = None,
        on_spool: Callable[[int], None] | None = None,
    ):
        self.url = url
        self.spool_dir = Path(spool_dir)
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.retry_seconds = retry_seconds
        self.on_logged = on_logged or (lambda n: None)
        self.on_spool = on_spool or (lambda n: None)
        self.engine = make_engine(url)
        self._queue: deque[Scored] = deque()
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._submitted = 0
        self._handled = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._schema_ready = False
        self.down_since: float | None = None
        self.last_error: str | None = None
        self._next_try = 0.0
        self._next_adopt = 0.0
        self.spool_rows = 0
        self.logged_rows = 0

    # --- the request path ----------------------------------------------------------------

    def submit(self, scored: Scored) -> None:
        """Queue one request's rows (never blocks on the database)."""
        with self._lock:
            self._queue.append(scored)
            self._submitted += 1

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> PayloadWriter:
        global _atexit_registered
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlgov-payload-writer", daemon=True)
            self._thread.start()
            _WRITERS.add(self)
            with _ATEXIT:
                if not _atexit_registered:
                    atexit.register(close_all)
                    _atexit_registered = True
        return self

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is in the database or the spool."""
        deadline = time.monotonic() + timeout
        with self._done:
            target = self._submitted
            self._wake.set()
            while self._handled < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._done.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 20.0) -> None:
        """Stop the thread after a last flush (to the database, else the spool). Idempotent."""
        if self._thread is None or os.getpid() != self._pid:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("payload writer did not finish within %.0fs; %d request(s) still queued", timeout,
                      len(self._queue))
        self._thread = None
        self.engine.dispose()

    @property
    def pending(self) -> int:
        """Requests queued and not yet handled."""
        return self._submitted - self._handled

    @property
    def database_up(self) -> bool:
        return self.down_since is None

    def state(self) -> dict[str, Any]:
        """For ``/status``: the database (password hidden), its state, queue and spool sizes."""
        return {
            "database": sa.make_url(self.url).render_as_string(hide_password=True),
            "database_up": self.database_up,
            "down_since": None if self.down_since is None else int(self.down_since * 1000),
            "last_error": self.last_error,
            "pending_requests": self.pending,
            "spool_rows": self.spool_rows,
            "rows_logged": self.logged_rows,
        }

    # --- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            if not stopping:
                self._wake.wait(self.flush_seconds)
                self._wake.clear()
            try:
                self._cycle(final=stopping)
            except Exception:  # noqa: BLE001 - the writer must outlive any one bad batch
                log.exception("payload writer cycle failed")
            if stopping:
                return

    def _take(self) -> tuple[list[Scored], int]:
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
        return items, len(items)

    def _handled_now(self, n: int) -> None:
        with self._done:
            self._handled += n
            self._done.notify_all()

    def _cycle(self, final: bool = False) -> None:
        items, n = self._take()
        if time.monotonic() >= self._next_adopt:
            self._next_adopt = time.monotonic() + ADOPT_SECONDS
            self._adopt_orphans()
        if self.spool_rows and self._due():
            self._replay()
        rows: list[dict[str, Any]] = []
        for item in items:
            try:
                rows.extend(rows_of(item, default_replica()))  # this process, after any fork
            except Exception:  # noqa: BLE001 - a row that cannot be encoded is a bug, not a reason to lose the rest
                log.exception("could not encode scored rows %s", item.request_ids[:3])
        for start in range(0, len(rows), self.batch_rows):
            self._write(rows[start:start + self.batch_rows])
        self._handled_now(n)
        if final and self.spool_rows:
            log.warning("payload database unavailable at shutdown: %d row(s) stay in %s for the next start",
                        self.spool_rows, self.spool_dir)

    def _due(self) -> bool:
        return self.down_since is None or time.monotonic() >= self._next_try

    def _write(self, rows: list[dict[str, Any]]) -> None:
        if not self._due():
            self._spool(rows)
            return
        try:
            self._insert(rows)
        except Exception as exc:  # noqa: BLE001 - any database failure sends the batch to the spool
            self._spool(rows)
            self._failed(exc)

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        if not self._schema_ready:
            schema.create_all(self.engine)
            self._schema_ready = True
        with self.engine.begin() as conn:
            insert_new(conn, schema.payload, rows)
        self.logged_rows += len(rows)
        self.on_logged(len(rows))
        if self.down_since is not None:
            log.warning("payload database reachable again after %.1fs", time.monotonic() - self.down_since)
        self.down_since = None

    def _failed(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning("payload database unavailable (%s): spooling to %s", _short(exc), self.spool_dir)
        self.last_error = _short(exc)
        self._next_try = time.monotonic() + self.retry_seconds
        try:
            self.engine.dispose()
        except Exception:  # noqa: BLE001 - a broken pool is dropped either way
            pass

    # --- the spool -----------------------------------------------------------------------

    def _own_spool(self) -> Path:
        return self.spool_dir / f"payload-{self._pid}.jsonl"

    def _spool_files(self) -> list[Path]:
        if not self.spool_dir.is_dir():
            return []
        mine = []
        for path in self.spool_dir.iterdir():
            m = SPOOL_NAME.match(path.name)
            if m and int(m.group(1)) == self._pid:
                mine.append(path)
        return sorted(mine)

    def _spool(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
        with open(self._own_spool(), "a", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        self.spool_rows += len(rows)
        self.on_spool(self.spool_rows)

    def _adopt_orphans(self) -> None:
        """Take over spool files of worker processes that no longer run (rename: one adopter wins)."""
        if not self.spool_dir.is_dir():
            return
        for path in sorted(self.spool_dir.iterdir()):
            m = SPOOL_NAME.match(path.name)
            if not m or int(m.group(1)) == self._pid or _pid_alive(int(m.group(1))):
                continue
            target = self.spool_dir / f"payload-{self._pid}-{uuid.uuid4().hex[:8]}.jsonl"
            try:
                os.rename(path, target)
            except OSError:
                continue  # another worker adopted it first
            with open(target, encoding="utf-8") as f:
                count = sum(1 for _ in f)
            self.spool_rows += count
            log.warning("adopted %d spooled row(s) of stopped worker %s", count, m.group(1))
        self.on_spool(self.spool_rows)

    def _replay(self) -> None:
        """Insert every spooled row (duplicates skipped); files are removed once fully stored."""
        for path in self._spool_files():
            rows: list[dict[str, Any]] = []
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    try:
                        rows.append({"replica": None, **json.loads(line)})  # spooled by an older release
                    except ValueError:
                        log.error("skipping torn line %d of %s", lineno, path)
            try:
                for start in range(0, len(rows), self.batch_rows):
                    self._insert(rows[start:start + self.batch_rows])
            except Exception as exc:  # noqa: BLE001 - still down: keep the file, try later
                self._failed(exc)
                return
            path.unlink()
            self.spool_rows = max(0, self.spool_rows - len(rows))
            self.on_spool(self.spool_rows)
            log.warning("replayed %d spooled row(s) from %s", len(rows), path.name)
        self._adopt_orphans()

    # --- feedback ------------------------------------------------------------------------

    def record_feedback(self, items: list[tuple[str, int]], ts: int | None = None) -> tuple[int, list[str]]:
        """Store the labels of known request ids; (accepted, unknown ids). Raises PayloadDatabaseDown.

        Rows scored a moment ago may still be on their way (this worker's queue, another worker's):
        ids not found are looked up once more after this worker's queue is flushed and one flush
        interval has passed.
        """
        ids = [rid for rid, _ in items]
        try:
            if not self._schema_ready:
                schema.create_all(self.engine)
                self._schema_ready = True
            known = known_ids(self.engine, ids)
            if len(known) < len(set(ids)):
                self.flush(timeout=2.0)
                time.sleep(self.flush_seconds * 2)
                known = known_ids(self.engine, ids)
            stamp = int(time.time() * 1000) if ts is None else ts
            rows = [{"request_id": rid, "ts": stamp, "label": label} for rid, label in items if rid in known]
            if rows:
                with self.engine.begin() as conn:
                    conn.execute(schema.feedback.insert(), rows)
        except sa.exc.SQLAlchemyError as exc:
            raise PayloadDatabaseDown(_short(exc)) from exc
        unknown = list(dict.fromkeys(rid for rid in ids if rid not in known))
        return len(rows), unknown


def close_all() -> None:
    """Flush and stop every writer of this process (gunicorn's worker_exit hook, atexit)."""
    for writer in list(_WRITERS):
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - shutting down: report and go on with the others
            log.exception("payload writer did not close cleanly")
