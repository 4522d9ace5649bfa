"""Reconciliation: the governance state the audit trail implies, compared with the registry.

The hash chain proves that the audit rows were not edited; it says nothing about the registry's
tags and aliases, which a database writer could change behind the store (SQL that marks a
version Ready to Use and binds the production alias writes no audit row). Every governance
change is one transaction that writes its tags, its alias and its audit row together, so the
allowed rows, replayed in order through the same transition table, give exactly the state the
registry must hold: stage, assignee role, usability, developer, who moved it, fields and the
production alias, per model and version. Any difference is a change the trail does not explain.

The replay applies the table's rows with the same effect functions as the engine
(`mlflow_governance.core.effects`, over a dictionary instead of the database), never the engine's own
code, so an engine bug that writes a tag without its audit row shows up here too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from mlflow.entities.model_registry.model_version_stages import STAGE_DELETED_INTERNAL, STAGE_PRODUCTION
from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersion,
    SqlModelVersionTag,
    SqlRegisteredModelAlias,
    SqlRegisteredModelTag,
)
from sqlalchemy.orm import Session

from mlflow_governance.core import config, effects, workflow
from mlflow_governance.core.schema import audit
from mlflow_governance.core.tags import (
    TAG_INVENTORY_ID,
    TAG_PREFIX,
    is_governance_key,
)

Key = tuple[str, int | None]  # (model, version or None for the registered model)


@dataclass(frozen=True)
class Discrepancy:
    """One way the registry disagrees with the trail."""

    model: str
    version: int | None
    problem: str

    def __str__(self) -> str:
        where = f"{self.model} v{self.version}" if self.version is not None else self.model
        return f"{where}: {self.problem}"


@dataclass
class ImpliedState:
    """What the allowed audit rows imply: governance tags per entity and the production alias."""

    tags: dict[Key, dict[str, str]] = field(default_factory=dict)
    alias: dict[str, int | None] = field(default_factory=dict)
    deleted: set[Key] = field(default_factory=set)
    unexplained: list[Discrepancy] = field(default_factory=list)


class _ReplayTarget:
    """`effects.Target` over the replayed state of one entity."""

    def __init__(self, state: ImpliedState, model: str, version: int | None):
        self.state, self.model, self.version = state, model, version
        self.tags = state.tags.setdefault((model, version), {})

    def set_tag(self, key: str, value: str) -> None:
        self.tags[key] = value

    def delete_tag(self, key: str) -> None:
        self.tags.pop(key, None)

    def bind_production_alias(self) -> None:
        self.state.alias[self.model] = self.version

    def unbind_production_alias(self) -> None:
        if self.state.alias.get(self.model) == self.version:
            self.state.alias[self.model] = None

    def cascade(self, effect: str, actor: str, comment: str | None) -> None:
        raise AssertionError("cascades are replayed from their own audit rows")


def _refresh_glance(state: ImpliedState, model: str) -> None:
    model_tags = state.tags.get((model, None))
    if model_tags is None:
        return
    versions = {v: tags for (m, v), tags in state.tags.items() if m == model and v is not None}
    for key, value in effects.glance(versions, state.alias.get(model)).items():
        if value is None:
            model_tags.pop(key, None)
        else:
            model_tags[key] = value


def _apply_row(state: ImpliedState, r: Mapping[str, Any]) -> None:
    model, version = r["model"], r["version"]
    key: Key = (model, version)
    fields: dict[str, str] = json.loads(r["fields"] or "{}")
    action = r["action"]
    if action == workflow.INITIATE:
        inventory_id = fields.pop("inventory_id", None)
        state.tags[key] = {}
        effects.initiate(_ReplayTarget(state, model, None), r["to_stage"], inventory_id, r["actor"], fields)
        return
    if action == workflow.SET_FIELD:
        effects.fill(_ReplayTarget(state, model, version), fields)
        return
    if action == workflow.SET_MONITORS:
        effects.set_monitors(_ReplayTarget(state, model, version), fields)
        return
    if action == "delete_version":
        state.deleted.add(key)
        state.tags.pop(key, None)
        return
    if action not in workflow.ACTIONS:
        return  # role administration and other rows that change no registry state
    scope = workflow.VERSION_SCOPE if version is not None else workflow.MODEL_SCOPE
    row = workflow.find_transition(r["from_stage"], action, scope)
    if row is None or row.dest != r["to_stage"]:
        state.unexplained.append(
            Discrepancy(model, version, f"audit row {r['seq']} records {action!r} from {r['from_stage']!r} to "
                                        f"{r['to_stage']!r}, which no row of the transition table allows")
        )
        return
    effects.move(_ReplayTarget(state, model, version), row, r["actor"], r["comment"], fields, cascades=False)
    _refresh_glance(state, model)


def replay(rows: Iterable[Mapping[str, Any]]) -> ImpliedState:
    """Replay allowed audit rows, oldest first, into the state they imply."""
    state = ImpliedState()
    for r in rows:
        if r["outcome"] == "allowed" and r["model"]:
            _apply_row(state, r)
    return state


def _registry_state(session: Session, models: set[str] | None) -> tuple[dict[Key, dict[str, str]], set[Key]]:
    """Governance tags (look-alike keys included) of live models and versions, and deleted versions."""
    found: dict[Key, dict[str, str]] = {}
    q = session.query(SqlRegisteredModelTag.name, SqlRegisteredModelTag.key, SqlRegisteredModelTag.value)
    if models is not None:
        q = q.filter(SqlRegisteredModelTag.name.in_(models))
    for name, key, value in q:
        if is_governance_key(key):
            found.setdefault((name, None), {})[key] = value
    q = session.query(
        SqlModelVersionTag.name, SqlModelVersionTag.version, SqlModelVersionTag.key, SqlModelVersionTag.value
    ).join(
        SqlModelVersion,
        sa.and_(
            SqlModelVersion.workspace == SqlModelVersionTag.workspace,
            SqlModelVersion.name == SqlModelVersionTag.name,
            SqlModelVersion.version == SqlModelVersionTag.version,
        ),
    ).filter(SqlModelVersion.current_stage != STAGE_DELETED_INTERNAL)
    if models is not None:
        q = q.filter(SqlModelVersionTag.name.in_(models))
    for name, version, key, value in q:
        if is_governance_key(key):
            found.setdefault((name, int(version)), {})[key] = value
    q = session.query(SqlModelVersion.name, SqlModelVersion.version).filter(
        SqlModelVersion.current_stage == STAGE_DELETED_INTERNAL
    )
    if models is not None:
        q = q.filter(SqlModelVersion.name.in_(models))
    deleted = {(name, int(version)) for name, version in q}
    return found, deleted


def _show(value: str | None) -> str:
    return "absent" if value is None else repr(value)


def compare(session: Session, implied: ImpliedState, models: set[str] | None = None) -> list[Discrepancy]:
    """Every model or version whose governance tags, alias or stage disagree with ``implied``."""
    actual, deleted = _registry_state(session, models)
    out = [d for d in implied.unexplained if models is None or d.model in models]
    keys = {k for k in implied.tags if models is None or k[0] in models} | set(actual)
    for key in sorted(keys, key=lambda k: (k[0], k[1] or 0)):
        if key in deleted or key in implied.deleted:
            continue
        want, have = implied.tags.get(key, {}), actual.get(key, {})
        for tag in sorted(set(want) | set(have)):
            if want.get(tag) != have.get(tag):
                if tag not in want and tag.startswith(TAG_PREFIX):
                    problem = f"tag {tag} is {_show(have.get(tag))} but no audit row set it"
                elif tag not in want:
                    problem = f"tag {tag!r} looks like a governance tag ({_show(have.get(tag))}) and has no audit row"
                else:
                    problem = f"tag {tag} is {_show(have.get(tag))}; the audit trail says {_show(want.get(tag))}"
                out.append(Discrepancy(key[0], key[1], problem))
    governed = {
        m for source in (implied.tags, actual) for (m, v), tags in source.items() if v is None and TAG_INVENTORY_ID in tags
    }
    if models is not None:
        governed &= models
    if governed:
        aliases = session.query(
            SqlRegisteredModelAlias.name, SqlRegisteredModelAlias.alias, SqlRegisteredModelAlias.version
        ).filter(SqlRegisteredModelAlias.name.in_(governed))
        bound: dict[str, int] = {}
        for name, alias, version in aliases:
            if alias == config.production_alias():
                bound[name] = int(version)
            elif config.is_production_alias(alias):
                out.append(Discrepancy(name, int(version), f"alias {alias!r} imitates the production alias"))
        for name in sorted(governed):
            want, have = implied.alias.get(name), bound.get(name)
            if want != have:
                out.append(Discrepancy(
                    name, have if have is not None else want,
                    f"the {config.production_alias()!r} alias points at "
                    f"{'version ' + str(have) if have is not None else 'no version'}; the audit trail says "
                    f"{'version ' + str(want) if want is not None else 'no version'}",
                ))
        in_production = session.query(SqlModelVersion.name, SqlModelVersion.version).filter(
            SqlModelVersion.name.in_(governed), SqlModelVersion.current_stage == STAGE_PRODUCTION
        )
        for name, version in in_production:
            out.append(Discrepancy(name, int(version), "is in MLflow's deprecated 'Production' stage, which "
                                                       "governance never sets"))
    return out


def reconcile(session: Session, models: set[str] | None = None) -> list[Discrepancy]:
    """Replay the trail (only ``models``' rows when given) and compare it with the registry."""
    query = sa.select(audit).where(audit.c.outcome == "allowed", audit.c.model.is_not(None))
    if models is not None:
        query = query.where(audit.c.model.in_(models))
    rows = [dict(r._mapping) for r in session.execute(query.order_by(audit.c.seq))]
    return compare(session, replay(rows), models)
