"""Delivery of governance events (`mlflow_governance.core.events`) to MLflow's registry webhooks.

Off the request path: a daemon thread in every governance-server worker (`start_in_server`), or
``mlgov events deliver`` for a registry without a server, reads the outbox and posts each event
to every MLflow webhook subscribed to its MLflow event, with MLflow's payload shape, headers and
HMAC signature, so a receiver written for MLflow's own deliveries works unchanged.

Exactly once per (event, webhook), in order per webhook:

* fan-out: an event gets one ``mlgov_event_delivery`` row per active webhook that subscribed to
  its event and existed when it was committed (as MLflow delivers to the webhooks of the moment),
  made in the transaction that flips the event's ``fanned_out`` (``UPDATE ... WHERE fanned_out``
  is false: one worker wins, on SQLite and PostgreSQL alike);
* a row is sent only by the worker that claimed it (``UPDATE ... WHERE claimed_until`` is past:
  a lease, so a worker that died mid-send is taken over), only when it is the oldest pending row
  of its webhook, and marked delivered after a 2xx: a receiver sees the changes in commit order;
* a failure (no answer, non-2xx) keeps the row and retries it after ``MLGOV_EVENTS_RETRY_SECONDS``,
  doubling up to ``MLGOV_EVENTS_RETRY_MAX_SECONDS``, for as long as the webhook exists and is
  active; a deleted or disabled webhook's rows are skipped. A receiver that is down delays
  nothing (the change has committed long before) and loses nothing.

Every attempt of one row carries the same ``X-MLflow-Delivery-Id``, so a receiver can drop the
copy it gets when an answer was lost after it had processed the event (the one case a sender
cannot tell from a failure).

The sinks are pluggable (`Sink`): MLflow's webhooks (`MlflowWebhookSink`, here), and the people
each event concerns, by mail or chat (`mlflow_governance.notifications.people`, a row per event and
user), over the same rows and with the same guarantees. This module knows sinks only by that
protocol: the caller names them (`notifications.default_sinks` gives both), so the outbox does
not import its sinks and the people's sink imports the outbox, never the other way round.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
import sqlalchemy as sa
from mlflow.entities.webhook import WebhookEntity, WebhookEvent
from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES, MLFLOW_WEBHOOK_REQUEST_TIMEOUT
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import _validate_webhook_url
from mlflow.webhooks.constants import (
    WEBHOOK_DELIVERY_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
)
from mlflow.webhooks.delivery import _generate_hmac_signature
from mlflow.webhooks.ssrf import SSRFProtectedHTTPAdapter

from mlflow_governance.core import environment_variables as ev
from mlflow_governance.core.events import Event, iso
from mlflow_governance.core.schema import event_deliveries as deliveries
from mlflow_governance.core.schema import events as events_table
from mlflow_governance.core.tags import is_governance_key

log = logging.getLogger(__name__)

PENDING, DELIVERED, SKIPPED = "pending", "delivered", "skipped"
MLFLOW_WEBHOOK = "mlflow-webhook"
_BATCH = 200


class DeliveryFailed(Exception):
    """This attempt failed; the row is retried later."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class TargetGone(Exception):
    """The target no longer takes this event (webhook deleted, disabled, unsubscribed): skip the row."""


class Sink(Protocol):
    """A kind of receiver of governance events: which targets an event goes to, and how to send it."""

    name: str

    def targets(self, event: Event) -> list[str]: ...

    def send(self, event: Event, target: str, delivery_id: str) -> int | None: ...

    def describe(self, targets: Iterable[str]) -> dict[str, dict[str, str]]: ...


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- MLflow's webhooks ------------------------------------------------------------------------


