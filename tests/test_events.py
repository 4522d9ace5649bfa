"""Governance events: one per committed change (the outbox), delivered to MLflow's webhooks.

In-process tests check what the outbox records for each kind of change (none for a refusal) and
how the deliverer sends it (MLflow's payload shape and signature, once per webhook, in order,
retried while the receiver is down). The server tests drive a real governance server with a
receiver registered through ``MlflowClient.create_webhook``: a change through the governance API
and one through the local CLI (another process on the same database) each reach it once, a
refused attempt never does, and a receiver stopped during a walk gets every event once it is back.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from cryptography.fernet import Fernet
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.webhooks.types import EVENT_TO_PAYLOAD_CLASS

from mlflow_governance.client.governance import GovernanceClient, governed_store
from mlflow_governance.core import events
from mlflow_governance.core import workflow as wf
from mlflow_governance.core.schema import event_deliveries
from mlflow_governance.notifications import delivery, people
from tests.cli_in_process import mlgov as mlgov_in_process
from tests.conftest import ROLE_USER, USERS, acting, unique
from tests.governance_helpers import PATH, fields_for, new_version, step, walk_version_to
from tests.servers import mlflow_server
from tests.test_governance_server import (
    ADMIN_PASSWORD,
    api,
    new_version_in_development,
    password,
    server_env,
)
from tests.test_sidecar_support import eventually
from tests.webhook_receiver import Receiver

SECRET = "receiver-secret-" + os.urandom(4).hex()
VERSION_EVENTS = ["model_version_tag.set", "model_version_alias.created", "model_version_alias.deleted"]


@pytest.fixture
def webhook_env(monkeypatch):
    """MLflow's SSRF rules opened for a receiver on 127.0.0.1 (what the README says they open)."""
    monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
    monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
    monkeypatch.setenv("MLGOV_EVENTS_RETRY_SECONDS", "1")
    monkeypatch.setenv("MLGOV_EVENTS_RETRY_MAX_SECONDS", "1")


def model_events(client: GovernanceClient, model: str) -> list[dict]:
    return client.events(0, 1000, model)


