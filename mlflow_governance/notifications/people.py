"""Notifications to people: the governance events told to the users they concern, by mail or chat.

Another sink (`PeopleSink`, ``person``) of the outbox `mlflow_governance.notifications.delivery` sends, beside
MLflow's webhooks, so the same guarantees hold: one ``mlgov_event_delivery`` row per (event,
user), made when the event is fanned out; sent in commit order per user, kept and retried with
backoff while the mail server or the chat service fails (a change never waits for it), marked
delivered once the service accepted the message, counted in ``mlgov events status``.

Who is told (`recipients`):

* a change that leaves a model or version waiting for a role (initiated, submitted, approved,
  sent back, usability changed): every user who holds that role;
* a usability reject (a monitor's or a person's): also every ModelOwner and ModelMonitor.

A user is told through their contact (`mlflow_governance.notifications.contacts`), for the events committed
after it was set: mail through the one mail server of ``MLGOV_SMTP_URL`` (sender
``MLGOV_SMTP_FROM``), or their own Apprise URL (Slack, Teams, a JSON webhook). A user with no
contact, or with a mail address while no mail server is set, is not told (and ``mlgov
notifications list`` says so). Sending is Apprise's (https://github.com/caronc/apprise): one
library for SMTP, Slack, Teams and JSON webhooks; its failure text is captured per thread.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import sqlalchemy as sa

from mlflow_governance.core import environment_variables as ev
from mlflow_governance.core import events, roles, workflow
from mlflow_governance.core.events import Event
from mlflow_governance.core.schema import event_deliveries as deliveries
from mlflow_governance.notifications import contacts, delivery
from mlflow_governance.notifications.delivery import PENDING, DeliveryFailed, TargetGone

log = logging.getLogger(__name__)

PERSON = "person"
SENDER_NAME = "MLflow governance"
# Kinds of event after which a model or version waits for a (new) task of ``waiting_for``.
WAITING_KINDS = frozenset({events.INITIATED, events.SUBMITTED, events.APPROVED, events.SENT_BACK,
                           events.USABILITY_CHANGED})
_TLS_MODES = {"smtp": "insecure", "smtp+tls": "starttls", "smtps": "ssl", "smtp+ssl": "ssl"}
_PORTS = {"insecure": 25, "starttls": 587, "ssl": 465}


class NotConfigured(Exception):
    """The user's contact is a mail address and no mail server is set."""


# --- who is told ------------------------------------------------------------------------------


def is_usability_reject(event: Event) -> bool:
    return event.kind == events.USABILITY_CHANGED and event.payload.get("usability") == workflow.USABILITY_REJECT


def recipient_roles(event: Event) -> list[str]:
    """The roles whose holders ``event`` is told to, in order."""
    wanted: list[str] = []
    if event.kind in WAITING_KINDS and event.waiting_for:
        wanted.append(event.waiting_for)
    if is_usability_reject(event):
        wanted += [workflow.MODEL_OWNER, workflow.MODEL_MONITOR]
    return list(dict.fromkeys(wanted))


def recipients(conn: Any, event: Event) -> list[str]:
    """The users ``event`` concerns (holders of its roles), sorted, contact or not."""
    users: set[str] = set()
    for role in recipient_roles(event):
        users.update(roles.users_with(conn, role))
    return sorted(users)


# --- the message ------------------------------------------------------------------------------


def _what(event: Event) -> str:
    p = event.payload
    return {
        events.INITIATED: "put under governance",
        events.SUBMITTED: f"submitted: now {event.stage}",
        events.APPROVED: f"approved: now {event.stage}",
        events.SENT_BACK: f"sent back: now {event.stage}",
        events.USABILITY_CHANGED: "usability REJECTED" if p.get("usability") == workflow.USABILITY_REJECT
        else f"usability {p.get('usability') or 'changed'}",
        events.DECOMMISSIONED: "decommissioned",
    }.get(event.kind, event.kind.replace("_", " "))


