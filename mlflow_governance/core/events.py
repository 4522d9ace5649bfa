"""Governance events: one row per committed governance change, written in the change's own transaction.

MLflow's registry webhooks are fired by MLflow's server handlers, so a change made by the
governance REST API, the approvals page or the local CLI fired none, although it writes the very
tags and alias those webhooks describe. This module is the transactional outbox that closes the
gap: `on_record` runs where the engine appends the audit row of an *allowed* governance action
(`engine.transaction.record`) and inserts an ``mlgov_event`` row in the same transaction, so the
event exists exactly when the change committed (a retried transaction rolls its row back with
it; a refused attempt writes an audit row and no event). The production alias is netted per
transaction (`note_alias` before the first change, `finish` before the commit), so a promotion
that moves it from version 1 to 2 is one event, not a removal and an addition.

Each row carries two descriptions of the change:

* the governance event (``payload``): kind, model, version, stage, the role it now waits for,
  actor, comment, fields, the monitor's evidence, the approvals-page path; what notification
  channels (mail, chat) will render;
* MLflow's own webhook event and ``data`` payload (`MLFLOW_EVENTS`), built with MLflow's payload
  types, so a receiver written for MLflow's webhooks works unchanged. MLflow 3.17 has no event for
  registered-model tags: model-scope changes (candidacy, data acquisition, a model's own
  decommissioning) map to no MLflow event, except ``registered_model.created`` when initiating
  created the model.

`mlflow_governance.notifications.delivery` sends the rows. Nothing here does network I/O.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersionTag,
    SqlRegisteredModelAlias,
    SqlRegisteredModelTag,
)
from mlflow.utils.workspace_utils import DEFAULT_WORKSPACE_NAME
from mlflow.webhooks.types import (
    ModelVersionAliasCreatedPayload,
    ModelVersionAliasDeletedPayload,
    ModelVersionTagSetPayload,
    RegisteredModelCreatedPayload,
)
from sqlalchemy.orm import Session

from mlflow_governance.core import config, workflow
from mlflow_governance.core.schema import events as events_table
from mlflow_governance.core.tags import (
    TAG_ASSIGNEE,
    TAG_FIELD_PREFIX,
    TAG_MONITORS_DIGEST,
    TAG_STAGE,
    TAG_USABILITY,
)

# --- the kinds of governance event -----------------------------------------------------------

INITIATED = "initiated"
SUBMITTED = "submitted"
APPROVED = "approved"
SENT_BACK = "sent_back"
FIELD_FILLED = "field_filled"
MONITORS_SET = "monitors_set"
USABILITY_CHANGED = "usability_changed"
DECOMMISSIONED = "decommissioned"
PRODUCTION_ALIAS_MOVED = "production_alias_moved"
KINDS: tuple[str, ...] = (
    INITIATED, SUBMITTED, APPROVED, SENT_BACK, FIELD_FILLED, MONITORS_SET, USABILITY_CHANGED, DECOMMISSIONED,
    PRODUCTION_ALIAS_MOVED,
)

# MLflow's webhook events a governance change can fire (`mlflow.entities.webhook.WebhookEvent`).
TAG_SET = "model_version_tag.set"
ALIAS_CREATED = "model_version_alias.created"
ALIAS_DELETED = "model_version_alias.deleted"
MODEL_CREATED = "registered_model.created"
MLFLOW_EVENTS: tuple[str, ...] = (TAG_SET, ALIAS_CREATED, ALIAS_DELETED, MODEL_CREATED)

_ACTION_KINDS = {
    workflow.SUBMIT: SUBMITTED,
    workflow.APPROVE: APPROVED,
    workflow.REJECT: SENT_BACK,
    workflow.DECOMMISSION: DECOMMISSIONED,
    workflow.SET_FIELD: FIELD_FILLED,
    workflow.SET_MONITORS: MONITORS_SET,
    workflow.INITIATE: INITIATED,
    workflow.ACCEPT: USABILITY_CHANGED,  # accept only ever re-accepts a production version's usability
}
_USABILITY_EFFECTS = frozenset({"usability_reject", "usability_accept"})

_INFO_WORKSPACES = "mlgov_workspaces"
_INFO_CREATED = "mlgov_created_models"
_INFO_ALIAS = "mlgov_alias_before"
_INFO_LAST = "mlgov_last_change"
_INFO_COUNT = "mlgov_events"


def kind_of(action: str, from_stage: str | None, scope: str) -> str | None:
    """The kind of event an allowed audit row is, or None when it is not a governance change of a
    model (role administration, a deleted version)."""
    kind = _ACTION_KINDS.get(action)
    if kind == SENT_BACK and from_stage:
        row = workflow.find_transition(from_stage, action, scope)
        if row is not None and _USABILITY_EFFECTS & set(row.effects):
            return USABILITY_CHANGED  # a monitor's (or the owner's) verdict on a production version
    return kind


# The approvals page of one model (`mlflow_governance.server.pages.MODEL_PAGE`; not imported from
# there, which would load Flask and Jinja into every CLI command that acts).
MODEL_PAGE = "/governance/model"


def path_of(model: str, version: int | None = None) -> str:
    """The approvals page of ``model`` (relative to the server), at the version's section."""
    anchor = f"#version-{version}" if version is not None else ""
    return f"{MODEL_PAGE}?name={quote(model, safe='')}{anchor}"