def test_one_event_per_committed_change_and_none_for_a_refusal(registry, tmp_path):
    client = GovernanceClient()
    model = unique("events")
    v1 = walk_version_to(client, model, wf.READY_TO_USE, tmp_path)
    found = model_events(client, model)
    model_rows = [r for r in PATH if r.scope == wf.MODEL_SCOPE]
    version_rows = [r for r in PATH if r.scope == wf.VERSION_SCOPE]
    kind = {wf.APPROVE: events.APPROVED, wf.SUBMIT: events.SUBMITTED}
    assert [e["kind"] for e in found] == (
        [events.INITIATED] + [kind[r.action] for r in model_rows] + [kind[r.action] for r in version_rows]
        + [events.PRODUCTION_ALIAS_MOVED])
    assert [e["id"] for e in found] == sorted({e["id"] for e in found})
    # Each names the model, version, stage, the role it now waits for, the actor and the page.
    for e, row in zip(found[1:-1], model_rows + version_rows, strict=True):
        version = v1 if row.scope == wf.VERSION_SCOPE else None
        assert (e["model"], e["version"], e["stage"], e["from_stage"]) == (model, version, row.dest, row.source)
        assert e["waiting_for"] == wf.assignee_after(row) and e["actor"] == ROLE_USER[row.role]
        assert e["role"] == row.role and e["audit_seq"]
        assert e["link"].startswith(f"/governance/model?name={model}")
    assert found[0]["waiting_for"] == wf.MODEL_APPROVER and found[0]["actor"] == "olivia"
    assert found[-1]["version"] == v1 and found[-1]["previous_version"] is None
    assert found[-1]["actor"] == "olivia" and found[-1]["waiting_for"] == wf.MODEL_MONITOR
    assert found[-2]["link"].endswith(f"#version-{v1}")
    # MLflow's own events: a version's stage as model_version_tag.set, the alias as
    # model_version_alias.created, the model's creation; model-scope steps have no MLflow event.
    assert found[0]["mlflow_event"] == "registered_model.created"
    assert found[0]["mlflow_payload"]["name"] == model and "mlgov.inventory_id" in found[0]["mlflow_payload"]["tags"]
    assert [e["mlflow_event"] for e in found[1:1 + len(model_rows)]] == [None] * len(model_rows)
    assert found[-2]["mlflow_payload"] == {"name": model, "version": str(v1), "key": "mlgov.stage",
                                           "value": wf.READY_TO_USE}
    assert found[-1]["mlflow_payload"] == {"name": model, "alias": "production", "version": str(v1)}

    # A refused attempt writes its audit row and no event, on every path (engine, store).
    before = model_events(client, model)
    with acting("olivia"), pytest.raises(MlflowException):
        client.transition(model, wf.APPROVE, v1)
    with acting("adam"), pytest.raises(MlflowException):
        client.transition(model, wf.REJECT, v1, comment="not my role")
    with acting("mona"), pytest.raises(MlflowException):
        MlflowClient().set_model_version_tag(model, str(v1), "mlgov.stage", "Decommissioned")
    assert model_events(client, model) == before
    assert client.audit(model)[-1]["outcome"] == "refused"

    # A monitor's reject carries its figures; the owner's accept; a field; the monitors.
    evidence = {"monitor": "production", "breaches": [{"monitor": "drift", "key": "share_drifted", "value": 0.6,
                                                       "threshold": 0.25, "comparison": "<="}]}
    with acting("mona"):
        client.transition(model, wf.REJECT, v1, comment="drift 0.6", evidence=evidence)
    with acting("olivia"):
        client.transition(model, wf.ACCEPT, v1, comment="seasonal")
    rejected, accepted = model_events(client, model)[-2:]
    assert (rejected["kind"], rejected["usability"], rejected["waiting_for"]) == (
        events.USABILITY_CHANGED, wf.USABILITY_REJECT, wf.MODEL_OWNER)
    assert rejected["evidence"] == evidence and rejected["comment"] == "drift 0.6"
    assert rejected["mlflow_payload"] == {"name": model, "version": str(v1), "key": "mlgov.usability",
                                          "value": wf.USABILITY_REJECT}
    assert (accepted["kind"], accepted["usability"], accepted["evidence"]) == (
        events.USABILITY_CHANGED, wf.USABILITY_ACCEPT, None)

    # A second version to production: v1 decommissioned, one alias move from v1 to v2.
    v2 = new_version(model, tmp_path)
    mark = model_events(client, model)[-1]["id"]
    with acting("devi"):
        client.set_field(model, "development_system", "scikit-learn", v2)
    while client.status(model, v2)["version"]["stage"] != wf.READY_TO_USE:
        step(client, model, v2)
    after = [e for e in model_events(client, model) if e["id"] > mark]
    assert after[0]["kind"] == events.FIELD_FILLED and after[0]["fields"] == {"development_system": "scikit-learn"}
    assert after[0]["mlflow_payload"]["key"] == "mlgov.field.development_system"
    assert [(e["kind"], e["version"]) for e in after[-3:]] == [
        (events.DECOMMISSIONED, v1), (events.APPROVED, v2), (events.PRODUCTION_ALIAS_MOVED, v2)]
    assert after[-3]["comment"] == f"superseded by version {v2}" and after[-3]["actor"] == "olivia"
    assert after[-1]["previous_version"] == v1
    assert len([e for e in after if e["kind"] == events.PRODUCTION_ALIAS_MOVED]) == 1

    # Decommissioning the model: every live version, the alias dropped (MLflow's alias deleted).
    with acting("olivia"):
        client.transition(model, wf.DECOMMISSION, comment="retired")
    last = model_events(client, model)[-3:]
    assert [(e["kind"], e["version"]) for e in last] == [
        (events.DECOMMISSIONED, v2), (events.DECOMMISSIONED, None), (events.PRODUCTION_ALIAS_MOVED, None)]
    assert last[-1]["mlflow_event"] == "model_version_alias.deleted"
    assert last[-1]["mlflow_payload"] == {"name": model, "alias": "production"}
    # Every MLflow payload has exactly the keys of MLflow's own payload type for its event.
    from mlflow.entities.webhook import WebhookEvent

    for e in model_events(client, model):
        if e["mlflow_event"]:
            event = WebhookEvent.from_str(e["mlflow_event"])
            keys = set(typing.get_type_hints(EVENT_TO_PAYLOAD_CLASS[(event.entity, event.action)]))
            assert set(e["mlflow_payload"]) == keys, e


