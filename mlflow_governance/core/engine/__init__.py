"""Governance operations on the registry database, by responsibility.

`state` (the entity, its tags, the effects target), `transaction` (one locked write per action,
refusals that keep their audit row), `commands` (initiate, act, may, fill, roles) and `views`
(status, inbox, audit). Callers use this package's names; each action runs in one database
transaction: its tags, its alias, its audit row and its governance event (`mlflow_governance.core.events`)
commit together or not at all.
"""

from mlflow_governance.core.engine.commands import (
    act,
    grant_role,
    initiate,
    list_roles,
    may,
    require_admin,
    revoke_role,
    set_field,
    set_monitors,
)
from mlflow_governance.core.engine.state import Entity, load
from mlflow_governance.core.engine.transaction import (
    ANONYMOUS,
    record,
    refusal,
    refuse_and_record,
    run,
)
from mlflow_governance.core.engine.views import (
    audit_head,
    history,
    reconciliation,
    roles_of,
    status,
    tasks,
    verify,
    verify_audit,
)

__all__ = [
    "ANONYMOUS",
    "Entity",
    "act",
    "audit_head",
    "grant_role",
    "history",
    "initiate",
    "list_roles",
    "load",
    "may",
    "reconciliation",
    "record",
    "refusal",
    "refuse_and_record",
    "require_admin",
    "revoke_role",
    "roles_of",
    "run",
    "set_field",
    "set_monitors",
    "status",
    "tasks",
    "verify",
    "verify_audit",
]
