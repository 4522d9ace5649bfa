"""Integrity of what the scoring sidecar stores: who scored, who labelled, one label per request id,
no row lost when neither the database nor the spool can take it, no database details on /status.

Each test reproduces a finding against the writer (`sidecar.payloads`), the tables (`sidecar.schema`)
or the production monitor (`sidecar.watch`) on a real SQLite file, and on the local PostgreSQL
server where concurrency matters (two writers labelling one request id at once).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlflow_governance.core.features import CATEGORICAL_FEATURES, FEATURES
from mlflow_governance.sidecar import payloads, schema, watch
from mlflow_governance.sidecar.payloads import FeedbackConflict, PayloadsUnavailable, PayloadWriter, Scored
from tests.conftest import PG_ADMIN_URL

# --- helpers ---------------------------------------------------------------------------------------


def scored(n: int, prefix: str = "r", caller: str | None = None, model: str = "m", version: int = 1) -> Scored:
    """``n`` rows of every served feature (request ids ``<prefix>0000``...), scored for ``caller``."""
    ids = [f"{prefix}{i:04d}" for i in range(n)]
    columns = {c: (np.array(["UA"] * n, dtype=object) if c in CATEGORICAL_FEATURES else np.ones(n, dtype="int64"))
               for c in FEATURES}
    prediction = np.array([i % 2 for i in range(n)], dtype="int64")
    return Scored(ids, 123, model, version, False, columns, prediction, np.where(prediction == 1, 0.75, 0.25),
                  caller=caller)


def engine_of(url: str) -> sa.Engine:
    return sa.create_engine(url)


def select_all(url: str, table: sa.Table, order: str = "seq") -> list[sa.Row]:
    engine = engine_of(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(table).order_by(table.c[order])).all()
    finally:
        engine.dispose()


def wait_for(predicate, timeout: float = 10.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'payloads.db'}"


@pytest.fixture
def writer_factory(tmp_path):
    made: list[PayloadWriter] = []

    def make(url: str, spool: Path | None = None, **kwargs) -> PayloadWriter:
        kwargs = {"flush_seconds": 0.02, "retry_seconds": 0.1, **kwargs}
        w = PayloadWriter(url, spool or tmp_path / f"spool-{len(made)}", **kwargs).start()
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


@pytest.fixture
def pg_url() -> str:
    """A fresh PostgreSQL payload database for one test (dropped after it)."""
    name = f"mlgov_payloads_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def logged(make, url: str, n: int, prefix: str = "r", caller: str | None = "alice") -> list[str]:
    """Score ``n`` rows through a writer and wait until they are stored; their request ids."""
    w = make(url)
    item = scored(n, prefix, caller)
    w.submit(item)
    assert w.flush()
    assert w.pending == 0 and w.spool_rows == 0
    return item.request_ids


# --- attribution -----------------------------------------------------------------------------------


def test_every_payload_row_names_its_caller_also_through_the_spool(sqlite_url, tmp_path, monkeypatch,
                                                                    writer_factory):
    spool = tmp_path / "spool"
    w = writer_factory(sqlite_url, spool)
    w.submit(scored(2, "a", caller="alice"))
    assert w.flush()
    real = payloads.insert_new
    down = threading.Event()

    def flaky(conn, table, rows, key="request_id"):
        if down.is_set():
            raise sa.exc.OperationalError("INSERT INTO mlgov_payload ...", {}, Exception("unable to open database"))
        return real(conn, table, rows, key)

    monkeypatch.setattr(payloads, "insert_new", flaky)
    down.set()
    w.submit(scored(3, "b", caller="bob"))
    w.submit(scored(1, "n", caller=None))
    assert w.flush()
    assert w.spool_rows == 4
    lines = [json.loads(line) for p in spool.glob("payload-*.jsonl") for line in p.read_text().splitlines()]
    assert {r["request_id"]: r["caller"] for r in lines} == {"b0000": "bob", "b0001": "bob", "b0002": "bob",
                                                             "n0000": None}
    down.clear()
    wait_for(lambda: w.spool_rows == 0 and w.pending == 0, what="the spool replayed")
    rows = select_all(sqlite_url, schema.payload)
    assert {r.request_id: r.caller for r in rows} == {"a0000": "alice", "a0001": "alice", "b0000": "bob",
                                                      "b0001": "bob", "b0002": "bob", "n0000": None}


def test_an_older_payload_database_gets_the_new_columns_and_keeps_its_labels(sqlite_url):
    """A database of the previous release: no caller, no labeller, and labels given twice for one id
    ("the latest wins"). The migration keeps every label, marks the older ones superseded by the
    latest, and from then on the database refuses a second current label."""
    engine = engine_of(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE mlgov_payload (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id VARCHAR(64) NOT NULL "
            "UNIQUE, ts BIGINT NOT NULL, model VARCHAR(256) NOT NULL, version INTEGER NOT NULL, staging BOOLEAN "
            "NOT NULL, features TEXT NOT NULL, prediction INTEGER NOT NULL, probability FLOAT NOT NULL)"))
        conn.execute(sa.text(
            "CREATE TABLE mlgov_feedback (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id VARCHAR(64) NOT NULL, "
            "ts BIGINT NOT NULL, label INTEGER NOT NULL)"))
        conn.execute(sa.text(
            "CREATE TABLE mlgov_monitor_evaluation (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts BIGINT NOT NULL, "
            "model VARCHAR(256) NOT NULL, version INTEGER NOT NULL, rows INTEGER NOT NULL, verdict VARCHAR(16) "
            "NOT NULL, reason TEXT NOT NULL, figures TEXT NOT NULL, breaches TEXT NOT NULL, run_id VARCHAR(64), "
            "usability_action VARCHAR(32), config_digest VARCHAR(80))"))
        features = json.dumps({c: ("UA" if c in CATEGORICAL_FEATURES else 1) for c in FEATURES})
        for rid in ("x", "y"):
            conn.execute(sa.text("INSERT INTO mlgov_payload (request_id, ts, model, version, staging, features, "
                                 "prediction, probability) VALUES (:r, 1, 'm', 1, 0, :f, 1, 0.7)"),
                         {"r": rid, "f": features})
        for rid, label in (("x", 0), ("x", 1), ("y", 1), ("x", 0)):
            conn.execute(sa.text("INSERT INTO mlgov_feedback (request_id, ts, label) VALUES (:r, 1, :l)"),
                         {"r": rid, "l": label})
    schema.create_all(engine)
    schema.create_all(engine)  # idempotent
    inspector = sa.inspect(engine)
    for table, columns in schema.ADDED_COLUMNS.items():
        assert set(columns) <= {c["name"] for c in inspector.get_columns(table)}
    assert schema.has_current_label_index(engine)
    labels = select_all(sqlite_url, schema.feedback)
    assert [(r.request_id, r.label, r.superseded_by) for r in labels] == [
        ("x", 0, 4), ("x", 1, 4), ("y", 1, None), ("x", 0, None)]
    window, _ = watch.read_window(engine, "m", 1, 10)
    assert window.labels.tolist() == [0.0, 1.0]  # the latest label of x, as before the migration
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(schema.feedback.insert().values(request_id="y", ts=2, label=0))
    engine.dispose()


# --- one label per request id ----------------------------------------------------------------------


def test_a_second_label_for_a_request_id_is_a_conflict_and_the_first_is_kept(sqlite_url, writer_factory):
    """Found: the latest label won, so anyone could overwrite a label at will."""
    ids = logged(writer_factory, sqlite_url, 3)
    w = writer_factory(sqlite_url)
    assert w.record_feedback([(ids[0], 1)], labeller="lena", ts=10) == (1, [])
    with pytest.raises(FeedbackConflict) as raised:
        w.record_feedback([(ids[0], 0)], labeller="mallory", ts=20)
    assert raised.value.ids == [ids[0]]
    # All or nothing: a request naming one labelled id stores none of its labels.
    with pytest.raises(FeedbackConflict) as raised:
        w.record_feedback([(ids[1], 0), (ids[0], 0), (ids[2], 1)], labeller="mallory")
    assert raised.value.ids == [ids[0]]
    rows = select_all(sqlite_url, schema.feedback)
    assert [(r.request_id, r.label, r.labeller, r.ts, r.superseded_by) for r in rows] == [
        (ids[0], 1, "lena", 10, None)]
    # Unknown ids are reported, as before, and the known ones stored with their labeller.
    assert w.record_feedback([(ids[1], 0), ("nope", 1)], labeller=None) == (1, ["nope"])
    assert select_all(sqlite_url, schema.feedback)[-1].labeller is None


def test_ten_thousand_labels_for_one_id_in_one_request_store_nothing(sqlite_url, writer_factory):
    """Found: one request stored 10,000 labels for one request id."""
    ids = logged(writer_factory, sqlite_url, 2)
    w = writer_factory(sqlite_url)
    items = [(ids[0], i % 2) for i in range(10_000)] + [(ids[1], 1)]
    with pytest.raises(FeedbackConflict) as raised:
        w.record_feedback(items, labeller="mallory")
    assert raised.value.ids == [ids[0]]
    assert select_all(sqlite_url, schema.feedback) == []


def test_a_correction_keeps_the_label_it_replaces_with_who_when_and_why(sqlite_url, writer_factory):
    ids = logged(writer_factory, sqlite_url, 3)
    w = writer_factory(sqlite_url)
    assert w.record_feedback([(ids[0], 1), (ids[1], 1)], labeller="lena", ts=10) == (2, [])
    assert w.correct_feedback(ids[0], 0, labeller="olivia", reason="the flight was on time", ts=20) == 1
    assert w.correct_feedback(ids[0], 1, labeller="oscar", reason="the airline's record was late", ts=30) == 0
    assert w.correct_feedback(ids[2], 0, labeller="olivia", reason="no label yet", ts=40) is None
    with pytest.raises(KeyError):
        w.correct_feedback("nope", 0, labeller="olivia", reason="typo")
    for reason in ("", "   "):
        with pytest.raises(ValueError):
            w.correct_feedback(ids[0], 0, labeller="olivia", reason=reason)
    rows = {r.seq: r for r in select_all(sqlite_url, schema.feedback)}
    history = [r for r in rows.values() if r.request_id == ids[0]]
    assert [(r.label, r.labeller, r.ts, r.reason) for r in history] == [
        (1, "lena", 10, None), (0, "olivia", 20, "the flight was on time"), (1, "oscar", 30, "the airline's record was late")]
    first, second, third = history
    assert (first.superseded_by, first.superseded_at) == (second.seq, 20)
    assert (second.corrects, second.superseded_by, second.superseded_at) == (first.seq, third.seq, 30)
    assert (third.corrects, third.superseded_by) == (second.seq, None)
    assert [(r.label, r.corrects, r.reason) for r in rows.values() if r.request_id == ids[2]] == [(0, None, "no label yet")]
    # A label that was corrected is still one label: a new first label for it is a conflict.
    with pytest.raises(FeedbackConflict):
        w.record_feedback([(ids[0], 0)], labeller="mallory")
    # The monitor reads the current label of each id only.
    window, _ = watch.read_window(w.engine, "m", 1, 10)
    assert window.labels.tolist() == [1.0, 1.0, 0.0]


def race_the_check(monkeypatch, parties: int):
    """Every writer's in-transaction check for an existing label runs, sees none, and only then do
    they all insert: the database alone must keep one label per id."""
    real = payloads.current_labels
    barrier = threading.Barrier(parties, timeout=20)
    first = threading.local()

    def raced(conn, request_ids):
        if not getattr(first, "done", False):
            first.done = True
            found = real(conn, request_ids)
            barrier.wait()
            return found
        return real(conn, request_ids)

    monkeypatch.setattr(payloads, "current_labels", raced)


def label_at_once(writers: list[PayloadWriter], ids: list[str]) -> list[object]:
    outcomes: list[object] = [None] * len(writers)

    def one(k: int) -> None:
        try:
            outcomes[k] = writers[k].record_feedback([(rid, k % 2) for rid in ids], labeller=f"user{k}")
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test looks at
            outcomes[k] = exc

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(writers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_writers_labelling_one_id_at_once_store_one_label(backend, request, monkeypatch, writer_factory):
    """Two workers (or replicas: separate connections) check at the same moment that an id has no
    label yet: the unique index on the current label lets one of them store it, the other gets the
    conflict, and neither stores part of its request."""
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    ids = logged(writer_factory, url, 5)
    writers = [writer_factory(url) for _ in range(2)]
    race_the_check(monkeypatch, 2)
    outcomes = label_at_once(writers, ids)
    won = [o for o in outcomes if isinstance(o, tuple)]
    lost = [o for o in outcomes if isinstance(o, FeedbackConflict)]
    assert won == [(5, [])] and len(lost) == 1, outcomes
    assert sorted(lost[0].ids) == sorted(ids)
    rows = select_all(url, schema.feedback)
    assert len(rows) == 5 and len({r.labeller for r in rows}) == 1
    assert sorted(r.request_id for r in rows) == sorted(ids)


def test_many_writers_at_once_on_postgresql_leave_one_current_label_per_id(pg_url, writer_factory):
    ids = logged(writer_factory, pg_url, 40)
    writers = [writer_factory(pg_url) for _ in range(6)]
    outcomes = label_at_once(writers, ids)
    assert all(isinstance(o, (tuple, FeedbackConflict)) for o in outcomes), outcomes
    won = [o for o in outcomes if isinstance(o, tuple)]
    rows = select_all(pg_url, schema.feedback)
    assert sum(accepted for accepted, _ in won) == len(rows)  # whole requests or nothing
    assert all(accepted == len(ids) for accepted, _ in won)
    assert sorted(r.request_id for r in rows) == sorted(ids) and len(rows) == len(ids)


def test_concurrent_corrections_on_postgresql_chain_without_losing_one(pg_url, writer_factory):
    ids = logged(writer_factory, pg_url, 1)
    writers = [writer_factory(pg_url) for _ in range(4)]
    writers[0].record_feedback([(ids[0], 1)], labeller="lena")
    results: list[object] = [None] * 4
    barrier = threading.Barrier(4)

    def correct(k: int) -> None:
        barrier.wait()
        try:
            results[k] = writers[k].correct_feedback(ids[0], k % 2, labeller=f"owner{k}", reason=f"review {k}")
        except Exception as exc:  # noqa: BLE001
            results[k] = exc

    threads = [threading.Thread(target=correct, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r in (0, 1) for r in results), results
    rows = {r.seq: r for r in select_all(pg_url, schema.feedback)}
    assert len(rows) == 5
    current = [r for r in rows.values() if r.superseded_by is None]
    assert len(current) == 1
    chain = [current[0]]  # from the current label back to the first, every link intact
    while chain[-1].corrects is not None:
        previous = rows[chain[-1].corrects]
        assert previous.superseded_by == chain[-1].seq
        chain.append(previous)
    assert len(chain) == 5 and chain[-1].labeller == "lena"
    assert sorted(r.labeller for r in chain[:-1]) == [f"owner{k}" for k in range(4)]


# --- rows that can be neither stored nor spooled ---------------------------------------------------


class ReadOnly:
    """Makes every connection of an engine read-only while set (``PRAGMA query_only``: SQLite then
    answers every write with 'attempt to write a readonly database', also to root)."""

    def __init__(self, engine: sa.Engine):
        self.on = False
        self.tries = 0  # connections checked out while read-only: the writer's attempts at the database
        sa.event.listen(engine, "checkout", self._checkout)

    def _checkout(self, dbapi_connection, _record, _proxy):
        self.tries += self.on
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA query_only = {1 if self.on else 0}")
        cursor.close()


def test_rows_are_kept_and_requests_refused_when_neither_database_nor_spool_can_take_them(
        sqlite_url, tmp_path, writer_factory, caplog):
    """Found: with the payload database read-only and the spool directory unwritable, 25 requests
    got 200, 15 rows were stored, the log showed a FileExistsError traceback and /status kept
    ``pending_requests: 10``."""
    caplog.set_level(logging.INFO, logger="mlflow_governance.sidecar.payloads")
    spool = tmp_path / "spool"
    spool.write_text("")  # a regular file where the spool directory belongs: mkdir raises FileExistsError
    w = writer_factory(sqlite_url, spool)
    read_only = ReadOnly(w.engine)
    w.submit(scored(3, "a", caller="alice"))
    assert w.flush()
    read_only.on = True
    for k in range(10):
        w.submit(scored(3, f"b{k}-", caller="alice"))
    wait_for(w.refusal, what="the writer to refuse")
    # Many more cycles (each retries the database, every retry_seconds): still one warning, no traceback.
    tries = read_only.tries
    wait_for(lambda: read_only.tries >= tries + 5, what="five more attempts at the database")
    with pytest.raises(PayloadsUnavailable) as refused:
        w.submit(scored(1, "c", caller="alice"))
    reason = w.refusal()
    assert str(refused.value) == reason and "readonly" not in reason and str(spool) not in reason
    state = w.state()
    assert state["pending_requests"] == 10 and state["held_rows"] == 30 and state["accepting"] is False
    assert (state["database"], state["last_error"], state["spool_writable"]) == ("sqlite", "refused the write", False)
    assert not w.flush(timeout=0.3)  # nothing accepted is claimed stored
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    spool_warnings = [r for r in caplog.records if "spool" in r.getMessage() and "cannot be written" in r.getMessage()]
    assert len(spool_warnings) == 1 and spool_warnings[0].levelno == logging.WARNING
    read_only.on = False  # the database takes writes again
    wait_for(lambda: w.refusal() is None and w.pending == 0, what="the held rows stored")
    assert w.state()["held_rows"] == 0
    w.submit(scored(2, "d", caller="alice"))
    assert w.flush()
    ids = sorted(r.request_id for r in select_all(sqlite_url, schema.payload))
    expected = [f"a{i:04d}" for i in range(3)] + [f"b{k}-{i:04d}" for k in range(10) for i in range(3)] + [
        f"d{i:04d}" for i in range(2)]
    assert ids == sorted(expected)  # every accepted row, once; the refused one not at all


def test_a_spool_that_can_be_written_again_ends_the_refusal(sqlite_url, tmp_path, writer_factory):
    spool = tmp_path / "spool"
    spool.write_text("")
    w = writer_factory(sqlite_url, spool, retry_seconds=30)
    read_only = ReadOnly(w.engine)
    w.submit(scored(1, "a"))
    assert w.flush()
    read_only.on = True
    w.submit(scored(4, "b"))
    wait_for(w.refusal, what="the writer to refuse")
    spool.unlink()  # the directory can be made now: the held rows go to the spool
    wait_for(lambda: w.refusal() is None and w.pending == 0, what="the held rows spooled")
    assert w.spool_rows == 4 and w.state()["spool_writable"] and not w.database_up
    w.submit(scored(2, "c"))
    assert w.flush() and w.spool_rows == 6
    read_only.on = False
    w._next_try = 0.0  # do not wait out retry_seconds
    wait_for(lambda: w.spool_rows == 0, what="the spool replayed")
    assert len(select_all(sqlite_url, schema.payload)) == 7


def test_a_batch_split_over_requests_holds_exactly_the_rows_not_delivered(sqlite_url, tmp_path, writer_factory,
                                                                         monkeypatch):
    """Requests larger than a batch and batches of several requests: what is held on a failure is
    exactly what was not written, and each request is counted pending until all its rows are."""
    spool = tmp_path / "spool"
    spool.write_text("")
    w = writer_factory(sqlite_url, spool, batch_rows=4, flush_seconds=30)
    w.submit(scored(1, "a"))
    assert w.flush()
    real = payloads.insert_new
    calls = []

    def second_batch_fails(conn, table, rows, key="request_id"):
        calls.append(len(rows))
        if len(calls) == 2:
            raise sa.exc.OperationalError("INSERT", {}, Exception("attempt to write a readonly database"))
        return real(conn, table, rows, key)

    monkeypatch.setattr(payloads, "insert_new", second_batch_fails)
    w.retry_seconds = 0.0
    for item in (scored(2, "p"), scored(7, "q"), scored(1, "s")):  # batches: p0 p1 q0 q1 | q2..q5 | q6 s0
        w.submit(item)
    w._wake.set()
    wait_for(lambda: len(calls) >= 2 and w.refusal(), what="the second batch to fail")
    assert w.pending == 2 and w.held_rows == 6  # q2..q6 and s0; p is done
    w.flush_seconds = 0.02
    w._wake.set()
    wait_for(lambda: w.pending == 0 and w.refusal() is None, what="the held rows stored")
    ids = sorted(r.request_id for r in select_all(sqlite_url, schema.payload))
    assert ids == sorted(["a0000", "p0000", "p0001", "s0000"] + [f"q{i:04d}" for i in range(7)])


def test_held_rows_get_a_last_chance_at_shutdown(sqlite_url, tmp_path, writer_factory):
    spool = tmp_path / "spool"
    spool.write_text("")
    w = writer_factory(sqlite_url, spool)
    read_only = ReadOnly(w.engine)
    w.submit(scored(1, "a"))
    assert w.flush()
    read_only.on = True
    w.submit(scored(3, "b"))
    wait_for(w.refusal, what="the writer to refuse")
    threading.Timer(0.5, lambda: setattr(read_only, "on", False)).start()
    w.close()
    assert len(select_all(sqlite_url, schema.payload)) == 4


# --- /status shows no database details ------------------------------------------------------------


def test_status_names_the_dialect_only_and_errors_as_a_fixed_phrase(tmp_path, writer_factory):
    port = 1  # nothing listens there
    url = f"postgresql://payload_user:s3cret@127.0.0.1:{port}/payloads_prod"
    w = writer_factory(url, tmp_path / "spool")
    state = w.state()
    assert state["database"] == "postgresql"
    w.submit(scored(2, "a"))
    assert w.flush()
    state = w.state()
    assert (state["database_up"], state["last_error"], state["spool_rows"]) == (False, "cannot be reached", 2)
    text = json.dumps(state)
    for secret in ("payload_user", "s3cret", "127.0.0.1", "payloads_prod", "psycopg", "connection", "port"):
        assert secret not in text, (secret, text)
    with pytest.raises(payloads.PayloadDatabaseDown) as down:
        w.record_feedback([("a0000", 1)], labeller="lena")
    assert str(down.value) == "the payload database cannot be reached"


def test_sqlite_status_says_sqlite_and_not_the_path(sqlite_url, writer_factory):
    w = writer_factory(sqlite_url)
    assert w.state()["database"] == "sqlite"
    assert "payloads.db" not in json.dumps(w.state())


# --- who is behind the monitor's window ------------------------------------------------------------


def test_the_names_in_a_reject_comment_are_bounded():
    counts = {f"user{k}": 100 - k for k in range(12)}
    assert watch.who_summary(counts) == "user0 (100), user1 (99), user2 (98) and 9 others"
    assert watch.who_summary({}) == "nobody"
    assert watch.who_summary({"x" * 500 + "\nforged line": 1}).startswith("x" * 61 + "... (1)")
    assert watch.who_summary({"(anonymous)": 3, "bob": 3}) == "(anonymous) (3), bob (3)"


def test_the_window_counts_callers_and_current_labellers(sqlite_url, writer_factory):
    ids_a = logged(writer_factory, sqlite_url, 3, "a", caller="alice")
    ids_n = logged(writer_factory, sqlite_url, 2, "n", caller=None)
    w = writer_factory(sqlite_url)
    w.record_feedback([(ids_a[0], 1), (ids_n[0], 0)], labeller="mallory")
    w.record_feedback([(ids_a[1], 1)], labeller=None)
    w.correct_feedback(ids_a[0], 0, labeller="olivia", reason="checked the airline's record")
    window, top, callers, labellers = watch._read(w.engine, "m", 1, 100)
    assert len(window) == 5 and top == 5
    assert callers == {"alice": 3, "(anonymous)": 2}
    assert labellers == {"olivia": 1, "mallory": 1, "(anonymous)": 1}


def log_traffic(writer: PayloadWriter, reg, frame: pd.DataFrame, caller: str) -> tuple[list[str], np.ndarray]:
    """Score ``frame`` with the registered version and hand it to ``writer`` as the workers do."""
    from mlflow_governance.safe.model_files import load_mlflow_sklearn
    from mlflow_governance.scoring.decision import score
    from mlflow_governance.training.data import feature_frame

    model, _ = load_mlflow_sklearn(reg.model_uri, Path(os.environ.get("TMPDIR", "/tmp")) / uuid.uuid4().hex)
    features = feature_frame(frame)
    prediction, probability = score(model, features)
    ids = [uuid.uuid4().hex for _ in range(len(frame))]
    writer.submit(Scored(ids, int(time.time() * 1000), reg.model, reg.version, False,
                         {c: features[c].to_numpy() for c in features.columns}, prediction, probability,
                         caller=caller))
    assert writer.flush()
    return ids, prediction


@pytest.fixture
def monitored(production_registry, winter_flights, sqlite_url, writer_factory, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    sample = winter_flights[winter_flights["DELAYED"].notna()].sample(n=5000, random_state=3).reset_index(drop=True)
    w = writer_factory(sqlite_url)
    ids, prediction = log_traffic(w, production_registry, sample, caller="alice")
    return production_registry, w, sample, ids, prediction


def test_forged_labels_that_turn_the_model_red_are_named_in_the_reject(monitored, sqlite_url):
    """Found: one /feedback with the opposite of the true labels turned the production model red,
    and nothing said who sent them."""
    from mlflow_governance.client.governance import GovernanceClient
    from mlflow_governance.core import workflow as wf
    from tests.conftest import acting

    reg, w, sample, ids, _ = monitored
    truth = sample["DELAYED"].astype(int).to_numpy()
    assert w.record_feedback([(ids[i], 1 - int(truth[i])) for i in range(1000)], labeller="mallory") == (1000, [])
    with acting("mona"):
        evaluation = watch.Watcher(model=reg.model, payload_url=sqlite_url).run_once()
    assert evaluation.result("quality").verdict == "breach"
    assert GovernanceClient().status(reg.model, reg.version)["version"]["usability"] == wf.USABILITY_REJECT
    row = GovernanceClient().audit(reg.model)[-1]
    assert row["action"] == "reject" and row["actor"] == "mona"
    assert "labels by mallory (1,000)" in row["comment"] and "rows scored for alice (5,000)" in row["comment"]
    recorded = select_all(sqlite_url, schema.evaluation)[-1]
    assert recorded.usability_action == "reject"
    assert json.loads(recorded.labellers) == {"mallory": 1000} and json.loads(recorded.callers) == {"alice": 5000}
    event = GovernanceClient().events(0, 1000, reg.model)[-1]
    assert event["evidence"]["labellers"] == "mallory (1,000)"
    # The forged labels cannot be overwritten by another forged request either.
    with pytest.raises(FeedbackConflict):
        w.record_feedback([(ids[0], int(truth[0]))], labeller="eve")


def test_forged_labels_that_make_every_figure_perfect_are_attributed(monitored, sqlite_url):
    """Found: labels equal to the model's predictions made every figure 1.0."""
    from tests.conftest import acting

    reg, w, _, ids, prediction = monitored
    w.record_feedback([(ids[i], int(prediction[i])) for i in range(1000)], labeller="mallory")
    with acting("mona"):
        watcher = watch.Watcher(model=reg.model, payload_url=sqlite_url)
        evaluation = watcher.run_once()
    assert evaluation.figures()["quality.accuracy"]["value"] == pytest.approx(1.0)
    recorded = select_all(sqlite_url, schema.evaluation)[-1]
    assert json.loads(recorded.labellers) == {"mallory": 1000} and json.loads(recorded.callers) == {"alice": 5000}
    assert watcher.last["labellers"] == {"mallory": 1000}