def test_role_administration_and_monitor_configuration(sqlite_registry, tmp_path):
    client = GovernanceClient()
    model = unique("mon")
    version = walk_version_to(client, model, wf.APPROVED_FOR_VALIDATION, tmp_path)
    count = len(client.events(0, 1000))
    with acting("admin"):
        client.grant("zoe", wf.MODEL_OWNER)
    assert len(client.events(0, 1000)) == count  # not a change of a model
    with acting("victor"):
        client.set_monitors(model, version, {"quality": {"thresholds": {"roc_auc": 0.7}}})
    (event,) = client.events(0, 1000)[count:]
    digest = client.status(model, version)["version"]["monitors"]["digest"]
    assert event["kind"] == events.MONITORS_SET and event["fields"] == {"monitor_config_digest": digest}
    assert event["mlflow_payload"] == {"name": model, "version": str(version), "key": "mlgov.monitors.digest",
                                       "value": digest}


def _webhook(name: str, url: str, event_names: list[str], secret: str | None = SECRET, status: str | None = None):
    return MlflowClient().create_webhook(name, url, event_names, secret=secret, status=status)


def test_delivery_signed_once_in_order_and_kept_while_the_receiver_is_down(sqlite_registry, webhook_env, tmp_path):
    store = governed_store()
    client = GovernanceClient()
    receiver = Receiver(SECRET).start()
    created = Receiver(SECRET).start()
    try:
        _webhook("versions", receiver.url, VERSION_EVENTS)
        _webhook("models", created.url, ["registered_model.created"])
        deliverer = people.deliverer(store)
        model = unique("deliver")
        v1 = walk_version_to(client, model, wf.APPROVED_FOR_VALIDATION, tmp_path)
        result = deliverer.run_once()
        assert result.failed == 0
        got = receiver.received()
        assert [(d.event, d.data["key"], d.data["value"]) for d in got] == [
            ("model_version_tag.set", "mlgov.stage", wf.MODEL_DEVELOPMENT_COMPLETED),
            ("model_version_tag.set", "mlgov.stage", wf.APPROVED_FOR_VALIDATION)]
        assert all(d.signed for d in got) and receiver.refused == []
        assert [d.data for d in created.received()] == [
            model_events(client, model)[0]["mlflow_payload"]]
        assert deliverer.run_once().delivered == 0  # nothing twice

        # The receiver is down: the walk goes on, nothing is lost, the count says what waits.
        receiver.stop()
        start = time.monotonic()
        while client.status(model, v1)["version"]["stage"] != wf.READY_TO_USE:
            step(client, model, v1)
        assert time.monotonic() - start < 10  # the changes never waited for the receiver
        result = deliverer.run_once()
        assert result.delivered == 0 and result.failed == 1  # the oldest fails; the others wait behind it
        status = people.delivery_status(store)
        assert status["undelivered"] == 7 and status["undispatched"] == 0
        (target,) = status["targets"]
        assert target["name"] == "versions" and target["url"] == receiver.url and target["attempts"] == 1
        assert "Connection" in target["last_error"]
        _retry_due(store)
        assert deliverer.run_once().failed == 1
        assert people.delivery_status(store)["targets"][0]["attempts"] == 2

        # A receiver that answers 500 is retried the same way.
        receiver.status = 500
        receiver.start()
        _retry_due(store)
        assert deliverer.run_once().failed == 1 and receiver.received() == got
        receiver.status = 200
        _retry_due(store)
        result = deliverer.run_once()
        assert (result.delivered, result.failed) == (7, 0)
        after = receiver.received()[len(got):]
        expected = [e for e in model_events(client, model) if e["mlflow_event"] in VERSION_EVENTS][2:]
        assert [d.data for d in after] == [e["mlflow_payload"] for e in expected]  # in commit order, once each
        assert after[-1].event == "model_version_alias.created"
        assert len({d.delivery_id for d in receiver.received()}) == len(receiver.received())
        rows = _deliveries(store)
        assert all(r.state == "delivered" for r in rows) and people.delivery_status(store)["undelivered"] == 0
        # The same delivery id on every attempt of a row (a receiver can drop a copy).
        retried = next(r for r in rows if r.attempts == 4)
        assert retried.delivery_id == after[0].delivery_id
    finally:
        receiver.stop()
        created.stop()


