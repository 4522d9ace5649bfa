"""MLflow's own per-model permissions, applied to the governance routes and pages.

The governance server sits on MLflow's basic-auth; a user whom the admin denied a model with
MLflow's permission API must be refused by our routes exactly as by MLflow's. Nothing here
re-implements the rules: the decision is MLflow's `_get_registered_model_permission` (the
function behind its own ``validate_can_read_registered_model``), and admins pass as they do in
MLflow's ``before_request``.

Routes declare what they need on the model they name (`READ` to see it, `EDIT` to act on it);
lists that span models (the inbox, the audit trail) keep only what the user may read.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED

from mlflow_governance.core.environment_variables import MLGOV_USER_LIST

READ = "READ"
EDIT = "EDIT"


def is_admin() -> bool:
    """True when the signed-in user is an MLflow admin (admins see and may act on every model)."""
    from mlflow.server import auth

    return bool(auth.sender_is_admin())


def _allows(model: str, need: str) -> bool:
    from mlflow.server import auth

    permission = auth._get_registered_model_permission(model)
    return bool(permission.can_update if need == EDIT else permission.can_read)


def allows(model: str, need: str) -> bool:
    """True when the signed-in user holds ``need`` (READ or EDIT) on ``model`` (admins always)."""
    if need not in (READ, EDIT):
        raise ValueError(f"unknown permission requirement {need!r}")
    return is_admin() or _allows(model, need)


def require(model: str, need: str, user: str) -> None:
    """Raise MLflow's 403 unless ``user`` holds ``need`` (READ or EDIT) on ``model``."""
    if allows(model, need):
        return
    verb = "read" if need == READ else "act on"
    raise MlflowException(
        f"{user!r} may not {verb} model {model!r}: MLflow's permission for this model does not grant {need}",
        error_code=PERMISSION_DENIED,
    )


def readable(models: Iterable[str]) -> set[str]:
    """The subset of ``models`` the signed-in user may read."""
    names = set(models)
    if is_admin():
        return names
    return {name for name in names if _allows(name, READ)}


def check_user_list_setting() -> str:
    """``MLGOV_USER_LIST`` (all or admins), refused with INVALID_PARAMETER_VALUE when it is anything else."""
    return MLGOV_USER_LIST.get()


def restrict_user_list(auth_module) -> None:
    """With ``MLGOV_USER_LIST=admins``, only admins list users (MLflow lets every signed-in user).

    MLflow's own validator for ``users/list`` is replaced by its ``sender_is_admin`` (admins skip
    validators altogether), so the roster of names and admin flags is not shown to everybody.
    """
    if check_user_list_setting() == "admins":
        from mlflow.server.auth import routes

        for path in (routes.LIST_USERS, routes.AJAX_LIST_USERS):
            auth_module.BEFORE_REQUEST_VALIDATORS[(path, "GET")] = auth_module.sender_is_admin
