"""Governance operations on the registry database: initiate, act, fill fields, read status.

Each operation runs in one database transaction of the registry: the tags it changes, the alias
it binds and its audit row commit together or not at all. A refused attempt writes only its
audit row. The decision itself is `workflow.check_transition`; this module reads the state it
needs and applies the row's effects.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from mlflow.entities.model_registry.model_version_stages import STAGE_DELETED_INTERNAL
from mlflow.exceptions import MlflowException
from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersion,
    SqlModelVersionTag,
    SqlRegisteredModel,
    SqlRegisteredModelAlias,
    SqlRegisteredModelTag,
)
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from sqlalchemy.orm import Session

from mlflow_governance import audit, config, reconcile, roles, workflow
from mlflow_governance.config import (
    TAG_ASSIGNEE,
    TAG_DEVELOPER,
    TAG_FIELD_PREFIX,
    TAG_INVENTORY_ID,
    TAG_STAGE,
    TAG_UPDATED_BY,
    TAG_USABILITY,
)
from mlflow_governance.errors import GovernanceError
from mlflow_governance.identity import current_user, no_user_message
from mlflow_governance.schema import inventory

T = TypeVar("T")
ANONYMOUS = "(anonymous)"
_RETRIES = 8
# The governance transaction in progress in this thread/task: the governed store hands it to
# MLflow's own store methods, so a check and MLflow's write commit together (see `store.py`).
CURRENT_SESSION: contextvars.ContextVar[Session | None] = contextvars.ContextVar("mlgov_session", default=None)


# --- state -----------------------------------------------------------------------------------


@dataclass
class Entity:
    """A governed registered model, or one of its versions, as the workflow sees it."""

    model: str
    version: int | None
    stage: str | None
    tags: dict[str, str]
    model_tags: dict[str, str]
    workspace: str

    @property
    def scope(self) -> str:
        return workflow.VERSION_SCOPE if self.version is not None else workflow.MODEL_SCOPE

    @property
    def fields(self) -> dict[str, str]:
        return {k[len(TAG_FIELD_PREFIX) :]: v for k, v in self.tags.items() if k.startswith(TAG_FIELD_PREFIX)}

    @property
    def governed(self) -> bool:
        return TAG_INVENTORY_ID in self.model_tags


def _tags(rows) -> dict[str, str]:
    return {t.key: t.value for t in rows}


def load(store: SqlAlchemyStore, session: Session, model: str, version: int | None = None) -> Entity:
    """Read a model (or version) and its governance tags; 404 when it does not exist."""
    sql_model = store._get_registered_model(session, model)
    model_tags = _tags(sql_model.registered_model_tags)
    if version is None:
        return Entity(model, None, model_tags.get(TAG_STAGE), model_tags, model_tags, sql_model.workspace)
    sql_version = store._get_sql_model_version(session, model, int(version))
    tags = _tags(sql_version.model_version_tags)
    stage = tags.get(TAG_STAGE)
    if stage is None and model_tags.get(TAG_STAGE) == workflow.VERSION_ENTRY_STAGE:
        stage = workflow.VERSION_ENTRY_STAGE  # not entered yet: it inherits the model's stage
    return Entity(model, int(version), stage, tags, model_tags, sql_model.workspace)


def _set_tag(session: Session, e: Entity, key: str, value: str, version: int | None = None) -> None:
    version = e.version if version is None else version
    if version is None:
        session.merge(SqlRegisteredModelTag(workspace=e.workspace, name=e.model, key=key, value=value))
        e.model_tags[key] = value
    else:
        session.merge(
            SqlModelVersionTag(workspace=e.workspace, name=e.model, version=version, key=key, value=value)
        )
    if version == e.version:
        e.tags[key] = value


def _delete_tag(session: Session, e: Entity, key: str, version: int | None = None) -> None:
    version = e.version if version is None else version
    if version is None:
        session.query(SqlRegisteredModelTag).filter_by(workspace=e.workspace, name=e.model, key=key).delete()
    else:
        session.query(SqlModelVersionTag).filter_by(
            workspace=e.workspace, name=e.model, version=version, key=key
        ).delete()
    if version == e.version:
        e.tags.pop(key, None)


def _touch(session: Session, e: Entity) -> None:
    now = int(time.time() * 1000)
    session.query(SqlRegisteredModel).filter_by(workspace=e.workspace, name=e.model).update(
        {"last_updated_time": now}
    )
    if e.version is not None:
        session.query(SqlModelVersion).filter_by(workspace=e.workspace, name=e.model, version=e.version).update(
            {"last_updated_time": now}
        )


# --- transactions ----------------------------------------------------------------------------


def _is_retryable(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, MlflowException) else exc
    if isinstance(cause, audit.StaleAuditHead):
        return True
    if isinstance(cause, sa.exc.IntegrityError):
        # The driver's own message names the violated table/constraint (not the SQL parameters).
        return "mlgov_audit" in str(getattr(cause, "orig", ""))
    return isinstance(cause, sa.exc.OperationalError) and "locked" in str(getattr(cause, "orig", cause)).lower()


def transaction(store: SqlAlchemyStore, fn: Callable[[Session], T]) -> T:
    """Run ``fn`` in one write transaction, retried when another writer won a race.

    The transaction first takes the audit head's lock, so governance writers are serialized,
    and MLflow store methods called inside ``fn`` join it (`CURRENT_SESSION`).
    """
    maker = getattr(store, "_base_session_maker", store.ManagedSessionMaker)
    for attempt in range(_RETRIES):
        try:
            with maker(read_only=False) as session:
                audit.lock(session)
                token = CURRENT_SESSION.set(session)
                try:
                    return fn(session)
                finally:
                    CURRENT_SESSION.reset(token)
        except GovernanceError:
            raise
        except (MlflowException, audit.StaleAuditHead, sa.exc.SQLAlchemyError) as exc:
            if not _is_retryable(exc) or attempt == _RETRIES - 1:
                if _is_retryable(exc):
                    raise GovernanceError("busy", "the registry is busy with another change; try again") from exc
                raise
            time.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")


class _Refused(Exception):
    """Carries a refusal out of a transaction that must still commit its audit row."""

    def __init__(self, error: GovernanceError):
        self.error = error


def run(store: SqlAlchemyStore, fn: Callable[[Session], T]) -> T:
    """Like `transaction`, but a refusal raised by ``fn`` commits its audit row, then raises."""

    def body(session: Session):
        try:
            return fn(session)
        except _Refused as refused:
            return refused

    result = transaction(store, body)
    if isinstance(result, _Refused):
        raise result.error
    return result


def refusal(
    session: Session,
    kind: str,
    message: str,
    *,
    actor: str | None,
    action: str,
    model: str | None = None,
    version: int | None = None,
    stage: str | None = None,
    role: str | None = None,
    fields: Mapping[str, str] | None = None,
    comment: str | None = None,
) -> _Refused:
    """Append the refused attempt's audit row to ``session``; raise the result inside `run`."""
    audit.append(
        session,
        actor=actor or ANONYMOUS,
        role=role,
        model=model,
        version=version,
        action=action,
        outcome="refused",
        from_stage=stage,
        fields=dict(fields or {}),
        comment=comment,
        reason=message,
    )
    return _Refused(GovernanceError(kind, message))


