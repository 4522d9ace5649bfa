"""The governed entity as the engine sees it, read from and written to the registry's tables.

`load` reads a model or version and its governance tags; `attempt` turns it into the
`workflow.Attempt` that `workflow.may` decides; `SessionTarget` is the `effects.Target` through
which a transition's effects write tags and the production alias inside the governance
transaction. Cascades (superseding, decommissioning a model's versions) and the model's
at-a-glance tags live here because they act on entities, not on a request.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from mlflow.entities.model_registry.model_version_stages import STAGE_DELETED_INTERNAL
from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersion,
    SqlModelVersionTag,
    SqlRegisteredModel,
    SqlRegisteredModelAlias,
    SqlRegisteredModelTag,
)
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from sqlalchemy.orm import Session

from mlflow_governance.core import config, effects, events, roles, workflow
from mlflow_governance.core.engine.transaction import record
from mlflow_governance.core.tags import (
    TAG_DEVELOPER,
    TAG_FIELD_PREFIX,
    TAG_INVENTORY_ID,
    TAG_STAGE,
    TAG_UPDATED_BY,
)


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
    events.remember_workspace(session, model, sql_model.workspace)
    model_tags = _tags(sql_model.registered_model_tags)
    if version is None:
        return Entity(model, None, model_tags.get(TAG_STAGE), model_tags, model_tags, sql_model.workspace)
    sql_version = store._get_sql_model_version(session, model, int(version))
    tags = _tags(sql_version.model_version_tags)
    stage = tags.get(TAG_STAGE)
    if stage is None and model_tags.get(TAG_STAGE) == workflow.VERSION_ENTRY_STAGE:
        stage = workflow.VERSION_ENTRY_STAGE  # not entered yet: it inherits the model's stage
    return Entity(model, int(version), stage, tags, model_tags, sql_model.workspace)


def attempt(
    session: Session,
    e: Entity,
    action: str,
    actor: str | None,
    new_fields: Mapping[str, str] | None = None,
    comment: str | None = None,
) -> workflow.Attempt:
    """The workflow's view of ``actor`` trying ``action`` on ``e``: everything `workflow.may` reads."""
    return workflow.Attempt(
        action=action,
        scope=e.scope,
        stage=e.stage,
        actor=actor,
        actor_roles=roles.roles_of(session, actor) if actor else frozenset(),
        fields=e.fields,
        new_fields=dict(new_fields or {}),
        comment=comment,
        developer=e.tags.get(TAG_DEVELOPER) if e.version is not None else None,
        entered_by=e.tags.get(TAG_UPDATED_BY) if e.tags.get(TAG_STAGE) else e.model_tags.get(TAG_UPDATED_BY),
        separation_of_duties=config.separation_of_duties(),
        model=e.model,
        version=e.version,
        governed=e.governed,
        model_stage=e.model_tags.get(TAG_STAGE),
    )


class SessionTarget:
    """`effects.Target` over the registry, inside the governance transaction."""

    def __init__(self, session: Session, store: SqlAlchemyStore, e: Entity):
        self.session, self.store, self.e = session, store, e
        self.version = e.version

    def set_tag(self, key: str, value: str) -> None:
        set_tag(self.session, self.e, key, value)

    def delete_tag(self, key: str) -> None:
        delete_tag(self.session, self.e, key)

    def bind_production_alias(self) -> None:
        e = self.e
        events.note_alias(self.session, e.model)  # where it pointed before: one event if it moves
        self.session.merge(
            SqlRegisteredModelAlias(workspace=e.workspace, name=e.model, alias=config.production_alias(), version=e.version)
        )

    def unbind_production_alias(self) -> None:
        e = self.e
        events.note_alias(self.session, e.model)
        self.session.query(SqlRegisteredModelAlias).filter_by(
            workspace=e.workspace, name=e.model, alias=config.production_alias(), version=e.version
        ).delete()

    def cascade(self, effect: str, actor: str, comment: str | None) -> None:
        e = self.e
        if effect == "supersede":
            rows = (
                self.session.query(SqlModelVersionTag.version)
                .filter_by(workspace=e.workspace, name=e.model, key=TAG_STAGE, value=workflow.READY_TO_USE)
                .all()
            )
            for (version,) in rows:
                if int(version) != e.version:
                    decommission_version(self.session, self.store, e.model, int(version), actor,
                                          f"superseded by version {e.version}")
        elif effect == "retire_versions":
            for version in governed_versions(self.session, e):
                decommission_version(self.session, self.store, e.model, version, actor,
                                      f"model decommissioned: {comment}")
        else:
            raise ValueError(f"unknown cascading effect {effect!r}")


def set_tag(session: Session, e: Entity, key: str, value: str, version: int | None = None) -> None:
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


def delete_tag(session: Session, e: Entity, key: str, version: int | None = None) -> None:
    version = e.version if version is None else version
    if version is None:
        session.query(SqlRegisteredModelTag).filter_by(workspace=e.workspace, name=e.model, key=key).delete()
    else:
        session.query(SqlModelVersionTag).filter_by(
            workspace=e.workspace, name=e.model, version=version, key=key
        ).delete()
    if version == e.version:
        e.tags.pop(key, None)


def touch(session: Session, e: Entity) -> None:
    now = int(time.time() * 1000)
    session.query(SqlRegisteredModel).filter_by(workspace=e.workspace, name=e.model).update(
        {"last_updated_time": now}
    )
    if e.version is not None:
        session.query(SqlModelVersion).filter_by(workspace=e.workspace, name=e.model, version=e.version).update(
            {"last_updated_time": now}
        )


def decommission_version(
    session: Session, store: SqlAlchemyStore, model: str, version: int, actor: str, comment: str
) -> None:
    """Apply the table's decommission row to a live version as a consequence of another action, audited."""
    ve = load(store, session, model, version)
    old_stage = ve.stage
    if old_stage in workflow.TERMINAL_STAGES:
        return
    retire = workflow.find_transition(old_stage, workflow.DECOMMISSION, workflow.VERSION_SCOPE)
    if retire is None:
        return
    effects.move(SessionTarget(session, store, ve), retire, actor, comment, {})
    record(session, actor=actor, role=retire.role, model=model, version=version, action=workflow.DECOMMISSION,
           from_stage=old_stage, to_stage=retire.dest, comment=comment)


@dataclass
class Snapshot:
    """A model, its governed versions and where the production alias points, read once in a
    transaction: what the at-a-glance tags are computed from and what the status answer shows."""

    model: Entity
    versions: dict[int, Entity]
    bound: int | None


def snapshot(session: Session, store: SqlAlchemyStore, model: str) -> Snapshot:
    e = load(store, session, model)
    versions = {v: load(store, session, model, v) for v in governed_versions(session, e)}
    bound = (
        session.query(SqlRegisteredModelAlias.version)
        .filter_by(workspace=e.workspace, name=model, alias=config.production_alias())
        .first()
    )
    return Snapshot(e, versions, int(bound[0]) if bound else None)


def refresh_glance(session: Session, store: SqlAlchemyStore, model: str) -> Snapshot:
    """Rewrite the model's at-a-glance tags (`effects.glance`) from its versions' tags; returns the
    snapshot it read, with the model's tags as rewritten (for the status answer)."""
    snap = snapshot(session, store, model)
    e = snap.model
    for key, value in effects.glance({v: ve.tags for v, ve in snap.versions.items()}, snap.bound).items():
        if value is None:
            if key in e.model_tags:
                delete_tag(session, e, key)
        elif e.model_tags.get(key) != value:
            set_tag(session, e, key, value)
    return snap


def governed_versions(session: Session, e: Entity) -> list[int]:
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