def signed_request(webhook: Any, event: Event, delivery_id: str, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """Body and headers of MLflow's webhook request for ``event``, signed with the webhook's secret.

    The shape is MLflow's own (`mlflow.webhooks.delivery._send_webhook_request`): ``{"entity",
    "action", "timestamp", "data"}`` (plus ``workspace`` when MLflow's workspaces are on), headers
    ``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp`` (now, for the receiver's replay check) and
    ``X-MLflow-Signature`` = ``v1,`` base64 HMAC-SHA256 of ``"{delivery_id}.{timestamp}.{body}"``
    (MLflow's `_generate_hmac_signature`). Two differences, both because a delivery can be retried:
    the delivery id is the row's (the same on every attempt) and the envelope's ``timestamp`` is
    when the change committed, not when this attempt was sent.
    """
    webhook_event = WebhookEvent.from_str(event.mlflow_event)
    envelope: dict[str, Any] = {
        "entity": webhook_event.entity.value,
        "action": webhook_event.action.value,
        "timestamp": iso(event.ts),
        "data": event.mlflow_payload,
    }
    if MLFLOW_ENABLE_WORKSPACES.get():
        envelope["workspace"] = webhook.workspace
    body = json.dumps(envelope)
    unix = str(int(time.time()) if timestamp is None else timestamp)
    headers = {"Content-Type": "application/json", WEBHOOK_DELIVERY_ID_HEADER: delivery_id, WEBHOOK_TIMESTAMP_HEADER: unix}
    if webhook.secret:
        headers[WEBHOOK_SIGNATURE_HEADER] = _generate_hmac_signature(webhook.secret, delivery_id, unix, body)
    return body.encode("utf-8"), headers


def _http_session() -> requests.Session:
    """MLflow's SSRF-protected adapter (the peer address is checked after connecting), without
    urllib3's in-request retries: retries are the outbox's, spaced and kept across restarts."""
    session = requests.Session()
    session.trust_env = False  # a proxy would make the checked peer the proxy (as MLflow does)
    adapter = SSRFProtectedHTTPAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class MlflowWebhookSink:
    """MLflow's registry webhooks (created with ``MlflowClient.create_webhook``), read from the registry."""

    name = MLFLOW_WEBHOOK

    def __init__(self, store: Any):
        self.store = store
        self._local = threading.local()

    def _http(self) -> requests.Session:
        if getattr(self._local, "session", None) is None:
            self._local.session = _http_session()
        return self._local.session

    def targets(self, event: Event) -> list[str]:
        if not event.mlflow_event:
            return []
        webhook_event = WebhookEvent.from_str(event.mlflow_event)
        found, token = [], None
        while True:
            page = self.store.list_webhooks_by_event(webhook_event, max_results=100, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
        return sorted(w.webhook_id for w in found
                      if w.status.is_active() and (w.creation_timestamp or 0) <= event.ts)

    def send(self, event: Event, target: str, delivery_id: str) -> int | None:
        try:
            webhook = self.store.get_webhook(target)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise TargetGone("the webhook was deleted") from None
            raise
        if not webhook.status.is_active():
            raise TargetGone("the webhook is disabled")
        if event.mlflow_event not in {str(e) for e in webhook.events}:
            raise TargetGone(f"the webhook no longer subscribes to {event.mlflow_event}")
        try:
            _validate_webhook_url(webhook.url)  # MLflow's scheme and private-address rules, at send time too
        except MlflowException as exc:
            raise DeliveryFailed(exc.message) from None
        body, headers = signed_request(webhook, event, delivery_id)
        try:
            response = self._http().post(webhook.url, data=body, headers=headers,
                                         timeout=MLFLOW_WEBHOOK_REQUEST_TIMEOUT.get())
        except requests.RequestException as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - e.g. MLflow's SSRFProtectionError at connect time
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"the receiver answered HTTP {response.status_code}", response.status_code)
        return response.status_code

    def describe(self, targets: Iterable[str]) -> dict[str, dict[str, str]]:
        """Name and URL of each webhook (read without its secret, which another process may not decrypt)."""
        from mlflow.store.model_registry.dbmodels.models import SqlWebhook

        ids = list(targets)
        if not ids:
            return {}
        query = sa.select(SqlWebhook.webhook_id, SqlWebhook.name, SqlWebhook.url).where(SqlWebhook.webhook_id.in_(ids))
        with self.store.engine.connect() as conn:
            return {r.webhook_id: {"name": r.name, "url": r.url} for r in conn.execute(query)}


# --- the deliverer ----------------------------------------------------------------------------


def backoff_seconds(attempts: int) -> float:
    """Wait after the ``attempts``-th failure: MLGOV_EVENTS_RETRY_SECONDS doubled per failure,
    capped at MLGOV_EVENTS_RETRY_MAX_SECONDS, with up to 10% jitter off it."""
    base, cap = ev.MLGOV_EVENTS_RETRY_SECONDS.get(), ev.MLGOV_EVENTS_RETRY_MAX_SECONDS.get()
    wait = min(float(cap), base * 2.0 ** max(0, attempts - 1))
    return wait * random.uniform(0.9, 1.0)


@dataclass
class PassResult:
    """What one delivery pass did."""

    fanned_out: int = 0
    delivered: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


class Deliverer:
    """Fans events out to their targets and sends what is due; safe to run in several processes."""

    def __init__(self, store: Any, sinks: Iterable[Sink], worker: str | None = None, max_parallel: int = 4):
        self.store = store
        self.engine = store.engine
        self.sinks: dict[str, Sink] = {s.name: s for s in sinks}
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.max_parallel = max_parallel
        self.last_error: str | None = None
        self._failing: set[tuple[str, str]] = set()

    # -- fan-out ---------------------------------------------------------------------------

    def fan_out(self, result: PassResult) -> None:
        """Give each new event (oldest first) its delivery rows, in one transaction for the batch."""
        e = events_table
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(e).where(e.c.fanned_out.is_(False)).order_by(e.c.seq).limit(_BATCH)).all()
        planned: list[tuple[Event, list[tuple[str, str]]]] = []
        failed = None
        for row in rows:
            event = Event.from_row(row)
            try:
                planned.append((event, [(sink.name, t) for sink in self.sinks.values() for t in sink.targets(event)]))
            except Exception as exc:  # noqa: BLE001 - e.g. webhook secrets this process cannot decrypt
                failed = f"listing the targets of event {event.seq} failed: {type(exc).__name__}: {exc}"
                break  # in order: the later events wait for this one
        if planned:
            now = _now_ms()
            with self.engine.begin() as conn:
                for event, targets in planned:
                    won = conn.execute(e.update().where(e.c.seq == event.seq, e.c.fanned_out.is_(False))
                                       .values(fanned_out=True)).rowcount
                    if won == 1 and targets:
                        conn.execute(deliveries.insert(), [
                            {"event_seq": event.seq, "sink": sink, "target": target, "state": PENDING,
                             "delivery_id": str(uuid.uuid4()), "attempts": 0, "next_attempt_at": now}
                            for sink, target in targets
                        ])
                    result.fanned_out += int(won == 1)
        if failed is not None:
            self.last_error = failed
            result.errors.append(failed)
            log.error("%s (events wait until it works; MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY must be the same "
                      "in every process)", failed)
            return
        self.last_error = None

    def _first_unfanned(self) -> int | None:
        e = events_table
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.min(e.c.seq)).where(e.c.fanned_out.is_(False))).scalar()

    # -- sending ---------------------------------------------------------------------------

    def _next(self, sink: str, target: str, after: int) -> int | None:
        """The pending row of ``target`` after ``after`` (its event seq), if its event may go now."""
        d = deliveries
        query = sa.select(sa.func.min(d.c.event_seq)).where(
            d.c.state == PENDING, d.c.sink == sink, d.c.target == target, d.c.event_seq > after)
        limit = self._first_unfanned()
        if limit is not None:
            query = query.where(d.c.event_seq < limit)  # an older event is not fanned out yet: it goes first
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        return int(found) if found is not None else None

    def _heads(self) -> list[Any]:
        """The oldest pending row of each target: (sink, target, event_seq, next_attempt_at, claimed_until)."""
        d = deliveries
        query = sa.select(d.c.sink, d.c.target, sa.func.min(d.c.event_seq).label("seq")).where(d.c.state == PENDING)
        limit = self._first_unfanned()
        if limit is not None:
            query = query.where(d.c.event_seq < limit)
        with self.engine.connect() as conn:
            heads = conn.execute(query.group_by(d.c.sink, d.c.target)).all()
            return [conn.execute(sa.select(d.c.sink, d.c.target, d.c.event_seq, d.c.next_attempt_at, d.c.claimed_until)
                                 .where(d.c.sink == h.sink, d.c.target == h.target, d.c.event_seq == h.seq)).one()
                    for h in heads]

    def _claim(self, sink: str, target: str, seq: int) -> str | None:
        """Claim the row (its delivery id), or None when it is not due or another worker has it."""
        d = deliveries
        now = _now_ms()
        lease = now + (MLFLOW_WEBHOOK_REQUEST_TIMEOUT.get() + 30) * 1000
        key = sa.and_(d.c.event_seq == seq, d.c.sink == sink, d.c.target == target)
        with self.engine.begin() as conn:
            won = conn.execute(d.update().where(
                key, d.c.state == PENDING, d.c.next_attempt_at <= now,
                sa.or_(d.c.claimed_until.is_(None), d.c.claimed_until < now),
            ).values(claimed_by=self.worker, claimed_until=lease)).rowcount
            if won != 1:
                return None
            return conn.execute(sa.select(d.c.delivery_id).where(key)).scalar()

    def _finish(self, sink: str, target: str, seq: int, **values: Any) -> None:
        d = deliveries
        with self.engine.begin() as conn:
            conn.execute(d.update().where(d.c.event_seq == seq, d.c.sink == sink, d.c.target == target,
                                          d.c.claimed_by == self.worker)
                         .values(claimed_by=None, claimed_until=None, **values))

    def _event(self, seq: int) -> Event:
        with self.engine.connect() as conn:
            return Event.from_row(conn.execute(sa.select(events_table).where(events_table.c.seq == seq)).one())

    def _drain(self, sink_name: str, target: str, seq: int) -> PassResult:
        """Send the pending rows of one target in order, until one fails or none is due."""
        result = PassResult()
        sink = self.sinks.get(sink_name)
        while sink is not None:
            delivery_id = self._claim(sink_name, target, seq)
            if delivery_id is None:
                break
            event = self._event(seq)
            d = deliveries
            attempts = sa.select(d.c.attempts).where(d.c.event_seq == seq, d.c.sink == sink_name, d.c.target == target)
            with self.engine.connect() as conn:
                tried = int(conn.execute(attempts).scalar() or 0) + 1
            try:
                code = sink.send(event, target, delivery_id)
            except TargetGone as gone:
                self._finish(sink_name, target, seq, state=SKIPPED, attempts=tried, last_error=str(gone))
                result.skipped += 1
            except Exception as exc:  # noqa: BLE001 - every failure is kept and retried
                wait = backoff_seconds(tried)
                message = str(exc)[:1000] or type(exc).__name__
                self._finish(sink_name, target, seq, attempts=tried, last_error=message,
                             status_code=getattr(exc, "status_code", None),
                             next_attempt_at=_now_ms() + int(wait * 1000))
                result.failed += 1
                if (sink_name, target) not in self._failing:
                    self._failing.add((sink_name, target))
                    log.warning("governance event %s to %s %s failed (%s); kept, retried in %.0f s and on",
                                seq, sink_name, target, message, wait)
                break
            else:
                self._finish(sink_name, target, seq, state=DELIVERED, attempts=tried, status_code=code,
                             last_error=None, delivered_at=_now_ms())
                result.delivered += 1
                if (sink_name, target) in self._failing:
                    self._failing.discard((sink_name, target))
                    log.info("governance events to %s %s are delivered again", sink_name, target)
            following = self._next(sink_name, target, seq)
            if following is None:
                break
            seq = following
        return result

    def run_once(self) -> PassResult:
        """One pass: fan new events out, then send every row that is due (one thread per target)."""
        result = PassResult()
        self.fan_out(result)
        now = _now_ms()
        due = [(r.sink, r.target, int(r.event_seq)) for r in self._heads()
               if r.next_attempt_at <= now and (r.claimed_until is None or r.claimed_until < now)]
        if not due:
            return result
        if len(due) == 1 or self.max_parallel <= 1:
            parts = [self._drain(*d) for d in due]
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_parallel, len(due)),
                                    thread_name_prefix="mlgov-delivery") as pool:
                parts = list(pool.map(lambda d: self._drain(*d), due))
        for part in parts:
            result.delivered += part.delivered
            result.failed += part.failed
            result.skipped += part.skipped
        return result


