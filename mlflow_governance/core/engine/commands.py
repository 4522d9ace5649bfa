"""Governance commands: initiate, act, may, fill a field, administer roles.

Each command reads the entity, asks the workflow (`workflow.may`, `may_fill`, `may_initiate`,
`may_administer`) and, when allowed, applies the row through `effects` and appends its audit
row in the same transaction; when refused, only the refusal's audit row is written.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersion,
    SqlRegisteredModelAlias,
)
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from sqlalchemy.orm import Session

from mlflow_governance.core import config, effects, events, roles, workflow
from mlflow_governance.core.engine.state import Entity, SessionTarget, attempt, load, refresh_glance, touch
from mlflow_governance.core.engine.transaction import Operation
from mlflow_governance.core.engine.views import status_of
from mlflow_governance.core.errors import GovernanceError
from mlflow_governance.core.identity import current_user, no_user_message
from mlflow_governance.core.schema import inventory
from mlflow_governance.core.tags import (
    TAG_INVENTORY_ID,
    TAG_STAGE,
)


def initiate(
    store: SqlAlchemyStore,
    model: str,
    use_case: str,
    risk_tier: str = "medium",
    business_owner: str | None = None,
) -> str:
    """Put ``model`` under governance (creating it if needed); returns its inventory id.

    Check, creation and governance happen in one locked transaction: a refusal or a failure
    leaves no model behind, and two owners initiating the same name cannot both succeed.
    """
    actor = current_user()
    values = {
        "use_case": use_case or "",
        "risk_tier": (risk_tier or "").strip().lower(),
        "business_owner": business_owner or actor or "",
    }

    op = Operation(store, workflow.INITIATE, actor, model, fields=values)

    def body(session: Session) -> str:
        denied = workflow.may_initiate(actor, roles.roles_of(session, actor) if actor else frozenset(), values)
        if denied:
            raise op.refuse(session, denied.kind, message_of(denied))
        try:
            e = load(store, session, model)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            store.create_ungoverned_model(model)  # MLflow's creation, in this transaction
            events.model_created(session, model)  # MLflow's registered_model.created fires for it
            e = load(store, session, model)
        if e.governed:
            raise op.refuse(session, "conflict", f"model {model!r} is already governed as {e.model_tags[TAG_INVENTORY_ID]}")
        aliases = session.query(SqlRegisteredModelAlias.alias).filter_by(workspace=e.workspace, name=model).all()
        bound = next((a for (a,) in aliases if config.is_production_alias(a)), None)
        in_production = (
            session.query(SqlModelVersion.version)
            .filter_by(workspace=e.workspace, name=model, current_stage="Production")
            .first()
        )
        if bound or in_production:
            what = f"the {bound!r} alias" if bound else "a version in MLflow's 'Production' stage"
            raise op.refuse(
                session,
                "conflict",
                f"model {model!r} already has {what}: production must be reached through the workflow, so "
                "remove it before putting the model under governance",
            )
        now = int(time.time() * 1000)
        new_id = session.execute(
            inventory.insert().values(name=model, created_at=now, created_by=actor)
        ).inserted_primary_key[0]
        inventory_id = f"MOD_{int(new_id):06d}"
        stage = workflow.CANDIDACY_REVIEW
        effects.initiate(SessionTarget(session, store, e), stage, inventory_id, actor, values)
        touch(session, e)
        op.record(session, role=workflow.MODEL_OWNER, to_stage=stage, fields={"inventory_id": inventory_id, **values})
        return inventory_id

    return op.run(body)


def message_of(denied: workflow.Refusal) -> str:
    """A refusal's text; "no authenticated user" says how to become one on this path."""
    return no_user_message() if denied.kind == workflow.UNAUTHENTICATED else denied.message


