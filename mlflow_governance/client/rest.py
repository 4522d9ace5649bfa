"""The governance REST API from Python: what `GovernanceClient` uses against a server.

Credentials follow MLflow's conventions (``MLFLOW_TRACKING_USERNAME`` / ``PASSWORD``); errors
come back as `MlflowException` with the server's error code and message. MLflow is imported only
to raise one: a command that succeeds against a server never pays for importing MLflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests

from mlflow_governance.core import environment_variables as ev

if TYPE_CHECKING:
    from mlflow.exceptions import MlflowException

PREFIX = "/api/2.0/mlflow-governance"


def mlflow_error(message: str, code: str | None) -> MlflowException:
    """An ``MlflowException`` with the error code named ``code`` (INTERNAL_ERROR if MLflow has none such)."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, ErrorCode

    known = code in ErrorCode.keys()
    return MlflowException(message, error_code=ErrorCode.Value(code) if known else INTERNAL_ERROR)


def server_unreachable(base_url: str, exc: requests.RequestException, timeout: float) -> MlflowException:
    """The governance server did not answer: one line naming the URL (``mlgov`` exits 6)."""
    if isinstance(exc, requests.Timeout):
        why = f"no answer within {timeout:g} s"
    elif isinstance(exc, requests.exceptions.SSLError):
        why = "TLS handshake failed"
    elif isinstance(exc, requests.ConnectionError):
        why = "connection refused or host unreachable"
    else:
        why = type(exc).__name__
    return mlflow_error(f"cannot reach the governance server at {base_url} ({why}): is it running? "
                        "(mlgov server start, or check MLFLOW_TRACKING_URI)", "TEMPORARILY_UNAVAILABLE")


