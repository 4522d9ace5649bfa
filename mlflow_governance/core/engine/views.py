"""Read models: a model's status, the inbox, the audit trail and its verification."""

from __future__ import annotations

import json
from typing import Any

from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersionTag,
    SqlRegisteredModelTag,
)
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from sqlalchemy.orm import Session

from mlflow_governance.core import audit, config, reconcile, roles, workflow
from mlflow_governance.core.engine.state import Entity, Snapshot, attempt, load, snapshot
from mlflow_governance.core.tags import (
    TAG_ASSIGNEE,
    TAG_DEVELOPER,
    TAG_IN_FLIGHT,
    TAG_INVENTORY_ID,
    TAG_MONITORS,
    TAG_MONITORS_DIGEST,
    TAG_PRODUCTION,
    TAG_STAGE,
    TAG_UPDATED_BY,
    TAG_USABILITY,
)


def _entity_status(e: Entity) -> dict[str, Any]:
    return {
        "stage": e.stage,
        "assignee_role": e.tags.get(TAG_ASSIGNEE) if e.tags.get(TAG_STAGE) else workflow.ASSIGNEE_ROLE.get(e.stage or ""),
        "fields": e.fields,
        "usability": e.tags.get(TAG_USABILITY),
        "developer": e.tags.get(TAG_DEVELOPER),
        "entered_by": e.tags.get(TAG_UPDATED_BY),
    }


def status_of(session: Session, store: SqlAlchemyStore, model: str, version: int | None,
              snap: Snapshot | None = None) -> dict[str, Any]:
    """The governance state of a model (and one version when given); ``snap``: the model as this
    transaction already read it (`refresh_glance`), so it is not read again."""
    snap = snap or snapshot(session, store, model)
    e = snap.model
    alias = config.production_alias()
    out: dict[str, Any] = {
        "model": model,
        "inventory_id": e.model_tags.get(TAG_INVENTORY_ID),
        "governed": e.governed,
        **_entity_status(e),
        "production_alias": alias,
        "production_version": snap.bound,
        # the model at a glance, as its tags show it in the MLflow UI (`effects.glance`)
        "production": e.model_tags.get(TAG_PRODUCTION),
        "in_flight": e.model_tags.get(TAG_IN_FLIGHT),
        "versions": [],
    }
    out.pop("usability")
    out.pop("developer")
    for v, ve in snap.versions.items():
        out["versions"].append({"version": v, **_entity_status(ve)})
    if version is not None:
        ve = snap.versions.get(int(version)) or load(store, session, model, version)
        out["version"] = {
            "version": int(version),
            **_entity_status(ve),
            # the monitor configuration in force (canonical JSON) and its digest; None: none recorded
            "monitors": {"config": ve.tags.get(TAG_MONITORS), "digest": ve.tags.get(TAG_MONITORS_DIGEST)},
        }
    return out


def status(store: SqlAlchemyStore, model: str, version: int | None = None) -> dict[str, Any]:
    """The governance state of a model (and one version when given), as one committed state."""
    sessions = getattr(store, "snapshot_session", store.ManagedSessionMaker)
    with sessions() as session:
        return status_of(session, store, model, version)


def tasks(store: SqlAlchemyStore, role: str | None = None, user: str | None = None) -> list[dict[str, Any]]:
    """What waits for ``role``, or what ``user`` may really do next: the approvals inbox.

    For a user, an entity waiting for one of their roles is listed only when `workflow.may`
    allows them one of its actions (inputs aside): a validator does not see the version they
    developed, an approver not the step they performed. Each item names those ``actions``.
    """
    with store.ManagedSessionMaker() as session:
        wanted = {role} if role else set(roles.roles_of(session, user))
        candidates: list[tuple[str, int | None, str]] = [
            (t.name, None, t.value)
            for t in session.query(SqlRegisteredModelTag).filter(
                SqlRegisteredModelTag.key == TAG_ASSIGNEE, SqlRegisteredModelTag.value.in_(wanted)
            )
        ]
        candidates += [
            (t.name, int(t.version), t.value)
            for t in session.query(SqlModelVersionTag).filter(
                SqlModelVersionTag.key == TAG_ASSIGNEE, SqlModelVersionTag.value.in_(wanted)
            )
        ]
        items: list[dict[str, Any]] = []
        for name, version, assignee in candidates:
            e = load(store, session, name, version)
            if version is not None and e.model_tags.get(TAG_STAGE) in workflow.TERMINAL_STAGES:
                continue
            rows = [r for r in workflow.actions_from(e.stage or "", e.scope) if r.role == assignee]
            if role:
                actions = [r.action for r in rows]
            else:
                actions = [r.action for r in rows if workflow.may(attempt(session, e, r.action, user), inputs=False)[1] is None]
                if not actions:
                    continue
            items.append(
                {"model": name, "version": version, "stage": e.stage, "assignee_role": assignee,
                 "inventory_id": e.model_tags.get(TAG_INVENTORY_ID), "actions": actions,
                 "usability": e.tags.get(TAG_USABILITY) if version is not None else None}
            )
        return sorted(items, key=lambda i: (i["model"], i["version"] or 0))


def history(store: SqlAlchemyStore, model: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Audit rows (one model's when given), oldest first, with fields decoded."""
    with store.ManagedSessionMaker() as session:
        found = audit.rows(session, model, limit)
    for r in found:
        r["fields"] = json.loads(r["fields"] or "{}")
    return found


def reconciliation(store: SqlAlchemyStore, model: str) -> list[reconcile.Discrepancy]:
    """How ``model``'s registry state disagrees with its audit trail (empty when it reconciles)."""
    with store.ManagedSessionMaker() as session:
        return reconcile.reconcile(session, {model})


def verify_audit(store: SqlAlchemyStore, expect: tuple[int, str] | None = None) -> audit.Verdict:
    """Check the audit chain (and, given ``expect``, that an anchored row is unchanged)."""
    with store.ManagedSessionMaker() as session:
        return audit.verify(session, expect)


def verify(store: SqlAlchemyStore, expect: tuple[int, str] | None = None) -> dict[str, Any]:
    """The chain verdict and the reconciliation of the registry with the trail, as one answer.

    ``ok`` only when the chain holds and every model's governance tags and alias are what the
    trail implies (`reconcile`).
    """
    with store.ManagedSessionMaker() as session:
        chain = audit.verify(session, expect)
        found = reconcile.reconcile(session)
    return {
        "ok": chain.ok and not found,
        "rows": chain.rows,
        "bad_seq": chain.bad_seq,
        "problem": chain.problem,
        "discrepancies": [
            {"model": d.model, "version": d.version, "problem": d.problem, "text": str(d)} for d in found
        ],
    }


def audit_head(store: SqlAlchemyStore) -> tuple[int, str]:
    """(seq, hash) of the newest audit row."""
    with store.ManagedSessionMaker() as session:
        return audit.head(session)


def roles_of(store: SqlAlchemyStore, user: str) -> frozenset[str]:
    """Roles ``user`` holds."""
    with store.ManagedSessionMaker() as session:
        return roles.roles_of(session, user)
