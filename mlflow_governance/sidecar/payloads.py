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
  lost with the connection, or a spool replayed twice, still leaves each row exactly once;
* when a batch can be neither written nor spooled (the database refuses it and the spool cannot
  be written), its rows stay in this process's memory and are tried again every cycle, and the
  writer *fails closed*: `refusal` names why and `submit` raises `PayloadsUnavailable` (the
  sidecar answers 503: a request is never answered as logged when its rows could not be kept),
  until a write or a spool succeeds again. No new rows come in meanwhile, so what is held is
  bounded by what was queued when it started.

Every row names the caller who had it scored (`Scored.caller`, None in ``--no-auth`` mode).

Feedback (true labels for earlier request ids) is written directly by `record_feedback`, after a
read that reports ids the payload table does not know: one label per request id, all or nothing
per request (`FeedbackConflict`), each naming its labeller; `correct_feedback` replaces a label,
keeping the one it replaces with who, when and why (see `schema`).

What `state` shows (``/status``) names no host, user, database name, driver or database error
text: the dialect, and a fixed phrase for what went wrong (`DOWN_UNREACHABLE`, `DOWN_REFUSED`);
the error itself goes to the sidecar's log only.
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
from collections import Counter, deque
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


DOWN_UNREACHABLE = "cannot be reached"
DOWN_REFUSED = "refused the write"
REFUSAL = "scored rows can be neither stored in the payload database nor spooled"
FINAL_RETRY_SECONDS = 5.0  # at shutdown, how long rows held in memory are tried again
# What a database error says when the database answered but would not take the rows.
_REFUSED_WORDS = re.compile(r"read.?only|permission|denied|disk.*full|no space|quota|readonly|locked|constraint",
                            re.IGNORECASE)


class PayloadDatabaseDown(Exception):
    """The payload database cannot be read or written right now (the message is a fixed phrase)."""


class PayloadsUnavailable(Exception):
    """The writer cannot keep scored rows right now (database and spool both failing): the request
    must be refused, its rows were not taken."""


class FeedbackConflict(Exception):
    """A feedback request names request ids that already have a label, or one id twice; nothing of
    the request was stored. ``ids``: those ids."""

    def __init__(self, ids: list[str]):
        self.ids = list(ids)
        shown = ", ".join(self.ids[:5]) + (f" and {len(self.ids) - 5} more" if len(self.ids) > 5 else "")
        super().__init__(f"already labelled or named twice in the request: {shown}")


def down_phrase(exc: BaseException) -> str:
    """The fixed phrase for a database failure: `DOWN_REFUSED` when the database answered and
    would not take the write, else `DOWN_UNREACHABLE`."""
    if isinstance(exc, (sa.exc.IntegrityError, sa.exc.DataError, sa.exc.ProgrammingError)):
        return DOWN_REFUSED
    text = str(getattr(exc, "orig", None) or exc)
    return DOWN_REFUSED if _REFUSED_WORDS.search(text) else DOWN_UNREACHABLE


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
    caller: str | None = None  # who had them scored (the authenticated user; None: --no-auth)


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
         "prediction": int(predictions[i]), "probability": float(probabilities[i]), "replica": replica,
         "caller": scored.caller}
        for i, rid in enumerate(scored.request_ids)
    ]


def make_engine(url: str) -> sa.Engine:
    """An engine for the payload database: WAL and a busy timeout on SQLite, short connect timeouts."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
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
    from mlflow_governance.core.errors import leaks_database_text

    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return f"{type(exc).__name__} (details in the sidecar log)" if leaks_database_text(text) else text[:200]


class _Raced(Exception):
    """Another writer changed the current label between this one's read and its write."""


