"""Who is acting: the authenticated user of a server request, else ``MLGOV_USER`` locally.

Inside a Flask request the only source of identity is authentication (MLflow's basic-auth sets
``flask.g.mlflow_authenticated_user``; the governance app does the same for its own routes). An
unauthenticated request has no actor, whatever the server's environment says, so a server
started without authentication cannot be driven as its operator by anonymous clients.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import UNAUTHENTICATED

from mlflow_governance.core import config
from mlflow_governance.core.environment_variables import MLGOV_USER

_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("mlgov_actor", default=None)


@contextmanager
def acting_as(user: str) -> Iterator[None]:
    """Run a block as ``user`` (used by the server for requests it authenticated itself)."""
    token = _override.set(user)
    try:
        yield
    finally:
        _override.reset(token)


def _request_user() -> tuple[bool, str | None]:
    try:
        from flask import g, has_request_context
    except ImportError:  # pragma: no cover - flask is a dependency
        return False, None
    if not has_request_context():
        return False, None
    return True, getattr(g, "mlflow_authenticated_user", None)


def current_user() -> str | None:
    """The acting user, or None when nobody is identified."""
    override = _override.get()
    if override:
        return override
    in_request, user = _request_user()
    if in_request:
        return user
    return config.local_user()


def no_user_message() -> str:
    """What to tell someone acting without an identity, in a server request or locally."""
    in_request, _ = _request_user()
    if in_request:
        return "governance actions need an authenticated user: sign in to the governance server"
    return f"no acting user: set {MLGOV_USER} to the user you act as (development mode)"


def require_user() -> str:
    """The acting user; refuses with UNAUTHENTICATED when there is none."""
    user = current_user()
    if user:
        return user
    raise MlflowException(no_user_message(), error_code=UNAUTHENTICATED)