def refuse_and_record(store: SqlAlchemyStore, kind: str, message: str, **context: Any) -> None:
    """Record a refused attempt (for example a direct ``mlgov.`` tag write), then raise."""
    actor = current_user()

    def body(session: Session) -> None:
        raise refusal(session, kind, message, actor=actor, **context)

    run(store, body)


# --- operations ------------------------------------------------------------------------------


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

    def body(session: Session) -> str:
        def refuse(kind: str, message: str) -> _Refused:
            return refusal(session, kind, message, actor=actor, action=workflow.INITIATE, model=model, fields=values)

        if not actor:
            raise refuse("unauthenticated", no_user_message())
        if workflow.MODEL_OWNER not in roles.roles_of(session, actor):
            raise refuse(
                "permission", f"{actor!r} may not initiate a governed model: the {workflow.MODEL_OWNER} role is required"
            )
        for name, value in values.items():
            problem = workflow.check_field_value(name, value)
            if problem:
                raise refuse("invalid", problem)
        try:
            e = load(store, session, model)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            SqlAlchemyStore.create_registered_model(store, model)  # joins this transaction
            e = load(store, session, model)
        if e.governed:
            raise refuse("conflict", f"model {model!r} is already governed as {e.model_tags[TAG_INVENTORY_ID]}")
        aliases = session.query(SqlRegisteredModelAlias.alias).filter_by(workspace=e.workspace, name=model).all()
        bound = next((a for (a,) in aliases if config.is_production_alias(a)), None)
        in_production = (
            session.query(SqlModelVersion.version)
            .filter_by(workspace=e.workspace, name=model, current_stage="Production")
            .first()
        )
        if bound or in_production:
            what = f"the {bound!r} alias" if bound else "a version in MLflow's 'Production' stage"
            raise refuse(
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
        _set_tag(session, e, TAG_INVENTORY_ID, inventory_id)
        _set_tag(session, e, TAG_STAGE, stage)
        _set_tag(session, e, TAG_ASSIGNEE, workflow.ASSIGNEE_ROLE[stage])
        _set_tag(session, e, TAG_UPDATED_BY, actor)
        for name, value in values.items():
            _set_tag(session, e, TAG_FIELD_PREFIX + name, value)
        _touch(session, e)
        audit.append(
            session,
            actor=actor,
            role=workflow.MODEL_OWNER,
            model=model,
            action=workflow.INITIATE,
            outcome="allowed",
            to_stage=stage,
            fields={"inventory_id": inventory_id, **values},
        )
        return inventory_id

    return run(store, body)


def _developer_submit_check(e: Entity, merged: Mapping[str, str]) -> str | None:
    asset = merged.get("model_asset", "").strip()
    expected = f"models:/{e.model}/{e.version}"
    if asset and asset not in (expected, str(e.version)):
        return f"model_asset must name this version ({expected}), not {asset!r}"
    return None


def act(
    store: SqlAlchemyStore,
    model: str,
    action: str,
    version: int | None = None,
    fields: Mapping[str, str] | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """Perform ``action`` on a model or version as the acting user; returns the new status."""
    actor = current_user()
    new_fields = {k: str(v) for k, v in (fields or {}).items()}
    action = (action or "").strip().lower()

    def body(session: Session) -> dict[str, Any]:
        def refuse(kind: str, message: str, stage: str | None = None, role: str | None = None) -> _Refused:
            return refusal(
                session,
                kind,
                message,
                actor=actor,
                action=action,
                model=model,
                version=version,
                stage=stage,
                role=role,
                fields=new_fields,
                comment=comment,
            )

        if not actor:
            raise refuse("unauthenticated", no_user_message())
        if action not in workflow.ACTIONS:
            raise refuse("invalid", f"unknown action {action!r}; use one of {', '.join(workflow.ACTIONS)}")
        e = load(store, session, model, version)
        if not e.governed:
            raise refuse("conflict", f"model {model!r} is not governed: initiate it first")
        model_stage = e.model_tags.get(TAG_STAGE)
        if e.version is not None and model_stage in workflow.TERMINAL_STAGES:
            raise refuse("conflict", f"model {model!r} is {model_stage!r}: its versions take no action", model_stage)
        if e.version is not None and e.stage is None:
            raise refuse(
                "conflict",
                f"version {version} has not entered the workflow: versions enter when the model is "
                f"{workflow.VERSION_ENTRY_STAGE!r} (the model is {model_stage!r})",
                model_stage,
            )
        attempt = workflow.Attempt(
            action=action,
            scope=e.scope,
            stage=e.stage,
            actor=actor,
            actor_roles=roles.roles_of(session, actor),
            fields=e.fields,
            new_fields=new_fields,
            comment=comment,
            developer=e.tags.get(TAG_DEVELOPER) if e.version is not None else None,
            entered_by=e.tags.get(TAG_UPDATED_BY) if e.tags.get(TAG_STAGE) else e.model_tags.get(TAG_UPDATED_BY),
            separation_of_duties=config.separation_of_duties(),
        )
        row, denied = workflow.check_transition(attempt)
        if denied is None and row is not None and row.action == workflow.SUBMIT and "model_asset" in row.fields:
            problem = _developer_submit_check(e, {**e.fields, **new_fields})
            if problem:
                denied = workflow.Refusal("invalid", problem)
        if denied is not None:
            hint = ""
            if row is None and e.version is None and e.stage == workflow.VERSION_ENTRY_STAGE:
                hint = "; development steps act on a version: give the version number"
            raise refuse(denied.kind, denied.message + hint, e.stage, row.role if row else None)
        assert row is not None
        for name, value in new_fields.items():
            _set_tag(session, e, TAG_FIELD_PREFIX + name, value)
        _apply(session, store, e, row, actor, comment)
        _touch(session, e)
        audit.append(
            session,
            actor=actor,
            role=row.role,
            model=model,
            version=e.version,
            action=action,
            outcome="allowed",
            from_stage=row.source,
            to_stage=row.dest,
            fields=new_fields,
            comment=comment,
        )
        return _status_of(session, store, model, e.version)

    return run(store, body)


def _apply(session: Session, store: SqlAlchemyStore, e: Entity, row: workflow.Transition, actor: str, comment):
    """Move ``e`` to ``row.dest`` and carry out the row's effects."""
    _set_tag(session, e, TAG_STAGE, row.dest)
    assignee = workflow.ASSIGNEE_ROLE.get(row.dest)
    if assignee:
        _set_tag(session, e, TAG_ASSIGNEE, assignee)
    else:
        _delete_tag(session, e, TAG_ASSIGNEE)
    if row.dest != row.source:
        _set_tag(session, e, TAG_UPDATED_BY, actor)
    if row.action == workflow.SUBMIT and row.source == workflow.VERSION_ENTRY_STAGE and e.version is not None:
        _set_tag(session, e, TAG_DEVELOPER, actor)
    alias = config.production_alias()
    for effect in row.effects:
        if effect == "promote":
            _supersede_ready_versions(session, store, e, actor)
            _set_tag(session, e, TAG_USABILITY, workflow.USABILITY_ACCEPT)
            session.merge(
                SqlRegisteredModelAlias(workspace=e.workspace, name=e.model, alias=alias, version=e.version)
            )
        elif effect == "usability_reject":
            _set_tag(session, e, TAG_USABILITY, workflow.USABILITY_REJECT)
        elif effect == "usability_accept":
            _set_tag(session, e, TAG_USABILITY, workflow.USABILITY_ACCEPT)
        elif effect == "retire":
            _delete_tag(session, e, TAG_USABILITY)
            session.query(SqlRegisteredModelAlias).filter_by(
                workspace=e.workspace, name=e.model, alias=alias, version=e.version
            ).delete()
    if row.action == workflow.DECOMMISSION and e.version is None:
        for version in _governed_versions(session, e):
            _decommission_version(session, store, e.model, version, actor, row.role, f"model decommissioned: {comment}")


def _decommission_version(
    session: Session, store: SqlAlchemyStore, model: str, version: int, actor: str, role: str, comment: str
) -> None:
    """Apply the table's decommission row to a live version as a consequence of another action, audited."""
    ve = load(store, session, model, version)
    old_stage = ve.stage
    if old_stage in workflow.TERMINAL_STAGES:
        return
    retire = workflow.find_transition(old_stage, workflow.DECOMMISSION, workflow.VERSION_SCOPE)
    if retire is None:
        return
    _apply(session, store, ve, retire, actor, comment)
    audit.append(
        session,
        actor=actor,
        role=role,
        model=model,
        version=version,
        action=workflow.DECOMMISSION,
        outcome="allowed",
        from_stage=old_stage,
        to_stage=retire.dest,
        comment=comment,
    )


def _governed_versions(session: Session, e: Entity) -> list[int]:
    """Versions that entered the workflow and were not deleted (MLflow keeps a deleted version's tags)."""
    rows = (
        session.query(SqlModelVersionTag.version)
        .join(
            SqlModelVersion,
            sa.and_(
                SqlModelVersion.workspace == SqlModelVersionTag.workspace,
                SqlModelVersion.name == SqlModelVersionTag.name,
                SqlModelVersion.version == SqlModelVersionTag.version,
            ),
        )
        .filter(
            SqlModelVersionTag.workspace == e.workspace,
            SqlModelVersionTag.name == e.model,
            SqlModelVersionTag.key == TAG_STAGE,
            SqlModelVersion.current_stage != STAGE_DELETED_INTERNAL,
        )
        .order_by(SqlModelVersionTag.version)
        .all()
    )
    return [int(v) for (v,) in rows]


def _supersede_ready_versions(session: Session, store: SqlAlchemyStore, e: Entity, actor: str) -> None:
    """At most one version is Ready to Use: the previous one is decommissioned by the table's row, audited."""
    rows = (
        session.query(SqlModelVersionTag.version)
        .filter_by(workspace=e.workspace, name=e.model, key=TAG_STAGE, value=workflow.READY_TO_USE)
        .all()
    )
    for (version,) in rows:
        if int(version) != e.version:
            _decommission_version(
                session, store, e.model, int(version), actor, workflow.MODEL_OWNER, f"superseded by version {e.version}"
            )


def set_field(
    store: SqlAlchemyStore, model: str, name: str, value: str, version: int | None = None
) -> dict[str, Any]:
    """Fill one governance field; only the role the current stage waits for may do so."""
    actor = current_user()
    value = str(value)

    def body(session: Session) -> dict[str, Any]:
        def refuse(kind: str, message: str, stage: str | None = None, role: str | None = None) -> _Refused:
            return refusal(
                session,
                kind,
                message,
                actor=actor,
                action=workflow.SET_FIELD,
                model=model,
                version=version,
                stage=stage,
                role=role,
                fields={name: value},
            )

        if not actor:
            raise refuse("unauthenticated", no_user_message())
        e = load(store, session, model, version)
        if not e.governed:
            raise refuse("conflict", f"model {model!r} is not governed: initiate it first")
        if e.stage is None or e.stage in workflow.TERMINAL_STAGES:
            raise refuse("conflict", f"no field can be filled on a {e.scope} in stage {e.stage!r}", e.stage)
        problem = workflow.check_field_value(name, value)
        if problem:
            raise refuse("invalid", problem, e.stage)
        allowed = workflow.stage_fields(e.stage, e.scope)
        if name not in allowed:
            raise refuse(
                "invalid",
                f"field {name!r} is not filled in stage {e.stage!r} (fields here: {', '.join(allowed) or 'none'})",
                e.stage,
            )
        role = workflow.ASSIGNEE_ROLE.get(e.stage)
        if role not in roles.roles_of(session, actor):
            raise refuse(
                "permission", f"{actor!r} may not fill {name!r} in stage {e.stage!r}: the {role} role is required", e.stage, role
            )
        problem = workflow.check_field_fill(
            e.stage,
            e.scope,
            name,
            actor,
            developer=e.tags.get(TAG_DEVELOPER) if e.version is not None else None,
            entered_by=e.tags.get(TAG_UPDATED_BY) if e.tags.get(TAG_STAGE) else e.model_tags.get(TAG_UPDATED_BY),
            separation_of_duties=config.separation_of_duties(),
        )
        if problem:
            raise refuse("permission", problem, e.stage, role)
        _set_tag(session, e, TAG_FIELD_PREFIX + name, value)
        _touch(session, e)
        audit.append(
            session,
            actor=actor,
            role=role,
            model=model,
            version=e.version,
            action=workflow.SET_FIELD,
            outcome="allowed",
            from_stage=e.stage,
            to_stage=e.stage,
            fields={name: value},
        )
        return _status_of(session, store, model, e.version)

    return run(store, body)


# --- reading ---------------------------------------------------------------------------------


def _entity_status(e: Entity) -> dict[str, Any]:
    return {
        "stage": e.stage,
        "assignee_role": e.tags.get(TAG_ASSIGNEE) if e.tags.get(TAG_STAGE) else workflow.ASSIGNEE_ROLE.get(e.stage or ""),
        "fields": e.fields,
        "usability": e.tags.get(TAG_USABILITY),
        "developer": e.tags.get(TAG_DEVELOPER),
        "entered_by": e.tags.get(TAG_UPDATED_BY),
    }


def _status_of(session: Session, store: SqlAlchemyStore, model: str, version: int | None) -> dict[str, Any]:
    e = load(store, session, model)
    alias = config.production_alias()
    bound = (
        session.query(SqlRegisteredModelAlias.version)
        .filter_by(workspace=e.workspace, name=model, alias=alias)
        .first()
    )
    out: dict[str, Any] = {
        "model": model,
        "inventory_id": e.model_tags.get(TAG_INVENTORY_ID),
        "governed": e.governed,
        **_entity_status(e),
        "production_alias": alias,
        "production_version": int(bound[0]) if bound else None,
        "versions": [],
    }
    out.pop("usability")
    out.pop("developer")
    for v in _governed_versions(session, e):
        ve = load(store, session, model, v)
        out["versions"].append({"version": v, **_entity_status(ve)})
    if version is not None:
        ve = load(store, session, model, version)
        out["version"] = {"version": int(version), **_entity_status(ve)}
    return out


def status(store: SqlAlchemyStore, model: str, version: int | None = None) -> dict[str, Any]:
    """The governance state of a model (and one version when given)."""
    with store.ManagedSessionMaker() as session:
        return _status_of(session, store, model, version)


def tasks(store: SqlAlchemyStore, role: str | None = None, user: str | None = None) -> list[dict[str, Any]]:
    """What waits for ``role`` (or for any role ``user`` holds): the approvals inbox."""
    with store.ManagedSessionMaker() as session:
        wanted = {role} if role else set(roles.roles_of(session, user))
        items: list[dict[str, Any]] = []
        model_rows = session.query(SqlRegisteredModelTag).filter(
            SqlRegisteredModelTag.key == TAG_ASSIGNEE, SqlRegisteredModelTag.value.in_(wanted)
        )
        for t in model_rows:
            e = load(store, session, t.name)
            items.append(
                {"model": t.name, "version": None, "stage": e.stage, "assignee_role": t.value,
                 "inventory_id": e.model_tags.get(TAG_INVENTORY_ID)}
            )
        version_rows = session.query(SqlModelVersionTag).filter(
            SqlModelVersionTag.key == TAG_ASSIGNEE, SqlModelVersionTag.value.in_(wanted)
        )
        for t in version_rows:
            e = load(store, session, t.name, t.version)
            if e.model_tags.get(TAG_STAGE) in workflow.TERMINAL_STAGES:
                continue
            items.append(
                {"model": t.name, "version": int(t.version), "stage": e.stage, "assignee_role": t.value,
                 "inventory_id": e.model_tags.get(TAG_INVENTORY_ID)}
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


def grant_role(store: SqlAlchemyStore, user: str, role: str) -> bool:
    """Admin only: give ``role`` to ``user`` (audited)."""
    return _role_change(store, user, role, grant=True)


def revoke_role(store: SqlAlchemyStore, user: str, role: str) -> bool:
    """Admin only: take ``role`` from ``user`` (audited)."""
    return _role_change(store, user, role, grant=False)


def _role_change(store: SqlAlchemyStore, user: str, role: str, grant: bool) -> bool:
    actor = current_user()
    action = "grant_role" if grant else "revoke_role"
    user = (user or "").strip()

    def body(session: Session) -> bool:
        ctx = {"actor": actor, "action": action, "fields": {"user": user, "role": role}}
        if not actor:
            raise refusal(session, "unauthenticated", "no authenticated user: only the admin may change roles", **ctx)
        if workflow.ADMIN not in roles.roles_of(session, actor):
            raise refusal(session, "permission", f"only the admin may {action.split('_')[0]} roles", **ctx)
        if role not in workflow.ALL_ROLES:
            raise refusal(session, "invalid", f"unknown role {role!r}; roles: {', '.join(workflow.ALL_ROLES)}", **ctx)
        if not user:
            raise refusal(session, "invalid", "a user name is required", **ctx)
        changed = roles.grant(session, user, role, actor) if grant else roles.revoke(session, user, role)
        audit.append(session, role=workflow.ADMIN, outcome="allowed" if changed else "unchanged", **ctx)
        return changed

    return run(store, body)


def list_roles(store: SqlAlchemyStore) -> list[dict[str, str]]:
    """Every grant in the role table."""
    with store.ManagedSessionMaker() as session:
        return roles.listing(session)


def roles_of(store: SqlAlchemyStore, user: str) -> frozenset[str]:
    """Roles ``user`` holds."""
    with store.ManagedSessionMaker() as session:
        return roles.roles_of(session, user)
