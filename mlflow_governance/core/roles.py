"""The role table: which users hold which governance roles, in the registry's database."""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mlflow_governance.core import config
from mlflow_governance.core.schema import roles
from mlflow_governance.core.workflow import ADMIN


def roles_of(session: Session, user: str | None) -> frozenset[str]:
    """Roles held by ``user``; the configured admin also holds ``admin``."""
    if not user:
        return frozenset()
    held = {r for (r,) in session.execute(sa.select(roles.c.role).where(roles.c.username == user))}
    if user == config.admin_user():
        held.add(ADMIN)
    return frozenset(held)


def grant(session: Session, user: str, role: str, granted_by: str) -> bool:
    """Give ``role`` to ``user``; False when already held."""
    exists = session.execute(
        sa.select(roles.c.role).where(roles.c.username == user, roles.c.role == role)
    ).first()
    if exists:
        return False
    session.execute(
        roles.insert().values(username=user, role=role, granted_by=granted_by, granted_at=int(time.time() * 1000))
    )
    return True


def revoke(session: Session, user: str, role: str) -> bool:
    """Take ``role`` from ``user``; False when it was not held."""
    result = session.execute(roles.delete().where(roles.c.username == user, roles.c.role == role))
    return result.rowcount > 0


def listing(session: Session) -> list[dict[str, str]]:
    """Every (user, role) grant, sorted."""
    query = sa.select(roles).order_by(roles.c.username, roles.c.role)
    return [dict(r._mapping) for r in session.execute(query)]


def users_with(session: Session, role: str) -> list[str]:
    """Users holding ``role``."""
    return [u for (u,) in session.execute(sa.select(roles.c.username).where(roles.c.role == role))]