# --- in the governance transaction -----------------------------------------------------------


def remember_workspace(session: Session, model: str, workspace: str) -> None:
    """The workspace of a model the transaction loaded (the engine calls it from `load`)."""
    session.info.setdefault(_INFO_WORKSPACES, {})[model] = workspace


def model_created(session: Session, model: str) -> None:
    """Initiating created ``model`` in this transaction: MLflow's ``registered_model.created`` fires."""
    session.info.setdefault(_INFO_CREATED, set()).add(model)


def _workspace(session: Session, model: str) -> str:
    return session.info.get(_INFO_WORKSPACES, {}).get(model, DEFAULT_WORKSPACE_NAME)


def _tags(session: Session, model: str, version: int | None) -> dict[str, str]:
    workspace = _workspace(session, model)
    if version is None:
        rows = session.query(SqlRegisteredModelTag).filter_by(workspace=workspace, name=model).all()
    else:
        rows = session.query(SqlModelVersionTag).filter_by(workspace=workspace, name=model, version=version).all()
    return {t.key: t.value for t in rows}


def _production_version(session: Session, model: str) -> int | None:
    row = (
        session.query(SqlRegisteredModelAlias.version)
        .filter_by(workspace=_workspace(session, model), name=model, alias=config.production_alias())
        .first()
    )
    return int(row[0]) if row else None


def note_alias(session: Session, model: str) -> None:
    """Before the production alias of ``model`` changes: remember where it pointed (once per transaction)."""
    before = session.info.setdefault(_INFO_ALIAS, {})
    if model not in before:
        before[model] = _production_version(session, model)


def _insert(session: Session, *, kind: str, model: str, version: int | None, stage: str | None,
            waiting_for: str | None, actor: str, audit_seq: int | None, ts: int, body: dict[str, Any],
            mlflow_event: str | None, mlflow_payload: Mapping[str, Any] | None) -> None:
    payload = {"kind": kind, "model": model, "version": version, "stage": stage, "waiting_for": waiting_for,
               "actor": actor, "audit_seq": audit_seq, "time": iso(ts), **body, "path": path_of(model, version)}
    session.execute(events_table.insert().values(
        ts=ts, kind=kind, model=model, version=version, stage=stage, waiting_for=waiting_for, actor=actor,
        audit_seq=audit_seq, mlflow_event=mlflow_event,
        mlflow_payload=json.dumps(dict(mlflow_payload)) if mlflow_payload is not None else None,
        payload=json.dumps(payload, sort_keys=True, default=str), fanned_out=False,
    ))
    session.info[_INFO_COUNT] = session.info.get(_INFO_COUNT, 0) + 1


def _mlflow_event(kind: str, model: str, version: int | None, tags: Mapping[str, str], fields: Mapping[str, str],
                  created: bool) -> tuple[str | None, Mapping[str, Any] | None]:
    """MLflow's webhook event and payload for a governance change (None, None: MLflow has none)."""
    if kind == INITIATED:
        if not created:
            return None, None
        return MODEL_CREATED, RegisteredModelCreatedPayload(name=model, tags=dict(tags), description=None)
    if version is None:
        return None, None  # MLflow 3.17 has no registered-model tag event
    if kind == FIELD_FILLED:
        ((name, value),) = fields.items()
        key, value = TAG_FIELD_PREFIX + name, value
    elif kind == MONITORS_SET:
        key, value = TAG_MONITORS_DIGEST, tags.get(TAG_MONITORS_DIGEST, "")
    elif kind == USABILITY_CHANGED:
        key, value = TAG_USABILITY, tags.get(TAG_USABILITY, "")
    else:
        key, value = TAG_STAGE, tags.get(TAG_STAGE, "")
    return TAG_SET, ModelVersionTagSetPayload(name=model, version=str(version), key=key, value=value)


def on_record(session: Session, row: Mapping[str, Any], evidence: Mapping[str, Any] | None = None) -> None:
    """The event of an allowed audit ``row`` (the dict `audit.append` returned), in its transaction."""
    model, version, action = row.get("model"), row.get("version"), row["action"]
    if row.get("outcome") != "allowed" or not model:
        return
    scope = workflow.VERSION_SCOPE if version is not None else workflow.MODEL_SCOPE
    kind = kind_of(action, row.get("from_stage"), scope)
    if kind is None:
        return
    tags = _tags(session, model, version)
    fields = json.loads(row["fields"]) if isinstance(row.get("fields"), str) else dict(row.get("fields") or {})
    created = model in session.info.get(_INFO_CREATED, set())
    mlflow_event, mlflow_payload = _mlflow_event(kind, model, version, tags, fields, created)
    if kind == MONITORS_SET:  # the whole configuration is in the audit row and the tag; name it by digest
        fields = {k: v for k, v in fields.items() if k != "monitor_config"}
    body = {
        "action": action,
        "role": row.get("role"),
        "from_stage": row.get("from_stage"),
        "comment": row.get("comment"),
        "fields": fields,
        "usability": tags.get(TAG_USABILITY),
        "evidence": dict(evidence) if evidence else None,
    }
    stage = tags.get(TAG_STAGE) or row.get("to_stage")
    _insert(session, kind=kind, model=model, version=version, stage=stage, waiting_for=tags.get(TAG_ASSIGNEE),
            actor=row["actor"], audit_seq=row.get("seq"), ts=int(row["ts"]), body=body,
            mlflow_event=mlflow_event, mlflow_payload=mlflow_payload)
    session.info.setdefault(_INFO_LAST, {})[model] = (row["actor"], row.get("role"), row.get("seq"))