def _figures(evidence: dict[str, Any]) -> list[str]:
    lines = []
    for b in evidence.get("breaches") or []:
        if isinstance(b, dict):
            where = "/".join(str(b[k]) for k in ("monitor", "key") if b.get(k) is not None)
            lines.append(f"  {where} = {b.get('value')} (allowed: {b.get('comparison') or ''} {b.get('threshold')})")
    for key, value in sorted(evidence.items()):
        if key != "breaches" and isinstance(value, (str, int, float)):
            lines.append(f"  {key}: {value}")
    return lines


def message(event: Event) -> tuple[str, str]:
    """(subject, body) of the notification of ``event``: what happened to which model and version,
    whom it waits for; the actor, the comment, a monitor's figures and the approvals-page link."""
    e = event.governance_event()
    where = f"{event.model} v{event.version}" if event.version is not None else event.model
    waiting = f", waiting for {event.waiting_for}" if event.waiting_for else ""
    subject = f"[MLflow governance] {where}: {_what(event)} by {event.actor}{waiting}"
    lines = [f"Model: {event.model}" + (f", version {event.version}" if event.version is not None else ""),
             f"What happened: {_what(event)}"]
    if e.get("from_stage") and e.get("from_stage") != event.stage:
        lines.append(f"Stage: {e['from_stage']} -> {event.stage}")
    elif event.stage:
        lines.append(f"Stage: {event.stage}")
    if e.get("usability"):
        lines.append(f"Usability: {e['usability']}")
    lines.append(f"Waiting for: {event.waiting_for or 'nobody'}")
    lines.append(f"By: {event.actor}" + (f" ({e['role']})" if e.get("role") else ""))
    if e.get("comment"):
        lines.append(f"Comment: {e['comment']}")
    if e.get("evidence"):
        lines.append("Monitor figures:")
        lines += _figures(e["evidence"]) or ["  (none given)"]
    lines += ["", f"Open it: {e['link']}", f"Event {event.seq} at {e['time']}"]
    return subject, "\n".join(lines) + "\n"


TEST_SUBJECT = "[MLflow governance] test notification"


def test_message(user: str, actor: str) -> tuple[str, str]:
    return TEST_SUBJECT, (f"This is a test notification for {user}, sent by {actor} with mlgov notifications test.\n"
                          "Governance events that concern your roles will arrive here.\n")


# --- sending through Apprise ------------------------------------------------------------------


def sender() -> str:
    return ev.MLGOV_SMTP_FROM.get() or f"mlflow-governance@{socket.getfqdn() or 'localhost'}"


def mail_url(address: str, headers: dict[str, str] | None = None) -> str:
    """The Apprise ``mailto(s)://`` URL that sends to ``address`` through ``MLGOV_SMTP_URL``
    (with ``headers`` as extra mail headers)."""
    from mlflow.environment_variables import MLFLOW_WEBHOOK_REQUEST_TIMEOUT

    server = ev.MLGOV_SMTP_URL.get()
    if not server:
        raise NotConfigured(f"{ev.MLGOV_SMTP_URL} is not set: no mail server to send mail contacts through")
    parts = urlsplit(server)
    mode = _TLS_MODES[parts.scheme.lower()]
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    auth = ""
    if parts.username:
        auth = quote(unquote(parts.username), safe="") + ":" + quote(unquote(parts.password or ""), safe="") + "@"
    query = urlencode({"smtp": host, "from": sender(), "name": SENDER_NAME, "to": address, "mode": mode,
                       "cto": MLFLOW_WEBHOOK_REQUEST_TIMEOUT.get(),
                       **{f"+{k}": v for k, v in (headers or {}).items()}}, quote_via=quote)
    return f"{'mailto' if mode == 'insecure' else 'mailtos'}://{auth}{netloc}:{parts.port or _PORTS[mode]}/?{query}"


