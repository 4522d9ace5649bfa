"""The governance transaction: one locked, retried write transaction per governance action.

Every action runs in `run`, inside the store's own governance transaction
(`GovernedSqlAlchemyStore.governance_session`: the audit head's row lock serializes governance
writers, and MLflow's store methods called inside join it), retried when another writer won a
race; a refusal raised as `refusal(...)` still commits its audit row. `record`, the audit row of
an allowed change, also writes the change's governance event (`mlflow_governance.core.events`) in the
same transaction, and the deliverers of this process are woken once it has committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from mlflow.exceptions import MlflowException
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from sqlalchemy.orm import Session

from mlflow_governance.core import audit, events
from mlflow_governance.core.errors import GovernanceError
from mlflow_governance.core.identity import current_user

T = TypeVar("T")
ANONYMOUS = "(anonymous)"
_RETRIES = 8


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

    The transaction is the store's own (`GovernedSqlAlchemyStore.governance_session`): locked on
    the audit head, joined by MLflow's store methods called inside ``fn``.
    """
    for attempt in range(_RETRIES):
        try:
            with store.governance_session() as session:
                result = fn(session)
                written = events.finish(session)  # the production alias, netted over the transaction
            if written:
                events.notify()  # committed: wake this process's deliverers
            return result
        except GovernanceError:
            raise
        except (MlflowException, audit.StaleAuditHead, sa.exc.SQLAlchemyError) as exc:
            if not _is_retryable(exc) or attempt == _RETRIES - 1:
                if _is_retryable(exc):
                    raise GovernanceError("busy", "the registry is busy with another change; try again") from exc
                raise
            time.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")


class Refused(Exception):
    """Carries a refusal out of a transaction that must still commit its audit row."""

    def __init__(self, error: GovernanceError):
        self.error = error


def run(store: SqlAlchemyStore, fn: Callable[[Session], T]) -> T:
    """Like `transaction`, but a refusal raised by ``fn`` commits its audit row, then raises."""

    def body(session: Session):
        try:
            return fn(session)
        except Refused as refused:
            return refused

    result = transaction(store, body)
    if isinstance(result, Refused):
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
) -> Refused:
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
    return Refused(GovernanceError(kind, message))


def record(
    session: Session,
    *,
    actor: str | None,
    action: str,
    outcome: str = "allowed",
    role: str | None = None,
    model: str | None = None,
    version: int | None = None,
    from_stage: str | None = None,
    to_stage: str | None = None,
    fields: Mapping[str, str] | None = None,
    comment: str | None = None,
    evidence: Mapping[str, Any] | None = None,
) -> None:
    """Append the audit row of an operation that went through, and its governance event, in
    ``session``'s transaction (``evidence``: what a monitor measured, carried by the event only)."""
    row = audit.append(session, actor=actor or ANONYMOUS, role=role, model=model, version=version, action=action,
                       outcome=outcome, from_stage=from_stage, to_stage=to_stage, fields=dict(fields or {}),
                       comment=comment)
    events.on_record(session, row, evidence)


@dataclass
class Operation:
    """One governance operation: who does what to which entity, with which inputs.

    Its `refuse` records the refused attempt's audit row with all of that, so no command
    repeats the context; `run` runs the operation's body in one governance transaction.
    """

    store: Any
    action: str
    actor: str | None
    model: str | None = None
    version: int | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    comment: str | None = None
    evidence: Mapping[str, Any] | None = None

    def refuse(self, session: Session, kind: str, message: str, stage: str | None = None,
               role: str | None = None) -> Refused:
        """The audit row of this refused operation, to ``raise`` inside `run`."""
        return refusal(session, kind, message, actor=self.actor, action=self.action, model=self.model,
                       version=self.version, stage=stage, role=role, fields=self.fields, comment=self.comment)

    def record(self, session: Session, *, role: str | None = None, version: int | None = None,
               from_stage: str | None = None, to_stage: str | None = None,
               fields: Mapping[str, str] | None = None, outcome: str = "allowed") -> None:
        """The audit row of this operation once it went through (``fields`` replace the inputs,
        for example to add what the operation assigned; ``version`` names one it resolved)."""
        record(session, actor=self.actor, action=self.action, outcome=outcome, role=role, model=self.model,
               version=self.version if version is None else version, from_stage=from_stage,
               to_stage=to_stage, fields=self.fields if fields is None else fields, comment=self.comment,
               evidence=self.evidence)

    def run(self, fn: Callable[[Session], T]) -> T:
        return run(self.store, fn)


def refuse_and_record(store: SqlAlchemyStore, kind: str, message: str, **context: Any) -> None:
    """Record a refused attempt (for example a direct ``mlgov.`` tag write), then raise."""
    actor = current_user()

    def body(session: Session) -> None:
        raise refusal(session, kind, message, actor=actor, **context)

    run(store, body)
