"""``mlflow server --app-name governance``: authenticated MLflow with governance routes.

Builds on MLflow's basic-auth app (`mlflow.server.auth.create_app`): it authenticates every
Flask request and sets ``flask.g.mlflow_authenticated_user``, which the governed registry store
reads as the acting user; under uvicorn it also guards MLflow's native FastAPI routes with its
permission middleware. This module configures it from the governance settings before importing
it (MLflow reads its auth configuration at import time), then adds the governance REST API and
the approvals page, and starts the delivery of governance events to MLflow's webhooks.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow.environment_variables import (
    MLFLOW_AUTH_ADMIN_PASSWORD,
    MLFLOW_AUTH_ADMIN_USERNAME,
    MLFLOW_AUTH_CONFIG_PATH,
)
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from mlflow_governance.core import config, settings
from mlflow_governance.core import environment_variables as ev
from mlflow_governance.server import databases

MIN_PASSWORD_LENGTH = 12


def check_settings() -> str:
    """Refuse to start on settings MLflow (or a later request) would only reject later; returns the
    admin password."""
    password = ev.MLGOV_ADMIN_PASSWORD.get()  # or MLflow's MLFLOW_AUTH_ADMIN_PASSWORD
    if not password:
        raise MlflowException(
            f"{ev.MLGOV_ADMIN_PASSWORD} is not set: the governance server has no default password "
            "(set it in the configuration file or the environment)",
            error_code=INVALID_PARAMETER_VALUE,
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise MlflowException(
            f"{ev.MLGOV_ADMIN_PASSWORD} must be at least {MIN_PASSWORD_LENGTH} characters (MLflow's basic-auth rule)",
            error_code=INVALID_PARAMETER_VALUE,
        )
    if not ev.MLFLOW_FLASK_SERVER_SECRET_KEY.get():
        raise MlflowException(
            f"{ev.MLFLOW_FLASK_SERVER_SECRET_KEY} is not set (mlgov server sets one per start; a direct "
            "`mlflow server --app-name governance` needs it in the environment)",
            error_code=INVALID_PARAMETER_VALUE,
        )
    databases.auth_database_uri()
    ev.check_all()  # e.g. MLGOV_USER_LIST, MLGOV_DEFAULT_PERMISSION, MLGOV_SEPARATION_OF_DUTIES
    return password


def configure_basic_auth() -> None:
    """Point MLflow's basic-auth at our settings; refuse to start without an admin password."""
    settings.load()
    password = check_settings()
    # A server acts only as the authenticated user of each request, never as a local user.
    ev.MLGOV_USER.unset()
    MLFLOW_AUTH_ADMIN_USERNAME.set(config.admin_user())
    MLFLOW_AUTH_ADMIN_PASSWORD.set(password)
    permission = ev.MLGOV_DEFAULT_PERMISSION.get()
    ini = Path(tempfile.mkdtemp(prefix="mlgov-auth-")) / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\n"
        f"default_permission = {permission}\n"
        f"database_uri = {databases.auth_database_uri()}\n"
        # Ours: basic-auth or the browser session, verified at most once per request and cached
        # per process under the stored hash (mlflow_governance.server.credentials).
        "authorization_function = mlflow_governance.server.credentials:authenticate_request\n",
        encoding="utf-8",
    )
    MLFLOW_AUTH_CONFIG_PATH.set(str(ini))


def create_app():
    """App factory named by the ``mlflow.app`` entry point ``governance``."""
    configure_basic_auth()
    from mlflow.server import app as flask_app
    from mlflow.server import auth

    from mlflow_governance.server import api, pages, permissions, signin, users

    signin.register(flask_app)  # before basic-auth's hook: the sign-in form needs no credentials
    api.register(flask_app, auth)
    pages.register(flask_app, auth)
    users.register(flask_app)  # no SQL or password hash in the user routes' error messages
    permissions.restrict_user_list(auth)  # MLGOV_USER_LIST=admins
    from mlflow_governance.server import outage

    # GET /health/ready, and a database outage answered 503 naming the database on every route
    # (registered after the hooks above, so its after_request hook runs before theirs).
    outage.register(flask_app, databases.from_environment(), page=pages.outage_page)
    from mlflow_governance.notifications import delivery, people

    # Governance events to MLflow's webhooks, off the request path (a daemon thread per worker).
    delivery.start_in_server(flask_app, people.default_sinks)
    app = auth.create_app(flask_app)
    from mlflow_governance.server.auth_state import remember_store_reads

    remember_store_reads(auth.store)  # after create_app: the store is initialised
    from mlflow_governance.server.guard import (
        add_native_route_guard,
        add_origin_guard_flask,
        streamline_mlflow_permission_middleware,
    )

    if isinstance(app, type(flask_app)):
        add_origin_guard_flask(app)
    else:  # uvicorn: a FastAPI app wrapping Flask; its middleware sees every route
        streamline_mlflow_permission_middleware(app)  # before ours: they wrap it
        add_native_route_guard(app)
        outage.add_asgi_guard(app)  # outermost: MLflow's native routes and the guards' own failures too
    return app