def act(
    store: SqlAlchemyStore,
    model: str,
    action: str,
    version: int | None = None,
    fields: Mapping[str, str] | None = None,
    comment: str | None = None,
    evidence: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Perform ``action`` on a model or version as the acting user; returns the new status.

    ``evidence`` (what a monitor measured: its breached figures, run and configuration digest)
    travels with the change's governance event; the audit row keeps the comment that names it.
    """
    actor = current_user()
    new_fields = {k: str(v) for k, v in (fields or {}).items()}
    action = (action or "").strip().lower()

    op = Operation(store, action, actor, model, version, new_fields, comment, evidence)

    def body(session: Session) -> dict[str, Any]:
        e = load(store, session, model, version)
        row, denied = workflow.may(attempt(session, e, action, actor, new_fields, comment))
        if denied is not None:
            raise op.refuse(session, denied.kind, message_of(denied),
                            stage=e.stage or (e.model_tags.get(TAG_STAGE) if e.version is not None else None),
                            role=row.role if row else None)
        assert row is not None
        effects.move(SessionTarget(session, store, e), row, actor, comment, new_fields)
        touch(session, e)
        op.record(session, role=row.role, version=e.version, from_stage=row.source, to_stage=row.dest)
        return status_of(session, store, model, e.version, refresh_glance(session, store, model))

    return op.run(body)


def may(
    store: SqlAlchemyStore,
    model: str,
    action: str,
    version: int | None = None,
    new_version: bool = False,
    inputs: bool = False,
    fields: Mapping[str, str] | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """Would the acting user be allowed ``action`` on ``model`` (a version, or a new version)?

    Writes nothing: the same `workflow.may` as `act`, on the same state, so a pre-check made
    with it cannot disagree with the action. ``inputs`` False leaves out the fields and comment
    the step itself still has to supply. Returns ``{"allowed", "kind", "message", "role", "stage"}``.
    """
    actor = current_user()
    action = (action or "").strip().lower()
    with store.ManagedSessionMaker() as session:
        e = load(store, session, model, version)
        if new_version:
            stage = workflow.VERSION_ENTRY_STAGE if e.stage == workflow.VERSION_ENTRY_STAGE else None
            e = Entity(model, None, stage, {}, e.model_tags, e.workspace)
            a = attempt(session, e, action, actor, fields, comment)
            a.scope = workflow.VERSION_SCOPE
        else:
            a = attempt(session, e, action, actor, {k: str(v) for k, v in (fields or {}).items()}, comment)
        row, denied = workflow.may(a, inputs=inputs)
    return {
        "allowed": denied is None,
        "kind": denied.kind if denied else None,
        "message": message_of(denied) if denied else None,
        "role": row.role if row else None,
        "stage": a.stage,
    }


def set_field(
    store: SqlAlchemyStore, model: str, name: str, value: str, version: int | None = None
) -> dict[str, Any]:
    """Fill one governance field; only the role of the step that needs it may (`workflow.may_fill`)."""
    actor = current_user()
    value = str(value)

    op = Operation(store, workflow.SET_FIELD, actor, model, version, {name: value})

    def body(session: Session) -> dict[str, Any]:
        e = load(store, session, model, version)
        role, denied = workflow.may_fill(attempt(session, e, workflow.SET_FIELD, actor), name, value)
        if denied is not None:
            raise op.refuse(session, denied.kind, message_of(denied), stage=e.stage, role=role)
        effects.fill(SessionTarget(session, store, e), {name: value})
        touch(session, e)
        op.record(session, role=role, version=e.version, from_stage=e.stage, to_stage=e.stage)
        return status_of(session, store, model, e.version)

    return op.run(body)


def set_monitors(store: SqlAlchemyStore, model: str, version: int, config: Mapping[str, Any]) -> dict[str, Any]:
    """Record the monitor configuration in force for a version (`workflow.may_set_monitors`).

    The configuration is checked (`monitoring.config.parse_config`) and stored in its canonical
    form with its digest; the audit row carries both, so the rule behind any figure can be read
    back from the trail.
    """
    from mlflow_governance.core.monitor_config import MonitorConfigError, parse_config

    actor = current_user()
    try:
        parsed = parse_config(config)
        values = {"monitor_config": parsed.canonical_json(), "monitor_config_digest": parsed.digest()}
        problem = None
    except MonitorConfigError as exc:
        values, problem = {}, str(exc)
    op = Operation(store, workflow.SET_MONITORS, actor, model, version, values)

    def body(session: Session) -> dict[str, Any]:
        e = load(store, session, model, version)
        role, denied = workflow.may_set_monitors(attempt(session, e, workflow.SET_MONITORS, actor))
        if denied is None and problem:
            denied = workflow.Refusal(workflow.INVALID, problem)
        if denied is None and len(values["monitor_config"]) > workflow.MAX_FIELD_LENGTH:
            denied = workflow.Refusal(workflow.INVALID, f"the monitor configuration is {len(values['monitor_config'])}"
                                                        f" characters long; the limit is {workflow.MAX_FIELD_LENGTH}")
        if denied is not None:
            raise op.refuse(session, denied.kind, message_of(denied), stage=e.stage, role=role)
        effects.set_monitors(SessionTarget(session, store, e), values)
        touch(session, e)
        op.record(session, role=role, version=e.version, from_stage=e.stage, to_stage=e.stage)
        return status_of(session, store, model, e.version)

    return op.run(body)


def grant_role(store: SqlAlchemyStore, user: str, role: str) -> bool:
    """Admin only: give ``role`` to ``user`` (audited)."""
    return _role_change(store, user, role, grant=True)


def revoke_role(store: SqlAlchemyStore, user: str, role: str) -> bool:
    """Admin only: take ``role`` from ``user`` (audited)."""
    return _role_change(store, user, role, grant=False)


def _role_change(store: SqlAlchemyStore, user: str, role: str, grant: bool) -> bool:
    actor = current_user()
    action = workflow.GRANT_ROLE if grant else workflow.REVOKE_ROLE
    user = (user or "").strip()

    op = Operation(store, action, actor, fields={"user": user, "role": role})

    def body(session: Session) -> bool:
        denied = workflow.may_administer(action, actor, roles.roles_of(session, actor) if actor else frozenset())
        if denied:
            raise op.refuse(session, denied.kind, denied.message)
        if role not in workflow.ALL_ROLES:
            raise op.refuse(session, "invalid", f"unknown role {role!r}; roles: {', '.join(workflow.ALL_ROLES)}")
        if not user:
            raise op.refuse(session, "invalid", "a user name is required")
        changed = roles.grant(session, user, role, actor) if grant else roles.revoke(session, user, role)
        op.record(session, role=workflow.ADMIN, outcome="allowed" if changed else "unchanged")
        return changed

    return op.run(body)


def require_admin(store: SqlAlchemyStore, action: str, fields: Mapping[str, str] | None = None) -> None:
    """Refuse ``action`` unless the acting user holds the Admin role (`workflow.may_administer`).

    A refused grant, revocation or contact change keeps its audit row (with ``fields``), as when
    the command itself refuses; listing the role table or the notifications is refused unrecorded.
    """
    actor = current_user()
    with store.ManagedSessionMaker() as session:
        denied = workflow.may_administer(action, actor, roles.roles_of(session, actor) if actor else frozenset())
    if denied is None:
        return
    if action in workflow.AUDITED_ADMIN_ACTIONS:
        op = Operation(store, action, actor, fields=dict(fields or {}))

        def body(session: Session) -> None:
            raise op.refuse(session, denied.kind, denied.message)

        op.run(body)  # raises the refusal once its audit row is committed
    raise GovernanceError(denied.kind, message_of(denied))


def list_roles(store: SqlAlchemyStore, actor: str | None) -> list[dict[str, str]]:
    """Every grant in the role table (the admin's, on every path)."""
    with store.ManagedSessionMaker() as session:
        denied = workflow.may_administer(workflow.LIST_ROLES, actor, roles.roles_of(session, actor) if actor else frozenset())
        if denied:
            raise GovernanceError(denied.kind, message_of(denied))
        return roles.listing(session)
