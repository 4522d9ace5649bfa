"""Faults: the payload database (PostgreSQL) and the registry (a governance server) taken away
while the sidecar serves, each through a TCP proxy the test stops and starts again.

* Payload database away during traffic: scoring goes on, rows wait in the spool, and afterwards
  every scored request id is in ``mlgov_payload`` exactly once.
* Registry away: the sidecar answers from its cache, then fails closed (503) once the registry
  could not be read for longer than the cache lifetime, and scores again when it is back.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from urllib.parse import urlparse

import pytest
import requests
import sqlalchemy as sa

from mlflow_governance.client.rest import RestGovernance
from mlflow_governance.sidecar import schema
from tests.conftest import PG_ADMIN_URL
from tests.servers import mlflow_server
from tests.test_sidecar import every_worker
from tests.test_sidecar_support import (
    TcpProxy,
    copy_registry,
    eventually,
    feature_rows,
    records,
    run_sidecar,
    serve_args,
    sidecar_env,
)

ADMIN_PASSWORD = "admin-pass-" + os.urandom(4).hex()
MONA_PASSWORD = "mona-password-" + os.urandom(4).hex()
# A governance server on two busy cores can take a second to answer: a longer cache than elsewhere.
CACHE_SECONDS = 2.0


@pytest.fixture(scope="module")
def payload_database():
    """A fresh PostgreSQL database for the payloads (dropped afterwards); its name and admin engine."""
    name = f"mlgov_sidecar_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield name
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def faulty(production_model, payload_database, tmp_path_factory):
    """A sidecar reading governance from a governance server and writing payloads to PostgreSQL,
    each through its own proxy: (sidecar, payload proxy, registry proxy, payload engine)."""
    work = tmp_path_factory.mktemp("faults")
    registry = copy_registry(production_model, work, "registry.db")
    server_env = {"MLGOV_ADMIN_PASSWORD": ADMIN_PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex(),
                  "MLGOV_ADMIN": "admin"}
    pg = urlparse(PG_ADMIN_URL)
    with mlflow_server(work, registry.tracking_uri, registry.registry_uri, app_name="governance",
                       env=server_env) as url:
        RestGovernance(url, "admin", ADMIN_PASSWORD).add_user("mona", MONA_PASSWORD)
        registry_proxy = TcpProxy(urlparse(url).port).start()
        payload_proxy = TcpProxy(pg.port or 5432).start()
        payload_url = f"postgresql://{pg.username}@127.0.0.1:{payload_proxy.port}/{payload_database}"
        env = sidecar_env(tracking_uri=f"http://127.0.0.1:{registry_proxy.port}", MLFLOW_TRACKING_USERNAME="mona",
                          MLFLOW_TRACKING_PASSWORD=MONA_PASSWORD)
        engine = sa.create_engine(f"postgresql://{pg.username}@{pg.hostname}:{pg.port or 5432}/{payload_database}")
        try:
            # Callers are authenticated by the server; each worker trusts an answer for 300 s here, so
            # the outages below are the registry's and the payload database's, not the callers' check
            # (tests/test_sidecar_auth.py: a server that cannot be asked refuses new callers, 503).
            with run_sidecar(work / "run", env, "--model", registry.model, "--payload-url", payload_url,
                             "--auth-cache-seconds", "300", *serve_args(cache=CACHE_SECONDS, auth=True),
                             auth=("mona", MONA_PASSWORD)) as sidecar:
                yield sidecar, payload_proxy, registry_proxy, engine
        finally:
            payload_proxy.stop()
            registry_proxy.stop()
            engine.dispose()


@pytest.fixture(scope="module")
def body(winter_flights):
    return {"dataframe_records": records(feature_rows(winter_flights.dropna(subset=["DEPARTURE_DELAY"]).head(3)))}


class Traffic:
    """Scoring requests from two keep-alive clients until stopped; every id and every failure kept."""

    def __init__(self, sidecar, body):
        self.sidecar, self.body = sidecar, body
        self.ids: list[str] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def _run(self):
        session = requests.Session()
        while not self.stop.is_set():
            try:
                r = self.sidecar.post("/invocations", self.body, session=session)
            except requests.RequestException as exc:
                self.failures.append(str(exc)[:200])
                continue
            if r.status_code == 200:
                self.ids.extend(r.json()["request_ids"])
            else:
                self.failures.append(f"{r.status_code} {r.text[:200]}")
            time.sleep(0.01)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def spooled(sidecar) -> float:
    """Rows in the spool of every live worker (Prometheus multiprocess gauge, summed)."""
    text = sidecar.get("/metrics").text
    found = re.search(r"^mlgov_sidecar_spool_rows(?:\{[^}]*\})? ([-+0-9.eE]+)$", text, flags=re.M)
    assert found, text[:2000]
    return float(found.group(1))


def noticed(states) -> bool:
    return any(not s["database_up"] or s["spool_rows"] > 0 for s in states)


def logged(engine, ids) -> int:
    """How many of the request ids ``ids`` are in ``mlgov_payload``."""
    p = schema.payload
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(p).where(p.c.request_id.in_(list(ids)))).scalar()


def test_payload_rows_survive_the_database_going_away_during_traffic(faulty, body):
    sidecar, payload_proxy, _, engine = faulty
    states = []
    with Traffic(sidecar, body) as traffic:
        # traffic under way, and its rows reaching the database, before the database goes away
        eventually(lambda: len(traffic.ids) >= 30 and logged(engine, traffic.ids[:30]) > 0, timeout=30,
                   what="scored rows in mlgov_payload before the database goes away")
        payload_proxy.stop()
        try:
            # At least 4 s of traffic while the database is away, and until a writer has noticed, at
            # most 30 s. /status is one worker's (maybe one without traffic: keep-alive clients can
            # all sit on the other); the spool gauge of /metrics sums every live worker.
            started = time.monotonic()
            while time.monotonic() - started < 4 or (time.monotonic() - started < 30 and not noticed(states)):
                states.append(sidecar.get("/status").json()["payloads"])
                states.append({"database_up": True, "spool_rows": spooled(sidecar), "last_error": None})
                time.sleep(0.3)
            r = sidecar.post("/feedback", {"feedback": [{"request_id": traffic.ids[0], "label": 1}]})
            assert r.status_code == 503 and r.json()["error_code"] == "PAYLOAD_DATABASE_UNAVAILABLE", r.text
        finally:
            payload_proxy.start()
        # traffic goes on until rows scored after the database came back are in it
        resumed = len(traffic.ids)
        eventually(lambda: len(traffic.ids) >= resumed + 30 and logged(engine, traffic.ids[resumed:resumed + 30]) > 0,
                   timeout=30, what="rows scored after the database came back in mlgov_payload")
    assert not traffic.failures, traffic.failures[:5]
    assert len(traffic.ids) > 50
    assert noticed(states), states
    assert not any("postgres" in (s["last_error"] or "").lower() and "password" in (s["last_error"] or "")
                   for s in states)

    p = schema.payload
    ids = traffic.ids

    def stored():
        with engine.connect() as conn:
            return conn.execute(sa.select(p.c.request_id, sa.func.count()).where(p.c.request_id.in_(ids))
                                .group_by(p.c.request_id)).all()

    found = eventually(lambda: len(rows := stored()) == len(set(ids)) and rows, timeout=30,
                       what="every scored request id in mlgov_payload")
    assert len(ids) == len(set(ids))
    assert all(count == 1 for _, count in found)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(p)).scalar() == len(ids)
    assert eventually(lambda: spooled(sidecar) == 0, timeout=10)


def test_the_registry_going_away_fails_closed_and_scoring_resumes(faulty, body):
    sidecar, _, registry_proxy, _ = faulty
    assert sidecar.score(body).status_code == 200
    registry_proxy.stop()
    try:
        stopped = time.monotonic()
        assert sidecar.score(body).status_code == 200  # the cached answer still holds
        refused = eventually(lambda: [r] if (r := sidecar.score(body)).status_code == 503 else None, timeout=15,
                             what="503 after the cache lifetime")[0].json()
        assert time.monotonic() - stopped >= CACHE_SECONDS * 0.9
        assert refused["error_code"] == "REGISTRY_UNAVAILABLE"
        assert "fail closed" in refused["message"] and "governance server" in refused["message"]
        assert refused["failing_since"] and refused["last_read"]
        status = eventually(lambda: (s := sidecar.get("/status").json())["serving"] is False and s, timeout=10,
                            what="every worker failing closed")  # the workers' reads are not in step
        assert status["registry"]["read_ok"] is False and status["refusal"]["status"] == 503
    finally:
        registry_proxy.start()
    eventually(lambda: sidecar.score(body).status_code == 200, timeout=15, what="scoring again")
    every_worker(sidecar, lambda s: s["serving"] is True and s["registry"]["read_ok"] is True,
                 timeout=CACHE_SECONDS * 2 + 13, what="every worker reading the registry and serving again")
    assert [sidecar.score(body).status_code for _ in range(6)] == [200] * 6
    assert sidecar.get("/status").json()["registry"]["read_ok"] is True