def current_labels(conn: sa.Connection, request_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
    """The current label of each of ``request_ids`` that has one: ``{request_id: (seq, label)}``."""
    f = schema.feedback
    ids = list(dict.fromkeys(request_ids))
    found: dict[str, tuple[int, int]] = {}
    for start in range(0, len(ids), READ_CHUNK):
        query = (sa.select(f.c.request_id, f.c.seq, f.c.label)
                 .where(f.c.request_id.in_(ids[start:start + READ_CHUNK]), f.c.superseded_by.is_(None))
                 .order_by(f.c.seq))
        for row in conn.execute(query):
            found[row.request_id] = (int(row.seq), int(row.label))
    return found


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
        self.dialect = self.engine.dialect.name  # all that /status says about the database
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
        self.last_error: str | None = None  # a fixed phrase (DOWN_UNREACHABLE, DOWN_REFUSED)
        self._next_try = 0.0
        self._next_adopt = 0.0
        self.spool_rows = 0
        self.logged_rows = 0
        # Rows of requests that could be neither stored nor spooled, one list per request, in order.
        self._held: list[list[dict[str, Any]]] = []
        self.held_rows = 0
        self._refusal: str | None = None
        self._spool_broken = False

    # --- the request path ----------------------------------------------------------------

    def submit(self, scored: Scored) -> None:
        """Queue one request's rows (never blocks on the database); `PayloadsUnavailable` while the
        writer cannot keep rows (see `refusal`): the request must then be refused."""
        with self._lock:
            if self._refusal is not None:
                raise PayloadsUnavailable(self._refusal)
            self._queue.append(scored)
            self._submitted += 1

    def refusal(self) -> str | None:
        """Why scored rows are not accepted now (a short fixed sentence), None while they are."""
        return self._refusal

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
        """Requests accepted whose rows are neither stored nor spooled yet (queued or held)."""
        return self._submitted - self._handled

    @property
    def database_up(self) -> bool:
        return self.down_since is None

    def state(self) -> dict[str, Any]:
        """For ``/status``: the database's dialect (no host, user, name or driver), its state as a
        fixed phrase, whether rows are accepted, queue, memory and spool sizes."""
        return {
            "database": self.dialect,
            "database_up": self.database_up,
            "down_since": None if self.down_since is None else int(self.down_since * 1000),
            "last_error": self.last_error,
            "spool_writable": not self._spool_broken,
            "accepting": self._refusal is None,
            "refusal": self._refusal,
            "pending_requests": self.pending,
            "held_rows": self.held_rows,
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

    def _take(self) -> list[Scored]:
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
        return items

    def _handled_now(self, n: int) -> None:
        if not n:
            return
        with self._done:
            self._handled += n
            self._done.notify_all()

    def _cycle(self, final: bool = False) -> None:
        if time.monotonic() >= self._next_adopt:
            self._next_adopt = time.monotonic() + ADOPT_SECONDS
            self._adopt_orphans()
        if self.spool_rows and self._due():
            self._replay()
        items = self._take()
        parcels, self._held = self._held, []
        handled = 0
        for item in items:
            try:
                rows = rows_of(item, default_replica())  # this process, after any fork
            except Exception:  # noqa: BLE001 - a row that cannot be encoded is a bug, not a reason to lose the rest
                log.exception("could not encode scored rows %s", item.request_ids[:3])
                rows = []
            if rows:
                parcels.append(rows)
            else:
                handled += 1
        held, done = self._deliver(parcels)
        handled += done
        if final and held:  # the last chance: try the database again for a few seconds
            deadline = time.monotonic() + FINAL_RETRY_SECONDS
            while held and time.monotonic() < deadline:
                time.sleep(min(self.retry_seconds, 0.5))
                self._next_try = 0.0
                held, done = self._deliver(held)
                handled += done
        self._hold(held)
        self._handled_now(handled)
        if final and held:
            log.error("payload writer stopping: %d scored row(s) of %d request(s) could be neither stored nor "
                      "spooled and are lost", self.held_rows, len(held))
        if final and self.spool_rows:
            log.warning("payload database unavailable at shutdown: %d row(s) stay in %s for the next start",
                        self.spool_rows, self.spool_dir)

    def _deliver(self, parcels: list[list[dict[str, Any]]]) -> tuple[list[list[dict[str, Any]]], int]:
        """Write the rows of ``parcels`` (one non-empty list per request) in batches of
        ``batch_rows``, to the database or the spool; (what could be neither, one list per request
        not wholly delivered, in order; requests wholly delivered). Stops at the first batch that
        could be neither written nor spooled."""
        handled = 0
        batch: list[tuple[int, int, list[dict[str, Any]]]] = []  # (parcel, offset in it, rows)
        size = 0
        for i, rows in enumerate(parcels):
            offset = 0
            while offset < len(rows):
                chunk = rows[offset:offset + self.batch_rows - size]
                batch.append((i, offset, chunk))
                size += len(chunk)
                offset += len(chunk)
                last = i == len(parcels) - 1 and offset == len(rows)
                if size >= self.batch_rows or last:
                    if not self._write([r for _, _, c in batch for r in c]):
                        # Each request of the batch keeps its rows from its chunk in the batch on.
                        unsent = [parcels[j][start:] for j, start, _ in batch]
                        return unsent + parcels[i + 1:], handled
                    handled += len(batch) - (0 if offset == len(rows) else 1)
                    batch, size = [], 0
        return [], handled

    def _hold(self, held: list[list[dict[str, Any]]]) -> None:
        """Keep ``held`` in memory, and refuse new rows while there is any."""
        rows = sum(len(p) for p in held)
        with self._lock:
            self._held = held
            self.held_rows = rows
            was = self._refusal
            self._refusal = REFUSAL if held else None
        if held and was is None:
            log.error("payload rows can be neither stored nor spooled: %d row(s) kept in memory and tried again; "
                      "scoring requests are refused (503) until the database or the spool takes rows again", rows)
        elif not held and was is not None:
            log.warning("payload rows are stored or spooled again: scoring requests are accepted")

    def _due(self) -> bool:
        return self.down_since is None or time.monotonic() >= self._next_try

    def _write(self, rows: list[dict[str, Any]]) -> bool:
        """Store ``rows`` in the database, else in the spool; False when neither took them."""
        if self._due():
            try:
                self._insert(rows)
                return True
            except Exception as exc:  # noqa: BLE001 - any database failure sends the batch to the spool
                self._failed(exc)
        return self._spool(rows)

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
        phrase = down_phrase(exc)
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning("payload database %s (%s): spooling to %s", phrase, _short(exc), self.spool_dir)
        self.last_error = phrase
        self._next_try = time.monotonic() + self.retry_seconds
        try:
            self.engine.dispose()
        except Exception:  # noqa: BLE001 - a broken pool is dropped either way
            pass

    # --- the spool -----------------------------------------------------------------------

    def _own_spool(self) -> Path:
        return self.spool_dir / f"payload-{self._pid}.jsonl"

    def _spool_files(self) -> list[Path]:
        mine = []
        try:
            if not self.spool_dir.is_dir():
                return []
            for path in self.spool_dir.iterdir():
                m = SPOOL_NAME.match(path.name)
                if m and int(m.group(1)) == self._pid:
                    mine.append(path)
        except OSError:
            return []
        return sorted(mine)

    def _spool_failed(self, exc: OSError) -> None:
        if not self._spool_broken:
            self._spool_broken = True
            log.warning("payload spool %s cannot be written (%s): rows the database does not take stay in memory",
                        self.spool_dir, exc.strerror or type(exc).__name__)

    def _spool(self, rows: list[dict[str, Any]]) -> bool:
        """Append ``rows`` to this process's spool file (fsynced); False (one warning) when the spool
        cannot be written, the file then left as it was."""
        if not rows:
            return True
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode("utf-8")
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._own_spool(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            self._spool_failed(exc)
            return False
        try:
            start = os.fstat(fd).st_size
            try:
                view = memoryview(text)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as exc:
                try:
                    os.ftruncate(fd, start)  # no torn or half-written batch stays behind
                except OSError:
                    pass
                self._spool_failed(exc)
                return False
        finally:
            os.close(fd)
        if self._spool_broken:
            self._spool_broken = False
            log.warning("payload spool %s can be written again", self.spool_dir)
        self.spool_rows += len(rows)
        self.on_spool(self.spool_rows)
        return True

    def _adopt_orphans(self) -> None:
        """Take over spool files of worker processes that no longer run (rename: one adopter wins)."""
        try:
            if not self.spool_dir.is_dir():
                return
            paths = sorted(self.spool_dir.iterdir())
        except OSError:
            return
        for path in paths:
            m = SPOOL_NAME.match(path.name)
            if not m or int(m.group(1)) == self._pid or _pid_alive(int(m.group(1))):
                continue
            target = self.spool_dir / f"payload-{self._pid}-{uuid.uuid4().hex[:8]}.jsonl"
            try:
                os.rename(path, target)
            except OSError:
                continue  # another worker adopted it first
            try:
                with open(target, encoding="utf-8") as f:
                    count = sum(1 for _ in f)
            except OSError as exc:
                log.warning("cannot read adopted spool file %s (%s)", target.name, exc.strerror or type(exc).__name__)
                continue
            self.spool_rows += count
            log.warning("adopted %d spooled row(s) of stopped worker %s", count, m.group(1))
        self.on_spool(self.spool_rows)

    def _replay(self) -> None:
        """Insert every spooled row (duplicates skipped); files are removed once fully stored."""
        for path in self._spool_files():
            rows: list[dict[str, Any]] = []
            try:
                with open(path, encoding="utf-8") as f:
                    for lineno, line in enumerate(f, 1):
                        try:
                            # replica and caller absent: spooled by an older release
                            rows.append({"replica": None, "caller": None, **json.loads(line)})
                        except ValueError:
                            log.error("skipping torn line %d of %s", lineno, path)
            except OSError as exc:
                log.warning("cannot read spool file %s (%s)", path.name, exc.strerror or type(exc).__name__)
                continue
            try:
                for start in range(0, len(rows), self.batch_rows):
                    self._insert(rows[start:start + self.batch_rows])
            except Exception as exc:  # noqa: BLE001 - still down: keep the file, try later
                self._failed(exc)
                return
            try:
                path.unlink()
            except OSError as exc:  # replayed again later: every row is skipped as already stored
                log.warning("cannot remove replayed spool file %s (%s)", path.name, exc.strerror or type(exc).__name__)
                continue
            self.spool_rows = max(0, self.spool_rows - len(rows))
            self.on_spool(self.spool_rows)
            log.warning("replayed %d spooled row(s) from %s", len(rows), path.name)
        self._adopt_orphans()

    # --- feedback ------------------------------------------------------------------------

    def _ready(self) -> None:
        if not self._schema_ready:
            schema.create_all(self.engine)
            self._schema_ready = True

    def _known(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` are scored rows. Rows scored a moment ago may still be on their way (this
        worker's queue, another worker's): ids not found are looked up once more after this
        worker's queue is flushed and one flush interval has passed."""
        known = known_ids(self.engine, ids)
        if len(known) < len(set(ids)):
            self.flush(timeout=2.0)
            time.sleep(self.flush_seconds * 2)
            known = known_ids(self.engine, ids)
        return known

    def record_feedback(self, items: list[tuple[str, int]], labeller: str | None,
                        ts: int | None = None) -> tuple[int, list[str]]:
        """Store the labels of known request ids, given by ``labeller``; (accepted, unknown ids).

        One label per request id: when an id of ``items`` already has a label, or ``items`` names
        an id twice, `FeedbackConflict` names them and nothing of the request is stored (a label
        is changed only by `correct_feedback`). All labels of a request are stored in one
        transaction; the database's unique index on the current label turns a concurrent first
        label for the same id (another worker, another replica) into the same conflict.
        Raises `PayloadDatabaseDown` when the database cannot be read or written.
        """
        ids = [rid for rid, _ in items]
        twice = [rid for rid, n in Counter(ids).items() if n > 1]
        if twice:
            raise FeedbackConflict(twice)
        try:
            self._ready()
            known = self._known(ids)
            stamp = int(time.time() * 1000) if ts is None else int(ts)
            rows = [{"request_id": rid, "ts": stamp, "label": int(label), "labeller": labeller}
                    for rid, label in items if rid in known]
            if rows:
                wanted = [r["request_id"] for r in rows]
                try:
                    with self.engine.begin() as conn:
                        labelled = current_labels(conn, wanted)
                        if labelled:
                            raise FeedbackConflict([rid for rid in wanted if rid in labelled])
                        conn.execute(schema.feedback.insert(), rows)
                except sa.exc.IntegrityError:  # labelled concurrently, between the check and the insert
                    with self.engine.connect() as conn:
                        labelled = current_labels(conn, wanted)
                    raise FeedbackConflict([rid for rid in wanted if rid in labelled] or wanted) from None
        except sa.exc.SQLAlchemyError as exc:
            log.warning("feedback not recorded: payload database %s (%s)", down_phrase(exc), _short(exc))
            raise PayloadDatabaseDown(f"the payload database {down_phrase(exc)}") from exc
        unknown = list(dict.fromkeys(rid for rid in ids if rid not in known))
        return len(rows), unknown

    def correct_feedback(self, request_id: str, label: int, labeller: str | None, reason: str,
                         ts: int | None = None) -> int | None:
        """Replace the current label of ``request_id`` by ``label``, given by ``labeller`` for
        ``reason``; returns the label replaced (None when there was none: ``label`` is then simply
        recorded). The replaced label keeps its row, marked superseded by this one (who, when, why
        on the new row). `KeyError` for an id the payload table does not know, `ValueError` for an
        empty reason, `PayloadDatabaseDown` when the database cannot be read or written."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("a label correction needs a reason")
        try:
            self._ready()
            if request_id not in self._known([request_id]):
                raise KeyError(request_id)
            stamp = int(time.time() * 1000) if ts is None else int(ts)
            for _ in range(5):
                try:
                    return self._correct(request_id, int(label), labeller, reason.strip(), stamp)
                except (_Raced, sa.exc.IntegrityError):  # another correction or first label came first
                    time.sleep(0.01)
            raise PayloadDatabaseDown(f"the payload database {DOWN_REFUSED}: the label kept changing")
        except sa.exc.SQLAlchemyError as exc:
            log.warning("feedback correction not recorded: payload database %s (%s)", down_phrase(exc), _short(exc))
            raise PayloadDatabaseDown(f"the payload database {down_phrase(exc)}") from exc

    def _correct(self, request_id: str, label: int, labeller: str | None, reason: str, stamp: int) -> int | None:
        f = schema.feedback
        with self.engine.begin() as conn:
            query = (sa.select(f.c.seq, f.c.label).where(f.c.request_id == request_id, f.c.superseded_by.is_(None))
                     .order_by(f.c.seq))
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            current = conn.execute(query).all()
            seqs = [int(r.seq) for r in current]
            if seqs:  # out of the unique index first (0: replaced below by the new row's seq)
                moved = conn.execute(f.update().where(f.c.seq.in_(seqs), f.c.superseded_by.is_(None))
                                     .values(superseded_by=0, superseded_at=stamp)).rowcount
                if moved != len(seqs):
                    raise _Raced()
            new = conn.execute(f.insert().values(
                request_id=request_id, ts=stamp, label=label, labeller=labeller,
                corrects=seqs[-1] if seqs else None, reason=reason)).inserted_primary_key[0]
            if seqs:
                conn.execute(f.update().where(f.c.seq.in_(seqs)).values(superseded_by=int(new)))
        return int(current[-1].label) if current else None


def close_all() -> None:
    """Flush and stop every writer of this process (gunicorn's worker_exit hook, atexit)."""
    for writer in list(_WRITERS):
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - shutting down: report and go on with the others
            log.exception("payload writer did not close cleanly")