# --- what is left to deliver ------------------------------------------------------------------


def status(store: Any, sinks: Iterable[Sink], details: bool = True) -> dict[str, Any]:
    """Counts of the outbox: events not fanned out yet, rows undelivered, delivered, skipped; with
    ``details``, each target that has undelivered rows (its name and URL, attempts, last error)."""
    e, d = events_table, deliveries
    with store.engine.connect() as conn:
        waiting = int(conn.execute(sa.select(sa.func.count()).where(e.c.fanned_out.is_(False))).scalar() or 0)
        by_state = dict(conn.execute(sa.select(d.c.state, sa.func.count()).group_by(d.c.state)).all())
        oldest = conn.execute(sa.select(sa.func.min(e.c.ts)).where(sa.or_(
            e.c.fanned_out.is_(False),
            e.c.seq.in_(sa.select(d.c.event_seq).where(d.c.state == PENDING))))).scalar()
        total = int(conn.execute(sa.select(sa.func.count()).select_from(e)).scalar() or 0)
        heads = conn.execute(
            sa.select(d.c.sink, d.c.target, sa.func.count(), sa.func.min(d.c.event_seq))
            .where(d.c.state == PENDING).group_by(d.c.sink, d.c.target)).all() if details else []
        rows = []
        for sink, target, count, first in heads:
            head = conn.execute(sa.select(d.c.attempts, d.c.last_error, d.c.next_attempt_at, d.c.status_code).where(
                d.c.event_seq == first, d.c.sink == sink, d.c.target == target)).one()
            rows.append({"sink": sink, "target": target, "undelivered": int(count), "oldest_event": int(first),
                         "attempts": int(head.attempts), "last_error": head.last_error,
                         "last_status": head.status_code, "next_attempt": iso(int(head.next_attempt_at))})
    if rows:
        known = {s.name: s for s in sinks}
        for sink_name in {r["sink"] for r in rows}:
            described = known[sink_name].describe(r["target"] for r in rows if r["sink"] == sink_name) \
                if sink_name in known else {}
            for r in rows:
                if r["sink"] == sink_name:
                    r.update(described.get(r["target"], {}))
    undelivered = int(by_state.get(PENDING, 0))
    answer: dict[str, Any] = {
        "events": total,
        "undispatched": waiting,
        "undelivered": undelivered,
        "delivered": int(by_state.get(DELIVERED, 0)),
        "skipped": int(by_state.get(SKIPPED, 0)),
        "oldest_undelivered": iso(int(oldest)) if oldest is not None and (undelivered or waiting) else None,
    }
    if details:
        answer["targets"] = rows
        if _thread is not None and _thread.deliverer is not None and _thread.deliverer.last_error:
            answer["last_error"] = _thread.deliverer.last_error
    return answer