def credentials_problem(username: str | None, password: str | None) -> str | None:
    """Why a governance server cannot know who is acting, or None: one line saying what to set."""
    if username and password:
        return None
    if ev.MLGOV_USER.get() and not username:
        return ("MLGOV_USER names the acting user only against a local registry; against a governance "
                "server set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    if username and not password:
        return "MLFLOW_TRACKING_USERNAME is set but MLFLOW_TRACKING_PASSWORD is not"
    return ("no credentials for the governance server: set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD (the server's basic-auth user)")


class RestGovernance:
    """Backend of `GovernanceClient` for an ``http(s)://`` governance server."""

    def __init__(self, base_url: str, username: str | None = None, password: str | None = None, timeout: float = 60):
        self.base_url = base_url.rstrip("/")
        username = username or ev.MLFLOW_TRACKING_USERNAME.get()
        password = password or ev.MLFLOW_TRACKING_PASSWORD.get()
        self.auth = (username, password) if username else None
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, raw: bool = False,
              missing: Any = ...) -> Any:
        """The answer's JSON (its text if ``raw``); an error answer raises, except that
        RESOURCE_DOES_NOT_EXIST returns ``missing`` when it is given (an expected answer need not
        import MLflow to be raised and caught)."""
        url = self.base_url + (path if path.startswith("/api/") else PREFIX + path)
        clean = {k: v for k, v in (body or {}).items() if v is not None}
        try:
            resp = requests.request(
                method,
                url,
                json=clean if method != "GET" else None,
                params=clean if method == "GET" else None,
                auth=self.auth,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise server_unreachable(self.base_url, exc, self.timeout) from None
        if resp.status_code >= 400:
            try:
                err = resp.json()
                message, code = err.get("message", resp.text), err.get("error_code", "INTERNAL_ERROR")
            except ValueError:
                message, code = resp.text.strip() or resp.reason, None
            if resp.status_code == 401 and self.auth is None:
                message = credentials_problem(None, None) or message
            if code is None:
                code = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "RESOURCE_DOES_NOT_EXIST"}.get(
                    resp.status_code, "INTERNAL_ERROR"
                )
            if code == "RESOURCE_DOES_NOT_EXIST" and missing is not ...:
                return missing
            if resp.status_code == 404 and "mlflow-governance" in url and code == "ENDPOINT_NOT_FOUND":
                message = f"{self.base_url} is not a governance server (start it with --app-name governance)"
            raise mlflow_error(message, code)
        return resp.text if raw else resp.json()

    def whoami(self) -> dict[str, Any]:
        return self._call("GET", "/whoami")

    def initiate(self, model, use_case, risk_tier, business_owner):
        body = {"model": model, "use_case": use_case, "risk_tier": risk_tier, "business_owner": business_owner}
        return self._call("POST", "/models/initiate", body)["inventory_id"]

    def transition(self, model, action, version, fields, comment, evidence=None):
        body = {"model": model, "action": action, "version": version, "fields": fields, "comment": comment,
                "evidence": evidence}
        return self._call("POST", "/models/transition", body)

    def set_field(self, model, name, value, version):
        return self._call("POST", "/models/set-field", {"model": model, "name": name, "value": value, "version": version})

    def may(self, model, action, version, new_version, inputs, fields, comment):
        body = {"model": model, "action": action, "version": version, "new_version": new_version,
                "inputs": inputs, "fields": fields, "comment": comment}
        return self._call("POST", "/models/may", body)

    def set_monitors(self, model, version, config):
        body = {"model": model, "version": version, "config": config}
        return self._call("POST", "/models/monitors", body)

    def status(self, model, version):
        return self._call("GET", "/models/status", {"model": model, "version": version})

    def tasks(self, role):
        return self._call("GET", "/tasks", {"role": role})["tasks"]

    def audit(self, model, limit):
        return self._call("GET", "/audit", {"model": model, "limit": limit})["rows"]

    def verify_audit(self, expect=None):
        query = {"expect_seq": expect[0], "expect_hash": expect[1]} if expect else None
        return self._call("GET", "/audit/verify", query)

    def audit_head(self):
        head = self._call("GET", "/audit/head")
        return head["seq"], head["hash"]

    def factsheet(self, model: str, fmt: str = "md") -> str:
        return self._call("GET", "/factsheet", {"model": model, "format": fmt}, raw=True)

    def trace(self, request_id: str) -> dict[str, Any]:
        """The server's trace of a served prediction (it reads its own MLGOV_PAYLOAD_URL)."""
        return self._call("GET", "/trace", {"request_id": request_id})

    def grant(self, user, role):
        return self._call("POST", "/roles/grant", {"username": user, "role": role})["changed"]

    def revoke(self, user, role):
        return self._call("POST", "/roles/revoke", {"username": user, "role": role})["changed"]

    def roles(self):
        return self._call("GET", "/roles/list")["roles"]

    def events(self, after, limit, model):
        return self._call("GET", "/events", {"after": after or None, "limit": limit, "model": model})["events"]

    def events_status(self):
        return self._call("GET", "/events/status")

    def set_contact(self, user, email, url, clear=False):
        return self._call("POST", "/users/contact", {"username": user, "email": email, "url": url, "clear": clear})

    def notifications(self):
        return self._call("GET", "/notifications")["users"]

    def test_notification(self, user):
        return self._call("POST", "/notifications/test", {"username": user})

    def add_user(self, username: str, password: str) -> None:
        """Create a user through MLflow's own basic-auth endpoint (admin only)."""
        self._call("POST", "/api/2.0/mlflow/users/create", {"username": username, "password": password})

    def get_user(self, username: str) -> dict[str, Any] | None:
        """MLflow's user record (``id``, ``username``, ``is_admin``), or ``None`` when there is no such user.

        Admin only for another user's record (MLflow answers PERMISSION_DENIED otherwise).
        """
        found = self._call("GET", "/api/2.0/mlflow/users/get", {"username": username}, missing=None)
        return None if found is None else found["user"]

    def delete_user(self, username: str) -> None:
        """Delete a user through MLflow's basic-auth endpoint (admin only)."""
        self._call("DELETE", "/api/2.0/mlflow/users/delete", {"username": username})
