"""What a transition does to the registry, as named effects over a small target interface.

A row of `workflow.TRANSITIONS` moves an entity (`move`) and names its effects; each name maps
to one function here (`EFFECTS`). The functions only speak to a `Target`: set or delete a tag of
the entity, bind or unbind the production alias. The engine's target writes the registry inside
the governance transaction; the reconciliation's target writes a replayed copy of the state. One
registry serves both, so what an action writes and what its audit row is replayed into cannot
drift apart, and a misspelt effect name fails at import (`check_table`), not silently.

Cascading effects (decommissioning the superseded version, or every version of a decommissioned
model) act on *other* entities; the engine records each of those as its own audit row, so the
replay skips them (``Effect.cascade``) and meets their rows in order instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from mlflow_governance.core import workflow
from mlflow_governance.core.tags import (
    TAG_ASSIGNEE,
    TAG_DEVELOPER,
    TAG_FIELD_PREFIX,
    TAG_IN_FLIGHT,
    TAG_INVENTORY_ID,
    TAG_MONITORS,
    TAG_MONITORS_DIGEST,
    TAG_PRODUCTION,
    TAG_STAGE,
    TAG_UPDATED_BY,
    TAG_USABILITY,
)


class Target(Protocol):
    """One governed entity (a model, or one of its versions) that effects change."""

    version: int | None

    def set_tag(self, key: str, value: str) -> None: ...

    def delete_tag(self, key: str) -> None: ...

    def bind_production_alias(self) -> None: ...

    def unbind_production_alias(self) -> None: ...

    def cascade(self, effect: str, actor: str, comment: str | None) -> None: ...


@dataclass(frozen=True)
class Effect:
    """A named effect: what it does to the target, and whether it acts on other entities."""

    apply: Callable[[Target, str, str | None], None]
    cascade: bool = False


def _usability(value: str) -> Callable[[Target, str, str | None], None]:
    def apply(target: Target, actor: str, comment: str | None) -> None:
        target.set_tag(TAG_USABILITY, value)

    return apply


def _promote(target: Target, actor: str, comment: str | None) -> None:
    target.set_tag(TAG_USABILITY, workflow.USABILITY_ACCEPT)
    target.bind_production_alias()


def _retire(target: Target, actor: str, comment: str | None) -> None:
    target.delete_tag(TAG_USABILITY)
    target.unbind_production_alias()


def _cascade(name: str) -> Callable[[Target, str, str | None], None]:
    def apply(target: Target, actor: str, comment: str | None) -> None:
        target.cascade(name, actor, comment)

    return apply


# name -> effect: every name a row of the table uses must be here (`check_table`).
EFFECTS: dict[str, Effect] = {
    # the previous Ready to Use version is decommissioned by the table's own decommission row
    "supersede": Effect(_cascade("supersede"), cascade=True),
    # usability accept and the production alias on this version
    "promote": Effect(_promote),
    "usability_reject": Effect(_usability(workflow.USABILITY_REJECT)),
    "usability_accept": Effect(_usability(workflow.USABILITY_ACCEPT)),
    # usability dropped, and the production alias if it points here
    "retire": Effect(_retire),
    # a decommissioned model decommissions each of its live versions
    "retire_versions": Effect(_cascade("retire_versions"), cascade=True),
}


def check_table(rows=workflow.TRANSITIONS) -> None:
    """Refuse a table that names an effect this module does not define."""
    unknown = sorted({e for row in rows for e in row.effects} - EFFECTS.keys())
    if unknown:
        raise ValueError(f"the transition table names unknown effect(s): {', '.join(unknown)}")


check_table()


def initiate(target: Target, stage: str, inventory_id: str, actor: str, fields: Mapping[str, str]) -> None:
    """The tags of a model that has just been put under governance."""
    target.set_tag(TAG_INVENTORY_ID, inventory_id)
    target.set_tag(TAG_STAGE, stage)
    target.set_tag(TAG_ASSIGNEE, workflow.ASSIGNEE_ROLE[stage])
    target.set_tag(TAG_UPDATED_BY, actor)
    fill(target, fields)


def fill(target: Target, fields: Mapping[str, str]) -> None:
    """Record field values as ``mlgov.field.<name>`` tags."""
    for name, value in fields.items():
        target.set_tag(TAG_FIELD_PREFIX + name, value)


def set_monitors(target: Target, fields: Mapping[str, str]) -> None:
    """Record the monitor configuration in force (``monitor_config``, ``monitor_config_digest``)."""
    target.set_tag(TAG_MONITORS, fields["monitor_config"])
    target.set_tag(TAG_MONITORS_DIGEST, fields["monitor_config_digest"])


def move(
    target: Target,
    row: workflow.Transition,
    actor: str,
    comment: str | None,
    fields: Mapping[str, str],
    cascades: bool = True,
) -> None:
    """Apply ``row`` to ``target``: fields, stage, the role that waits next, who moved it, effects.

    ``cascades`` False skips the effects that act on other entities (the replay meets their
    own audit rows).
    """
    fill(target, fields)
    target.set_tag(TAG_STAGE, row.dest)
    assignee = workflow.assignee_after(row)
    if assignee:
        target.set_tag(TAG_ASSIGNEE, assignee)
    else:
        target.delete_tag(TAG_ASSIGNEE)
    if row.dest != row.source:
        target.set_tag(TAG_UPDATED_BY, actor)
    if row.action == workflow.SUBMIT and row.source == workflow.VERSION_ENTRY_STAGE and target.version is not None:
        target.set_tag(TAG_DEVELOPER, actor)
    for name in row.effects:
        effect = EFFECTS[name]
        if cascades or not effect.cascade:
            effect.apply(target, actor, comment)


MAX_GLANCE = 1000  # characters of the in-flight summary tag (MLflow allows 5000 per tag value)


def glance(versions: Mapping[int, Mapping[str, str]], production_version: int | None) -> dict[str, str | None]:
    """The model at a glance, as registered-model tags (None: the tag is removed).

    ``mlgov.production``: the production version and its usability, marked REFUSED while a
    monitor has turned it red; ``mlgov.in_flight``: the versions still in the workflow and the
    role each waits for. Computed from the versions' own tags, by the engine after each action
    and by the reconciliation from the replayed state, with this one function.
    """
    production = None
    if production_version is not None:
        tags = versions.get(production_version, {})
        usability = tags.get(TAG_USABILITY)
        if usability == workflow.USABILITY_REJECT:
            production = (
                f"version {production_version} REFUSED (usability reject): scoring is refused until the "
                f"{tags.get(TAG_ASSIGNEE) or workflow.MODEL_OWNER} reviews it"
            )
        else:
            production = f"version {production_version} (usability {usability or 'unset'})"
    live = [
        f"v{n} {tags[TAG_STAGE]} (waiting for {tags.get(TAG_ASSIGNEE) or 'nobody'})"
        for n, tags in sorted(versions.items())
        if tags.get(TAG_STAGE) and tags[TAG_STAGE] not in (workflow.READY_TO_USE, *workflow.TERMINAL_STAGES)
    ]
    in_flight = "; ".join(live) or None
    if in_flight and len(in_flight) > MAX_GLANCE:
        in_flight = in_flight[: MAX_GLANCE - 20].rsplit("; ", 1)[0] + f"; ... ({len(live)} in all)"
    return {TAG_PRODUCTION: production, TAG_IN_FLIGHT: in_flight}
