"""Clean error messages on MLflow's user routes: no SQL, no parameters, no password hash.

MLflow's basic-auth ``POST /api/2.0/mlflow/users/create`` answers a duplicate user with
``RESOURCE_ALREADY_EXISTS`` and the message ``User (username=X) already exists. Error:
(sqlite3.IntegrityError) UNIQUE constraint failed ... [SQL: INSERT INTO users ...]
[parameters: ('X', 'scrypt:32768:8:1$...', 0)]`` (`mlflow.server.auth.sqlalchemy_store.
SqlAlchemyStore.create_user`): the new password's hash goes to whoever sent the request. An
``after_request`` hook on the governance app replaces such messages on every
``/(ajax-)api/<version>/mlflow/users/...`` error response (status >= 400, JSON body) with a clean
one, keeping the status and the error code, and logs the original on the server.
"""

from __future__ import annotations

import json
import logging
import re

from flask import Flask, Response, request

from mlflow_governance.core.errors import leaks_database_text

_logger = logging.getLogger(__name__)

USERS_PATH = re.compile(r"/(?:ajax-)?api/\d+\.\d+/mlflow/users/")
GENERIC_MESSAGE = "the user database refused the change"


def clean_message(message: str, error_code: str | None, username: str | None = None) -> str:
    """The message to show instead of ``message`` (returned unchanged when it leaks nothing)."""
    if not leaks_database_text(message):
        return message
    if error_code == "RESOURCE_ALREADY_EXISTS":
        name = username or _username_in(message)
        return f"user {name} already exists" if name else "the user already exists"
    return GENERIC_MESSAGE


def _username_in(message: str) -> str | None:
    match = re.search(r"User \(username=([^)\s]+)\) already exists", message)
    return match.group(1) if match else None


def _request_username() -> str | None:
    try:
        data = request.get_json(silent=True) if request.is_json else None
    except Exception:  # noqa: BLE001 - a body we cannot read names no one
        data = None
    name = data.get("username") if isinstance(data, dict) else None
    name = name or request.args.get("username")
    return name if isinstance(name, str) and name and not leaks_database_text(name) else None


def scrub_user_errors(response: Response) -> Response:
    """``after_request``: replace database error text in user-route error messages."""
    if response.status_code < 400 or not USERS_PATH.search(request.path) or not response.is_json:
        return response
    try:
        body = json.loads(response.get_data(as_text=True))
    except ValueError:
        return response
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return response
    message, code = body["message"], body.get("error_code")
    if not leaks_database_text(message):
        return response
    _logger.warning("user route %s %s answered %s %s: %s", request.method, request.path, response.status_code,
                    code, message)
    body["message"] = clean_message(message, code, _request_username())
    response.set_data(json.dumps(body))
    return response


def register(app: Flask) -> None:
    """Add the hook to MLflow's Flask app (``create_app``)."""
    app.after_request(scrub_user_errors)