class _ThreadLog(logging.Handler):
    """Apprise's warnings and errors logged by this thread (Apprise reports failures only there)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.lines.append(record.getMessage())


@contextmanager
def _captured() -> Iterator[_ThreadLog]:
    handler = _ThreadLog()
    logger = logging.getLogger("apprise")
    # A server's logging set-up may disable loggers it did not configure, or raise their level:
    # Apprise's warnings are the failure reasons, so they are wanted.
    logger.disabled = False
    if not logger.isEnabledFor(logging.WARNING):
        logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def send(url: str, subject: str, body: str) -> None:
    """Send one message through the Apprise ``url``; `DeliveryFailed` with Apprise's reason (the
    URL's secret parts scrubbed) when the service did not take it."""
    import apprise

    # The service's plugin itself, called in this thread (``Apprise.notify`` would hand it to a
    # thread pool, whose log lines could not be told apart from another delivery's).
    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        raise DeliveryFailed("Apprise cannot use this contact's URL any more (set it again)")
    with _captured() as logged:
        try:
            ok = bool(plugin.notify(title=subject, body=body, body_format=apprise.NotifyFormat.TEXT))
        except Exception as exc:  # noqa: BLE001 - any failure of the service is kept and retried
            ok = False
            logged.lines.append(f"{type(exc).__name__}: {exc}")
    if not ok:
        reason = "; ".join(dict.fromkeys(line.strip() for line in logged.lines if line.strip()))
        raise DeliveryFailed(contacts.scrub(reason or "the notification service did not take the message", url))


EVENT_HEADER, DELIVERY_HEADER = "X-MLgov-Event-Id", "X-MLgov-Delivery-Id"


def channel_url(contact: Any, headers: dict[str, str] | None = None) -> str:
    """The Apprise URL that reaches ``contact`` (`NotConfigured` for mail without a mail server);
    a mail carries ``headers`` (the event and delivery ids: a reader can drop a repeated copy)."""
    return contact.url if contact.url else mail_url(contact.email, headers)


# --- the sink ---------------------------------------------------------------------------------


def usable(contact: Any) -> bool:
    return contact is not None and bool(contact.url or (contact.email and ev.MLGOV_SMTP_URL.get()))


class PeopleSink:
    """Users told of the events that concern their roles (`recipients`), through their contact."""

    name = PERSON

    def __init__(self, store: Any):
        self.store = store
        self._warned: set[str] = set()

    def targets(self, event: Event) -> list[str]:
        with self.store.engine.connect() as conn:
            known = contacts.every(conn)
            if not known:  # nobody has a contact: nobody to tell (and no roles to read)
                return []
            users = recipients(conn, event)
            if not users:
                return []
        found = []
        for user in users:
            contact = known.get(user)
            if contact is None or contact.created_at > event.ts:
                continue  # no contact (yet): not told
            if not usable(contact):
                if user not in self._warned:
                    self._warned.add(user)
                    log.warning("user %s has a mail contact but %s is not set: not notified", user, ev.MLGOV_SMTP_URL)
                continue
            found.append(user)
        return found

    def send(self, event: Event, target: str, delivery_id: str) -> int | None:
        with self.store.engine.connect() as conn:
            contact = contacts.get(conn, target)
        if contact is None:
            raise TargetGone(f"user {target} has no contact any more")
        try:
            url = channel_url(contact, {EVENT_HEADER: str(event.seq), DELIVERY_HEADER: delivery_id})
        except NotConfigured as exc:
            raise DeliveryFailed(str(exc)) from None
        send(url, *message(event))
        return None

    def describe(self, targets: Iterable[str]) -> dict[str, dict[str, str]]:
        """Each user and their contact (a URL masked)."""
        with self.store.engine.connect() as conn:
            known = contacts.every(conn)
        return {t: {"name": t, "url": contacts.described(known.get(t)) or "no contact"} for t in targets}