# --- in the governance server -----------------------------------------------------------------


#: After a wake, how long the delivery thread waits for more commits before its pass: a burst of
#: governance actions is fanned out in one pass (one transaction) instead of one pass per action,
#: which would compete with the requests for the worker's CPU and the database's write lock.
SETTLE_SECONDS = 0.25


class DeliveryThread(threading.Thread):
    """A daemon thread that runs passes every MLGOV_EVENTS_POLL_SECONDS, and at once when this
    process commits events (`events.subscribe`)."""

    def __init__(self, store_factory: Callable[[], Any], sinks_for: Callable[[Any], Iterable[Sink]]):
        super().__init__(name="mlgov-events", daemon=True)
        self.store_factory = store_factory
        self.sinks_for = sinks_for
        self.deliverer: Deliverer | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.pid = os.getpid()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        from mlflow_governance.core import events

        events.subscribe(self.wake)
        try:
            while not self._stopping.is_set():
                try:
                    if self.deliverer is None:
                        store = self.store_factory()
                        self.deliverer = Deliverer(store, self.sinks_for(store))
                    self.deliverer.run_once()
                except Exception:  # noqa: BLE001 - a database outage: try again at the next pass
                    log.exception("governance event delivery pass failed; trying again")
                woken = self._wake.wait(ev.MLGOV_EVENTS_POLL_SECONDS.get())
                self._wake.clear()
                if woken:  # a commit of this process: let the rest of a burst join the same pass
                    self._stopping.wait(SETTLE_SECONDS)
        finally:
            events.unsubscribe(self.wake)