def _deliveries(store):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(event_deliveries).order_by(event_deliveries.c.event_seq)).all()


def _retry_due(store) -> None:
    """Until the clock has passed the next attempt time of every undelivered row (its backoff is over)."""
    eventually(lambda: all(r.next_attempt_at <= delivery._now_ms() for r in _deliveries(store)
                           if r.state == delivery.PENDING), 10, what="the retry time of the undelivered rows")


def test_only_the_webhooks_of_the_moment_and_skipped_when_gone(sqlite_registry, webhook_env, tmp_path):
    store = governed_store()
    client = GovernanceClient()
    receiver = Receiver(SECRET).start()
    try:
        model = unique("late")
        v1 = walk_version_to(client, model, wf.MODEL_DEVELOPMENT_COMPLETED, tmp_path)
        time.sleep(0.01)
        hook = _webhook("late", receiver.url, VERSION_EVENTS)
        _webhook("off", receiver.url, VERSION_EVENTS, status="DISABLED")
        assert people.deliverer(store).run_once().delivered == 0  # older than the webhook: MLflow's rule
        step(client, model, v1)
        receiver.stop()
        deliverer = people.deliverer(store)
        assert deliverer.run_once().failed == 1
        MlflowClient().delete_webhook(hook.webhook_id)
        _retry_due(store)
        result = deliverer.run_once()
        assert (result.skipped, result.delivered) == (1, 0)
        assert people.delivery_status(store)["undelivered"] == 0 and people.delivery_status(store)["skipped"] == 1
    finally:
        receiver.stop()