# --- the admin's view -------------------------------------------------------------------------


def listing(store: Any, actor: str | None, users: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Admin only: every user (role holders, users with a contact, and ``users``), their contact
    (a URL masked), their roles, and their notifications pending, failing (pending, tried and
    failed) and delivered, with the last error."""
    contacts.require_admin(store, actor)
    d = deliveries
    with store.engine.connect() as conn:
        held: dict[str, list[str]] = {}
        for row in roles.listing(conn):
            held.setdefault(row["username"], []).append(row["role"])
        known = contacts.every(conn)
        counts = conn.execute(
            sa.select(d.c.target, d.c.state, sa.func.count(), sa.func.sum(sa.case((d.c.attempts > 0, 1), else_=0)))
            .where(d.c.sink == PERSON).group_by(d.c.target, d.c.state)).all()
        errors = dict(conn.execute(
            sa.select(d.c.target, d.c.last_error).where(d.c.sink == PERSON, d.c.state == PENDING,
                                                        d.c.last_error.is_not(None))
            .order_by(d.c.event_seq)).all())
    tally: dict[str, dict[str, int]] = {}
    for target, state, number, tried in counts:
        t = tally.setdefault(target, {"pending": 0, "failed": 0, "delivered": 0})
        if state == PENDING:
            t["pending"] += int(number)
            t["failed"] += int(tried or 0)
        elif state == "delivered":
            t["delivered"] += int(number)
    smtp = bool(ev.MLGOV_SMTP_URL.get())
    rows = []
    for user in sorted(set(held) | set(known) | set(users) | set(tally)):
        contact = known.get(user)
        if contact is None:
            note = "no contact: not notified"
        elif contact.email and not smtp:
            note = f"mail contact but {ev.MLGOV_SMTP_URL} is not set: not notified"
        else:
            note = None
        rows.append({"user": user, "contact": contacts.described(contact),
                     "channel": None if contact is None else (contacts.URL if contact.url else contacts.MAIL),
                     "roles": sorted(held.get(user, [])), **tally.get(user, {"pending": 0, "failed": 0, "delivered": 0}),
                     "last_error": errors.get(user), "note": note})
    return rows


def send_test(store: Any, actor: str | None, user: str) -> dict[str, Any]:
    """Admin only: send ``user`` a test message now (not through the outbox). ``{"user", "contact",
    "ok", "error"}``; a user without a contact is `GovernanceError` ``missing`` (404, exit 4)."""
    from mlflow_governance.core.errors import GovernanceError

    contacts.require_admin(store, actor)
    with store.engine.connect() as conn:
        contact = contacts.get(conn, user)
    if contact is None:
        raise GovernanceError("missing", f"user {user!r} has no contact: set one with mlgov users set-contact {user} "
                                         "--email ADDRESS (or --url URL)")
    answer: dict[str, Any] = {"user": user, "contact": contacts.described(contact), "ok": True, "error": None}
    try:
        send(channel_url(contact), *test_message(user, actor or "?"))
    except (NotConfigured, DeliveryFailed) as exc:
        answer.update(ok=False, error=str(exc))
    return answer


# --- the outbox with every sink ------------------------------------------------------------------


def default_sinks(store: Any) -> list[delivery.Sink]:
    """Every sink of a registry: MLflow's webhooks and the people the events concern."""
    return [delivery.MlflowWebhookSink(store), PeopleSink(store)]


def deliverer(store: Any, worker: str | None = None) -> delivery.Deliverer:
    """The outbox's deliverer for ``store``, sending to every sink (`default_sinks`)."""
    return delivery.Deliverer(store, default_sinks(store), worker=worker)


def delivery_status(store: Any, details: bool = True) -> dict[str, Any]:
    """`delivery.status` of ``store`` with every sink describing its targets."""
    return delivery.status(store, default_sinks(store), details=details)