_thread: DeliveryThread | None = None
_thread_lock = threading.Lock()


def _server_store():
    from mlflow.server.handlers import _get_model_registry_store

    return _get_model_registry_store()


def ensure_running(sinks_for: Callable[[Any], Iterable[Sink]],
                   store_factory: Callable[[], Any] = _server_store) -> DeliveryThread | None:
    """Start this process's delivery thread, sending to ``sinks_for(store)``, if it is not running
    (a forked worker starts its own)."""
    global _thread
    if not ev.MLGOV_EVENTS_DELIVERY.get():
        return None
    with _thread_lock:
        if _thread is None or _thread.pid != os.getpid() or not _thread.is_alive():
            _thread = DeliveryThread(store_factory, sinks_for)
            _thread.start()
        return _thread


def start_in_server(app: Any, sinks_for: Callable[[Any], Iterable[Sink]]) -> None:
    """In each governance-server worker: deliver events to ``sinks_for(store)`` off the request
    path, and keep MLflow's handlers from announcing governance tag writes a second time
    (`suppress_duplicate_deliveries`)."""
    suppress_duplicate_deliveries()
    if not ev.MLGOV_EVENTS_DELIVERY.get():
        return
    if not ev.MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY.get():
        log.warning("%s is not set: MLflow encrypts webhook secrets with a key made by this process, so other "
                    "workers, a restart and mlgov events deliver cannot sign with them; set it to a Fernet key",
                    ev.MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY)
    ensure_running(sinks_for)

    def keep_delivering() -> None:  # a worker forked after create_app starts its own thread
        ensure_running(sinks_for)

    app.before_request(keep_delivering)


_suppressed = False


def suppress_duplicate_deliveries() -> None:
    """MLflow's set-tag handler announces every ``model_version_tag.set`` it wrote; a governed tag
    write (``mlgov.action``, ``mlgov.field.<name>``) is a governance change whose event the outbox
    delivers on every path, so MLflow's own announcement of it is dropped here: one event per
    change, never two (and never ``mlgov.action``, which the store turns into a transition and
    never stores). Every other MLflow delivery goes through untouched.

    MLflow offers no hook for this: the handlers call the module-level ``deliver_webhook`` of
    ``mlflow.server.handlers``, which is wrapped here.
    """
    global _suppressed
    from mlflow.server import handlers

    if _suppressed:
        return
    original = handlers.deliver_webhook

    def deliver_webhook(*, event, payload, store):
        if event.entity == WebhookEntity.MODEL_VERSION_TAG and is_governance_key(str(payload.get("key", ""))):
            return None
        return original(event=event, payload=payload, store=store)

    handlers.deliver_webhook = deliver_webhook
    _suppressed = True