def test_two_deliverers_never_send_the_same_event_twice(sqlite_registry, webhook_env, tmp_path):
    store = governed_store()
    client = GovernanceClient()
    receiver = Receiver(SECRET).start()
    try:
        _webhook("both", receiver.url, VERSION_EVENTS)
        model = unique("race")
        walk_version_to(client, model, wf.READY_TO_USE, tmp_path)
        expected = [e["mlflow_payload"] for e in model_events(client, model) if e["mlflow_event"] in VERSION_EVENTS]
        workers = [people.deliverer(store, worker=f"w{i}") for i in range(3)]
        threads = [threading.Thread(target=w.run_once) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for w in workers:
            w.run_once()
        assert [d.data for d in receiver.received()] == expected
    finally:
        receiver.stop()


def test_mlflows_own_announcement_of_a_governed_tag_write_is_dropped(monkeypatch):
    from mlflow.entities.webhook import WebhookEvent
    from mlflow.server import handlers

    sent = []
    monkeypatch.setattr(handlers, "deliver_webhook", lambda **kw: sent.append(kw))
    monkeypatch.setattr(delivery, "_suppressed", False)
    delivery.suppress_duplicate_deliveries()
    tag_set = WebhookEvent.from_str("model_version_tag.set")
    for key in ("mlgov.action", "mlgov.field.endpoint", "MLGOV.stage"):
        handlers.deliver_webhook(event=tag_set, payload={"name": "m", "version": "1", "key": key, "value": "x"},
                                 store=None)
    handlers.deliver_webhook(event=tag_set, payload={"name": "m", "version": "1", "key": "team", "value": "x"},
                             store=None)
    alias = WebhookEvent.from_str("model_version_alias.created")
    handlers.deliver_webhook(event=alias, payload={"name": "m", "alias": "champion", "version": "1"}, store=None)
    assert [s["payload"].get("key", s["payload"].get("alias")) for s in sent] == ["team", "champion"]


def test_the_link_names_the_approvals_page(monkeypatch):
    from mlflow_governance.server.pages import MODEL_PAGE

    assert events.MODEL_PAGE == MODEL_PAGE
    assert events.path_of("a b/c", 3) == "/governance/model?name=a%20b%2Fc#version-3"


# --- a real governance server ------------------------------------------------------------------

MLGOV = str(Path(sys.executable).parent / "mlgov")
FERNET_KEY = Fernet.generate_key().decode()
WEBHOOK_ENV = {"MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https", "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
               "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": FERNET_KEY}


@pytest.fixture(scope="module")
def events_server(tmp_path_factory, sqlite_template):
    """A governance server on SQLite with the seven users, delivering every second; its database path."""
    workdir = tmp_path_factory.mktemp("events-server")
    db = workdir / "mlflow.db"
    shutil.copy(sqlite_template, db)  # already migrated: the server starts sooner
    env = {**server_env(), **WEBHOOK_ENV, "MLGOV_EVENTS_POLL_SECONDS": "1", "MLGOV_EVENTS_RETRY_SECONDS": "1",
           "MLGOV_EVENTS_RETRY_MAX_SECONDS": "2"}
    with mlflow_server(workdir, f"sqlite:///{db}", f"governed-sqlite:///{db}", app_name="governance", env=env) as url:
        from mlflow_governance.client.rest import RestGovernance

        admin = RestGovernance(url, "admin", ADMIN_PASSWORD)
        for user, role in USERS.items():
            admin.add_user(user, password(user))
            admin.grant(user, role)
        yield url, db


@contextmanager
def registered_receiver(url: str, monkeypatch) -> Iterator[Receiver]:
    """A receiver registered as an MLflow webhook on the server by the admin (MLflow's own API)."""
    for k, v in {**WEBHOOK_ENV, "MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": "admin",
                 "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    rec = Receiver(SECRET).start()
    hook = MlflowClient().create_webhook(unique("hook"), rec.url, VERSION_EVENTS, secret=SECRET)
    try:
        yield rec
    finally:
        MlflowClient().delete_webhook(hook.webhook_id)
        rec.stop()


@pytest.fixture
def receiver(events_server, monkeypatch):
    with registered_receiver(events_server[0], monkeypatch) as rec:
        yield rec


def _mine(rec: Receiver, model: str):
    return [d for d in rec.received() if d.data["name"] == model]


def _admin(url: str) -> GovernanceClient:
    admin = GovernanceClient(url)
    admin.backend.auth = ("admin", ADMIN_PASSWORD)
    return admin


def _quiet(url: str, rec: Receiver, model: str, count: int) -> None:
    """Nothing more than ``count`` deliveries for ``model`` arrives: checked once the server's
    outbox is drained for ``rec`` (every event fanned out, no row of its webhook left undelivered: a
    row stays undelivered while it is being sent, and only undelivered rows are ever sent)."""
    admin = _admin(url)

    def drained() -> bool:
        status = admin.events_status()
        return status["undispatched"] == 0 and not [t for t in status["targets"] if t["url"] == rec.url]

    eventually(drained, 60, what="the outbox drained for the receiver")
    assert len(_mine(rec, model)) == count, [d.data for d in _mine(rec, model)]


def _local_env(db: Path, user: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_"))}
    env.update({"MLFLOW_TRACKING_URI": f"sqlite:///{db}", "MLFLOW_REGISTRY_URI": f"governed-sqlite:///{db}",
                "MLGOV_USER": user, "MLGOV_ADMIN": "admin"})
    return env


def test_webhook_fires_once_for_the_api_and_the_local_cli_and_never_for_a_refusal(events_server, receiver, tmp_path):
    url, db = events_server
    model = unique("hooked")
    version = new_version_in_development(url, model)
    # Through the governance API: one event, MLflow's payload, a valid signature.
    api(url, "devi").transition(model, wf.SUBMIT, version, fields_for(wf.APPROVED_FOR_DEVELOPMENT, model, version), None)
    (first,) = receiver.wait_for(1)
    assert first.event == "model_version_tag.set" and first.signed
    assert first.data == {"name": model, "version": str(version), "key": "mlgov.stage",
                          "value": wf.MODEL_DEVELOPMENT_COMPLETED}
    assert set(first.body) == {"entity", "action", "timestamp", "data"}
    # A refused attempt, through the API and through MLflow's own set-tag route: nothing.
    with pytest.raises(MlflowException):
        api(url, "adam").transition(model, wf.APPROVE, version, {}, None)
    r = requests.post(f"{url}/api/2.0/mlflow/model-versions/set-tag", auth=("devi", password("devi")), timeout=30,
                      json={"name": model, "version": str(version), "key": "mlgov.action", "value": "approve"})
    assert r.status_code == 403
    _quiet(url, receiver, model, 1)
    # Through the local CLI, another process on the server's database: one event, delivered by the server.
    p = mlgov_in_process("transition", model, "approve", "--version", str(version), env=_local_env(db, "olivia"),
                         cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    second = receiver.wait_for(2)[1]
    assert second.signed and second.data["value"] == wf.APPROVED_FOR_VALIDATION
    # MLflow's own set-tag route on a governed field: one event (MLflow's handler does not add its own).
    r = requests.post(f"{url}/api/2.0/mlflow/model-versions/set-tag", auth=("victor", password("victor")),
                      timeout=30, json={"name": model, "version": str(version), "key": "mlgov.field.validation_dataset",
                                        "value": "file:///v.parquet"})
    assert r.status_code == 200, r.text
    third = receiver.wait_for(3)[2]
    assert third.data == {"name": model, "version": str(version), "key": "mlgov.field.validation_dataset",
                          "value": "file:///v.parquet"}
    _quiet(url, receiver, model, 3)
    assert receiver.refused == [] and len({d.delivery_id for d in _mine(receiver, model)}) == 3
    # The governance events themselves, over REST, with the link to the approvals page.
    found = api(url, "olivia").events(0, 100, model)
    assert [e["kind"] for e in found][-3:] == [events.SUBMITTED, events.APPROVED, events.FIELD_FILLED]
    assert found[-2]["actor"] == "olivia" and found[-2]["waiting_for"] == wf.MODEL_VALIDATOR
    assert found[-2]["link"] == f"{url}/governance/model?name={model}#version-{version}"


def test_a_receiver_down_during_a_walk_loses_nothing(events_server, receiver, tmp_path):
    url, db = events_server
    model = unique("outage")
    version = new_version_in_development(url, model)
    receiver.stop()
    steps = [r for r in PATH if r.scope == wf.VERSION_SCOPE]
    for i, row in enumerate(steps):
        fields = fields_for(row.source, model, version)
        if i % 2:  # every other step through the local CLI
            args = ["transition", model, row.action, "--version", str(version)]
            args += [a for k, v in fields.items() for a in ("--set", f"{k}={v}")]
            p = mlgov_in_process(*args, env=_local_env(db, ROLE_USER[row.role]), cwd=tmp_path)
            assert p.returncode == 0, p.stderr
        else:
            api(url, ROLE_USER[row.role]).transition(model, row.action, version, fields, None)
    expected = [e["mlflow_payload"] for e in api(url, "olivia").events(0, 100, model)
                if e["mlflow_event"] in VERSION_EVENTS]
    assert len(expected) == len(steps) + 1  # and the alias
    admin = GovernanceClient(url)
    admin.backend.auth = ("admin", ADMIN_PASSWORD)
    deadline = time.monotonic() + 30
    while True:  # the server has tried (and kept) them: the count and the reason are visible
        status = admin.events_status()
        mine = [t for t in status["targets"] if t["url"] == receiver.url]
        if mine and mine[0]["last_error"] and mine[0]["undelivered"] == len(expected):
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert status["undelivered"] >= len(expected) and mine[0]["name"].startswith("hook")
    visible = requests.get(f"{url}/api/2.0/mlflow-governance/events/status", auth=("adam", password("adam")),
                           timeout=30).json()
    assert visible["undelivered"] == status["undelivered"] and "targets" not in visible  # counts for everyone
    receiver.start()
    got = receiver.wait_for(len(expected), timeout=60)
    _quiet(url, receiver, model, len(expected))
    assert [d.data for d in _mine(receiver, model)] == expected  # every event, once, in order
    assert all(d.signed for d in got) and receiver.refused == []
    assert admin.events_status()["undelivered"] == 0


@pytest.fixture(scope="module")
def two_worker_server(tmp_path_factory, pg_template):
    """A governance server with two worker processes (two delivery threads) on PostgreSQL (a copy
    of the migrated template)."""
    from mlflow_governance.client.rest import RestGovernance
    from mlflow_governance.server.databases import migrate
    from tests.conftest import new_pg_database

    workdir = tmp_path_factory.mktemp("events-pg")
    env = {**server_env(), **WEBHOOK_ENV, "MLGOV_EVENTS_POLL_SECONDS": "1", "MLGOV_EVENTS_RETRY_SECONDS": "1",
           "MLGOV_EVENTS_RETRY_MAX_SECONDS": "2"}
    with new_pg_database("mlgov_events", pg_template) as backend:
        migrate("governed-" + backend, backend, backend)  # once, as mlgov server does before its workers
        with mlflow_server(workdir, backend, "governed-" + backend, app_name="governance", env=env,
                           workers=2) as url:
            admin = RestGovernance(url, "admin", ADMIN_PASSWORD)
            for user, role in USERS.items():
                admin.add_user(user, password(user))
                admin.grant(user, role)
            yield url


def test_two_workers_deliver_each_event_once_in_order(two_worker_server, monkeypatch):
    url = two_worker_server
    with registered_receiver(url, monkeypatch) as rec:
        model = unique("workers")
        version = new_version_in_development(url, model)
        for i, row in enumerate(r for r in PATH if r.scope == wf.VERSION_SCOPE):
            if i == 3:
                rec.stop()  # down for a while: both workers retry, neither sends twice
            api(url, ROLE_USER[row.role]).transition(model, row.action, version,
                                                     fields_for(row.source, model, version), None)
        # Down for a while: its oldest event tried and failed more than once (by either worker).
        admin = _admin(url)
        eventually(lambda: [t for t in admin.events_status()["targets"]
                            if t["url"] == rec.url and t["attempts"] >= 2 and t["last_error"]],
                   60, what="the receiver's oldest event retried")
        rec.start()
        expected = [e["mlflow_payload"] for e in api(url, "olivia").events(0, 100, model)
                    if e["mlflow_event"] in VERSION_EVENTS]
        rec.wait_for(len(expected), timeout=60)
        _quiet(url, rec, model, len(expected))
        assert [d.data for d in _mine(rec, model)] == expected and all(d.signed for d in rec.received())


def test_mlgov_events_deliver_clears_a_backlog_larger_than_one_pass(sqlite_registry, tmp_path):
    """One pass fans out at most 200 events; `mlgov events deliver` goes on until the backlog is gone."""
    client = GovernanceClient()
    with acting("olivia"):
        while len(client.events(0, 10000)) <= 230:
            client.initiate(unique("backlog"), "many models at once", "low")
    p = mlgov_in_process("events", "deliver", env={**os.environ, "MLGOV_USER": "admin"}, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert people.delivery_status(governed_store())["undispatched"] == 0, p.stdout