def finish(session: Session) -> int:
    """Before the commit: one event per model whose production alias now points elsewhere; returns
    how many events this transaction wrote."""
    for model, before in sorted(session.info.get(_INFO_ALIAS, {}).items()):
        after = _production_version(session, model)
        if after == before:
            continue
        actor, role, audit_seq = session.info.get(_INFO_LAST, {}).get(model, ("(anonymous)", None, None))
        alias = config.production_alias()
        if after is not None:
            tags = _tags(session, model, after)
            mlflow_event, mlflow_payload = ALIAS_CREATED, ModelVersionAliasCreatedPayload(
                name=model, alias=alias, version=str(after))
        else:
            tags = {}
            mlflow_event, mlflow_payload = ALIAS_DELETED, ModelVersionAliasDeletedPayload(name=model, alias=alias)
        body = {"action": None, "role": role, "alias": alias, "previous_version": before,
                "usability": tags.get(TAG_USABILITY)}
        _insert(session, kind=PRODUCTION_ALIAS_MOVED, model=model, version=after, stage=tags.get(TAG_STAGE),
                waiting_for=tags.get(TAG_ASSIGNEE), actor=actor, audit_seq=audit_seq, ts=int(time.time() * 1000),
                body=body, mlflow_event=mlflow_event, mlflow_payload=mlflow_payload)
    session.info.pop(_INFO_ALIAS, None)
    return session.info.get(_INFO_COUNT, 0)


# --- after the commit: wake the deliverers of this process --------------------------------------

_listeners: list[Callable[[], None]] = []
_listeners_lock = threading.Lock()


def subscribe(listener: Callable[[], None]) -> None:
    """Call ``listener`` (cheap, non-blocking) after each commit of this process that wrote events."""
    with _listeners_lock:
        if listener not in _listeners:
            _listeners.append(listener)


def unsubscribe(listener: Callable[[], None]) -> None:
    with _listeners_lock:
        if listener in _listeners:
            _listeners.remove(listener)


def notify() -> None:
    """Events were committed in this process (the engine calls it after the commit)."""
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener()


# --- reading ----------------------------------------------------------------------------------


def iso(ms: int) -> str:
    """Milliseconds since the epoch as MLflow's webhooks spell a time (ISO 8601, UTC offset)."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()


@dataclass(frozen=True)
class Event:
    """One row of ``mlgov_event``."""

    seq: int
    ts: int
    kind: str
    model: str
    version: int | None
    stage: str | None
    waiting_for: str | None
    actor: str
    mlflow_event: str | None
    mlflow_payload: dict[str, Any] | None
    payload: dict[str, Any]

    @classmethod
    def from_row(cls, row: Any) -> Event:
        m = row._mapping
        return cls(seq=int(m["seq"]), ts=int(m["ts"]), kind=m["kind"], model=m["model"], version=m["version"],
                   stage=m["stage"], waiting_for=m["waiting_for"], actor=m["actor"], mlflow_event=m["mlflow_event"],
                   mlflow_payload=json.loads(m["mlflow_payload"]) if m["mlflow_payload"] else None,
                   payload=json.loads(m["payload"]))

    def governance_event(self, base_url: str | None = None) -> dict[str, Any]:
        """The governance event as channels and the REST API show it, its link made absolute with
        ``base_url`` (else ``MLGOV_PUBLIC_URL``; a path when neither is known)."""
        from mlflow_governance.core import environment_variables as ev

        base = (ev.MLGOV_PUBLIC_URL.get() or base_url or "").rstrip("/")
        return {"id": self.seq, **self.payload, "link": base + self.payload["path"], "mlflow_event": self.mlflow_event,
                "mlflow_payload": self.mlflow_payload}


def read(engine: sa.engine.Engine, after: int = 0, limit: int | None = None,
         models: Iterable[str] | None = None) -> list[Event]:
    """Events after ``after`` (a seq), oldest first, optionally only ``models``'."""
    query = sa.select(events_table).where(events_table.c.seq > int(after)).order_by(events_table.c.seq)
    if models is not None:
        query = query.where(events_table.c.model.in_(list(models)))
    if limit:
        query = query.limit(int(limit))
    with engine.connect() as conn:
        return [Event.from_row(r) for r in conn.execute(query)]
